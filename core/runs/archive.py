"""A run as one zip to hand on, and a zip (or a bare checkpoint.pt) taken in: hostile until checked.

    export_run(root, name, "run.zip")      config, metrics (JSONL and CSV), summary, checkpoint, predictions
    import_run(root, "run.zip")            -> the new run folder's name

What an import checks, before anything lands in the runs folder:
- the file's size (MAX_ARCHIVE_BYTES), the number of members and their total size once unpacked (a zip
  bomb is refused from its directory, and each member is read with a cap, whatever its header says);
- member names: only the run's own files, flat (no folders, `../`, absolute paths or links);
- the config through TrainConfig's checks, the checkpoint with `torch.load(weights_only=True)` (after checking
  what its own zip records unpack to), its model
  arguments within what this app trains and every tensor's shape against them, the predictions' shape.
It unpacks into a hidden folder inside the runs folder and renames it into place only once all of that
passed; on any failure the folder is removed. The user gets one line (ArchiveError).
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
import time
import zipfile
from pathlib import Path

from core.config import TrainConfig
from core.history import History
from core.runs.checkpoint import MAX_CHECKPOINT_BYTES, MAX_PREDICTION_BYTES, load_model, load_predictions, load_weights
from core.runs.folder import (
    MAX_EVENTS,
    META,
    RunError,
    RunWriteError,
    atomic_write_bytes,
    atomic_write_json,
    read_events,
    run_name,
    run_path,
)
from core.untrusted import UntrustedError, read_capped, read_member, zip_members

MAX_MEMBERS = 16
MAX_HISTORY_BYTES = 16 * 2**20  # MAX_EVENTS running-loss points take about 10 MB as JSON lines
FILES = {  # the files a run zip may hold, and the most each may take unpacked (README: "Command line", the caps)
    "config.json": 64 * 2**10, "summary.json": 1 * 2**20, "metrics.jsonl": MAX_HISTORY_BYTES,
    "metrics.csv": MAX_HISTORY_BYTES, "checkpoint.pt": MAX_CHECKPOINT_BYTES, "predictions.pt": MAX_PREDICTION_BYTES,
    META: 64 * 2**10,
}
NOT_KEPT = ("metrics.csv",)  # written on export for a spreadsheet; the run's history is metrics.jsonl
MAX_ARCHIVE_BYTES = sum(FILES.values())
LOSS_COLUMNS = ("epoch", "step", "images_seen", "train_seconds", "running_loss", "images_per_second")
EPOCH_COLUMNS = ("epoch", "test_accuracy", "train_accuracy", "train_loss", "seconds", "images_per_second")


class ArchiveError(UntrustedError):
    """A file that cannot be taken in as a run; the message says why in one line."""


# -- export -----------------------------------------------------------------------------------------------

def history_csv(events: list[dict], kind: str) -> str:
    """The run's loss points (kind "loss") or epoch results (kind "epoch") as CSV, for a spreadsheet."""
    columns = LOSS_COLUMNS if kind == "loss" else EPOCH_COLUMNS
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for event in events:
        if event.get("type") == kind:
            writer.writerow([event.get(c, "") for c in columns])
    return out.getvalue()


def run_csv(folder: str | os.PathLike, kind: str) -> str:
    """history_csv of a run folder's own history (its valid events only)."""
    history = History.of(read_events(Path(folder) / "metrics.jsonl"))
    return history_csv(history.losses if kind == "loss" else history.epochs, kind)


def export_bytes(folder: str | os.PathLike) -> bytes:
    """The run folder as one zip: its files as they are, and metrics.csv (the loss points) beside metrics.jsonl."""
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise RunError(f"{path.name} is not a run folder")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in FILES:
            if name != "metrics.csv" and (path / name).is_file():
                zf.write(path / name, name)
        zf.writestr("metrics.csv", history_csv(read_events(path / "metrics.jsonl"), "loss"))
    return out.getvalue()


def export_run(root: str | os.PathLike, name: str, target: str | os.PathLike) -> Path:
    """Write run `name` of `root` as a zip at `target`."""
    target = Path(target)
    data = export_bytes(run_path(root, name))
    if target.exists() and not target.is_file():  # a device or a pipe (/dev/stdout): written to, never replaced
        target.write_bytes(data)
        return target
    try:  # whole or not at all: a full disk leaves no truncated zip behind
        atomic_write_bytes(target, data)
    except RunWriteError as exc:
        raise RunError(str(exc)) from None
    return target


# -- import -----------------------------------------------------------------------------------------------

def _checked_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    members = zip_members(zf, max_members=MAX_MEMBERS, limit=lambda name: FILES.get(name), total=MAX_ARCHIVE_BYTES,
                          what="a run zip", error=ArchiveError)
    if "config.json" not in {m.filename for m in members}:
        raise ArchiveError("it has no config.json: it is not a run exported by this app")
    return members


def _unpack(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], folder: Path) -> None:
    """Each member into `folder`, read with a cap (core.untrusted.read_member); the history's points counted."""
    for m in members:
        if m.filename in NOT_KEPT:
            continue
        with open(folder / m.filename, "wb") as dst:
            read_member(zf, m, FILES[m.filename], out=dst, error=ArchiveError)
        if m.filename == "metrics.jsonl":
            with open(folder / m.filename, "rb") as f:
                if sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) > MAX_EVENTS:
                    raise ArchiveError(f"its history has more than {MAX_EVENTS:,} points, more than a run of this "
                                       "app writes")


def _check_run(folder: Path) -> None:
    """The unpacked run is one this app can show: its config, checkpoint and predictions, checked."""
    try:
        config = TrainConfig.from_dict(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"its config.json cannot be used ({exc})") from None
    for name in ("summary.json", META):
        if (folder / name).exists():
            try:
                if not isinstance(json.loads((folder / name).read_text(encoding="utf-8")), dict):
                    raise ValueError("not an object")
            except (ValueError, UnicodeDecodeError) as exc:
                raise ArchiveError(f"its {name} is damaged ({exc})") from None
    try:
        model = load_model(folder) if (folder / "checkpoint.pt").exists() else None
        predictions = load_predictions(folder)
    except RunError as exc:
        raise ArchiveError(str(exc).replace(folder.name, "the run")) from None
    if model is not None and (model.args.conv_width, model.args.conv2_width) != (config.conv_width,
                                                                                 config.conv2_width):
        raise ArchiveError("its checkpoint is not of the network its config.json describes")
    if model is not None and predictions is not None and predictions["probs"].shape[1] != model.args.num_classes:
        raise ArchiveError("its predictions do not match its network's classes")


def _settle(root: Path, staging: Path) -> str:
    """Give a checked run its place under root; the name it got."""
    config = json.loads((staging / "config.json").read_text(encoding="utf-8"))
    if not (staging / "summary.json").exists():
        atomic_write_json(staging / "summary.json", {"type": "end", "status": "imported", "wall": time.time(),
                                                     "message": "imported without a summary"})
    target = root / run_name(str(config.get("dataset", "run")))
    os.replace(staging, target)
    return target.name


def import_run(root: str | os.PathLike, source: str | os.PathLike | bytes) -> str:
    """Take in a run zip (or a bare checkpoint.pt) as a new run folder under root; its name. ArchiveError, and
    nothing left behind, when the file is not one."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    data = source if isinstance(source, bytes) else _read_capped(Path(source))
    if len(data) > MAX_ARCHIVE_BYTES:
        raise ArchiveError(f"the file is {len(data) / 2**20:,.0f} MB, more than a run can be")
    staging = root / f".import-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        if is_run_zip(data):
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                _unpack(zf, _checked_members(zf), staging)
        else:
            _from_checkpoint(data, staging)
        _check_run(staging)
        return _settle(root, staging)
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise ArchiveError(f"it is not a run zip or a checkpoint this app can read ({exc})") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def is_run_zip(data: bytes) -> bool:
    """A zip that is not a torch checkpoint (which is a zip too: its records sit in one folder, data.pkl first)."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return False
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
    return "config.json" in names or not any(n.endswith("/data.pkl") for n in names)


def _read_capped(path: Path) -> bytes:
    return read_capped(path, MAX_ARCHIVE_BYTES, error=ArchiveError)


DATASET_OF_SHAPE = {(3, 32): "cifar10", (1, 28): "mnist"}  # what a bare checkpoint was most likely trained on


def _from_checkpoint(data: bytes, staging: Path) -> None:
    """A bare checkpoint.pt: a run folder around it, with the config its model arguments give."""
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise ArchiveError("the checkpoint is larger than a network of this app can be")
    (staging / "checkpoint.pt").write_bytes(data)
    try:
        blob = load_weights(staging / "checkpoint.pt")
        args = blob["model_args"]
        config = TrainConfig(dataset=DATASET_OF_SHAPE.get((args["in_channels"], args["image_size"]), "shapes"),
                             conv_width=args["conv_width"], conv2_width=args["conv2_width"])
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, the user gets one line
        raise ArchiveError(f"it is not a run zip or a checkpoint of this app ({type(exc).__name__}: {exc})") from None
    epoch = blob.get("epoch") if isinstance(blob, dict) else None
    atomic_write_json(staging / "config.json", config.to_dict())
    atomic_write_json(staging / "summary.json", {"type": "end", "status": "imported", "wall": time.time(),
                                                 "message": "a bare checkpoint: no history",
                                                 "epochs_completed": epoch if isinstance(epoch, int) else None})
