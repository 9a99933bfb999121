"""Speed lab: training throughput per device, conv width, batch size and thread count.

    python -m core.speed --devices cpu,cuda --widths 6,32,128 --batch-sizes 4,64 --steps 30 --json

Honest measurement: warm-up steps first (not timed), the data resident on the device,
the GPU synchronized before every clock reading, and the time to move a batch from the
host measured separately so the split is visible. The page and the CLI share this code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn as nn

from core.config import TrainConfig
from core.data import Normalizer
from core.model import ModelArgs, Net
from core.train import available_devices, cpu_kernels, cuda_kernels, make_optimizer, make_step

MAX_WIDTH = 1024
BUSY_SHARE = 0.75  # a CPU point whose threads got less of the CPU than this was measured on a busy machine


class SpeedError(ValueError):
    """Bad sweep settings; the message says which and why."""


@dataclass(frozen=True)
class SweepSpec:
    devices: tuple[str, ...] = ("cpu",)
    widths: tuple[int, ...] = (6, 16, 32, 64, 128, 256)
    batch_sizes: tuple[int, ...] = (4, 64)
    threads: tuple[int, ...] = (0,)  # CPU thread counts to try; 0 = all cores
    steps: int = 20
    warmup: int = 5
    conv2_width: int = 16
    image_size: int = 32
    channels: int = 3
    num_classes: int = 10

    def __post_init__(self) -> None:
        present = available_devices()
        if not self.devices:
            raise SpeedError("choose at least one device")
        for d in self.devices:
            if d not in ("cpu", "cuda", "mps"):
                raise SpeedError(f"unknown device {d!r}: use cpu, cuda or mps")
            if d not in present:
                raise SpeedError(f"device {d!r} is not available on this machine (available: {', '.join(present)})")
        if not self.widths or any(not isinstance(w, int) or not 1 <= w <= MAX_WIDTH for w in self.widths):
            raise SpeedError(f"widths must be whole numbers from 1 to {MAX_WIDTH}")
        if not self.batch_sizes or any(not isinstance(b, int) or not 1 <= b <= 4096 for b in self.batch_sizes):
            raise SpeedError("batch sizes must be whole numbers from 1 to 4096")
        if not self.threads or any(not isinstance(t, int) or not 0 <= t <= 256 for t in self.threads):
            raise SpeedError("thread counts must be 0 (all cores) or whole numbers up to 256")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= 10000:
            raise SpeedError("steps must be a whole number from 1 to 10000")
        if not isinstance(self.warmup, int) or not 0 <= self.warmup <= 1000:
            raise SpeedError("warm-up steps must be a whole number from 0 to 1000")

    def combinations(self) -> list[tuple[str, int, int, int]]:
        cores = os.cpu_count() or 1
        combos = []
        for device in self.devices:
            for threads in (dict.fromkeys(t or cores for t in self.threads) if device == "cpu" else [1]):
                for batch in self.batch_sizes:
                    for width in self.widths:
                        combos.append((device, width, batch, threads))
        return combos


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def measure(device: str, width: int, batch_size: int, threads: int = 0, steps: int = 20, warmup: int = 5,
            conv2_width: int = 16, image_size: int = 32, channels: int = 3, num_classes: int = 10,
            seed: int = 0) -> dict:
    """One row: training images/s with the data on the device, and the cost of bringing a batch from the host."""
    dev = torch.device(device)
    threads = threads or os.cpu_count() or 1
    previous_threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(threads)
    try:
        with cpu_kernels(dev, batch_size), cuda_kernels(dev):
            torch.manual_seed(seed)
            model = Net(ModelArgs(channels, image_size, num_classes, width, conv2_width)).to(dev)
            config = TrainConfig(dataset="shapes", lr=0.001, momentum=0.9, batch_size=batch_size)
            optimizer = make_optimizer(model, config, dev)
            criterion = nn.CrossEntropyLoss()
            normalize = Normalizer((0.5,) * channels, (0.5,) * channels, dev)
            g = torch.Generator().manual_seed(seed)
            pool = max(batch_size * 4, 256)
            host_images = torch.randint(0, 256, (pool, channels, image_size, image_size), dtype=torch.uint8,
                                        generator=g)
            host_labels = torch.randint(0, num_classes, (pool,), generator=g)
            images, labels = host_images.to(dev), host_labels.to(dev)  # resident on the device, as in training
            batches = pool // batch_size

            train_step = make_step(model, criterion, optimizer, normalize, dev, batch_size, images, labels)

            def step(i: int) -> torch.Tensor:
                s = (i % batches) * batch_size
                return train_step(images[s:s + batch_size], labels[s:s + batch_size])

            for i in range(warmup):
                step(i)
            _sync(dev)
            started, cpu_started = time.perf_counter(), time.process_time()
            for i in range(steps):
                step(i)  # no .item() here: on a GPU that would wait for every step
            _sync(dev)
            train_seconds = time.perf_counter() - started
            # the CPU time this process got, as a share of what its threads could have had: well below 1
            # when another program was busy on the same cores (the point then says more about that program)
            cpu_share = (time.process_time() - cpu_started) / (train_seconds * threads) if dev.type == "cpu" else None

            # moving data: host uint8 batch -> device, then normalize; what a per-step DataLoader copy costs
            _sync(dev)
            started = time.perf_counter()
            for i in range(steps):
                s = (i % batches) * batch_size
                normalize(host_images[s:s + batch_size].to(dev, non_blocking=False))
            _sync(dev)
            data_seconds = time.perf_counter() - started

            naive_seconds = None
            if dev.type != "cpu":  # the tutorial's way on a GPU: copy each batch over and read the loss every step
                started = time.perf_counter()
                for i in range(steps):
                    s = (i % batches) * batch_size
                    optimizer.zero_grad()
                    x, y = host_images[s:s + batch_size].to(dev), host_labels[s:s + batch_size].to(dev)
                    loss = criterion(model(normalize(x)), y)
                    loss.backward()
                    optimizer.step()
                    loss.item()  # note: a CPU-GPU sync point on every step
                _sync(dev)
                naive_seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous_threads)
    return dict(device=device, width=width, conv2_width=conv2_width, batch_size=batch_size,
                threads=threads if dev.type == "cpu" else None, steps=steps, warmup=warmup,
                images_per_second=steps * batch_size / train_seconds,
                step_ms=1000 * train_seconds / steps, data_ms=1000 * data_seconds / steps,
                naive_images_per_second=steps * batch_size / naive_seconds if naive_seconds else None,
                cpu_share=cpu_share, busy=cpu_share is not None and cpu_share < BUSY_SHARE,
                parameters=sum(p.numel() for p in model.parameters()))


def sweep(spec: SweepSpec, stop: Callable[[], bool] = lambda: False) -> Iterator[dict]:
    """Measure every combination, yielding each row as soon as it is measured. A point measured while the
    machine was busy (see measure's cpu_share) is measured once more and the faster of the two kept; it
    stays marked busy if the second was too."""
    for device, width, batch, threads in spec.combinations():
        if stop():
            return
        args = (device, width, batch, threads, spec.steps, spec.warmup, spec.conv2_width, spec.image_size,
                spec.channels, spec.num_classes)
        row = measure(*args)
        if row["busy"] and not stop():
            again = measure(*args)
            row = max(row, again, key=lambda r: r["images_per_second"])
            row["busy"] = row["busy"] and again["busy"]
        yield row


def save_last(root: str | os.PathLike, kind: str, data: dict) -> None:
    """Keep the last sweep or race of this server (kind: sweep, race) so a reloaded page shows it again."""
    from core.runs import atomic_write_json

    folder = Path(root) / ".speed"  # hidden: not a run folder
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / f"last-{kind}.json", {**data, "saved": time.time()})


def load_last(root: str | os.PathLike, kind: str) -> dict | None:
    """The last saved sweep or race, or None (none yet, or a damaged file)."""
    try:
        data = json.loads((Path(root) / ".speed" / f"last-{kind}.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- command line ---------------------------------------------------------------------------------

def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, not {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    from core.cli import _Parser

    p = _Parser(prog="python -m core.speed", description="Training images/s per device, width and batch size.")
    p.add_argument("--devices", default="cpu", help="comma-separated: cpu,cuda,mps (default cpu)")
    p.add_argument("--widths", type=_ints, default=SweepSpec.widths, help="conv widths, e.g. 6,32,128")
    p.add_argument("--batch-sizes", type=_ints, default=SweepSpec.batch_sizes)
    p.add_argument("--threads", type=_ints, default=(0,), help="CPU thread counts, e.g. 1,2 (0 = all cores)")
    p.add_argument("--steps", type=int, default=SweepSpec.steps, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=SweepSpec.warmup, help="untimed steps first")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    args = p.parse_args(argv)
    try:
        spec = SweepSpec(devices=tuple(d.strip() for d in args.devices.split(",") if d.strip()),
                         widths=args.widths, batch_sizes=args.batch_sizes, threads=args.threads,
                         steps=args.steps, warmup=args.warmup)
    except SpeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.json:
        print(f"{'device':>6s} {'threads':>7s} {'batch':>5s} {'width':>5s} {'images/s':>10s} {'step ms':>8s} "
              f"{'data ms':>8s}")
    for row in sweep(spec):
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{row['device']:>6s} {str(row['threads'] or '-'):>7s} {row['batch_size']:5d} {row['width']:5d} "
                  f"{row['images_per_second']:10,.0f} {row['step_ms']:8.2f} {row['data_ms']:8.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
