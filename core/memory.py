"""How much memory a training run needs at its peak, estimated before its first step, and what is free.

A config can be valid and still not fit: widths 1024/1024 at batch 4096 ask for 13 GB in one tensor on the
first step. Such a run is refused before it starts, with the estimate, instead of taking the machine down.
"""

from __future__ import annotations

import math
import os

from core.config import ConfigError, TrainConfig
from core.model import ModelArgs, layer_table

FLOAT = 4
# each activation kept for the backward pass is matched by its gradient there, with room for the kernels'
# own scratch space (measured below this on a CPU with oneDNN for the tutorial's net at batch 4 to 1024)
BACKWARD_FACTOR = 3


# floats kept per element of a layer's output for the backward pass: a convolution's output and its ReLU's;
# a pool's output and its int64 indices; a linear layer's output (and its ReLU's, but the last's)
KEPT = {"input": 1, "conv1": 2, "pool1": 3, "conv2": 2, "pool2": 3, "flatten": 0, "fc1": 2, "fc2": 2, "fc3": 1}


def estimate_bytes(config: TrainConfig, channels: int = 3, image_size: int = 32, num_classes: int = 10,
                   num_train: int = 50000, num_test: int = 10000) -> int:
    """Peak bytes of a run: activations of a batch (forward and backward), the weights with their gradients
    and momentum, the dataset (uint8) with the shuffled copy of each epoch, and the test set's logits.
    The shapes and parameters come from the model's own layer table (the Network page's)."""
    rows = layer_table(ModelArgs(channels, image_size, num_classes, config.conv_width, config.conv2_width))
    per_image = sum(KEPT[r["layer"]] * math.prod(r["shape"]) for r in rows)
    activations = BACKWARD_FACTOR * FLOAT * per_image * config.batch_size
    weights = 4 * FLOAT * sum(r["parameters"] for r in rows)  # weights, gradients, momentum, the step's temporaries
    data = (2 * num_train + num_test) * channels * image_size**2  # uint8; each epoch gathers a shuffled copy
    evaluation = FLOAT * per_image * min(num_test, 1000)  # inference runs the test set in chunks
    return int(activations + weights + data + evaluation)


def available_bytes(device: str = "cpu", cgroup: str = "/sys/fs/cgroup") -> int | None:
    """Memory free for a run on `device` (None where it cannot be told): on a CPU the machine's, or less where
    this process's cgroup (a container, a systemd slice) allows less."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info()
            return int(free)
        return None
    machine = _machine_available()
    allowed = _cgroup_available(cgroup)
    if machine is None or allowed is None:
        return machine if allowed is None else allowed
    return min(machine, allowed)


def _machine_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available(root: str) -> int | None:
    """What this process's cgroup still allows: v2's memory.max less memory.current, or v1's limit less usage;
    None where there is no limit or no cgroup to read."""
    for limit_file, used_file in (("memory.max", "memory.current"),
                                  ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = open(os.path.join(root, limit_file)).read().strip()
            used = int(open(os.path.join(root, used_file)).read().strip())
        except (OSError, ValueError):
            continue
        return max(0, int(limit) - used) if limit.isdigit() else None  # "max": no limit
    return None


# (channels, image size, classes, training images, test images) of the named datasets, for an estimate
# before one is loaded; an image folder is estimated as CIFAR-10-sized
SHAPES = {"cifar10": (3, 32, 10, 50000, 10000), "mnist": (1, 28, 10, 60000, 10000),
          "fashion-mnist": (1, 28, 10, 60000, 10000), "shapes": (3, 32, 10, 10000, 2000)}


def dataset_shape(name: str) -> dict:
    channels, size, classes, train, test = SHAPES.get(name, SHAPES["cifar10"])
    return dict(channels=channels, image_size=size, num_classes=classes, num_train=train, num_test=test)


def gigabytes(n: int) -> str:
    return f"{n / 2**30:.1f} GB"


PROCESS_BYTES = 400 * 2**20  # a process of its own (Python, torch, gloo) before it holds any data


def check_fits(config: TrainConfig, device: str, processes: int = 1, **shape) -> None:
    """ConfigError, with the estimate and the free memory, when the run cannot fit (`shape`: see estimate).
    `processes`: a data-parallel run about to start on this machine's CPU, each process with its own copy."""
    one = estimate_bytes(config, **shape)
    need = one if processes == 1 else processes * (one + PROCESS_BYTES)
    free = available_bytes(device)
    if free is not None and need > free:
        each = "" if processes == 1 else f"{processes} processes x {gigabytes(one + PROCESS_BYTES)}, "
        raise ConfigError(f"this run needs about {gigabytes(need)} of memory at its peak ({each}batch "
                          f"{config.batch_size}, conv widths {config.conv_width}/{config.conv2_width}), more than "
                          f"the {gigabytes(free)} free on this machine's {device.split(':')[0].upper()}: lower the "
                          f"{'processes, the ' if processes > 1 else ''}batch size or the widths")
