"""How much memory a training run needs at its peak, estimated before its first step, and what is free.

A config can be valid and still not fit: widths 1024/1024 at batch 4096 ask for 13 GB in one tensor on the
first step. Such a run is refused before it starts, with the estimate, instead of taking the machine down.
"""

from __future__ import annotations

import os

from core.config import ConfigError, TrainConfig
from core.model import KERNEL, POOL, ModelArgs, conv_output_size

FLOAT = 4
# each activation kept for the backward pass is matched by its gradient there, with room for the kernels'
# own scratch space (measured below this on a CPU with oneDNN for the tutorial's net at batch 4 to 1024)
BACKWARD_FACTOR = 3


def estimate_bytes(config: TrainConfig, channels: int = 3, image_size: int = 32, num_classes: int = 10,
                   num_train: int = 50000, num_test: int = 10000) -> int:
    """Peak bytes of a run: activations of a batch (forward and backward), the weights with their gradients
    and momentum, the dataset (uint8) with the shuffled copy of each epoch, and the test set's logits."""
    args = ModelArgs(channels, image_size, num_classes, config.conv_width, config.conv2_width)
    c1 = conv_output_size(image_size)
    p1 = c1 // POOL
    c2 = conv_output_size(p1)
    p2 = c2 // POOL
    w1, w2 = config.conv_width, config.conv2_width
    per_image = (channels * image_size**2  # the normalized input
                 + 2 * w1 * c1**2 + 3 * w1 * p1**2  # conv1 and its ReLU; the pool and its int64 indices
                 + 2 * w2 * c2**2 + 3 * w2 * p2**2
                 + 2 * (120 + 84) + num_classes)
    activations = BACKWARD_FACTOR * FLOAT * per_image * config.batch_size
    parameters = (channels * w1 * KERNEL**2 + w1) + (w1 * w2 * KERNEL**2 + w2) + (args.flat_features * 120 + 120) \
        + (120 * 84 + 84) + (84 * num_classes + num_classes)
    weights = 4 * FLOAT * parameters  # weights, gradients, momentum, the fused step's temporaries
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
