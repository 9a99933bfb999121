"""How long the Step page's "Take the step" takes in PyTorch: forward, backward, both updates and the 25-point loss
curve (core/step.py: Stepper.take), by batch size, conv width and optimizer; and what the page's two speed-ups
buy: the loss curve with conv1 computed twice (against 25 plain forward passes), and one long-lived thread for
PyTorch (against a new thread per step, as Streamlit runs each page run).

    python benchmarks/bench_step.py [--rounds 4] [--steps 5] [--data-dir /tmp/cnn-bench-data]

Shapes (made on this machine). Each round measures every case, the order reversed every second round; the
median of `--steps` steps after one untimed step is reported per round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch.func import functional_call

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data import load_dataset  # noqa: E402
from core.model import ModelArgs, Net  # noqa: E402
from core.optimizers import Rule  # noqa: E402
from core.step import Stepper, curve_etas, loss_along, per_image_losses, warm_up  # noqa: E402


def stepper(dataset, width: int, batch: int, optimizer: str) -> Stepper:
    torch.manual_seed(0)
    return Stepper(Net(ModelArgs(conv_width=width)), dataset, Rule(optimizer, 0.01), batch)


def take_seconds(s: Stepper, steps: int, fresh_thread: bool = False) -> float:
    def one(out: list) -> None:
        started = time.perf_counter()
        s.take()
        out.append(time.perf_counter() - started)

    times: list[float] = []
    one([])  # untimed: first use of these shapes
    for _ in range(steps):
        if fresh_thread:
            t = threading.Thread(target=one, args=(times,))
            t.start()
            t.join()
        else:
            one(times)
    return statistics.median(times)


def naive_curve(s: Stepper) -> list[float]:
    """The loss curve as 25 plain forward passes through functional_call (what loss_along replaced)."""
    r = s.last
    x = s.normalize(r.images)
    with torch.no_grad():
        return [float(per_image_losses(functional_call(s.model, {n: r.before[n] - e * r.direction[n]
                                                                 for n in r.before}, (x,)), r.labels).mean())
                for e in curve_etas(r.rule.lr)]


def curve_seconds(s: Stepper, naive: bool, repeat: int) -> float:
    r = s.last
    x = s.normalize(r.images)
    times = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        if naive:
            naive_curve(s)
        else:
            loss_along(s.model, r.before, r.direction, r.etas, x, r.labels, r.loss_name)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "cnn-bench-data"))
    args = p.parse_args()
    dataset = load_dataset("shapes", args.data_dir)
    warm_up()
    cases = [(batch, width, opt) for batch in (4, 64) for width in (6, 64) for opt in ("sgd", "adam")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    for round_ in range(args.rounds):
        for batch, width, opt in cases if round_ % 2 == 0 else list(reversed(cases)):
            s = stepper(dataset, width, batch, opt)
            print(f"round {round_ + 1}: take() batch {batch:2d} width {width:2d} {opt:4s} "
                  f"{take_seconds(s, args.steps):.3f} s", flush=True)
    wide = stepper(dataset, 64, 64, "sgd")
    wide.take()
    for round_ in range(args.rounds):
        order = (False, True) if round_ % 2 == 0 else (True, False)
        for naive in order:
            print(f"round {round_ + 1}: loss curve, batch 64 width 64, "
                  f"{'25 forward passes' if naive else 'loss_along      '} {curve_seconds(wide, naive, 3):.3f} s")
        for fresh in order:
            print(f"round {round_ + 1}: take() batch 64 width 64 in {'a new thread each ' if fresh else 'one thread'}"
                  f"{'' if fresh else '        '} {take_seconds(wide, args.steps, fresh):.3f} s", flush=True)


if __name__ == "__main__":
    main()
