"""Runs side by side: what differs between them, each run named by it, and each run's best result.

In a class it is the whole lesson: "I raised the learning rate, here is what changed". So a run is named in
the charts' legends by the settings that differ ("lr 0.001", "lr 0.01"), and the settings table shows only
those settings.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Sequence

from core.config import TrainConfig, setting_label
from core.data import dataset_label
from core.runs.folder import RunInfo
from core.runs.names import KNOB_TEXT, knob_text

NOT_SETTINGS = ("data_dir",)  # where the data sits is not what a run did


def differing(configs: Sequence[TrainConfig]) -> list[str]:
    """The settings whose values are not the same in every config, in TrainConfig's order."""
    names = [f.name for f in fields(TrainConfig) if f.name not in NOT_SETTINGS]
    return [n for n in names if len({repr(getattr(c, n)) for c in configs}) > 1]


def setting_text(name: str, value: Any) -> str:
    if name in KNOB_TEXT:
        return knob_text(name, value)
    if name == "dataset":
        return dataset_label(value)
    return f"{setting_label(name).lower()} {value}"


def legend_names(runs: Sequence[RunInfo]) -> list[str]:
    """Each run's name in a comparison: the settings in which it differs from the others ("lr 0.01"); its title
    where nothing differs or two runs would read the same (then the folder's name keeps them apart)."""
    names = differing([r.config for r in runs])
    legends = [" · ".join(setting_text(n, getattr(r.config, n)) for n in names) or r.title for r in runs]
    return [f"{text} ({r.name})" if legends.count(text) > 1 else text for text, r in zip(legends, runs)]


def best(run: RunInfo) -> tuple[dict | None, float | None]:
    """The epoch with the run's best test accuracy, and the seconds of training it took to get there."""
    epochs = run.history.epochs
    if not epochs:
        return None, None
    top = max(epochs, key=lambda e: e["test_accuracy"])
    before = [p for p in run.history.losses if p.get("step", 0) <= top.get("steps", 0)]
    seconds = before[-1].get("train_seconds") if before else None
    return top, seconds if isinstance(seconds, (int, float)) else None


def settings_table(runs: Sequence[RunInfo]) -> list[dict]:
    """A row per run: its name, the settings that differ (only those), its best test accuracy and when."""
    names, legends = differing([r.config for r in runs]), legend_names(runs)
    rows = []
    for run, legend in zip(runs, legends):
        top, seconds = best(run)
        row = {"run": legend, **{setting_label(n): _value(n, getattr(run.config, n)) for n in names}}
        row["best test accuracy"] = f"{top['test_accuracy']:.1%}" if top else "–"
        row["reached after"] = (f"epoch {top['epoch']}" + (f", {seconds:,.1f} s of training" if seconds else "")
                                if top else "–")
        rows.append(row)
    return rows


def _value(name: str, value: Any) -> str:
    if name == "dataset":
        return dataset_label(value)
    if isinstance(value, float):
        return f"{value:g}"
    return "–" if value is None else str(value)


def per_class(run: RunInfo) -> list[float] | None:
    """The last epoch's accuracy per class, or None (a run from before per-class counts were kept)."""
    for epoch in reversed(run.history.epochs):
        correct, total = epoch.get("per_class_correct"), epoch.get("per_class_total")
        if correct and total and len(correct) == len(total):
            return [c / t if t else 0.0 for c, t in zip(correct, total)]
    return None
