"""The update rules the tutorial names, as torch.optim builds them: SGD (with momentum and Nesterov), Adam, RMSProp.

One place for the choices a run and the Step page share, so the Step page's check ("optimizer.step() gives the
same weights") is against the optimizer the Train page trains with. One exception, for speed: SGD on a CPU in one
process trains with `PlainSGD`, torch.optim.SGD's arithmetic over all the parameters at once (tests/test_optimizers.py:
the same weights as torch.optim.SGD, step by step). Any torch.optim optimizer imports torch._dynamo on its first use,
1.3-1.8 s of a command's start here, and updates the tutorial's ten tensors one by one (docs/benchmarks.md).
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


class PlainSGD:
    """SGD with momentum, Nesterov and weight decay, as torch.optim.SGD computes it, over all parameters at once.

    The parameters and their gradients are moved into one flat tensor each (the parameters keep their shapes and
    memory formats, as views of it), so an update is four operations on about 60,000 numbers instead of four on
    each of ten tensors: backward() adds each gradient into its view. Its momentum buffer is made from the first
    gradient, as torch.optim.SGD's is. What a run uses of torch.optim's interface: param_groups[0]["lr"] (a schedule
    sets it), zero_grad() and step(). Every parameter takes part in every step (a parameter without a gradient
    counts as a zero one); the tutorial's network gives all of them a gradient each step.
    """

    def __init__(self, params: Iterable[torch.Tensor], rule: Rule):
        self.params = [p for p in params if p.requires_grad]
        self.param_groups = [{"lr": rule.lr, "momentum": rule.momentum, "nesterov": rule.nesterov,
                              "weight_decay": rule.weight_decay}]
        first = self.params[0]
        if any(p.dtype != first.dtype or p.device != first.device or not dense(p) for p in self.params):
            raise ValueError("PlainSGD needs dense parameters of one type on one device")
        self.weights = torch.empty(sum(p.numel() for p in self.params), dtype=first.dtype, device=first.device)
        self.grads = torch.zeros_like(self.weights)
        self.buffer: torch.Tensor | None = None
        self.grad_views = []
        offset = 0
        with torch.no_grad():
            for p in self.params:
                self.weights.as_strided(p.shape, p.stride(), offset).copy_(p)
                p.set_(self.weights.untyped_storage(), offset, p.shape, p.stride())  # p is now a view of weights
                p.grad = self.grads.as_strided(p.shape, p.stride(), offset)
                self.grad_views.append(p.grad)
                offset += p.numel()

    def _gather(self) -> None:
        """Where something put a new tensor in a parameter's .grad, copy it back into the flat gradient."""
        for p, view in zip(self.params, self.grad_views):
            if p.grad is not view:
                if p.grad is None:
                    view.zero_()
                else:
                    view.copy_(p.grad)
                p.grad = view

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradients (kept, not set to None: backward() adds into them in place)."""
        self._gather()
        self.grads.zero_()

    @torch.no_grad()
    def step(self) -> None:
        self._gather()
        group = self.param_groups[0]
        lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
        grad = self.grads if not decay else self.grads.add(self.weights, alpha=decay)
        if momentum:
            if self.buffer is None:
                self.buffer = grad.clone()
            else:
                self.buffer.mul_(momentum).add_(grad)
            grad = grad.add(self.buffer, alpha=momentum) if group["nesterov"] else self.buffer
        self.weights.add_(grad, alpha=-lr)


def dense(t: torch.Tensor) -> bool:
    return t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))


def for_training(params: Iterable[torch.Tensor], rule: Rule, device: torch.device, tensor_lr: bool = False,
                 distributed: bool = False):
    """The optimizer a run trains with: PlainSGD for SGD on a CPU in one process (it needs no torch._dynamo, and
    updates everything at once), else build()'s. Under DDP the parameters stay where DDP registered them."""
    if rule.optimizer == "sgd" and device.type == "cpu" and not tensor_lr and not distributed:
        return PlainSGD(params, rule)
    return build(params, rule, device, tensor_lr)
