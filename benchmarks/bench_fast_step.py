"""The Fast preset's training step on a CPU, each candidate speed-up alone beside today's step, alternating.

    python benchmarks/bench_fast_step.py [--preset fast] [--rounds 4] [--steps 60] [--batch-size 64] [--cases ...]

"today" is the step core.train takes with the preset: its memory format, threads and kernels as the loop chooses
them for the batch size (core/device.py), core's PlainSGD. Each other case changes one thing (issue 29):
"torch.optim SGD" (torch's fused SGD, as runs trained before PlainSGD); "other layout" (channels_last where the loop
uses the default layout, or the reverse); "1 thread"; "oneDNN off"; "compile", torch.compile of the step (its
compile time reported apart, to set against the seconds it saves over 2 epochs of 782 steps). Each round times
every case on the same batches, the order reversed every second round; images/s per round, then the median's
ratio to today's step. The network is the tutorial's Net at the preset's widths (8/24), on CIFAR-sized random
pictures (the step's time does not depend on what the pictures show).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import preset  # noqa: E402
from core.data import Normalizer  # noqa: E402
from core.device import channels_last, choose_threads, keep_freed_memory, mkldnn_default  # noqa: E402
from core.model import ModelArgs, Net  # noqa: E402
from core.optimizers import Rule, build  # noqa: E402
from core.train_step import make_optimizer  # noqa: E402


def make_case(name: str, preset_name: str, batch: int):
    config = preset(preset_name, dataset="shapes", batch_size=batch)
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    net = Net(ModelArgs(3, 32, 10, config.conv_width, config.conv2_width))
    fast_format = channels_last(cpu, batch) != (name == "other layout")
    layout = torch.channels_last if fast_format else torch.contiguous_format
    net = net.to(memory_format=layout)
    if name == "torch.optim SGD":
        optimizer = build(net.parameters(), Rule.of(config), cpu)
    else:
        optimizer = make_optimizer(net, config, cpu)
    normalize = Normalizer((0.5,) * 3, (0.5,) * 3)
    criterion = nn.CrossEntropyLoss()

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(net(normalize(x).contiguous(memory_format=layout)), y)
        loss.backward()
        optimizer.step()
        return loss

    compile_seconds = 0.0
    if name == "compile":
        compiled = torch.compile(step)
        started = time.perf_counter()
        x = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
        y = torch.randint(0, 10, (batch,))
        compiled(x, y)
        compile_seconds = time.perf_counter() - started
        step = compiled
    case_threads = 1 if name == "1 thread" else choose_threads(config, cpu)
    mkldnn = name != "oneDNN off" and (mkldnn_default and batch > 4)  # as core.device.cpu_kernels
    return step, case_threads, mkldnn, compile_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--preset", default="fast", choices=("fast", "tutorial"))
    parser.add_argument("--batch-size", type=int, default=0, help="0: the preset's")
    parser.add_argument("--cases", default="today,torch.optim SGD,other layout,1 thread,oneDNN off,compile")
    args = parser.parse_args()
    keep_freed_memory()  # as core.train does: without it, page faults from malloc's returns dominate a step
    threads = torch.get_num_threads()
    names = args.cases.split(",")
    batch = args.batch_size or preset(args.preset, dataset="shapes").batch_size
    cases = {}
    for name in names:
        cases[name] = make_case(name, args.preset, batch)
        if cases[name][3]:
            print(f"{name}: compiled in {cases[name][3]:.1f} s", flush=True)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, generator=g),
                torch.randint(0, 10, (batch,), generator=g)) for _ in range(8)]
    rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            step, case_threads, mkldnn, _ = cases[name]
            torch.set_num_threads(case_threads)
            with torch.backends.mkldnn.flags(enabled=mkldnn):
                for x, y in batches[:2]:
                    step(x, y)  # warm
                started = time.perf_counter()
                for i in range(args.steps):
                    x, y = batches[i % len(batches)]
                    step(x, y)
                rates[name].append(args.steps * batch / (time.perf_counter() - started))
        torch.set_num_threads(threads)
        print(f"round {r + 1}: " + ", ".join(f"{n} {rates[n][-1]:,.0f}" for n in names) + " images/s", flush=True)
    base = statistics.median(rates[names[0]])
    for name in names:
        print(f"{name}: median {statistics.median(rates[name]):,.0f} images/s, "
              f"{statistics.median(rates[name]) / base:.2f}x {names[0]}")


if __name__ == "__main__":
    main()
