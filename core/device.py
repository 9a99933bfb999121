"""The device a run trains on, and how its CPU is used: threads, convolution kernels, malloc.

    resolve_device("auto")              -> torch.device: the fastest present (cuda, mps, else cpu)
    choose_threads(config, device)      -> CPU threads: one for tiny batches, all cores for large ones
    with cpu_kernels(device, batch):    the convolution kernels that measured faster at this batch size
    keep_freed_memory()                 glibc keeps what a step frees, for the next step (once per process)

Measured numbers behind each choice: docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys

import torch

from core.config import TrainConfig


class DeviceError(ValueError):
    """The chosen device does not exist on this machine."""


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(name: str) -> torch.device:
    """'auto' picks the fastest device present; asking for an absent one is a clear error."""
    present = available_devices()
    if name == "auto":
        return torch.device(present[1] if len(present) > 1 else "cpu")
    if name not in present:
        raise DeviceError(f"device {name!r} is not available on this machine (available: {', '.join(present)}); "
                          "choose one of those or 'auto'")
    return torch.device(name)


def choose_threads(config: TrainConfig, device: torch.device, processes: int = 1) -> int:
    """CPU threads: tiny batches run faster on one thread (less synchronization than work); see benchmarks/.
    Processes training side by side on one machine (DDP) share its cores."""
    if config.threads:
        return config.threads
    if device.type != "cpu":
        return 1
    return 1 if config.batch_size <= 8 else max(1, (os.cpu_count() or 1) // processes)


mkldnn_default = torch.backends.mkldnn.enabled


@contextlib.contextmanager
def cpu_kernels(device: torch.device, batch_size: int):
    """At batch sizes up to 4, PyTorch's plain convolution kernels beat oneDNN's on a CPU (measured: ~1.3x
    at the tutorial's batch 4, see benchmarks/); from batch 8 up oneDNN wins, by 3x at batch 32."""
    with _mkldnn(torch.backends.mkldnn.enabled and not (device.type == "cpu" and batch_size <= 4)):
        yield


def channels_last(device: torch.device, batch_size: int, distributed: bool = False) -> bool:
    """Train with the network and each batch in channels_last memory format: on a CPU where oneDNN runs the
    convolutions (batches above 4), the Fast preset's step took 1.33x the images a second (1.25x at batch 16;
    benchmarks/bench_fast_step.py, docs/benchmarks.md). One process only: DDP's gradient buckets were not measured."""
    return device.type == "cpu" and batch_size > 4 and not distributed


def cuda_kernels(device: torch.device):
    """On a CUDA GPU, cuDNN's deterministic convolution kernels: the same seed gives the same run there too
    (some of the faster ones add up in a different order each time)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, benchmark=False, deterministic=True)


def inference_kernels():
    """oneDNN's kernels as PyTorch sets them by default: faster for inference's big batches on a CPU."""
    return _mkldnn(mkldnn_default)


@contextlib.contextmanager
def _mkldnn(enabled: bool):
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


# glibc mallopt() parameters
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MALLOC_SETTINGS = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 1 << 30, M_TOP_PAD: 64 << 20}
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep the memory a training step frees, for the next step to reuse.

    By default glibc hands big freed blocks back to the OS and takes fresh pages on the next step: at
    batch 64 on CIFAR-10 that is 170,000-800,000 page faults an epoch, 0.6-3 s of kernel time, and how
    many depends on what the process did before (the dashboard's worker got more than the CLI). With
    fixed thresholds it is ~40,000, alike in every process (docs/benchmarks.md). Call it once, at the
    start of a process that trains. Returns whether it applied; a no-op off glibc, or when the user
    set glibc's MALLOC_* variables.
    """
    if not sys.platform.startswith("linux") or any(name in os.environ for name in MALLOC_ENV):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(param, value) == 1 for param, value in MALLOC_SETTINGS.items())
