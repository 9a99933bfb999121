"""One process with every core's threads against N DDP processes of one thread each, on the same machine.

    python benchmarks/bench_ddp.py [--widths 6,64] [--rounds 4] [--steps 300] [--data-dir /tmp/bench-data]

Each configuration trains `--steps` steps of Shapes (made on this machine) with `python -m core.train ... --json`
and reports its images/s (training only: not the start of the processes, not the evaluation). Rounds alternate
the order. Configurations: 1 process x N threads at batch 64; N processes x 1 thread at batch 64/N each (the same
global batch); N processes x 1 thread at batch 64 each (the global batch N times larger). N: the cores, at least 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import run_cli  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", default="6,64")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "cnn-bench-data"))
    args = p.parse_args()
    n = max(2, os.cpu_count() or 1)
    configs = {f"1 process x {n} threads, batch 64": ["--nproc", "1", "--threads", str(n), "--batch-size", "64"],
               f"{n} DDP x 1 thread, batch {64 // n} each (global 64)":
                   ["--nproc", str(n), "--threads", "1", "--batch-size", str(64 // n)],
               f"{n} DDP x 1 thread, batch 64 each (global {64 * n})":
                   ["--nproc", str(n), "--threads", "1", "--batch-size", "64"]}
    for round_ in range(args.rounds):
        names = list(configs) if round_ % 2 == 0 else list(reversed(configs))
        for width in (int(w) for w in args.widths.split(",")):
            with tempfile.TemporaryDirectory() as runs:
                rates = {name: run_cli("--dataset", "shapes", "--data-dir", args.data_dir, "--runs-dir", runs,
                                       "--width", str(width), "--lr", "0.01", "--epochs", "1000", "--max-steps",
                                       str(args.steps), *configs[name])[0]["images_per_second"] for name in names}
            base = rates[next(iter(configs))]
            print(f"round {round_ + 1}, width {width}: " + "; ".join(
                f"{name}: {rate:,.0f} images/s ({rate / base:.2f}x)" for name, rate in rates.items()), flush=True)


if __name__ == "__main__":
    main()
