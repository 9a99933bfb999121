"""A run folder: written as training goes, read by every page and the command line, closed when its process died.

    runs/<time>-<dataset>-<id>/
      .running          while a process writes it: {"pid": ...}
      config.json       the TrainConfig
      metrics.jsonl     one event per line, appended as it comes
      summary.json      the end state (written last)
      checkpoint.pt     state_dict + the arguments that rebuild the model (epoch end)
      predictions.pt    class probabilities on the whole test set (epoch end)
      meta.json         the user's title and note, the student's name, the owner's digest (optional)

Every whole file is written by `atomic_save`; the `.running` marker is read by `writer_alive` alone.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from core.config import ConfigError, TrainConfig
from core.history import History
from core.model import Net
from core.runs.names import run_line

DEFAULT_ROOT = "runs"


class RunError(RuntimeError):
    """A run directory is missing or damaged."""


class RunWriteError(OSError):
    """A run file could not be written (a full disk, a file-size limit, a read-only folder)."""


def _cannot_write(path: Path, exc: BaseException) -> RunWriteError:
    # torch.save says only "enforce fail at inline_container.cc"; an OSError says why (No space left, ...)
    reason = getattr(exc, "strerror", None) or "it could not be written whole"
    return RunWriteError(f"{path.name} could not be written in {path.parent} ({reason}): is the disk full?")


def atomic_save(path: Path, write: Callable[[str], None]) -> None:
    """The one way a run's whole file is written: `write(temporary path)`, then renamed into place, so a reader
    sees the old file or the new one, never half of one; RunWriteError (saying why) when it cannot be."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch.save reports a short write as a RuntimeError
        raise _cannot_write(path, exc) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_save(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=2).encode())


def atomic_torch_save(path: Path, obj: Any) -> None:
    atomic_save(path, lambda tmp: torch.save(obj, tmp))


def run_name(dataset: str) -> str:
    """A new run folder's name: when it started, on what, and 4 hex digits (20261202-171537-shapes-9124)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{dataset.split(':')[0]}-{secrets.token_hex(2)}"


RUNNING = ".running"  # in a run folder while a process writes it: {"pid": ...}; gone once its summary is written


def mark_running(path: Path) -> None:
    atomic_write_json(path / RUNNING, {"pid": os.getpid(), "started": time.time()})


def writer_alive(path: Path) -> bool:
    """The one reading of the `.running` marker: a process is writing this run folder now (the marker names a live
    process). No marker, a damaged one, or a process that has ended: not."""
    try:
        marker = json.loads((path / RUNNING).read_text())
    except (OSError, ValueError):
        return False
    pid = marker.get("pid") if isinstance(marker, dict) else None
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


class RunWriter:
    """Writes one run directory as training goes."""

    def __init__(self, root: str | os.PathLike, config: TrainConfig, name: str | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / (name or run_name(config.dataset))
        self.path.mkdir()
        try:
            mark_running(self.path)
            atomic_write_json(self.path / "config.json", config.to_dict())
            # private like the run's other files (mkstemp makes those 600)
            fd = os.open(self.path / "metrics.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._metrics = os.fdopen(fd, "a", encoding="utf-8")
        except OSError as exc:  # a full disk: no empty or half-made run folder is left in the list
            shutil.rmtree(self.path, ignore_errors=True)
            raise exc if isinstance(exc, RunWriteError) else _cannot_write(self.path / "metrics.jsonl", exc) from None

    def event(self, event: dict) -> None:
        try:
            self._metrics.write(json.dumps(event) + "\n")
            self._metrics.flush()
        except OSError as exc:
            raise _cannot_write(self.path / "metrics.jsonl", exc) from None

    def checkpoint(self, model: Net, epoch: int, probs: torch.Tensor | None = None) -> None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        atomic_torch_save(self.path / "checkpoint.pt",
                          {"model_args": asdict(model.args), "state_dict": state, "epoch": epoch})
        if probs is not None:
            atomic_torch_save(self.path / "predictions.pt", {"epoch": epoch, "probs": probs.half()})

    def summary(self, summary: dict) -> None:
        atomic_write_json(self.path / "summary.json", summary)
        (self.path / RUNNING).unlink(missing_ok=True)

    @staticmethod
    def write_summary(run_dir: str | os.PathLike, summary: dict) -> None:
        """For a run whose worker died before it could write its own summary."""
        path = Path(run_dir)
        if path.is_dir() and not (path / "summary.json").exists():
            with open(path / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(summary) + "\n")
            atomic_write_json(path / "summary.json", summary)
        (path / RUNNING).unlink(missing_ok=True)

    def close(self) -> None:
        try:
            self._metrics.close()
        except OSError:
            pass  # what could not be written has been reported already


def mark_interrupted(root: str | os.PathLike = DEFAULT_ROOT) -> list[str]:
    """Close the runs that ended without their own end event (their process killed, the machine stopped,
    the disk full): each gets a summary saying `interrupted`, and keeps its history and last checkpoint.
    A run whose process still runs is left alone. Returns the names of the runs it closed."""
    closed = []
    root = Path(root)
    if not root.is_dir():
        return closed
    for path in root.iterdir():
        if not path.is_dir() or path.name.startswith(".") or (path / "summary.json").exists():
            continue
        if not (path / "config.json").exists() or writer_alive(path):
            continue
        try:
            RunWriter.write_summary(path, {"type": "end", "status": "interrupted", "wall": time.time(),
                                           "message": "the run ended without finishing (its process was "
                                                      "killed, or the machine or disk stopped it)"})
            closed.append(path.name)
        except OSError:
            pass  # a read-only or full disk: it stays "running or interrupted" until it can be written
    return closed


# -- reading -----------------------------------------------------------------

@dataclass
class RunInfo:
    path: Path
    config: TrainConfig | None = None
    summary: dict | None = None
    error: str | None = None  # why the directory is damaged, if it is
    history: History = field(default_factory=History)  # metrics.jsonl, read as a live job's events are
    meta: dict = field(default_factory=dict)  # the user's title and note, the student's name (read_meta)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        if self.error:
            return "damaged"
        if self.summary:
            return self.summary["status"]
        return "running" if writer_alive(self.path) else "running or interrupted"

    @property
    def accuracy(self) -> float | None:
        value = (self.summary or {}).get("test_accuracy")
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def title(self) -> str:
        """The user's title, else a name built from what the run is: "CIFAR-10 · Tutorial · lr 0.01 · 57.2%"."""
        return self.meta.get("title") or run_line(self)


META = "meta.json"
MAX_TITLE, MAX_NOTE = 120, 2000
# what meta.json may hold: the user's title and note, and who started the run for which lesson (core/classroom.py)
META_FIELDS = {"title": MAX_TITLE, "note": MAX_NOTE, "name": 40, "owner": 64, "board": 200, "challenge": 200}


def read_meta(path: Path) -> dict:
    """The run's title, note, student's name, owner digest, board and challenge ({} when none, or unreadable:
    they are people's words, never needed to read the run). Each is a string, cut to its length."""
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(meta, dict):
        return {}
    return {k: meta[k][:limit] for k, limit in META_FIELDS.items() if isinstance(meta.get(k), str)}


def add_meta(path: str | os.PathLike, fields: dict) -> None:
    """Keep `fields` in the run's meta.json beside what it holds (each cut to its length)."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise RunError(f"{path.name} is not a run folder")
    meta = {**read_meta(path), **{k: str(v)[:META_FIELDS[k]] for k, v in fields.items() if k in META_FIELDS}}
    atomic_write_json(path / META, meta)


def write_meta(path: str | os.PathLike, title: str, note: str) -> None:
    """Set a run's title and note (cut to MAX_TITLE and MAX_NOTE characters; an empty title means the built one)."""
    add_meta(path, {"title": " ".join(str(title).split())[:MAX_TITLE], "note": str(note).strip()[:MAX_NOTE]})


def run_path(root: str | os.PathLike, name: str) -> Path:
    """The folder of run `name`, a name as a page, a link or a command gives it: a folder directly in `root`, not
    hidden, not a link out of it. RunError ("there is no run ...") for anything else."""
    root = Path(root).resolve()
    if not name or name != name.strip() or any(c in name for c in "/\\\0") or name.startswith("."):
        raise RunError(f"there is no run {name!r} in {root}")
    path = (root / name).resolve()
    if path.parent != root or not path.is_dir():
        raise RunError(f"there is no run {name!r} in {root}")
    return path


def delete_run(root: str | os.PathLike, name: str) -> None:
    """Delete the run folder `name` under root; never one that is still being written, never anything else."""
    path = run_path(root, name)
    if not any((path / f).exists() for f in ("config.json", "metrics.jsonl", "summary.json", RUNNING)):
        raise RunError(f"{name} is not a run folder (it has none of a run's files), so it is not deleted")
    if writer_alive(path):
        raise RunError(f"{name} is still training: stop it first (its folder is kept while it runs)")
    shutil.rmtree(path)


def read_events(path: Path, limit: int | None = None) -> list[dict]:
    """Events from metrics.jsonl; a torn last line (a crash mid-write) is skipped.

    At most `limit` (MAX_EVENTS) are kept: past it, every other running-loss point is dropped, and again each time
    the list fills, so a history of any length is read in bounded memory and still spans the whole run (the start,
    every epoch's results and the end are always kept). A run of this app has about 50 points an epoch.
    """
    limit = MAX_EVENTS if limit is None else limit
    events: list[dict] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:  # random bytes become unreadable lines
            for line in f:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(event, dict):
                    events.append(event)
                    if len(events) > limit:
                        events = _thinned(events)
    except FileNotFoundError:
        pass
    return events


def _thinned(events: list[dict]) -> list[dict]:
    """Every other running-loss point dropped; every other event kept (a history of only epochs is cut short)."""
    kept, odd = [], False
    for event in events:
        if event.get("type") == "loss":
            odd = not odd
            if not odd:
                continue
        kept.append(event)
    return kept if len(kept) < len(events) else kept[-len(events) // 2:]


def load_run(path: str | os.PathLike, with_events: bool = True) -> RunInfo:
    """Read a run directory; damage is reported in RunInfo.error, never raised."""
    info = RunInfo(Path(path))
    try:
        config = json.loads((info.path / "config.json").read_text())
        info.config = TrainConfig.from_dict(config)
    except FileNotFoundError:
        info.error = "config.json is missing"
        return info
    except (json.JSONDecodeError, TypeError, ConfigError, UnicodeDecodeError) as exc:
        info.error = f"config.json is damaged ({exc})"
        return info
    summary_path = info.path / "summary.json"
    if summary_path.exists():
        try:
            info.summary = json.loads(summary_path.read_text())
            if not isinstance(info.summary, dict) or "status" not in info.summary:
                raise ValueError("no status")
            check_summary(info.summary)
        except (json.JSONDecodeError, ValueError, UnicodeDecodeError) as exc:
            info.summary = None
            info.error = f"summary.json is damaged ({exc})"
    if with_events:
        info.history = History.of(read_events(info.path / "metrics.jsonl"))
    info.meta = read_meta(info.path)
    return info


MAX_EVENTS = 60_000  # the most events of a history a page holds: ~50 points an epoch for 1,000 epochs

END_STATUSES = ("finished", "stopped", "diverged", "failed", "interrupted", "imported")  # "imported": a bare checkpoint
SUMMARY_NUMBERS = ("test_accuracy", "images_per_second", "train_seconds", "epochs_completed", "steps",
                   "images_seen", "final_running_loss")


def check_summary(summary: dict) -> None:
    """A summary's fields as every page and the command line read them, or ValueError naming the first bad one (an
    uploaded or edited run can hold anything)."""
    if summary["status"] not in END_STATUSES:
        raise ValueError(f"status {str(summary['status'])[:40]!r} is not one of {', '.join(END_STATUSES)}")
    for name in SUMMARY_NUMBERS:
        value = summary.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{name} is not a number")
    for name in ("device", "message"):
        if not isinstance(summary.get(name, ""), (str, type(None))):
            raise ValueError(f"{name} is not text")


def list_runs(root: str | os.PathLike = DEFAULT_ROOT, with_events: bool = False) -> list[RunInfo]:
    """All run directories under root, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return [load_run(p, with_events) for p in sorted(dirs, key=lambda p: p.name, reverse=True)]
