"""Training configuration: one frozen value object that the UI and the CLI both build.

Validation lives here, so every front end rejects the same bad values with the
same message a student can act on.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from dataclasses import dataclass, field
from typing import Any

from core.datasets import OwnError, check_name

DATASETS = ("cifar10", "mnist", "fashion-mnist", "shapes")
DEVICES = ("auto", "cpu", "cuda", "mps")
DEVICE_LABELS = {"auto": "Fastest present", "cpu": "CPU", "cuda": "CUDA GPU", "mps": "Apple GPU (MPS)"}
SCHEDULES = ("constant", "one-cycle")
OPTIMIZERS = ("sgd", "adam", "rmsprop")  # the update rules the tutorial names; core/optimizers.py builds them


class ConfigError(ValueError):
    """A setting the user chose cannot work; the message says why and what to do."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Range:
    """A setting's bounds as data, and the check they make: validation, the page's controls, the links' parser
    and the checkpoint bounds all read these numbers. `open_low`/`open_high`: the bound itself is outside."""

    low: float
    high: float
    whole: bool = True
    optional: bool = False
    open_low: bool = False
    open_high: bool = False

    def __call__(self, v: Any) -> bool:
        if self.optional and v is None:
            return True
        if not (_is_int(v) if self.whole else _is_number(v)):
            return False
        above = v > self.low if self.open_low else v >= self.low
        below = v < self.high if self.open_high else v <= self.high
        return above and below


def whole_number(low: int, high: int, optional: bool = False) -> Range:
    """A whole number from low to high (or None, where optional)."""
    return Range(low, high, optional=optional)


def setting(default: Any, flag: str | None, help: str, label: str = "", must: str = "", check=None,
            choices: tuple | None = None, widget_help: str = "", pages: dict | None = None, ladder: tuple = ()):
    """A TrainConfig field and everything said about it in one place: its command-line flag and help, its label
    on the page (and in messages), and the check its value must pass (`must` says it in words; a Range carries
    its bounds as data). `pages`: a page's control's narrower range ({"train": (1, 30)}: epochs 1-30 of the
    1-1000 allowed; the Step page takes the Train page's unless it names its own). `ladder`: the values a select
    slider offers (learning rates 0.0001, 0.0002, 0.0005, ...), within the page's range."""
    return field(default=default, metadata=dict(flag=flag, help=help, label=label, must=must, check=check,
                                                choices=choices, widget_help=widget_help or help, pages=pages or {},
                                                ladder=ladder))


LEARNING_RATES = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
STEP_PAGE = 128  # the Step page's widths and batch: a step drawn, with every number, within a second


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = setting("cifar10", "--dataset", "cifar10, mnist, fashion-mnist, shapes (offline), folder:PATH or "
                           "own:NAME (python -m core.datasets list)",
                           "Dataset")
    data_dir: str = setting("data", "--data-dir", "where datasets are downloaded and cached (default: data)",
                            "Data directory", "a non-empty path", lambda v: isinstance(v, str) and v.strip() != "")
    epochs: int = setting(2, "--epochs", "how many times the network sees every training image", "Epochs",
                          "a whole number from 1 to 1000", whole_number(1, 1000), pages={"train": (1, 30)})
    train_images: int = setting(0, "--train-images", "train on N of the training images, the same N every run "
                                "(0 = all of them): few images and many epochs show overfitting", "Training images",
                                "0 (all) or a whole number of images", whole_number(0, 10**8))
    lr: float = setting(0.001, "--lr", "learning rate: how big a step the optimizer takes; too big and the loss "
                        "explodes (diverges)", "Learning rate", "> 0 and at most 10",
                        Range(0, 10, whole=False, open_low=True), ladder=LEARNING_RATES)
    momentum: float = setting(0.9, "--momentum", "how much of the previous step SGD keeps: smooths the path downhill",
                              "Momentum", "at least 0 and below 1", Range(0, 1, whole=False, open_high=True),
                              pages={"train": (0.0, 0.99)})
    optimizer: str = setting("sgd", "--optimizer", "the update rule: sgd (the tutorial's), adam or rmsprop; momentum "
                             "and Nesterov apply to sgd, adam and rmsprop take their usual defaults", "Optimizer",
                             choices=OPTIMIZERS)
    # Nesterov momentum: look ahead along the momentum before taking the gradient
    nesterov: bool = setting(False, "--nesterov", "Nesterov momentum: take the gradient a little ahead, where "
                             "momentum is carrying the weights", "Nesterov momentum", "true or false",
                             lambda v: isinstance(v, bool))
    schedule: str = setting("constant", "--schedule", "learning rate: constant (the tutorial) or one-cycle (warm up, "
                            "then anneal to 0)", "Learning-rate schedule", choices=SCHEDULES)
    augment: bool = setting(False, "--augment", "random flips and crops of every training batch (shifted up to 4 "
                            "pixels), made on the device: more varied pictures against overfitting (off: the "
                            "tutorial's way)", "Flips and crops", "true or false", lambda v: isinstance(v, bool))
    batch_size: int = setting(4, "--batch-size", "images per optimizer step and process (the tutorial uses 4)",
                              "Batch size",
                              "a whole number from 1 to 4096", whole_number(1, 4096), ladder=BATCH_SIZES,
                              pages={"step": (1, STEP_PAGE)})
    conv_width: int = setting(6, "--width", "output channels of conv1 = input channels of conv2 (the tutorial uses 6; "
                              "its exercise widens it)", "Conv width", "a whole number from 1 to 1024",
                              whole_number(1, 1024), pages={"train": (1, 256), "step": (1, STEP_PAGE)})
    conv2_width: int = setting(16, "--conv2-width", "output channels of conv2 (the tutorial uses 16)", "Conv2 width",
                               "a whole number from 1 to 1024", whole_number(1, 1024),
                               pages={"train": (1, 256), "step": (1, STEP_PAGE)})
    device: str = setting("auto", "--device", "auto (the fastest present), cpu, cuda or mps", "Device",
                          choices=DEVICES)
    nproc: int = setting(1, "--nproc", "processes training data-parallel (DDP, through torchrun's launcher); each "
                         "takes --batch-size images a step", "Processes", "a whole number from 1 to 64",
                         whole_number(1, 64))
    seed: int = setting(0, "--seed", "the same seed and settings give the same run", "Seed",
                        "a whole number from 0 to 2147483647", whole_number(0, 2**31 - 1))
    threads: int = setting(0, "--threads", "CPU threads (0 = what measured fastest for the batch size)", "Threads",
                           "0 (automatic) or a whole number up to 256", whole_number(0, 256))
    log_interval: int = setting(0, "--log-interval", "steps per running-loss point (0 = automatic, about 50 an "
                                "epoch)", "Log interval", "0 (automatic) or a positive number of steps",
                                whole_number(0, 1_000_000))
    max_steps: int | None = setting(None, "--max-steps", "stop after N optimizer steps", "Max steps",
                                    "a positive whole number", whole_number(1, 10**12, optional=True))
    target_accuracy: float | None = setting(None, "--target-accuracy", "stop once test accuracy reaches X "
                                            "(e.g. 0.55)", "Target accuracy",
                                            "a fraction above 0 and at most 1, e.g. 0.55",
                                            lambda v: v is None or (_is_number(v) and 0 < v <= 1))

    def __post_init__(self) -> None:
        validate(self)

    # -- derived values ------------------------------------------------------
    @property
    def global_batch_size(self) -> int:
        """Images per optimizer step over all processes: the batch size is per process."""
        return self.batch_size * self.nproc

    def steps_per_log(self, steps_per_epoch: int) -> int:
        """Steps per running-loss point: the setting, or about 50 points an epoch and at most 2000 images each."""
        if self.log_interval:
            return self.log_interval
        return max(1, min(2000 // self.global_batch_size, -(-steps_per_epoch // 50)))

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**data)


SETTINGS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def setting_label(name: str) -> str:
    """A setting's label on the page, e.g. "Learning rate"."""
    return SETTINGS[name].metadata["label"]


def setting_problem(name: str, value: Any) -> str | None:
    """What is wrong with `value` for the setting `name` (as validation says it), or None: for other values that
    take a setting's bounds, such as a speed sweep's widths."""
    meta = SETTINGS[name].metadata
    if meta["check"] is not None and not meta["check"](value):
        return f"{meta['label'].lower()} must be {meta['must']}, not {value!r}"
    return None


def bounds(name: str) -> tuple:
    """(low, high) a setting may take, e.g. (1, 1024) for conv_width."""
    check = SETTINGS[name].metadata["check"]
    return check.low, check.high


def page_range(name: str, value: Any = None, page: str = "train") -> tuple:
    """(low, high) of the setting's control on a page: the page's narrower range where it has one (else the Train
    page's, else the setting's bounds); on the Train page stretched to take `value` where that is beyond it and
    still allowed (a link's epochs=50 on a 1-30 slider)."""
    meta = SETTINGS[name].metadata
    low, high = meta["pages"].get(page) or meta["pages"].get("train") or bounds(name)
    if page == "train" and value is not None and meta["check"](value) and value > high and meta["check"].whole:
        high = value
    return low, high


def page_ladder(name: str, value: Any = None, page: str = "train") -> list:
    """A select slider's options on a page: the setting's ladder within the page's range, and `value` among them
    (a link or a preset may hold any valid value)."""
    low, high = page_range(name, page=page)
    options = {v for v in SETTINGS[name].metadata["ladder"] if low <= v <= high}
    return sorted(options | ({value} if value is not None else set()))


def widget_help(name: str) -> str:
    """A setting's help on the page: its command-line help, a sentence."""
    text = SETTINGS[name].metadata["widget_help"]
    return text[0].upper() + text[1:] + "."


PRESETS: dict[str, dict[str, Any]] = {
    # Exactly the tutorial: batch 4, SGD lr 0.001 momentum 0.9, 2 epochs, widths 6/16.
    "tutorial": dict(epochs=2, lr=0.001, momentum=0.9, batch_size=4, conv_width=6, conv2_width=16),
    # Reaches the tutorial's 55% and more, on every seed, many times sooner than the tutorial's loop
    # (benchmarks/bench_presets.py): one-cycle schedule peaking at 0.1, Nesterov momentum, batch 64, slightly
    # wider convolutions (8/24), 2 epochs: seeds 0-4 ended at 57.5-59.0% (docs/benchmarks.md). Batch 128 at 0.15
    # for 2 epochs ran faster but left seed 3 at 45-53%; it needed 3 epochs.
    "fast": dict(epochs=2, lr=0.1, momentum=0.9, nesterov=True, schedule="one-cycle", batch_size=64,
                 conv_width=8, conv2_width=24),
}


def preset_values(name: str) -> dict[str, Any]:
    """Every knob of a preset: what it sets, and the tutorial's constant schedule and plain momentum otherwise."""
    return {"schedule": "constant", "nesterov": False, "optimizer": "sgd", **PRESETS[name]}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset with explicit settings layered on top."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return TrainConfig(**{**PRESETS[name], **overrides})


# -- validation, the command line and its flag table (docs/command-line.md): all from the fields' metadata ----------

def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(c: TrainConfig) -> None:
    """Raise ConfigError with a message a student understands for the first bad setting."""
    _check(isinstance(c.dataset, str) and (c.dataset in DATASETS or c.dataset.startswith(("folder:", "own:"))),
           f"dataset must be one of {', '.join(DATASETS)}, folder:PATH or own:NAME, not {c.dataset!r}")
    if c.dataset.startswith("folder:"):
        _check(c.dataset[len("folder:"):].strip() != "", "folder: needs a path, e.g. folder:/data/my-images")
    if c.dataset.startswith("own:"):
        try:
            check_name(c.dataset[len("own:"):])
        except OwnError as exc:
            raise ConfigError(f"own: needs the name of an own dataset, e.g. own:fruit; {exc}") from None
    for name, f in SETTINGS.items():
        meta, value = f.metadata, getattr(c, name)
        if meta["check"] is not None:
            _check(meta["check"](value), f"{meta['label'].lower()} must be {meta['must']}")
        if meta["choices"] is not None:
            _check(value in meta["choices"], f"{name} must be one of {', '.join(meta['choices'])}, not {value!r}")
    _check(not c.nesterov or c.momentum > 0, "Nesterov momentum needs a momentum above 0")
    _check(not c.nesterov or c.optimizer == "sgd", f"Nesterov momentum is SGD's; {c.optimizer} keeps running "
           "averages of its own: choose sgd, or leave Nesterov off")
    _check(c.nproc == 1 or c.device != "mps", "data-parallel training (processes above 1) runs on CPUs (gloo) or "
           "CUDA GPUs (nccl), not on an Apple GPU")


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per setting, with its help and choices; a flag left out is None (the preset's or the default)."""
    for name, f in SETTINGS.items():
        meta = f.metadata
        if f.type in ("bool", bool):
            parser.add_argument(meta["flag"], dest=name, action="store_true", default=None, help=meta["help"])
            continue
        kind = float if "float" in str(f.type) else int if "int" in str(f.type) else str
        parser.add_argument(meta["flag"], dest=name, type=kind, choices=meta["choices"], help=meta["help"],
                            metavar=None if meta["choices"] else name.upper())


def config_argv(config: TrainConfig) -> list[str]:
    """The flags of `python -m core.train` that give this config: every setting that differs from the defaults
    (and the dataset). What a data-parallel job hands its ranks, as a list: never a string parsed again."""
    default = TrainConfig()
    argv: list[str] = []
    for name, f in SETTINGS.items():
        value = getattr(config, name)
        if isinstance(value, bool):
            argv += [f.metadata["flag"]] if value else []
        elif name == "dataset" or value != getattr(default, name):
            argv += [f.metadata["flag"], str(value)]
    return argv


def command_line(config: TrainConfig) -> str:
    """The same training from a terminal, e.g. `python -m core.train --dataset shapes --epochs 1`."""
    return shlex.join(["python", "-m", "core.train", *config_argv(config)])


def flag_table() -> str:
    """The table of the settings' flags in docs/command-line.md (tests/test_config.py keeps that copy the same)."""
    rows = ["| flag | what it sets | default |", "| --- | --- | --- |"]
    for f in SETTINGS.values():
        default = "off" if f.default is False else "none" if f.default is None else f.default
        rows.append(f"| `{f.metadata['flag']}` | {f.metadata['help']} | {default} |")
    return "\n".join(rows)
