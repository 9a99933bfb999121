"""The tutorial's Net, with its sizes as arguments, and the layer-by-layer table the Network page shows."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

KERNEL, POOL = 5, 2


def conv_output_size(size: int, kernel: int = KERNEL, padding: int = 0, stride: int = 1) -> int:
    """The tutorial's formula: ((W - F + 2P) / S) + 1."""
    return (size - kernel + 2 * padding) // stride + 1


@dataclass(frozen=True)
class ModelArgs:
    in_channels: int = 3
    image_size: int = 32
    num_classes: int = 10
    conv_width: int = 6
    conv2_width: int = 16

    @property
    def final_size(self) -> int:
        """Side of conv2's output after the second pool (5 for 32x32 input)."""
        return conv_output_size(conv_output_size(self.image_size) // POOL) // POOL

    @property
    def flat_features(self) -> int:
        return self.conv2_width * self.final_size**2


class Net(nn.Module):
    def __init__(self, args: ModelArgs = ModelArgs()):
        super().__init__()
        if args.final_size < 1:
            raise ValueError(f"images of {args.image_size}x{args.image_size} are too small for two 5x5 convolutions "
                             "and two 2x2 pools; they must be at least 16x16")
        self.args = args
        self.conv1 = nn.Conv2d(args.in_channels, args.conv_width, KERNEL)
        self.pool = nn.MaxPool2d(POOL, POOL)
        self.conv2 = nn.Conv2d(args.conv_width, args.conv2_width, KERNEL)
        self.fc1 = nn.Linear(args.flat_features, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, args.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_pool1(self.pool(F.relu(self.conv1(x))))

    def after_pool1(self, x: torch.Tensor) -> torch.Tensor:
        """The layers after conv1 and its pooling (the Step page runs them alone, core/step.py)."""
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)  # flatten all dimensions except batch
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """conv1 and conv2 activations (after ReLU) for the Network page."""
        conv1 = F.relu(self.conv1(x))
        conv2 = F.relu(self.conv2(self.pool(conv1)))
        return {"conv1": conv1, "conv2": conv2}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def layer_table(args: ModelArgs) -> list[dict]:
    """Each step of the forward pass: output shape, the size formula filled in, parameters, multiply-adds.

    Pure arithmetic, so the Network page can redraw it for any width without building a model.
    """
    c, s = args.in_channels, args.image_size
    rows = [dict(layer="input", operation=f"{c} colour channel{'s' if c > 1 else ''} of {s}x{s} pixels",
                 shape=(c, s, s), formula="", parameters=0, mult_adds=0)]

    def conv(name: str, c_in: int, c_out: int, size: int) -> int:
        out = conv_output_size(size)
        params = c_out * (c_in * KERNEL * KERNEL + 1)
        rows.append(dict(layer=name, operation=f"Conv2d({c_in}, {c_out}, {KERNEL}) + ReLU", shape=(c_out, out, out),
                         formula=f"(({size} - {KERNEL} + 2·0) / 1) + 1 = {out}", parameters=params,
                         mult_adds=c_out * out * out * c_in * KERNEL * KERNEL))
        return out

    def pool(name: str, channels: int, size: int) -> int:
        out = size // POOL
        rows.append(dict(layer=name, operation=f"MaxPool2d({POOL}, {POOL})", shape=(channels, out, out),
                         formula=f"(({size} - {POOL} + 2·0) / {POOL}) + 1 = {out}", parameters=0, mult_adds=0))
        return out

    s = conv("conv1", c, args.conv_width, s)
    s = pool("pool1", args.conv_width, s)
    s = conv("conv2", args.conv_width, args.conv2_width, s)
    s = pool("pool2", args.conv2_width, s)
    flat = args.conv2_width * s * s
    rows.append(dict(layer="flatten", operation="torch.flatten(x, 1)", shape=(flat,),
                     formula=f"{args.conv2_width} · {s} · {s} = {flat}", parameters=0, mult_adds=0))
    for name, n_in, n_out, act in (("fc1", flat, 120, " + ReLU"), ("fc2", 120, 84, " + ReLU"),
                                   ("fc3", 84, args.num_classes, "")):
        rows.append(dict(layer=name, operation=f"Linear({n_in}, {n_out}){act}", shape=(n_out,),
                         formula=f"{n_in} · {n_out} weights + {n_out} biases", parameters=n_in * n_out + n_out,
                         mult_adds=n_in * n_out))
    return rows


