"""A run in the formats other tools read: TensorBoard event files, the network as ONNX, a run in an MLflow store.

    python -m core.runs export RUN --format tensorboard -o DIR     (several runs, or --all: a folder each)
    python -m core.runs export RUN --format onnx -o FILE.onnx
    python -m core.runs export RUN --format mlflow --tracking-uri DIR

Each needs packages the app itself does not (requirements-export.txt): without them, MissingExtra names the pip
command. Export only: nothing here reads a TensorBoard or MLflow run back.

A damaged run gives what is whole in it; `Export.left_out` names the rest (a checkpoint that is missing, a settings
file that cannot be read, damaged lines of the history), for the one line the command prints.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.config import TrainConfig
from core.history import History
from core.model import Net
from core.runs.folder import RunError, RunWriteError, atomic_write_bytes, load_run, read_events, run_path

EXTRAS = {"tensorboard": ("tensorboard",), "onnx": ("onnx", "onnxscript"), "mlflow": ("mlflow",)}
NAMES = {"tensorboard": "TensorBoard", "onnx": "ONNX", "mlflow": "MLflow"}
MEAN = STD = 0.5  # the tutorial's Normalize((0.5, ...), (0.5, ...)), which every dataset here uses (core/data.py)


class MissingExtra(RunError):
    """A format's optional package is not installed; the message names the pip command."""


def missing_extra(fmt: str) -> str | None:
    """The one line that says how to install what `fmt` needs, or None when it is installed."""
    missing = [p for p in EXTRAS[fmt] if importlib.util.find_spec(p) is None]
    if not missing:
        return None
    return (f"{NAMES[fmt]} export needs {' and '.join(missing)}, which is not installed: pip install "
            f"{' '.join(missing)}  (or: pip install -r requirements-export.txt)")


def need(fmt: str) -> None:
    if message := missing_extra(fmt):
        raise MissingExtra(message)


# -- what a run holds, read part by part ---------------------------------------------------------------------

@dataclass
class Export:
    """A run as far as it is whole: each part None (or empty) where it is missing or damaged, and why."""

    path: Path
    config: TrainConfig | None = None
    history: History = field(default_factory=History)
    summary: dict | None = None
    meta: dict = field(default_factory=dict)
    model: Net | None = None
    left_out: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def classes(self) -> list[str]:
        classes = self.history.start.get("classes")
        if isinstance(classes, list) and all(isinstance(c, str) for c in classes):
            return classes
        n = self.model.args.num_classes if self.model is not None else 0
        return [f"class {i}" for i in range(n)]

    @property
    def test_accuracy(self) -> float | None:
        value = (self.summary or {}).get("test_accuracy")
        if value is None and self.history.epochs:
            value = self.history.epochs[-1]["test_accuracy"]
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def left_out_line(self) -> str | None:
        return f"{self.name}: left out {'; '.join(self.left_out)}" if self.left_out else None


def read_export(root: str | os.PathLike, name: str) -> Export:
    """Run `name` of `root` for export: its settings, history, summary and its trained network, each
    read on its own, so one damaged part leaves the others. RunError when it is no run, or nothing in it is whole."""
    path = run_path(root, name)
    info = load_run(path)
    run = Export(path, info.config, info.history, info.summary, info.meta)
    if info.config is None:  # config.json missing or damaged: load_run stopped there, the history may be whole
        run.left_out.append(f"its settings ({info.error})")
        run.history = History.of(read_events(path / "metrics.jsonl"))
    elif info.error:
        run.left_out.append(f"its summary ({info.error})")
    if run.history.damaged:
        run.left_out.append(f"{run.history.damaged} damaged line(s) of its history")
    from core.runs.checkpoint import load_model

    try:
        run.model = load_model(path)
    except RunError as exc:
        run.left_out.append(f"the trained network ({exc})")
    if run.config is None and not run.history.losses and not run.history.epochs and run.model is None:
        raise RunError(f"nothing in {name} can be exported: {'; '.join(run.left_out)}")
    return run


# -- the learning rate a run trained with, step by step ---------------------------------------------------------

def learning_rate(config: TrainConfig, total_steps: int, step: int) -> float:
    """The learning rate of step `step` (1 = the first) of a run: config.lr, or under the one-cycle schedule what
    core/train_step.py's OneCycle gives it. A run's loss points do not record it; this is the schedule's own formula."""
    if config.schedule != "one-cycle":
        return config.lr
    from core.train_step import one_cycle_lr

    return one_cycle_lr(config.lr, total_steps, step - 1)  # the schedule steps after each training step


# -- TensorBoard -----------------------------------------------------------------------------------------------

def filter_grid(model: Net, scale: int = 8) -> torch.Tensor:
    """conv1's filters as one picture (C, H, W) in [0, 1]: each filter stretched to full contrast (as the Network
    page shows them), enlarged `scale` times, in a row of at most 8."""
    from torchvision.utils import make_grid

    weight = model.conv1.weight.detach().float().cpu()
    low = weight.amin(dim=(1, 2, 3), keepdim=True)
    high = weight.amax(dim=(1, 2, 3), keepdim=True)
    tiles = (weight - low) / (high - low).clamp_min(1e-12)
    tiles = torch.nn.functional.interpolate(tiles, scale_factor=scale, mode="nearest")
    return make_grid(tiles, nrow=min(8, len(tiles)), padding=2, pad_value=1.0)


def hparams(config: TrainConfig) -> dict:
    """The settings as TensorBoard's HParams tab takes them (numbers, text and yes/no; unset ones left out)."""
    return {k: v for k, v in config.to_dict().items() if isinstance(v, (bool, int, float, str))}


class TensorBoardLog:
    """A run's events as TensorBoard event files in one folder, as they come: live under `core.train --tensorboard`,
    or all at once by `export_tensorboard`.

        loss/running               the running loss, x: images seen
        learning_rate              x: images seen
        accuracy/test, accuracy/train, loss/train_epoch, speed/images_per_second        x: epoch
        per_class_accuracy/<class>                                                      x: epoch
        conv1/filters              an image, x: epoch
        HParams tab                the settings, and the final test accuracy
    """

    def __init__(self, folder: str | os.PathLike, config: TrainConfig | None, flush_secs: int = 120):
        need("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self.writer = SummaryWriter(str(self.folder), flush_secs=flush_secs)
        self.config = config
        self.start: dict = {}
        self.wall = None  # the loss points' time: the run's start plus its training seconds
        self.last_seconds = None  # the latest loss point's: an epoch's results are timed by it
        self.closed = False

    def event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "start":
            self.start = event
            self.wall = event.get("wall") if isinstance(event.get("wall"), (int, float)) else None
        elif kind == "loss":
            self.loss(event)
        elif kind == "epoch":
            self.epoch(event)

    def _time(self, seconds: object) -> float | None:
        return self.wall + seconds if self.wall is not None and isinstance(seconds, (int, float)) else None

    def loss(self, event: dict) -> None:
        seen, walltime = int(event["images_seen"]), self._time(event.get("train_seconds"))
        self.writer.add_scalar("loss/running", event["running_loss"], seen, walltime)
        total, step = self.start.get("total_steps"), event.get("step")
        if self.config is not None and isinstance(total, int) and isinstance(step, int):
            self.writer.add_scalar("learning_rate", learning_rate(self.config, total, step), seen, walltime)
        self.last_seconds = event.get("train_seconds")

    def epoch(self, event: dict, classes: list[str] | None = None) -> None:
        e, walltime = event["epoch"], self._time(self.last_seconds)
        self.writer.add_scalar("accuracy/test", event["test_accuracy"], e, walltime)
        for tag, key in (("accuracy/train", "train_accuracy"), ("loss/train_epoch", "train_loss"),
                         ("speed/images_per_second", "images_per_second")):
            if isinstance(event.get(key), (int, float)) and not isinstance(event.get(key), bool):
                self.writer.add_scalar(tag, event[key], e, walltime)
        names = classes or self.start.get("classes") or []
        per_class = event.get("per_class_accuracy")
        if isinstance(per_class, list) and len(per_class) == len(names):
            for name, value in zip(names, per_class):
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"per_class_accuracy/{name}", value, e, walltime)
        self.writer.flush()

    def filters(self, model: Net, epoch: int) -> None:
        self.writer.add_image("conv1/filters", filter_grid(model), epoch)

    def close(self, test_accuracy: float | None = None) -> None:
        """The settings and final accuracy for the HParams tab (in this folder), then the files closed."""
        if self.closed:
            return
        self.closed = True
        if self.config is not None:
            metrics = {"hparams/test_accuracy": test_accuracy} if test_accuracy is not None else {}
            self.writer.add_hparams(hparams(self.config), metrics, run_name=".")
        self.writer.close()


def clear_events(folder: Path) -> None:
    """An earlier export's event files in `folder` (with --force): TensorBoard would show their points twice."""
    for path in folder.glob("events.out.tfevents.*"):
        path.unlink()


def export_tensorboard(run: Export, folder: str | os.PathLike) -> Path:
    """Write the run's history, filters and settings as event files in `folder` (made if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    log = TensorBoardLog(folder, run.config)
    try:
        log.event(run.history.start)
        epochs = iter(run.history.epochs)
        pending = next(epochs, None)
        for point in run.history.losses:  # in their order, each epoch's results after its last loss point
            while pending is not None and point.get("epoch", 0) > pending["epoch"]:
                log.epoch(pending, run.classes)
                pending = next(epochs, None)
            log.loss(point)
        while pending is not None:
            log.epoch(pending, run.classes)
            pending = next(epochs, None)
        if run.model is not None:
            epoch = run.history.epochs[-1]["epoch"] if run.history.epochs else 0
            log.filters(run.model, epoch)
    finally:
        log.close(run.test_accuracy)
    return folder


def tensorboard_zip(root: str | os.PathLike, name: str) -> bytes:
    """The run's TensorBoard event files as a zip of one folder named after the run (the Runs page's download):
    unpacked into a log folder, `tensorboard --logdir` shows it beside the others there."""
    import tempfile
    import zipfile

    run = read_export(root, name)
    with tempfile.TemporaryDirectory() as tmp:
        export_tensorboard(run, Path(tmp) / name)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted((Path(tmp) / name).rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(tmp).as_posix())
    return out.getvalue()


# -- ONNX -----------------------------------------------------------------------------------------------------

_onnx_lock = threading.Lock()  # torch.onnx.export is one at a time: a class clicking at once queues, not 30 exports


def onnx_bytes(model: Net, classes: list[str]) -> bytes:
    """The network as an ONNX model (a batch of any size), shape inference run so a viewer (Netron) shows every
    layer's output shape; the classes and the input's normalization in its metadata."""
    need("onnx")
    import onnx

    args = model.args
    model = model.float().cpu().eval()
    example = torch.zeros(2, args.in_channels, args.image_size, args.image_size)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    with _onnx_lock, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(model, (example,), input_names=["images"], output_names=["logits"],
                                        dynamic_shapes={"x": {0: batch}}, dynamo=True, verbose=False)
        except Exception as exc:  # noqa: BLE001 - the exporter's own errors run to pages; the user gets one line
            raise RunError(f"the network could not be exported as ONNX ({type(exc).__name__}: "
                           f"{str(exc).strip()[:200]})") from None
    proto = onnx.shape_inference.infer_shapes(program.model_proto)
    proto.doc_string = ("The PyTorch CIFAR-10 tutorial's Net, trained by the CNN training dashboard. Input: images "
                        "(N, C, H, W), pixels / 255 then (x - 0.5) / 0.5; output: one score (logit) per class.")
    for key, value in (("classes", json.dumps(classes)), ("mean", str(MEAN)), ("std", str(STD))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def run_onnx(run: Export) -> bytes:
    if run.model is None:
        raise RunError(f"{run.name} has no trained network to export: {'; '.join(run.left_out)}")
    return onnx_bytes(run.model, run.classes)


# -- MLflow ---------------------------------------------------------------------------------------------------

EXPERIMENT = "cnn-dashboard"
RUN_TAG = "cnn_dashboard.run"  # the run folder's name: a second export of a run is refused (forced: replaces it)


def tracking_store(where: str) -> tuple[str, str | None]:
    """The tracking URI and artifact folder for `--tracking-uri`: a URI as it is (sqlite:///..., http://...); a
    folder becomes an SQLite store in it (mlflow.db, artifacts/ beside it), MLflow's local store since it put its
    file store in maintenance mode."""
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", where):  # a scheme (sqlite:, file:, http:), not a drive letter
        return where, None
    folder = Path(where).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise RunError(f"{where} is a file, not a folder for an MLflow store")
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def export_mlflow(run: Export, where: str, force: bool = False) -> tuple[str, str]:
    """Log the run into an MLflow store: its settings as params, its loss points and epoch results as metrics by
    step, its checkpoint as an artifact. The MLflow run's id, and the command that shows it. A store that cannot
    be used (not a database, another version's, unreachable): RunError, in one line."""
    need("mlflow")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # an offline classroom tool: MLflow sends no usage data
    try:
        return _log_mlflow(run, where, force)
    except RunError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow's and SQLAlchemy's errors: one line, not their traceback
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise RunError(f"the MLflow store {where} cannot be used: {first}") from None


def _log_mlflow(run: Export, where: str, force: bool) -> tuple[str, str]:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    for noisy in ("mlflow", "alembic"):  # "Creating initial MLflow database tables..." on every new store
        logging.getLogger(noisy).setLevel(logging.WARNING)

    uri, artifacts = tracking_store(where)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (experiment.experiment_id if experiment is not None
                     else client.create_experiment(EXPERIMENT, artifact_location=artifacts))
    earlier = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run.name}'")
    if earlier and not force:
        raise RunError(f"{run.name} is in that MLflow store already (run {earlier[0].info.run_id}): add --force to "
                       "log it again in its place")
    for old in earlier:
        client.delete_run(old.info.run_id)
    start = run.history.start.get("wall")
    start_ms = int(start * 1000) if isinstance(start, (int, float)) else None
    title = run.meta.get("title") or run.name
    made = client.create_run(experiment_id, start_time=start_ms, run_name=title[:250],
                             tags={RUN_TAG: run.name, "mlflow.source.name": "CNN training dashboard"})
    run_id = made.info.run_id
    def at(seconds: object) -> int:  # a point's time: the run's start plus its seconds of training
        return (start_ms or 0) + (int(seconds * 1000) if isinstance(seconds, (int, float)) else 0)

    now = at(run.history.last_loss.get("train_seconds"))
    params = [Param(k, str(v)) for k, v in (run.config.to_dict().items() if run.config else [])]
    metrics = []
    for point in run.history.losses:
        metrics.append(Metric("running_loss", float(point["running_loss"]), at(point.get("train_seconds")),
                              int(point["images_seen"])))
    classes = run.classes
    for e in run.history.epochs:
        metrics.append(Metric("test_accuracy", float(e["test_accuracy"]), now, e["epoch"]))
        for key in ("train_accuracy", "train_loss", "images_per_second"):
            if isinstance(e.get(key), (int, float)) and not isinstance(e.get(key), bool):
                metrics.append(Metric(key, float(e[key]), now, e["epoch"]))
        per_class = e.get("per_class_accuracy")
        if isinstance(per_class, list) and len(per_class) == len(classes):
            metrics += [Metric(f"per_class_accuracy.{_metric_name(c)}", float(v), now, e["epoch"])
                        for c, v in zip(classes, per_class) if isinstance(v, (int, float))]
    if (accuracy := run.test_accuracy) is not None and not run.history.epochs:
        metrics.append(Metric("test_accuracy", float(accuracy), now, 0))
    client.log_batch(run_id, params=params[:100], tags=[RunTag("status", (run.summary or {}).get("status", "unknown"))])
    for i in range(0, len(metrics), 1000):  # MLflow takes at most 1,000 metrics a call
        client.log_batch(run_id, metrics=metrics[i:i + 1000])
    if (run.path / "checkpoint.pt").is_file() and run.model is not None:
        client.log_artifact(run_id, str(run.path / "checkpoint.pt"))
    client.set_terminated(run_id, "FINISHED" if (run.summary or {}).get("status") == "finished" else "KILLED")
    show = (f"mlflow ui --backend-store-uri {uri}" if artifacts is None else
            f"mlflow ui --backend-store-uri {uri} --default-artifact-root {Path(where).resolve() / 'artifacts'}")
    return run_id, show


def _metric_name(text: str) -> str:
    """A class name as MLflow's metric names allow (letters, digits, _ - . space /)."""
    return "".join(ch if ch.isalnum() or ch in "_-. /" else "_" for ch in text)[:200]


# -- written to a path ------------------------------------------------------------------------------------------

def write_file(target: str | os.PathLike, data: bytes, force: bool) -> Path:
    """`data` at `target`, whole or not at all; a file that is there is replaced only with `force`."""
    target = Path(target)
    if target.exists() and not force:
        raise RunError(f"{target} exists: add --force to replace it")
    if target.is_dir():
        raise RunError(f"{target} is a folder: name a file")
    try:
        atomic_write_bytes(target, data)
    except RunWriteError as exc:
        raise RunError(str(exc)) from None
    return target


class LiveTensorBoard:
    """`python -m core.train --tensorboard DIR`: the run's events written as they come, in DIR/<run folder's name>,
    so a TensorBoard kept open on DIR shows each new run beside the earlier ones while it trains."""

    def __init__(self, root: str | os.PathLike, config: TrainConfig):
        need("tensorboard")
        self.root, self.config = Path(root), config
        self.log: TensorBoardLog | None = None

    def event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "start" and isinstance(event.get("run_dir"), str):
            self.log = TensorBoardLog(self.root / Path(event["run_dir"]).name, self.config, flush_secs=5)
        if self.log is None:
            return
        self.log.event(event)
        if kind == "epoch":  # the epoch's checkpoint is written before its results are reported (core/loop.py)
            from core.runs.checkpoint import load_model

            with contextlib.suppress(RunError):
                self.log.filters(load_model(event["run_dir"]), event["epoch"])
        elif kind == "end":
            self.close(event.get("test_accuracy"))

    def close(self, test_accuracy: float | None = None) -> None:
        if self.log is not None:
            self.log.close(test_accuracy)
