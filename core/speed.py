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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn as nn

from core.cli import ArgParser
from core.config import TrainConfig, setting_label, setting_problem
from core.data import Normalizer
from core.device import available_devices, cpu_kernels, cuda_kernels
from core.model import ModelArgs, Net
from core.train_step import make_optimizer, make_step

BUSY_SHARE = 0.75  # a CPU point whose threads got less of the CPU than this was measured on a busy machine
# a scaling bar of several processes: rank 0 also waits for the others at every step's all-reduce (quiet, 2
# processes: 0.86 here; with two programs busy on each core: 0.64, and the one-process bars 0.33-0.39)
BUSY_SHARE_DDP = 0.5


class SpeedError(ValueError):
    """Bad sweep settings; the message says which and why."""


class CannotKeep(OSError):
    """A measurement could not be written to the runs folder; the message says where and why, in one line."""


def check_settings(*pairs: tuple[tuple, str]) -> None:
    """(values, setting name) pairs: at least one value each, every one within TrainConfig's bounds for that
    setting; SpeedError with validation's own words otherwise."""
    for values, setting in pairs:
        problem = next((p for p in map(lambda v: setting_problem(setting, v), values) if p), None)
        if not values or problem:
            raise SpeedError(problem or f"choose at least one {setting_label(setting).lower()}")


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep measures: every device x thread count x batch size x width, of the network `model` (whose
    conv width each point replaces). Widths, batch sizes and thread counts take TrainConfig's bounds."""

    devices: tuple[str, ...] = ("cpu",)
    widths: tuple[int, ...] = (6, 16, 32, 64, 128, 256)
    batch_sizes: tuple[int, ...] = (4, 64)
    threads: tuple[int, ...] = (0,)  # CPU thread counts to try; 0 = all cores
    steps: int = 20
    warmup: int = 5
    model: ModelArgs = ModelArgs()

    def __post_init__(self) -> None:
        present = available_devices()
        if not self.devices:
            raise SpeedError("choose at least one device")
        for d in self.devices:
            if d not in ("cpu", "cuda", "mps"):
                raise SpeedError(f"unknown device {d!r}: use cpu, cuda or mps")
            if d not in present:
                raise SpeedError(f"device {d!r} is not available on this machine (available: {', '.join(present)})")
        check_settings((self.widths, "conv_width"), (self.batch_sizes, "batch_size"), (self.threads, "threads"))
        if not isinstance(self.steps, int) or not 1 <= self.steps <= 10000:
            raise SpeedError("steps must be a whole number from 1 to 10000")
        if not isinstance(self.warmup, int) or not 0 <= self.warmup <= 1000:
            raise SpeedError("warm-up steps must be a whole number from 0 to 1000")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SweepSpec":
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "model"}
        return cls(**values, model=ModelArgs(**data.get("model", {})))

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


class Bench:
    """One point's network, optimizer and random data, resident on the device as in training."""

    def __init__(self, dev: torch.device, model: ModelArgs, batch_size: int, seed: int):
        torch.manual_seed(seed)
        self.dev, self.batch_size = dev, batch_size
        self.model = Net(model).to(dev)
        self.optimizer = make_optimizer(self.model, TrainConfig(dataset="shapes", batch_size=batch_size), dev)
        self.criterion = nn.CrossEntropyLoss()
        channels = model.in_channels
        self.normalize = Normalizer((0.5,) * channels, (0.5,) * channels, dev)
        g = torch.Generator().manual_seed(seed)
        pool = max(batch_size * 4, 256)
        self.host_images = torch.randint(0, 256, (pool, channels, model.image_size, model.image_size),
                                         dtype=torch.uint8, generator=g)
        self.host_labels = torch.randint(0, model.num_classes, (pool,), generator=g)
        self.images, self.labels = self.host_images.to(dev), self.host_labels.to(dev)
        self.batches = pool // batch_size
        self.step_fn = make_step(self.model, self.criterion, self.optimizer, self.normalize, dev, batch_size,
                                 self.images, self.labels)

    def batch(self, i: int) -> slice:
        s = (i % self.batches) * self.batch_size
        return slice(s, s + self.batch_size)

    def train_seconds(self, steps: int, warmup: int) -> tuple[float, float]:
        """(wall seconds, CPU seconds) of `steps` training steps after `warmup` untimed ones."""
        for i in range(warmup):
            self.step_fn(self.images[self.batch(i)], self.labels[self.batch(i)])
        _sync(self.dev)
        started, cpu_started = time.perf_counter(), time.process_time()
        for i in range(steps):  # no .item() here: on a GPU that would wait for every step
            self.step_fn(self.images[self.batch(i)], self.labels[self.batch(i)])
        _sync(self.dev)
        return time.perf_counter() - started, time.process_time() - cpu_started

    def data_seconds(self, steps: int) -> float:
        """Moving data: host uint8 batch -> device, then normalize; what a per-step DataLoader copy costs."""
        _sync(self.dev)
        started = time.perf_counter()
        for i in range(steps):
            self.normalize(self.host_images[self.batch(i)].to(self.dev, non_blocking=False))
        _sync(self.dev)
        return time.perf_counter() - started

    def naive_seconds(self, steps: int) -> float:
        """The tutorial's way on a GPU: copy each batch over and read the loss every step."""
        started = time.perf_counter()
        for i in range(steps):
            self.optimizer.zero_grad()
            x, y = self.host_images[self.batch(i)].to(self.dev), self.host_labels[self.batch(i)].to(self.dev)
            loss = self.criterion(self.model(self.normalize(x)), y)
            loss.backward()
            self.optimizer.step()
            loss.item()  # note: a CPU-GPU sync point on every step
        _sync(self.dev)
        return time.perf_counter() - started


def measure(device: str, width: int, batch_size: int, threads: int = 0, steps: int = 20, warmup: int = 5,
            model: ModelArgs = ModelArgs(), seed: int = 0) -> dict:
    """One row: training images/s with the data on the device, and the cost of bringing a batch from the host."""
    dev = torch.device(device)
    threads = threads or os.cpu_count() or 1
    previous_threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(threads)
    try:
        with cpu_kernels(dev, batch_size), cuda_kernels(dev):
            bench = Bench(dev, replace(model, conv_width=width), batch_size, seed)
            train_seconds, cpu_seconds = bench.train_seconds(steps, warmup)
            data_seconds = bench.data_seconds(steps)
            naive_seconds = bench.naive_seconds(steps) if dev.type != "cpu" else None
    finally:
        torch.set_num_threads(previous_threads)
    # the CPU time this process got, as a share of what its threads could have had: well below 1 when another
    # program was busy on the same cores (the point then says more about that program)
    cpu_share = cpu_seconds / (train_seconds * threads) if dev.type == "cpu" else None
    return dict(device=device, width=width, conv2_width=model.conv2_width, batch_size=batch_size,
                threads=threads if dev.type == "cpu" else None, steps=steps, warmup=warmup,
                images_per_second=steps * batch_size / train_seconds,
                step_ms=1000 * train_seconds / steps, data_ms=1000 * data_seconds / steps,
                naive_images_per_second=steps * batch_size / naive_seconds if naive_seconds else None,
                cpu_share=cpu_share, busy=cpu_share is not None and cpu_share < BUSY_SHARE,
                parameters=sum(p.numel() for p in bench.model.parameters()))


def sweep(spec: SweepSpec, stop: Callable[[], bool] = lambda: False) -> Iterator[dict]:
    """Measure every combination, yielding each row as soon as it is measured. A point measured while the
    machine was busy (see measure's cpu_share) is measured once more and the faster of the two kept; it
    stays marked busy if the second was too."""
    for device, width, batch, threads in spec.combinations():
        if stop():
            return
        args = (device, width, batch, threads, spec.steps, spec.warmup, spec.model)
        row = measure(*args)
        if row["busy"] and not stop():
            again = measure(*args)
            row = max(row, again, key=lambda r: r["images_per_second"])
            row["busy"] = row["busy"] and again["busy"]
        yield row


# -- scaling out: the same training on 1, 2, ... processes (DDP, core/distributed.py) ----------------------

@dataclass(frozen=True)
class ScalingSpec:
    """Images/s of real training (python -m core.train on Shapes, the data made on this machine) on each number
    of processes, each with batch_size images a step and `threads` CPU threads (on CUDA one GPU each), for each
    width. On a CPU it also measures one process with every core's threads: the same cores, no DDP."""

    device: str = "cpu"
    widths: tuple[int, ...] = (6, 64)
    batch_size: int = 64
    processes: tuple[int, ...] = (1, 2)
    threads: int = 1
    steps: int = 60

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise SpeedError("scaling runs on cpu (gloo) or cuda (nccl)")
        if self.device not in available_devices():
            raise SpeedError(f"device {self.device!r} is not available on this machine")
        most = torch.cuda.device_count() if self.device == "cuda" else 64
        if not self.processes or any(not isinstance(n, int) or not 1 <= n <= most for n in self.processes):
            raise SpeedError(f"processes must be whole numbers from 1 to {most}")
        check_settings((self.widths, "conv_width"), ((self.batch_size,), "batch_size"), ((self.threads,), "threads"))
        if not isinstance(self.steps, int) or not 10 <= self.steps <= 10000:
            raise SpeedError("steps must be a whole number from 10 to 10000")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ScalingSpec":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def combinations(self) -> list[tuple[int, int, int]]:
        """(width, processes, threads each): the processes in order, and one process on every core last."""
        cores = os.cpu_count() or 1
        combos = [(w, n, self.threads) for w in self.widths for n in sorted(set(self.processes))]
        if self.device == "cpu" and cores > self.threads:
            combos += [(w, 1, cores) for w in self.widths]
        return combos


def scaling(spec: ScalingSpec, data_dir: str | os.PathLike,
            stop: Callable[[], bool] = lambda: False) -> Iterator[dict]:
    """Train spec.steps steps per combination (a run folder in a temporary directory, removed after); yield a
    row each: images/s (training only: not the start, not the evaluation) and the scaling efficiency, images/s
    divided by processes x one process's images/s (1.0 = perfect)."""
    import subprocess
    import tempfile

    from core.distributed import python_path

    single: dict[int, float] = {}
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": python_path()}
    for width, n, threads in spec.combinations():
        if stop():
            return
        with tempfile.TemporaryDirectory(prefix="cnn-scaling-") as runs:
            proc = subprocess.Popen([sys.executable, "-m", "core.train", "--dataset", "shapes", "--data-dir",
                                     str(data_dir), "--runs-dir", runs, "--device", spec.device, "--nproc", str(n),
                                     "--threads", str(threads), "--batch-size", str(spec.batch_size), "--width",
                                     str(width), "--lr", "0.01", "--epochs", "1000", "--max-steps", str(spec.steps),
                                     "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root,
                                    env=env)
            while True:
                try:
                    out, err = proc.communicate(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    if stop():  # SIGTERM: the run (and every rank) stops within a step
                        proc.terminate()
                        proc.communicate()
                        return
        if proc.returncode != 0:
            raise SpeedError(f"{n} process(es) at width {width} failed: "
                             f"{(err.strip().splitlines() or ['no message'])[-1]}")
        end = json.loads(out.strip().splitlines()[-1])
        rate = end["images_per_second"]
        if n == 1 and threads == spec.threads:
            single[width] = rate
        base = single.get(width)
        share = end.get("cpu_share")  # rank 0's: the CPU its threads got while it trained
        yield dict(device=spec.device, width=width, processes=n, threads=threads, batch_size=spec.batch_size,
                   global_batch_size=end["global_batch_size"], images_per_second=rate,
                   efficiency=rate / (n * base) if base and threads == spec.threads else None,
                   cpu_share=share, busy=share is not None and share < (BUSY_SHARE if n == 1 else BUSY_SHARE_DDP))


KEEP_RESULTS = 50  # speed results kept on disk (the oldest go first)


def keep_result(root: str | os.PathLike, kind: str, data: dict) -> None:
    """Keep a sweep or race (kind: sweep, race) among the speed results: the Runs page lists them (the newest
    KEEP_RESULTS), and a reloaded Speed page shows the newest of its kind (newest_result)."""
    from core.runs import atomic_write_json

    folder = Path(root) / ".speed"  # hidden: not a run folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{os.getpid() % 10000}.json",
                          {**data, "kind": kind, "saved": time.time()})
        for old in sorted(folder.glob("2*.json"))[:-KEEP_RESULTS]:
            old.unlink(missing_ok=True)
    except OSError as exc:  # a read-only or full runs folder: the result is still shown, just not kept
        raise CannotKeep(f"the {kind} could not be kept in {folder} ({exc.strerror or exc}); it is shown until "
                         "you leave the page") from None


def speed_results(root: str | os.PathLike) -> list[dict]:
    """The kept sweeps and races, newest first: {"kind", "saved", "rows" or "curves", ...}; damaged files skipped."""
    results = []
    for path in sorted((Path(root) / ".speed").glob("2*.json"), reverse=True):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        kind_ok = isinstance(data, dict) and data.get("kind") in ("sweep", "race", "scaling")
        if kind_ok and isinstance(data.get("saved"), float):
            results.append({**data, "file": path.name})
    return results


def newest_result(root: str | os.PathLike, kind: str) -> dict | None:
    """The newest kept sweep or race, or None (none yet, or only damaged files)."""
    return next((r for r in speed_results(root) if r["kind"] == kind), None)


# -- command line ---------------------------------------------------------------------------------

def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, not {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    p = ArgParser(prog="python -m core.speed", description="Training images/s per device, width and batch size.")
    p.add_argument("--devices", default="cpu", help="comma-separated: cpu,cuda,mps (default cpu)")
    p.add_argument("--widths", type=_ints, default=SweepSpec.widths, help="conv widths, e.g. 6,32,128")
    p.add_argument("--batch-sizes", type=_ints, default=SweepSpec.batch_sizes)
    p.add_argument("--threads", type=_ints, default=(0,), help="CPU thread counts, e.g. 1,2 (0 = all cores)")
    p.add_argument("--steps", type=int, default=SweepSpec.steps, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=SweepSpec.warmup, help="untimed steps first")
    p.add_argument("--processes", type=_ints, help="scaling instead: train on each number of processes (DDP), "
                   "e.g. 1,2 (--batch-sizes: the first, per process; --threads: the first, per process)")
    p.add_argument("--data-dir", default="data", help="where the Shapes set is made and cached (--processes)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    args = p.parse_args(argv)
    if args.processes:
        return scaling_main(args)
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


def scaling_main(args: argparse.Namespace) -> int:
    try:
        spec = ScalingSpec(device=args.devices.split(",")[0].strip(), widths=args.widths,
                           batch_size=args.batch_sizes[0], processes=args.processes, threads=args.threads[0] or 1,
                           steps=max(10, args.steps))
        for row in scaling(spec, args.data_dir):
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                efficiency = f"{row['efficiency']:.0%}" if row["efficiency"] is not None else "-"
                print(f"width {row['width']:4d}: {row['processes']} process(es) x {row['threads']} thread(s), "
                      f"global batch {row['global_batch_size']}: {row['images_per_second']:10,.0f} images/s, "
                      f"efficiency {efficiency}", flush=True)
    except SpeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
