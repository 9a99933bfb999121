"""The presets on every seed the issue names, side by side with the tutorial's own loop, in one run.

    python benchmarks/bench_presets.py [--work /tmp/cifar10-bench] [--seeds 0,1,2,3,4] [--skip-tutorial-loop]

1. the tutorial's own loop, 2 epochs on the CIFAR-10 copy (benchmarks/bench_train.py's code), timed;
2. `python -m core.train --preset fast --seed S` for each seed: whole-command seconds and test accuracy
   (target: 55% or more on every seed, and the command at least 8x sooner than the tutorial's loop: issue 29);
3. the Tutorial preset on the offline Shapes set for seeds 0-2: running loss at the end of epoch 1 (target
   below 2.0) and test accuracy after 2 epochs (target 75-97%).
Prints every seed's numbers, then a JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_train import tutorial_loop  # noqa: E402
from benchmarks.common import cifar10_folder, run_cli  # noqa: E402


def shapes_tutorial(seed: int) -> dict:
    from core.config import preset
    from core.data import make_shapes
    from core.loop import train

    events = list(train(preset("tutorial", dataset="shapes", seed=seed), make_shapes()))
    epoch1 = [e["running_loss"] for e in events if e["type"] == "loss" and e["epoch"] == 1]
    return dict(seed=seed, epoch1_last_loss=epoch1[-1], test_accuracy=events[-1]["test_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/cifar10-bench")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--skip-tutorial-loop", action="store_true")
    args = parser.parse_args()
    work = Path(args.work)
    folder = cifar10_folder(work)
    common = ["--dataset", f"folder:{folder}", "--device", "cpu", "--data-dir", str(work / "data"),
              "--runs-dir", str(work / "runs")]
    run_cli(*common, "--max-steps", "1")  # the dataset cache, built once before any timing

    tutorial = None
    if not args.skip_tutorial_loop:
        print("the tutorial's own loop, 2 epochs ...", file=sys.stderr)
        tutorial = tutorial_loop(folder)
        print(f"tutorial loop: {tutorial['train_seconds']:.1f} s, {tutorial['test_accuracy']:.1%}")
    fast = []
    for seed in (int(s) for s in args.seeds.split(",")):
        summary, wall = run_cli(*common, "--preset", "fast", "--seed", str(seed))
        fast.append(dict(seed=seed, seconds=wall, test_accuracy=summary["test_accuracy"]))
        sooner = f", {tutorial['train_seconds'] / wall:.1f}x sooner than the tutorial's loop" if tutorial else ""
        print(f"fast seed {seed}: {summary['test_accuracy']:.1%} in {wall:.1f} s (whole command){sooner}")
    shapes = []
    for seed in (0, 1, 2):
        started = time.perf_counter()
        row = shapes_tutorial(seed)
        shapes.append(row)
        print(f"shapes tutorial seed {seed}: epoch-1 running loss {row['epoch1_last_loss']:.3f}, "
              f"test accuracy {row['test_accuracy']:.1%} ({time.perf_counter() - started:.1f} s)")
    worst = min(r["test_accuracy"] for r in fast)
    slowest = max(r["seconds"] for r in fast)
    print(f"fast: worst seed {worst:.1%} (target >= 55%)" + (
        f", slowest {tutorial['train_seconds'] / slowest:.1f}x sooner (target >= 8x)" if tutorial else ""))
    print(json.dumps({"tutorial_loop": tutorial, "fast": fast, "shapes_tutorial": shapes}))


if __name__ == "__main__":
    main()
