"""How long each lesson's run takes on this machine, quiet: every Train link of every lesson, trained as the link
sets it, one after the other.

    python -m benchmarks.bench_lessons [--dataset shapes|cifar10|folder:PATH] [--data-dir DIR]

A one-process link trains in this process (core.loop.run_training, as a dashboard job's worker does); a
data-parallel one (lesson 10) through `python -m core.train`, as its job does. Reports each link's seconds of
wall time (the dataset already cached: a first load decodes it once) and its test accuracy, and for the
overfitting lesson the largest gap between train and test accuracy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.config import TrainConfig, config_argv
from core.data import load_dataset
from core.lessons import lessons
from core.links import parse_link
from core.loop import run_training


def link_config(link, data_dir: str) -> TrainConfig:
    values = dict(parse_link(link.query()).values)
    if values.get("dataset") == "folder":
        values["dataset"] = f"folder:{values.pop('folder')}"
    values.pop("folder", None)
    values.pop("preset", None)
    device = values.pop("device", "cpu")
    return TrainConfig(**values, device="cpu" if device == "auto" else device, data_dir=data_dir,
                       threads=1 if values.get("nproc", 1) > 1 else 0)


def run(config: TrainConfig, runs: Path) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    if config.nproc > 1:
        out = subprocess.run([sys.executable, "-m", "core.train", *config_argv(config), "--runs-dir", str(runs),
                              "--json"], capture_output=True, text=True, check=True)
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        return time.perf_counter() - started, [{"test_accuracy": summary["test_accuracy"]}]
    try:
        epochs = [e for e in run_training(config, runs_root=runs) if e["type"] == "epoch"]
    except Exception as exc:  # noqa: BLE001 - a lesson's run that fails is a figure too (lr 10 diverges)
        print(f"  ({type(exc).__name__}: {str(exc)[:120]})")
        epochs = []
    return time.perf_counter() - started, epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "bench-lessons-data"))
    args = parser.parse_args()
    load_dataset(args.dataset, args.data_dir)  # cached first, as after the class's first use
    with tempfile.TemporaryDirectory() as runs:
        for lesson in lessons(args.dataset, gpu=False):
            for link in lesson.links:
                if link.page != "train":
                    continue
                config = link_config(link, args.data_dir)
                seconds, epochs = run(config, Path(runs))
                gap = max((e["train_accuracy"] - e["test_accuracy"] for e in epochs if "train_accuracy" in e),
                          default=None)
                ended = f"test accuracy {epochs[-1]['test_accuracy']:.1%}" if epochs else "ended before an epoch"
                print(f"{lesson.title} | {link.label} | {seconds:.0f} s | {ended}"
                      + (f" | largest train-test gap {gap:.1%}" if gap is not None and gap > 0.1 else ""), flush=True)


if __name__ == "__main__":
    main()
