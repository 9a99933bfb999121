"""One training step, and what sets its pace: the optimizer, the learning-rate schedule, the step itself.

    optimizer = make_optimizer(model, config, device)      the config's update rule (core/optimizers.py)
    scheduler = make_scheduler(optimizer, config, steps)   one-cycle, or None for the tutorial's constant rate
    step = make_step(model, criterion, optimizer, ...)     step(images, labels) -> loss: the tutorial's four
                                                           lines, or on a CUDA GPU the same recorded once as a
                                                           CUDA graph and replayed (CudaGraphStep)
"""

from __future__ import annotations

import sys
from typing import Callable

import torch
import torch.nn as nn
import torch.optim as optim

from core import optimizers
from core.config import TrainConfig
from core.data import Normalizer
from core.optimizers import PlainSGD, Rule


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> "optim.Optimizer | PlainSGD":
    """The config's update rule (core/optimizers.py): SGD on a CPU in one process is PlainSGD. SGD on a GPU keeps its
    learning rate in GPU memory, so a step recorded as a CUDA graph reads the value a scheduler sets (fill_) instead
    of the one it was recorded with."""
    return optimizers.for_training(model.parameters(), Rule.of(config), device,
                                   tensor_lr=device.type == "cuda" and config.optimizer == "sgd",
                                   distributed=isinstance(model, nn.parallel.DistributedDataParallel))


Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _eager_step(model: nn.Module, criterion: nn.Module, optimizer: optim.Optimizer, normalize: Normalizer,
                x: torch.Tensor, y: torch.Tensor, set_to_none: bool = True) -> torch.Tensor:
    """The tutorial's four lines: zero the gradients, forward and loss, backward, update."""
    optimizer.zero_grad(set_to_none=set_to_none)
    loss = criterion(model(normalize(x)), y)
    loss.backward()
    optimizer.step()
    return loss


def make_step(model: nn.Module, criterion: nn.Module, optimizer: optim.Optimizer, normalize: Normalizer,
              device: torch.device, batch_size: int, images: torch.Tensor, labels: torch.Tensor,
              cuda_graph: bool = True) -> Step:
    """One optimizer step, `step(images, labels) -> loss` (a tensor on the device; reading it is up to the caller).

    On a CUDA GPU the step is recorded once as a CUDA graph and replayed (see CudaGraphStep); anywhere
    else, or with cuda_graph=False, it is the tutorial's four lines.
    """
    def eager(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _eager_step(model, criterion, optimizer, normalize, x, y)

    if device.type == "cuda" and cuda_graph:
        try:
            return CudaGraphStep(model, criterion, optimizer, normalize, batch_size, images, labels)
        except RuntimeError as exc:  # a GPU or driver that cannot record graphs: train step by step
            print(f"note: could not record the training step as a CUDA graph ({exc}); "
                  "training step by step instead", file=sys.stderr)
            optimizer.zero_grad(set_to_none=True)
    return eager


class CudaGraphStep:
    """A training step recorded once as a CUDA graph, then replayed: one launch instead of ~60.

    The tutorial's network is so small that on a GPU each step is mostly the CPU launching kernels
    (forward, loss, backward and update: dozens of launches of a few microseconds each, most of them
    doing almost no work). A CUDA graph launches the whole recorded sequence at once. The batch is
    copied into fixed input tensors first, since the graph always reads the same memory.

    Recording needs a few real steps first (on a side stream, as PyTorch requires); the weights and
    momentum are put back afterwards, so training starts from exactly the model it was given. A batch
    of another size (an epoch's last, smaller one) runs eagerly on the same weights and gradients.
    """

    WARMUP_STEPS = 3

    def __init__(self, model: nn.Module, criterion: nn.Module, optimizer: optim.Optimizer, normalize: Normalizer,
                 batch_size: int, images: torch.Tensor, labels: torch.Tensor):
        self.model, self.criterion, self.optimizer, self.normalize = model, criterion, optimizer, normalize
        self.batch_size = batch_size
        self.x = images[:1].new_zeros((batch_size, *images.shape[1:]))
        self.y = labels[:1].new_zeros((batch_size,))
        params = list(model.parameters())
        saved = [p.detach().clone() for p in params]
        try:
            side = torch.cuda.Stream(images.device)
            side.wait_stream(torch.cuda.current_stream(images.device))
            with torch.cuda.stream(side):
                for _ in range(self.WARMUP_STEPS):
                    optimizer.zero_grad(set_to_none=True)
                    criterion(model(normalize(self.x)), self.y).backward()
                    optimizer.step()
            torch.cuda.current_stream(images.device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            optimizer.zero_grad(set_to_none=True)
            # thread_local: another thread's CUDA work (a second job in a test's thread worker) does not
            # break this recording
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                loss = criterion(model(normalize(self.x)), self.y)
                loss.backward()
                optimizer.step()
            # keep the loss's memory, not its autograd graph (which would pin the recording's stream
            # to the parameters' gradient accumulators and slow the eager steps)
            self.loss = loss.detach()
            del loss
        finally:
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)
                # a zero momentum buffer gives exactly SGD's first step (buffer = gradient)
                for state in optimizer.state.values():
                    if state.get("momentum_buffer") is not None:
                        state["momentum_buffer"].zero_()

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if len(labels) != self.batch_size:
            # zero the gradients in place: the graph reads and writes these very tensors
            return _eager_step(self.model, self.criterion, self.optimizer, self.normalize, images, labels,
                               set_to_none=False).detach()
        self.x.copy_(images)
        self.y.copy_(labels)
        self.graph.replay()
        return self.loss


def one_cycle_lr(max_lr: float, total_steps: int, step: int) -> float:
    """The one-cycle schedule's learning rate after `step` scheduler steps (0: the first training step's), as torch's
    OneCycleLR(pct_start=0.25, anneal_strategy="linear", div_factor=25, final_div_factor=1e4) computes it, operation
    for operation: linear from max_lr/25 up to max_lr over the first quarter, then down to max_lr/250,000. A run of
    one step counts as two; before the first step and past the last the rate is the first's or the last's."""
    total_steps = max(total_steps, 2)
    step = min(max(step, 0), total_steps - 1)
    start = max_lr / 25.0
    low = start / 1e4
    up_end, down_end = float(0.25 * total_steps) - 1, total_steps - 1
    if step <= up_end:
        return (max_lr - start) * (step / up_end) + start
    return (low - max_lr) * ((step - up_end) / (down_end - up_end)) + max_lr


class OneCycle:
    """One-cycle: the learning rate climbs to config.lr over the first quarter of the steps, then falls to almost 0.
    Sets the optimizer's param_groups' lr (a GPU tensor in place, for a recorded CUDA graph) like torch's OneCycleLR,
    which it replaces so that PlainSGD, no torch.optim.Optimizer, can be scheduled (tests: the same values)."""

    def __init__(self, optimizer, max_lr: float, total_steps: int):
        self.optimizer, self.max_lr, self.total_steps, self.steps = optimizer, max_lr, total_steps, 0
        self._set(one_cycle_lr(self.max_lr, self.total_steps, 0))

    def _set(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def step(self) -> None:
        """After each training step; past the last step the rate stays at its end."""
        self.steps += 1
        self._set(one_cycle_lr(self.max_lr, self.total_steps, self.steps))


def make_scheduler(optimizer, config: TrainConfig, total_steps: int) -> OneCycle | None:
    """one-cycle (OneCycle), or None for the tutorial's constant rate."""
    if config.schedule != "one-cycle":
        return None
    return OneCycle(optimizer, config.lr, total_steps)
