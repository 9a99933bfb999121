"""What flips and crops (--augment) do to an own dataset of 20 pictures a class, built from a CIFAR-10 subset.

    python -m benchmarks.bench_augment --cifar-folder /tmp/cifar10-data/cifar10 [--seeds 0,1,2] [--per-class 20]
                                       [--data-dir DIR (the folder's cache)]

Takes `--per-class` pictures of each class from the CIFAR-10 image folder's train/ (the same ones every time),
makes them an own dataset (core/datasets.py: a fifth of each class kept aside to test), and trains it as the
overfitting lesson does for an own dataset (all its pictures, 30 epochs, lr 0.01, batch 8), without and with
augment, seed by seed, alternating. Reports the last epoch's train and test accuracy on the dataset's own split,
the accuracy on CIFAR-10's 10,000 test images (the own split has only 40: one picture is 2.5 points), and the
seconds each run took.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch

from core.config import TrainConfig
from core.data import Normalizer, load_dataset
from core.datasets import add_pictures, create_own
from core.evaluate import infer
from core.lessons import OVERFIT
from core.loop import run_training
from core.runs import load_model


def own_from_cifar(folder: Path, data_dir: Path, per_class: int) -> None:
    classes = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    create_own(data_dir, "cifar-small", classes)
    for cls in classes:
        files = sorted((folder / "train" / cls).iterdir())
        chosen = random.Random(f"bench-augment:{cls}").sample(files, per_class)
        add_pictures(data_dir, "cifar-small", cls, [(f.name, f.read_bytes()) for f in chosen])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar-folder", required=True, help="CIFAR-10 in the image-folder layout")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--data-dir", help="where the full CIFAR-10 folder's cache is (default: a new one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        own_from_cifar(Path(args.cifar_folder), data_dir, args.per_class)
        full = load_dataset(f"folder:{args.cifar_folder}", args.data_dir or data_dir)
        normalize = Normalizer(full.mean, full.std)
        print("seed | augment | train acc (own split) | test acc (own split) | CIFAR-10 test (10,000) | seconds")
        for seed in (int(s) for s in args.seeds.split(",")):
            for augment in ((False, True) if seed % 2 == 0 else (True, False)):  # alternating order
                config = TrainConfig(dataset="own:cifar-small", data_dir=str(data_dir), epochs=OVERFIT["epochs"],
                                     lr=OVERFIT["lr"], batch_size=OVERFIT["batch_size"], seed=seed, augment=augment,
                                     device="cpu")
                started = time.perf_counter()
                events = list(run_training(config, runs_root=Path(tmp) / "runs"))
                seconds = time.perf_counter() - started
                last = [e for e in events if e["type"] == "epoch"][-1]
                model = load_model(Path(events[-1]["run_dir"]))
                with torch.no_grad():
                    right = (infer(model, full.test_images, normalize).argmax(1) == full.test_labels).float().mean()
                print(f"{seed} | {'on' if augment else 'off'} | {last['train_accuracy']:.1%} | "
                      f"{last['test_accuracy']:.1%} | {float(right):.1%} | {seconds:.0f}", flush=True)


if __name__ == "__main__":
    main()
