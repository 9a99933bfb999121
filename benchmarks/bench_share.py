"""How many tutorial-sized jobs one device runs at once before each slows below 80% of its speed alone: the number
the dashboard's default CNN_DASHBOARD_MAX_JOBS should follow on that device.

    python -m benchmarks.bench_share [--device cuda] [--jobs 1,2,4,8] [--epochs 1] [--batch-size 4]

For each count k it starts k copies of `python -m core.train --preset tutorial --dataset shapes` at once (each a
process of its own, as the dashboard's workers are) and reads each one's images/s from its summary; it prints the
mean per job as a share of the one-job figure, and the largest k whose every job keeps 80% or more. Rounds go up
and then down again (1, 2, 4, 8, 8, 4, 2, 1), so a machine that warms up or slows down shows in the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def together(k: int, device: str, epochs: int, batch: int, data: Path, runs: Path) -> list[float]:
    """k training processes started together: each one's images/s."""
    command = [sys.executable, "-m", "core.train", "--preset", "tutorial", "--dataset", "shapes", "--epochs",
               str(epochs), "--batch-size", str(batch), "--device", device, "--data-dir", str(data), "--runs-dir",
               str(runs), "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if device == "cpu":
        env["OMP_NUM_THREADS"] = "1"
    procs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True) for _ in range(k)]
    rates = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"error: a training process failed ({proc.returncode})")
        rates.append(json.loads(out.strip().splitlines()[-1])["images_per_second"])
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--jobs", default="1,2,4,8")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    counts = [int(k) for k in args.jobs.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-share-"))
    together(1, args.device, 1, 64, work / "data", work / "runs")  # Shapes made and cached once, before timing
    results: dict[int, list[list[float]]] = {k: [] for k in counts}
    for k in counts + counts[::-1]:
        rates = together(k, args.device, args.epochs, args.batch_size, work / "data", work / "runs")
        results[k].append(rates)
        print(f"{k} at once: " + ", ".join(f"{r:,.0f}" for r in rates) + " images/s", flush=True)
    alone = statistics.mean(r for rates in results[1] for r in rates)
    best = 1
    for k in counts:
        shares = [r / alone for rates in results[k] for r in rates]
        print(f"{k} jobs: each {min(shares):.0%}-{max(shares):.0%} of one alone (mean {statistics.mean(shares):.0%})")
        if min(shares) >= 0.8:
            best = max(best, k)
    print(f"one alone: {alone:,.0f} images/s on {args.device}; the most jobs at once with each at 80% or more: {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
