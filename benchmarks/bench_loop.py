"""The training loop headless, this checkout against another (a refactor must not slow it), alternating.

    git worktree add /tmp/before <commit>
    python benchmarks/bench_loop.py --before /tmp/before [--rounds 4] [--work /tmp/cifar10-bench]

For batch 4 and batch 64: `python -m core.train` on the CIFAR-10 JPEG copy from each checkout in turn, the order
swapped every second round; prints each round's images/s (the `--json` line: training time only) and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import cifar10_folder  # noqa: E402

SHAPES = ((4, 5000), (64, 1500))  # (batch, steps): about 8 and 10 s of training each here


def images_per_second(tree: Path, dataset: str, work: Path, batch: int, steps: int) -> float:
    result = subprocess.run(
        [sys.executable, "-m", "core.train", "--dataset", dataset, "--data-dir", str(work / "data"),
         "--batch-size", str(batch), "--max-steps", str(steps), "--epochs", "1", "--runs-dir", str(work / "runs"),
         "--json"], cwd=tree, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    if result.returncode not in (0, 3):
        sys.exit(f"error: core.train in {tree} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, type=Path, help="a checkout of the commit to compare with")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cifar10-bench"))
    args = parser.parse_args()
    dataset = f"folder:{cifar10_folder(args.work)}"
    trees = {"before": args.before.resolve(), "now": ROOT}
    images_per_second(ROOT, dataset, args.work, 64, 10)  # the dataset decoded into its cache first
    for batch, steps in SHAPES:
        ratios = []
        for i in range(args.rounds):
            order = ["before", "now"] if i % 2 == 0 else ["now", "before"]
            got = {name: images_per_second(trees[name], dataset, args.work, batch, steps) for name in order}
            ratios.append(got["now"] / got["before"])
            print(f"batch {batch}, round {i + 1} ({' then '.join(order)}): before {got['before']:,.0f}, "
                  f"now {got['now']:,.0f} images/s: now/before {ratios[-1]:.3f}", flush=True)
        print(f"batch {batch}: median now/before {statistics.median(ratios):.3f}", flush=True)


if __name__ == "__main__":
    main()
