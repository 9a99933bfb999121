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


def available_bytes(device: str = "cpu") -> int | None:
    """Memory free for a run on `device` (None where it cannot be told)."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info()
            return int(free)
        return None
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


# (channels, image size, classes, training images, test images) of the named datasets, for an estimate
# before one is loaded; an image folder is estimated as CIFAR-10-sized
SHAPES = {"cifar10": (3, 32, 10, 50000, 10000), "mnist": (1, 28, 10, 60000, 10000),
          "fashion-mnist": (1, 28, 10, 60000, 10000), "shapes": (3, 32, 10, 10000, 2000)}


def dataset_shape(name: str) -> dict:
    channels, size, classes, train, test = SHAPES.get(name, SHAPES["cifar10"])
    return dict(channels=channels, image_size=size, num_classes=classes, num_train=train, num_test=test)


def gigabytes(n: int) -> str:
    return f"{n / 2**30:.1f} GB"


def check_fits(config: TrainConfig, device: str, **shape) -> None:
    """ConfigError, with the estimate and the free memory, when the run cannot fit (`shape`: see estimate)."""
    need = estimate_bytes(config, **shape)
    free = available_bytes(device)
    if free is not None and need > free:
        raise ConfigError(f"this run needs about {gigabytes(need)} of memory at its peak (batch "
                          f"{config.batch_size}, conv widths {config.conv_width}/{config.conv2_width}), more than "
                          f"the {gigabytes(free)} free on this machine's {device.split(':')[0].upper()}: lower the "
                          "batch size or the widths")
