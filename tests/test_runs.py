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


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_folder_setting_is_the_default_not_the_servers_folder(monkeypatch, capsys, value):
    import core.jobs
    from core.jobs import env_path

    monkeypatch.setattr(core.jobs, "_said", set())
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
