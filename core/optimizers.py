"""The update rules the tutorial names, as torch.optim builds them: SGD (with momentum and Nesterov), Adam, RMSProp.

One place for the choices a run and the Step page share, so the Step page's check ("optimizer.step() gives the
same weights") is against exactly the optimizer the Train page trains with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.optim as optim

LABELS = {"sgd": "SGD (the tutorial)", "adam": "Adam", "rmsprop": "RMSProp"}
# torch.optim's defaults, which this app keeps: Adam's betas and eps, RMSProp's alpha and eps
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
RMSPROP_ALPHA, RMSPROP_EPS = 0.99, 1e-8


@dataclass(frozen=True)
class Rule:
    """An optimizer and its settings. Momentum and Nesterov are SGD's; Adam and RMSProp take their defaults."""

    optimizer: str = "sgd"
    lr: float = 0.001
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0

    @classmethod
    def of(cls, config) -> "Rule":
        """The rule a TrainConfig trains with."""
        return cls(config.optimizer, config.lr, config.momentum, config.nesterov)


def build(params: Iterable[torch.Tensor], rule: Rule, device: torch.device, tensor_lr: bool = False) -> optim.Optimizer:
    """torch.optim's optimizer for the rule. On a CPU or CUDA GPU, SGD and Adam use their fused kernels (one kernel
    for all parameters: fewer launches a step); RMSProp has none. tensor_lr (SGD on a GPU): the learning rate lives
    in device memory, so a step recorded as a CUDA graph reads the value a scheduler sets."""
    fused = (device.type in ("cpu", "cuda")) or None
    if rule.optimizer == "adam":
        return optim.Adam(params, lr=rule.lr, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=rule.weight_decay,
                          fused=fused)
    if rule.optimizer == "rmsprop":
        return optim.RMSprop(params, lr=rule.lr, alpha=RMSPROP_ALPHA, eps=RMSPROP_EPS,
                             weight_decay=rule.weight_decay)
    if rule.optimizer != "sgd":
        raise ValueError(f"unknown optimizer {rule.optimizer!r}")
    lr = torch.tensor(float(rule.lr), dtype=torch.float32, device=device) if tensor_lr else rule.lr
    return optim.SGD(params, lr=lr, momentum=rule.momentum, nesterov=rule.nesterov, weight_decay=rule.weight_decay,
                     fused=fused)
