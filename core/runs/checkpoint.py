"""A run's network and predictions, loaded as weights only and checked before anything is built from them: a
checkpoint may come from elsewhere (an uploaded run), and is hostile until checked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from core.config import bounds
from core.model import ModelArgs, Net
from core.runs.folder import RunError

MAX_CHECKPOINT_BYTES = 200 * 1024 * 1024  # widths 1024/1024 at 64x64 pixels: about 110 MB
MAX_PREDICTION_BYTES = 32 * 1024 * 1024  # half precision: 10,000 test images x 1,000 classes is 20 MB
MODEL_BOUNDS = dict(in_channels=(1, 3), image_size=(16, 64), num_classes=(2, 1000), conv_width=bounds("conv_width"),
                    conv2_width=bounds("conv2_width"))  # widths: what a config allows (core/config.py)


def model_args(values: object) -> ModelArgs:
    """A checkpoint's model arguments, checked against what this app ever trains before anything is built
    from them (a checkpoint that says 5,000,000 classes would otherwise take gigabytes first)."""
    if not isinstance(values, dict) or set(values) != set(MODEL_BOUNDS):
        raise ValueError(f"its model arguments are not {', '.join(MODEL_BOUNDS)}")
    for name, (low, high) in MODEL_BOUNDS.items():
        value = values[name]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{name}={value!r} is outside {low}..{high}")
    return ModelArgs(**values)


def load_weights(path: Path, device: str = "cpu", limit: int = MAX_CHECKPOINT_BYTES) -> Any:
    """torch.load of a run's .pt file, weights only (no code is unpickled), after checking what it would unpack to:
    a .pt file is a zip, and a record packed from gigabytes of zeros would take them in memory."""
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            if len(members) > 10_000 or sum(m.file_size for m in members) > limit:
                raise ValueError(f"it would unpack to more than {limit / 1e6:.0f} MB")
    return torch.load(path, map_location=device, weights_only=True)


def load_model(run_path: str | os.PathLike, device: str = "cpu") -> Net:
    """Rebuild the network from a run's checkpoint (weights only: no code is unpickled)."""
    path = Path(run_path) / "checkpoint.pt"
    if not path.exists():
        raise RunError(f"{Path(run_path).name} has no checkpoint yet (one is saved at each epoch end)")
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise RunError(f"the checkpoint of {Path(run_path).name} is {path.stat().st_size / 1e6:.0f} MB, more than a "
                       f"network of this app can be ({MAX_CHECKPOINT_BYTES / 1e6:.0f} MB)")
    try:
        blob = load_weights(path, device)
        model = Net(model_args(blob["model_args"]))  # bounded before a single weight is allocated
        model.load_state_dict(blob["state_dict"])
    except Exception as exc:  # noqa: BLE001 - any damage becomes one message
        raise RunError(f"the checkpoint of {Path(run_path).name} is damaged ({exc})") from None
    return model.to(device).eval()


def load_predictions(run_path: str | os.PathLike) -> dict | None:
    """{'epoch': int, 'probs': float tensor (N, classes)} or None when there are none yet."""
    path = Path(run_path) / "predictions.pt"
    if not path.exists():
        return None
    if path.stat().st_size > MAX_PREDICTION_BYTES:
        raise RunError(f"the predictions of {Path(run_path).name} are more than this app writes "
                       f"({MAX_PREDICTION_BYTES / 2**20:.0f} MB)")
    try:
        blob = load_weights(path, limit=MAX_PREDICTION_BYTES)
        probs = blob["probs"]
        if not isinstance(probs, torch.Tensor) or probs.dim() != 2 or not probs.is_floating_point():
            raise ValueError("they are not a table of class probabilities")
        return {"epoch": int(blob["epoch"]), "probs": probs.float()}
    except Exception as exc:  # noqa: BLE001
        raise RunError(f"the predictions of {Path(run_path).name} are damaged ({exc})") from None
