"""A run in a few words: its dataset, the preset it is closest to, the knobs it changed, and its accuracy.

    run_line(info) -> "CIFAR-10 · Tutorial · lr 0.01 · 57.2% · 14:05" (the time it started)

The Runs page's list, the charts' legends (core/runs/compare.py) and a run's default title all say it this way.
"""

from __future__ import annotations

import re
from typing import Any

from core.config import TrainConfig
from core.data import dataset_label
from core.links import PRESET_KNOBS, nearest_preset

KNOB_TEXT = {"epochs": "epochs", "optimizer": "optimizer", "lr": "lr", "momentum": "momentum", "batch_size": "batch",
             "conv_width": "width",
             "conv2_width": "conv2 width", "schedule": "schedule", "nesterov": "Nesterov", "train_images": "images",
             "augment": "flips and crops",
            "seed": "seed"}


def differences(config: TrainConfig) -> tuple[str, dict]:
    """The preset a config is closest to, and the knobs it sets otherwise ({name: value})."""
    return nearest_preset({k: getattr(config, k) for k in PRESET_KNOBS})


def knob_text(name: str, value: Any) -> str:
    """One knob as a legend or a name says it: "lr 0.01", "batch 64", "Nesterov"."""
    if isinstance(value, bool):
        return KNOB_TEXT[name] if value else f"no {KNOB_TEXT[name]}"
    if name == "train_images":
        return f"{value:,} images" if value else "all images"
    return f"{KNOB_TEXT[name]} {value:g}" if isinstance(value, float) else f"{KNOB_TEXT[name]} {value}"


def run_line(info) -> str:
    """A run (a RunInfo) in one line: what it trained on, how, and how well."""
    if info.config is None:
        return f"{info.name} (damaged)"
    preset, changed = differences(info.config)
    parts = [dataset_label(info.config.dataset), preset.capitalize(), *(knob_text(k, v) for k, v in changed.items())]
    parts += [knob_text(k, getattr(info.config, k)) for k in ("augment", "train_images", "seed")
              if getattr(info.config, k)]
    if info.config.nproc > 1:  # data-parallel: the batch is per process
        parts.append(f"{info.config.nproc} processes (DDP)")
    if info.accuracy is not None:
        parts.append(f"{info.accuracy:.1%}")
    if started := started_at(info.name):  # two runs of the same settings still read apart
        parts.append(started)
    return " · ".join(parts)


def started_at(folder: str) -> str:
    """A run folder's start time as a clock says it ("14:05"), from its name (20261202-140512-shapes-9124), else
    "" (a folder named otherwise)."""
    match = re.match(r"\d{8}-(\d\d)(\d\d)\d\d-", folder)
    return f"{match.group(1)}:{match.group(2)}" if match else ""
