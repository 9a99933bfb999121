import json

import pytest
import torch

from core.config import TrainConfig
from core.data import Normalizer
from core.evaluate import infer
from core.loop import run_training
from core.runs import RunError, list_runs, load_model, load_predictions, load_run


def finished_run(tmp_path, small_shapes, **kw):
    config = TrainConfig(dataset="shapes", data_dir=str(tmp_path / "data"), epochs=1, batch_size=32,
                         lr=0.01, log_interval=10, **kw)
    events = list(run_training(config, runs_root=tmp_path / "runs", dataset=small_shapes))
    return config, events


def test_a_run_directory_holds_everything_needed_to_look_back(tmp_path, small_shapes):
    config, events = finished_run(tmp_path, small_shapes)
    run_dir = events[-1]["run_dir"]
    info = load_run(run_dir)
    assert info.error is None and info.config == config and info.status == "finished"
    assert info.history.count == len(events) and info.history.start == events[0]
    assert info.history.epochs[0]["test_accuracy"] == events[-1]["test_accuracy"]
    # the checkpoint rebuilds the same network, loaded without unpickling code
    model = load_model(run_dir)
    logits = infer(model, small_shapes.test_images, Normalizer(small_shapes.mean, small_shapes.std))
    assert (logits.argmax(1) == small_shapes.test_labels).float().mean().item() == pytest.approx(
        events[-1]["test_accuracy"])
    predictions = load_predictions(run_dir)
    assert predictions["epoch"] == 1 and predictions["probs"].shape == (500, 10)
    assert torch.allclose(predictions["probs"].sum(1), torch.ones(500), atol=1e-2)
    assert not list((tmp_path / "runs").glob("*/.*.tmp"))  # no temporary files left behind


def test_damaged_run_directories_are_reported_not_fatal(tmp_path, small_shapes):
    finished_run(tmp_path, small_shapes)
    root = tmp_path / "runs"
    (root / "no-config").mkdir()
    (root / "bad-config").mkdir()
    (root / "bad-config" / "config.json").write_text("{not json")
    (root / "bad-values").mkdir()
    (root / "bad-values" / "config.json").write_text(json.dumps({"lr": -1}))
    good = [r for r in list_runs(root) if r.error is None][0]
    (good.path / "metrics.jsonl").open("a").write('{"type": "loss", "runn')  # torn last line
    runs = {r.name: r for r in list_runs(root, with_events=True)}
    assert runs["no-config"].status == "damaged" and "missing" in runs["no-config"].error
    assert "damaged" in runs["bad-config"].error
    assert "learning rate" in runs["bad-values"].error
    assert runs[good.name].status == "finished" and len(runs[good.name].history.losses) > 0
    (good.path / "summary.json").write_text("[")
    assert "summary.json is damaged" in load_run(good.path).error
    (good.path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(RunError, match="damaged"):
        load_model(good.path)
    with pytest.raises(RunError, match="no checkpoint"):
        load_model(root / "no-config")


def test_a_crash_is_recorded_as_failed(tmp_path, small_shapes, monkeypatch):
    import core.loop

    def broken_step(*args, **kwargs):
        raise RuntimeError("simulated out of memory")

    monkeypatch.setattr(core.loop.nn.CrossEntropyLoss, "forward", broken_step)
    with pytest.raises(RuntimeError, match="simulated"):
        finished_run(tmp_path, small_shapes)
    (run,) = list_runs(tmp_path / "runs")
    assert run.status == "failed" and "simulated out of memory" in run.summary["message"]


def test_runs_that_differ_by_optimizer_are_named_by_it(tmp_path):
    from core.runs import RunInfo
    from core.runs.compare import legend_names, settings_table

    configs = [TrainConfig(dataset="shapes", epochs=1), TrainConfig(dataset="shapes", epochs=1, optimizer="adam")]
    runs = [RunInfo(tmp_path / f"run{i}", config=c) for i, c in enumerate(configs)]
    assert legend_names(runs) == ["optimizer sgd", "optimizer adam"]
    assert [row["Optimizer"] for row in settings_table(runs)] == ["sgd", "adam"]


@pytest.mark.fault
def test_only_run_folders_are_deleted(tmp_path):
    from core.runs import delete_run

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "architecture.md").write_text("not a run")
    with pytest.raises(RunError, match="not a run folder"):
        delete_run(tmp_path, "docs")
    assert (tmp_path / "docs" / "architecture.md").exists()
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "metrics.jsonl").write_text("")  # a run whose config.json was lost: still a run
    delete_run(tmp_path, "half")
    assert not (tmp_path / "half").exists()


@pytest.mark.fault
@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_folder_setting_is_the_default_not_the_servers_folder(monkeypatch, capsys, value):
    import core.env
    import core.jobs
    from core.env import env_path

    monkeypatch.setattr(core.env, "_said", set())
    monkeypatch.setenv("CNN_DASHBOARD_RUNS", value)
    monkeypatch.setattr(core.jobs, "_manager", None)
    monkeypatch.setattr(core.jobs, "JobManager", lambda runs_root: runs_root)  # no workers started for this
    assert env_path("CNN_DASHBOARD_RUNS", "runs") == "runs"
    assert core.jobs.get_manager() == "runs"  # the server's manager writes into runs/, not the project folder
    monkeypatch.setenv("CNN_DASHBOARD_DATA", value)
    from ui.common import data_dir

    assert data_dir() == "data" and data_dir() == "data"
    said = capsys.readouterr().err
    assert said.count("CNN_DASHBOARD_RUNS is empty; using 'runs'") == 1
    assert said.count("CNN_DASHBOARD_DATA is empty; using 'data'") == 1  # once, not on every page run


@pytest.mark.fault
def test_a_history_of_any_length_is_read_in_bounded_memory_and_spans_the_whole_run(tmp_path):
    """Past MAX_EVENTS, every other loss point goes (again each time the list fills); every epoch, the start and
    the end stay, and the points still reach from the first step to the last."""
    from core.runs import MAX_EVENTS, read_events

    lines = [{"type": "start", "classes": ["a", "b"]}]
    for step in range(1, 200_001):
        lines.append({"type": "loss", "epoch": 1 + step // 50_000, "step": step, "running_loss": 1.0})
        if step % 50_000 == 0:
            lines.append({"type": "epoch", "epoch": step // 50_000, "test_accuracy": 0.5})
    lines.append({"type": "end", "status": "finished"})
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    events = read_events(path)
    losses = [e["step"] for e in events if e["type"] == "loss"]
    assert len(events) <= MAX_EVENTS and len(losses) > MAX_EVENTS // 4
    assert events[0]["type"] == "start" and events[-1]["type"] == "end"
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2, 3, 4]
    assert losses[0] <= 4 and losses[-1] >= 200_000 - 4 and losses == sorted(losses)
    assert read_events(path, limit=10**6) == lines  # below the cap, every event as written


@pytest.mark.fault
def test_the_pages_cache_of_networks_is_bounded_in_bytes_not_entries(tmp_path, small_shapes):
    """Networks and predictions are kept up to the stated bytes, least recently used going first; one larger than
    the bound is given and not kept; a file that changes is loaded again."""
    from core.runs.cache import FileCache, size_of

    _, events = finished_run(tmp_path, small_shapes)
    run = events[-1]["run_dir"]
    one = size_of(load_model(run))
    cache = FileCache(max_bytes=int(2.5 * one))
    copies = []
    for i in range(4):
        copy = tmp_path / f"copy{i}"
        copy.mkdir()
        (copy / "checkpoint.pt").write_bytes((tmp_path / run / "checkpoint.pt").read_bytes())
        copies.append(copy)
        cache.get(load_model, copy, "checkpoint.pt")
        assert cache.bytes <= cache.max_bytes
    assert cache.bytes == 2 * one
    loads = []

    def counted(path):
        loads.append(path)
        return load_model(path)

    first = cache.get(counted, copies[3], "checkpoint.pt")
    assert cache.get(counted, copies[3], "checkpoint.pt") is first and len(loads) == 1
    torch.save({**torch.load(copies[3] / "checkpoint.pt", weights_only=True), "epoch": 9}, copies[3] / "checkpoint.pt")
    assert cache.get(counted, copies[3], "checkpoint.pt") is not first and len(loads) == 2  # changed: loaded anew
    small = FileCache(max_bytes=one // 2)
    assert isinstance(small.get(load_model, copies[0], "checkpoint.pt"), torch.nn.Module) and small.bytes == 0
