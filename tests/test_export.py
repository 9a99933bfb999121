"""A run exported for TensorBoard, ONNX and MLflow, read back with each tool's own reader (no mocks): the same loss
points, accuracies, settings and outputs as the run."""

import json
import sys
from pathlib import Path

import pytest
import torch

from core.config import TrainConfig
from core.data import Normalizer
from core.history import History
from core.loop import run_training
from core.runs import load_model, load_run, read_events
from core.runs.__main__ import main as runs_cli
from core.runs.export import learning_rate


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_shapes):
    """Two finished runs of the tutorial's network on Shapes, the first with the one-cycle schedule."""
    root = tmp_path_factory.mktemp("export") / "runs"
    names = []
    for schedule in ("one-cycle", "constant"):
        config = TrainConfig(dataset="shapes", epochs=2, batch_size=32, lr=0.01, log_interval=10, schedule=schedule)
        events = list(run_training(config, runs_root=root, dataset=small_shapes))
        names.append(Path(events[-1]["run_dir"]).name)
    return root, names


def export(root, *args):
    return runs_cli(["--runs-dir", str(root), "export", *map(str, args)])


def scalars(folder: Path) -> tuple:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    values = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    return values, acc


def test_tensorboard_event_files_hold_the_runs_loss_points_accuracies_settings_and_filters(trained, tmp_path,
                                                                                          capsys):
    root, (name, _) = trained
    run = load_run(root / name)
    assert export(root, name, "--format", "tensorboard", "-o", tmp_path / "tb") == 0
    values, acc = scalars(tmp_path / "tb")
    losses = run.history.losses
    assert [s for s, _ in values["loss/running"]] == [p["images_seen"] for p in losses]
    assert [v for _, v in values["loss/running"]] == pytest.approx([p["running_loss"] for p in losses], rel=1e-6)
    assert values["accuracy/test"] == [(e["epoch"], pytest.approx(e["test_accuracy"])) for e in run.history.epochs]
    assert values["accuracy/train"] == [(e["epoch"], pytest.approx(e["train_accuracy"])) for e in run.history.epochs]
    classes = run.history.start["classes"]
    for i, c in enumerate(classes):
        assert [v for _, v in values[f"per_class_accuracy/{c}"]] == pytest.approx(
            [e["per_class_accuracy"][i] for e in run.history.epochs])
    lrs = [v for _, v in values["learning_rate"]]  # one-cycle: up to 0.01, then down
    assert max(lrs) == pytest.approx(0.01, rel=0.05) and lrs[0] < 0.002 and lrs[-1] < 0.002
    image = acc.Images("conv1/filters")[-1]
    assert image.step == 2 and image.width > 6 * 5 * 8  # six 5x5 filters, enlarged 8 times, in a row
    hparams = acc.summary_metadata  # the HParams tab's record: the settings and the final accuracy
    assert any(m.plugin_data.plugin_name == "hparams" for m in hparams.values())
    assert values["hparams/test_accuracy"][-1][1] == pytest.approx(run.summary["test_accuracy"])
    assert "tensorboard --logdir" in capsys.readouterr().err


def test_hparams_hold_the_runs_settings(trained, tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    root, (name, _) = trained
    export(root, name, "--format", "tensorboard", "-o", tmp_path / "tb")
    _, acc = scalars(tmp_path / "tb")
    session = next(plugin_data_pb2.HParamsPluginData.FromString(m.plugin_data.content).session_start_info
                   for m in acc.summary_metadata.values() if m.plugin_data.plugin_name == "hparams"
                   and plugin_data_pb2.HParamsPluginData.FromString(m.plugin_data.content).HasField(
                       "session_start_info"))
    config = load_run(root / name).config
    assert session.hparams["lr"].number_value == pytest.approx(config.lr)
    assert session.hparams["schedule"].string_value == "one-cycle"
    assert session.hparams["batch_size"].number_value == 32


def test_the_learning_rate_is_the_one_torchs_scheduler_gives_each_step():
    config = TrainConfig(dataset="shapes", lr=0.15, schedule="one-cycle")
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=config.lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=117, pct_start=0.25,
                                                    anneal_strategy="linear", cycle_momentum=False)
    for step in range(1, 118):
        assert learning_rate(config, 117, step) == optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
    assert learning_rate(TrainConfig(dataset="shapes", lr=0.003), 117, 50) == 0.003


def test_several_runs_or_all_give_a_folder_each_and_an_existing_folder_needs_force(trained, tmp_path, capsys):
    root, names = trained
    assert export(root, "--all", "--format", "tensorboard", "-o", tmp_path / "tb") == 0
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == sorted(names)
    assert export(root, "--all", "--format", "tensorboard", "-o", tmp_path / "tb") == 2
    assert "exists: add --force" in capsys.readouterr().err
    assert export(root, *names, "--format", "tensorboard", "-o", tmp_path / "tb", "--force") == 0
    values, _ = scalars(tmp_path / "tb" / names[1])  # written again, not twice
    assert len(values["loss/running"]) == len(load_run(root / names[1]).history.losses)


@pytest.mark.fault
def test_a_damaged_run_exports_what_is_whole_and_says_what_was_left_out(trained, tmp_path, capsys):
    import shutil

    root, (name, _) = trained
    damaged = tmp_path / "runs"
    shutil.copytree(root / name, damaged / name)
    (damaged / name / "checkpoint.pt").write_bytes(b"not a checkpoint")
    lines = (damaged / name / "metrics.jsonl").read_text().splitlines()
    loss_at = next(i for i, line in enumerate(lines) if '"type": "loss"' in line)
    lines[loss_at] = lines[loss_at].replace('"running_loss": ', '"running_loss": "x", "was": ')
    (damaged / name / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert export(damaged, name, "--format", "tensorboard", "-o", tmp_path / "tb") == 0
    err = capsys.readouterr().err
    left = [line for line in err.splitlines() if "left out" in line]
    assert len(left) == 1 and "trained network" in left[0] and "1 damaged line(s) of its history" in left[0]
    values, acc = scalars(tmp_path / "tb")
    assert len(values["loss/running"]) == len(History.of(read_events(root / name / "metrics.jsonl")).losses) - 1
    assert "conv1/filters" not in acc.Tags()["images"]
    assert export(damaged, name, "--format", "onnx", "-o", tmp_path / "n.onnx") == 2  # nothing whole to export
    assert "no trained network" in capsys.readouterr().err and not (tmp_path / "n.onnx").exists()


def test_the_onnx_network_gives_pytorchs_outputs_and_shows_every_layers_shape(trained, tmp_path, small_shapes):
    import onnx
    import onnxruntime

    root, (name, _) = trained
    assert export(root, name, "--format", "onnx", "-o", tmp_path / "net.onnx") == 0
    model = load_model(root / name)
    images = Normalizer(small_shapes.mean, small_shapes.std)(small_shapes.test_images[:16])
    session = onnxruntime.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    with torch.no_grad():
        expected = model(images).numpy()
    assert out.shape == (16, 10) and abs(out - expected).max() < 1e-4
    proto = onnx.load(str(tmp_path / "net.onnx"))
    shapes = [[d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim] for v in proto.graph.value_info]
    assert ["batch", 6, 28, 28] in shapes and ["batch", 16, 5, 5] in shapes and ["batch", 120] in shapes
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == load_run(root / name).history.start["classes"]
    assert export(root, name, "--format", "onnx", "-o", tmp_path / "net.onnx") == 2  # it exists: --force


def test_mlflow_store_holds_the_runs_params_and_final_accuracy(trained, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    root, (name, _) = trained
    store = tmp_path / "mlruns"
    assert export(root, name, "--format", "mlflow", "--tracking-uri", store) == 0
    assert f"mlflow ui --backend-store-uri sqlite:///{store.resolve()}/mlflow.db" in capsys.readouterr().err
    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    experiment = client.get_experiment_by_name("cnn-dashboard")
    (found,) = client.search_runs([experiment.experiment_id])
    run = load_run(root / name)
    assert found.data.params["lr"] == "0.01" and found.data.params["schedule"] == "one-cycle"
    assert found.data.metrics["test_accuracy"] == pytest.approx(run.summary["test_accuracy"])
    history = client.get_metric_history(found.info.run_id, "running_loss")
    assert [m.step for m in history] == [p["images_seen"] for p in run.history.losses]
    assert [a.path for a in client.list_artifacts(found.info.run_id)] == ["checkpoint.pt"]
    assert export(root, name, "--format", "mlflow", "--tracking-uri", store) == 2  # logged already
    assert "--force" in capsys.readouterr().err
    assert export(root, name, "--format", "mlflow", "--tracking-uri", store, "--force") == 0
    assert len(client.search_runs([experiment.experiment_id])) == 1  # in its place, not beside it


@pytest.mark.fault
def test_a_missing_optional_package_is_exit_2_and_the_pip_command(trained, tmp_path, monkeypatch, capsys):
    root, (name, _) = trained
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed: import fails
    assert export(root, name, "--format", "tensorboard", "-o", tmp_path / "tb") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install tensorboard" in err and not (tmp_path / "tb").exists()


def test_training_with_tensorboard_writes_the_run_as_it_goes(shapes_dir, tmp_path):
    from core.train import main as train

    code = train(["--dataset", "shapes", "--data-dir", shapes_dir, "--epochs", "1", "--batch-size", "64",
                  "--log-interval", "10", "--runs-dir", str(tmp_path / "runs"), "--tensorboard",
                  str(tmp_path / "live")])
    assert code == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    values, acc = scalars(tmp_path / "live" / run_dir.name)
    run = load_run(run_dir)
    assert [s for s, _ in values["loss/running"]] == [p["images_seen"] for p in run.history.losses]
    assert values["accuracy/test"] == [(1, pytest.approx(run.summary["test_accuracy"]))]
    assert [i.step for i in acc.Images("conv1/filters")] == [1]


@pytest.mark.fault
def test_a_store_that_is_not_one_and_a_folder_that_is_no_run_are_one_line_each(trained, tmp_path, capsys):
    import shutil

    root, (name, other) = trained
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "mlflow.db").write_bytes(b"\x00garbage" * 500)
    assert export(root, name, "--format", "mlflow", "--tracking-uri", tmp_path / "store") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: the MLflow store") and "not a database" in err
    runs = tmp_path / "runs"  # --all over a folder with one that is no run: the others are exported, it is said
    shutil.copytree(root / name, runs / name)
    (runs / "notes").mkdir()
    assert export(runs, "--all", "--format", "tensorboard", "-o", tmp_path / "tb") == 0
    assert "skipped notes: nothing in notes can be exported" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "tb").iterdir()] == [name]
