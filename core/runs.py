"""Run directories: the one source of truth on disk for finished and running work.

    runs/<time>-<dataset>-<id>/
      config.json       the TrainConfig
      metrics.jsonl     one event per line, appended as it comes
      summary.json      the end state (written last)
      checkpoint.pt     state_dict + the arguments that rebuild the model (epoch end)
      predictions.pt    class probabilities on the whole test set (epoch end)

Every whole-file write goes to a temporary name first and is renamed into place, so a
reader sees the old file or the new one, never half of one.
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
from typing import Any

import torch

from core.config import ConfigError, TrainConfig
from core.model import ModelArgs, Net

DEFAULT_ROOT = "runs"


class RunError(RuntimeError):
    """A run directory is missing or damaged."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=2).encode())


def atomic_torch_save(path: Path, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class RunWriter:
    """Writes one run directory as training goes."""

    def __init__(self, root: str | os.PathLike, config: TrainConfig, name: str | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        dataset = config.dataset.split(":")[0]
        self.path = self.root / (name or f"{time.strftime('%Y%m%d-%H%M%S')}-{dataset}-{secrets.token_hex(2)}")
        self.path.mkdir()
        atomic_write_json(self.path / "config.json", config.to_dict())
        self._metrics = open(self.path / "metrics.jsonl", "a", encoding="utf-8")

    def event(self, event: dict) -> None:
        self._metrics.write(json.dumps(event) + "\n")
        self._metrics.flush()

    def checkpoint(self, model: Net, epoch: int, probs: torch.Tensor | None = None) -> None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        atomic_torch_save(self.path / "checkpoint.pt",
                          {"model_args": asdict(model.args), "state_dict": state, "epoch": epoch})
        if probs is not None:
            atomic_torch_save(self.path / "predictions.pt", {"epoch": epoch, "probs": probs.half()})

    def summary(self, summary: dict) -> None:
        atomic_write_json(self.path / "summary.json", summary)

    @staticmethod
    def write_summary(run_dir: str | os.PathLike, summary: dict) -> None:
        """For a run whose worker died before it could write its own summary."""
        path = Path(run_dir)
        if path.is_dir() and not (path / "summary.json").exists():
            atomic_write_json(path / "summary.json", summary)
            with open(path / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(summary) + "\n")

    def close(self) -> None:
        self._metrics.close()


# -- reading -----------------------------------------------------------------

@dataclass
class RunInfo:
    path: Path
    config: TrainConfig | None = None
    summary: dict | None = None
    error: str | None = None  # why the directory is damaged, if it is
    events: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        if self.error:
            return "damaged"
        return self.summary["status"] if self.summary else "running or interrupted"

    def epochs(self) -> list[dict]:
        return [e for e in self.events if e.get("type") == "epoch"]

    def losses(self) -> list[dict]:
        return [e for e in self.events if e.get("type") == "loss"]

    def start(self) -> dict:
        return next((e for e in self.events if e.get("type") == "start"), {})


def read_events(path: Path) -> list[dict]:
    """Events from metrics.jsonl; a torn last line (a crash mid-write) is skipped."""
    events = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(event, dict):
                    events.append(event)
    except FileNotFoundError:
        pass
    return events


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
        except (json.JSONDecodeError, ValueError, UnicodeDecodeError) as exc:
            info.summary = None
            info.error = f"summary.json is damaged ({exc})"
    if with_events:
        info.events = read_events(info.path / "metrics.jsonl")
    return info


def list_runs(root: str | os.PathLike = DEFAULT_ROOT, with_events: bool = False) -> list[RunInfo]:
    """All run directories under root, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return [load_run(p, with_events) for p in sorted(dirs, key=lambda p: p.name, reverse=True)]


def delete_run(path: str | os.PathLike, root: str | os.PathLike = DEFAULT_ROOT) -> None:
    path, root = Path(path).resolve(), Path(root).resolve()
    if path.parent != root:
        raise RunError(f"{path} is not a run directory under {root}")
    shutil.rmtree(path)


def load_model(run_path: str | os.PathLike, device: str = "cpu") -> Net:
    """Rebuild the network from a run's checkpoint (weights only: no code is unpickled)."""
    path = Path(run_path) / "checkpoint.pt"
    if not path.exists():
        raise RunError(f"{Path(run_path).name} has no checkpoint yet (one is saved at each epoch end)")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
        model = Net(ModelArgs(**blob["model_args"]))
        model.load_state_dict(blob["state_dict"])
    except Exception as exc:  # noqa: BLE001 - any damage becomes one message
        raise RunError(f"the checkpoint of {Path(run_path).name} is damaged ({exc})") from None
    return model.to(device).eval()


def load_predictions(run_path: str | os.PathLike) -> dict | None:
    """{'epoch': int, 'probs': float tensor (N, classes)} or None when there are none yet."""
    path = Path(run_path) / "predictions.pt"
    if not path.exists():
        return None
    try:
        blob = torch.load(path, weights_only=True)
        return {"epoch": int(blob["epoch"]), "probs": blob["probs"].float()}
    except Exception as exc:  # noqa: BLE001
        raise RunError(f"the predictions of {Path(run_path).name} are damaged ({exc})") from None
