"""Inside one training step: forward, loss, backward and the update, with every number kept for the Step page.

The tutorial's loop does four things a step, and two of its tellings write the last one by hand:

    optimizer.zero_grad()                 # gradients add up across backward() calls unless cleared
    loss = criterion(net(inputs), labels) # forward, and the loss
    loss.backward()                       # every weight gets its .grad
    for f in net.parameters():            # the update, what optimizer.step() does for plain SGD
        f.data.sub_(f.grad.data * learning_rate)

`Stepper` takes such steps on one network and keeps what each did (`StepResult`). The update is written out
here by hand for SGD (momentum, Nesterov), Adam and RMSProp (`hand_update`), and every step is checked against
torch.optim's own `optimizer.step()` on a copy, over every parameter (`torch_update`). Pure torch: the page
only draws what these return.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from core.data import Dataset, Normalizer
from core.model import Net
from core.optimizers import ADAM_BETAS, ADAM_EPS, RMSPROP_ALPHA, RMSPROP_EPS, Rule, build

LOSSES = {"cross-entropy": "Cross-entropy (the tutorial)", "mse": "MSE on one-hot targets (nn.MSELoss)"}
CURVE_POINTS = 25  # the loss along the step: lr/100 to 100·lr, lr itself the middle one
STATE_NAMES = {"momentum_buffer": "buf", "exp_avg": "m", "exp_avg_sq": "v", "square_avg": "v"}
Tensors = dict[str, torch.Tensor]


# -- forward and loss -------------------------------------------------------------------------------

def per_image_losses(scores: torch.Tensor, labels: torch.Tensor, loss: str = "cross-entropy") -> torch.Tensor:
    """Each image's loss: cross-entropy -ln p(true class), or MSE between the scores and the one-hot target (the
    mean over the classes, as nn.MSELoss takes it). The batch's loss is their mean."""
    if loss == "cross-entropy":
        return F.cross_entropy(scores, labels, reduction="none")
    if loss == "mse":
        target = F.one_hot(labels, scores.shape[1]).to(scores.dtype)
        return ((scores - target) ** 2).mean(dim=1)
    raise ValueError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}")


def score_gradient(scores: torch.Tensor, label: int, loss: str) -> torch.Tensor:
    """d(one image's loss)/d(its scores): cross-entropy p - onehot, MSE 2·(s - onehot)/classes. In the batch's
    loss each image's share is this divided by the batch size."""
    target = F.one_hot(torch.tensor(label), scores.shape[0]).to(scores.dtype)
    if loss == "cross-entropy":
        return torch.softmax(scores, 0) - target
    return 2 * (scores - target) / scores.shape[0]


# -- the update rules, by hand ------------------------------------------------------------------------

def hand_update(w: torch.Tensor, g: torch.Tensor, state: Tensors, rule: Rule, t: int) -> tuple[torch.Tensor, Tensors,
                                                                                               torch.Tensor]:
    """One parameter's update, written out as the textbooks (and torch.optim's documentation) give it.

    w: the weights, g: their gradient, state: the optimizer's memory of this parameter before the step
    (torch.optim's names: momentum_buffer, exp_avg, exp_avg_sq, square_avg), t: the step's number, from 1.
    Returns (new weights, new state, d), where the new weights are w - lr·d: d is the step's direction.
    """
    if rule.weight_decay:
        g = g + rule.weight_decay * w  # L2 weight decay: part of the gradient, as torch.optim adds it
    if rule.optimizer == "sgd":
        if not rule.momentum:
            return w - rule.lr * g, {}, g
        # the first step's buffer is the gradient itself, which is μ·0 + g
        buf = rule.momentum * state["momentum_buffer"] + g if "momentum_buffer" in state else g.clone()
        d = g + rule.momentum * buf if rule.nesterov else buf
        return w - rule.lr * d, {"momentum_buffer": buf}, d
    if rule.optimizer == "adam":
        (b1, b2), zero = ADAM_BETAS, torch.zeros_like(w)
        m = b1 * state.get("exp_avg", zero) + (1 - b1) * g
        v = b2 * state.get("exp_avg_sq", zero) + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)  # bias corrections: m and v start at 0
        d = m_hat / (v_hat.sqrt() + ADAM_EPS)
        return w - rule.lr * d, {"exp_avg": m, "exp_avg_sq": v}, d
    if rule.optimizer == "rmsprop":
        v = RMSPROP_ALPHA * state.get("square_avg", torch.zeros_like(w)) + (1 - RMSPROP_ALPHA) * g * g
        d = g / (v.sqrt() + RMSPROP_EPS)
        return w - rule.lr * d, {"square_avg": v}, d
    raise ValueError(f"unknown optimizer {rule.optimizer!r}")


def torch_update(params: Tensors, grads: Tensors, state: dict[str, Tensors], rule: Rule, t: int) -> Tensors:
    """The same step by torch.optim's own optimizer.step(), as the Train page builds it, on copies of the weights
    given the same gradients and the same state (step t-1's)."""
    copies = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    optimizer = build(copies.values(), rule, torch.device("cpu"))
    for name, p in copies.items():
        p.grad = grads[name].clone()
        if state.get(name):
            optimizer.state[p] = {k: v.clone() for k, v in state[name].items()}
            if rule.optimizer != "sgd":
                optimizer.state[p]["step"] = torch.tensor(float(t - 1))
    optimizer.step()
    return {n: p.detach() for n, p in copies.items()}


def largest_difference(a: Tensors, b: Tensors) -> float:
    """The largest |a - b| over every parameter; where both are the same infinity, or both NaN, 0."""
    worst = 0.0
    for name in a:
        x, y = a[name], b[name]
        same = (x == y) | (torch.isnan(x) & torch.isnan(y))
        gap = torch.where(same, torch.zeros_like(x), (x - y).abs())
        largest = float(gap.max()) if gap.numel() else 0.0
        if math.isnan(largest):  # a NaN on one side only
            return largest
        worst = max(worst, largest)
    return worst


# -- one step, kept --------------------------------------------------------------------------------------

@dataclass
class StepResult:
    """Everything one step did, for drawing: the batch, forward, backward, the update and its effect."""

    step: int  # 1 for the network's first step here
    rule: Rule
    loss_name: str
    images: torch.Tensor  # uint8 (B, C, H, W)
    labels: torch.Tensor
    scores: torch.Tensor  # the network's outputs (logits), (B, classes)
    losses: torch.Tensor  # each image's loss
    loss: float  # the batch's loss before the step: the mean of `losses`
    loss_after: float  # the same batch's loss after the step
    grads: Tensors  # the gradients the update used (with zero_grad skipped: the sum of two backward passes)
    left_over: Tensors | None  # with zero_grad skipped: the gradient left from the last backward, added to
    before: Tensors  # weights before the step
    after: Tensors  # weights after it, by the hand-written rule
    direction: Tensors  # d in w_new = w - lr·d
    state_before: dict[str, Tensors]
    state_after: dict[str, Tensors]
    torch_difference: float  # largest |hand - optimizer.step()| over every parameter
    etas: list[float] = field(default_factory=list)  # step sizes along d
    curve: list[float] = field(default_factory=list)  # the batch's loss at w - eta·d
    doubled: bool | None = None  # with zero_grad skipped: two backward passes here gave exactly twice one

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.before.values())

    @property
    def diverged(self) -> bool:
        """The step blew up: a weight or the loss after it is infinite or NaN."""
        return not math.isfinite(self.loss_after) or any(not torch.isfinite(p).all() for p in self.after.values())

    def layer_norms(self) -> dict[str, float]:
        """Each layer's gradient size: the norm of its weights' and bias's gradients together."""
        norms: dict[str, float] = {}
        for name, g in self.grads.items():
            layer = name.rsplit(".", 1)[0]
            norms[layer] = math.hypot(norms.get(layer, 0.0), float(g.norm()))
        return norms

    def weight(self, name: str, index: tuple[int, ...]) -> dict[str, float]:
        """The numbers of one weight's update: w, g, w_new, d, and the optimizer's memory before and after
        (buf, or m and v: their names with _prev for before), g_left and g_new where zero_grad was skipped."""
        pick = lambda t: float(t[name][index])
        numbers = dict(w=pick(self.before), g=pick(self.grads), w_new=pick(self.after), d=pick(self.direction),
                       t=self.step)
        if self.left_over is not None:
            numbers.update(g_left=pick(self.left_over), g_new=pick(self.grads) - pick(self.left_over))
        for key, short in STATE_NAMES.items():
            if key in self.state_after.get(name, {}):
                numbers[short] = float(self.state_after[name][key][index])
                before = self.state_before.get(name, {})
                numbers[f"{short}_prev"] = float(before[key][index]) if key in before else 0.0
        if self.rule.optimizer == "adam":
            (b1, b2), t = ADAM_BETAS, self.step
            numbers.update(m_hat=numbers["m"] / (1 - b1**t), v_hat=numbers["v"] / (1 - b2**t))
        return numbers


def twice_is_double(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, loss: str) -> bool:
    """Two backward passes on one batch at the same weights, without zero_grad between, give exactly twice the
    gradient of one (on a copy of the network: its own gradients are left as they are)."""
    probe = copy.deepcopy(model)
    probe.zero_grad(set_to_none=True)
    per_image_losses(probe(x), labels, loss).mean().backward()
    once = [p.grad.clone() for p in probe.parameters()]
    per_image_losses(probe(x), labels, loss).mean().backward()
    return all(torch.equal(p.grad, 2 * g) for p, g in zip(probe.parameters(), once))


def loss_along(model: Net, params: Tensors, direction: Tensors, etas: list[float], x: torch.Tensor,
               labels: torch.Tensor, loss: str) -> list[float]:
    """The batch's loss at w - eta·d for each eta (w: params, d: direction); no gradients.

    conv1's output is linear in eta: conv(x, w - eta·d) = conv(x, w) - eta·conv(x, d) (biases alike). So conv1 runs
    twice, not once per eta, and its large output is computed into one buffer, pooled, then passed through ReLU
    (which gives the same numbers as ReLU then pooling: both keep the largest of four, or 0). At width 64 and
    batch 64 that is about half the time of 25 forward passes (docs/benchmarks.md)."""
    values, rest = [], _AfterPool1(model)
    with torch.no_grad():
        # channels-last: the CPU pools conv1's output far faster in that layout (docs/benchmarks.md, the Step
        # page); the numbers are the same
        x = x.contiguous(memory_format=torch.channels_last)
        z = F.conv2d(x, params["conv1.weight"], params["conv1.bias"])
        dz = F.conv2d(x, direction["conv1.weight"], direction["conv1.bias"])
        moved_z = torch.empty_like(z)
        for eta in etas:
            torch.sub(z, dz, alpha=eta, out=moved_z)
            pooled = model.pool(moved_z).relu_()
            moved = {f"net.{n}": params[n] - eta * direction[n] for n in params if not n.startswith("conv1.")}
            scores = functional_call(rest, moved, (pooled,), strict=False)
            values.append(float(per_image_losses(scores, labels, loss).mean()))
    return values


class _AfterPool1(nn.Module):
    """A network's layers after conv1 and its pooling, as a module of their own (for functional_call)."""

    def __init__(self, net: Net):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.after_pool1(x)


def curve_etas(lr: float, points: int = CURVE_POINTS) -> list[float]:
    """points step sizes from lr/100 to 100·lr, evenly on a log axis; lr itself is the middle one."""
    return [lr * 10 ** (-2 + 4 * i / (points - 1)) for i in range(points)]


class Stepper:
    """One network taking steps on batches of a dataset, as the training loop would, keeping what each did.

    With a fresh network (the seed's initial weights, built after torch.manual_seed(seed) as the loop builds it)
    and a batch size, the first batch is the training loop's first batch for that seed, so step 1 here is the
    Train page's first step.
    """

    def __init__(self, model: nn.Module, dataset: Dataset, rule: Rule, batch_size: int, seed: int = 0,
                 loss: str = "cross-entropy"):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}")
        self.model, self.dataset, self.rule, self.loss = model.train(), dataset, rule, loss
        self.batch_size = min(batch_size, len(dataset.train_labels))
        self.normalize = Normalizer(dataset.mean, dataset.std)
        self._batches = self._shuffled(torch.Generator().manual_seed(seed))
        self.batch_number = 0
        self.images, self.labels = self.next_batch()
        self.steps = 0
        self.state: dict[str, Tensors] = {}
        self.last: StepResult | None = None

    def _shuffled(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Each epoch's batches of image indices, as rank_batches draws them for one process (without gathering
        the whole dataset: a page holds many of these)."""
        n = len(self.dataset.train_labels)
        while True:
            perm = torch.randperm(n, generator=generator)
            for start in range(0, n - self.batch_size + 1, self.batch_size):
                yield perm[start:start + self.batch_size]

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        order = next(self._batches)
        self.batch_number += 1
        self.images, self.labels = self.dataset.train_images[order], self.dataset.train_labels[order]
        return self.images, self.labels

    def named_parameters(self) -> dict[str, nn.Parameter]:
        return dict(self.model.named_parameters())

    def take(self, zero_grad: bool = True) -> StepResult:
        """One step on the current batch: (zero_grad), forward, loss, backward, the update by hand, and the same
        update by torch.optim on a copy; then the loss after it and along its direction."""
        params = self.named_parameters()
        left_over = None
        if zero_grad or any(p.grad is None for p in params.values()):
            self.model.zero_grad(set_to_none=True)
        else:  # backward adds to the gradient the last backward left
            left_over = {n: p.grad.detach().clone() for n, p in params.items()}
        x = self.normalize(self.images)
        scores = self.model(x)
        losses = per_image_losses(scores, self.labels, self.loss)
        loss = losses.mean()
        loss.backward()
        t = self.steps + 1
        doubled = None if left_over is None else twice_is_double(self.model, x, self.labels, self.loss)
        before = {n: p.detach().clone() for n, p in params.items()}
        grads = {n: p.grad.detach().clone() for n, p in params.items()}
        after, state, direction = {}, {}, {}
        for name in params:
            after[name], state[name], direction[name] = hand_update(before[name], grads[name],
                                                                    self.state.get(name, {}), self.rule, t)
        by_torch = torch_update(before, grads, self.state, self.rule, t)
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(after[name])
        etas = curve_etas(self.rule.lr)
        curve = loss_along(self.model, before, direction, etas, x, self.labels, self.loss)
        with torch.no_grad():
            loss_after = float(per_image_losses(self.model(x), self.labels, self.loss).mean())
        result = StepResult(t, self.rule, self.loss, self.images, self.labels, scores.detach(), losses.detach(),
                            float(loss.detach()), loss_after, grads, left_over, before, after, direction,
                            self.state, state,
                            largest_difference(after, by_torch), etas, curve, doubled)
        self.state, self.steps, self.last = state, t, result
        return result


# -- the update rule with the numbers filled in -----------------------------------------------------------

def number(x: float) -> str:
    """A number as the Step page writes it: 6 significant digits."""
    return "0" if x == 0 else f"{x:.6g}"


def _n(x: float) -> str:
    """A number inside a formula: negative ones in brackets."""
    return f"({number(x)})" if x < 0 else number(x)


@dataclass(frozen=True)
class Line:
    """One line of an update rule: what it computes (e.g. "buf"), the rule in symbols, the rule with this weight's
    numbers in, and the result."""

    name: str
    rule: str
    numbers: str
    value: float


def update_lines(n: dict[str, float], rule: Rule) -> list[Line]:
    """The optimizer's update of one weight, rule by rule, with that weight's numbers (StepResult.weight) in."""
    lr, g = number(rule.lr), n["g"]
    lines = []
    if rule.weight_decay:
        g = g + rule.weight_decay * n["w"]
        lines.append(Line("g", "g = g + λ·w  (weight decay)", f"{_n(n['g'])} + {number(rule.weight_decay)} × "
                          f"{_n(n['w'])}", g))
    if rule.optimizer == "sgd" and not rule.momentum:
        return [*lines, Line("w_new", "w_new = w − lr·g", f"{number(n['w'])} − {lr} × {_n(g)}", n["w_new"])]
    if rule.optimizer == "sgd":
        mu = number(rule.momentum)
        lines.append(Line("buf", "buf = μ·buf + g", f"{mu} × {_n(n['buf_prev'])} + {_n(g)}", n["buf"]))
        if rule.nesterov:  # Nesterov: the gradient plus a look ahead along the new buffer
            lines.append(Line("d", "d = g + μ·buf", f"{_n(g)} + {mu} × {_n(n['buf'])}", n["d"]))
            return [*lines, Line("w_new", "w_new = w − lr·d", f"{number(n['w'])} − {lr} × {_n(n['d'])}", n["w_new"])]
        return [*lines, Line("w_new", "w_new = w − lr·buf", f"{number(n['w'])} − {lr} × {_n(n['buf'])}",
                             n["w_new"])]
    if rule.optimizer == "adam":
        (b1, b2), t = ADAM_BETAS, int(n["t"])
        return [*lines,
                Line("m", "m = β₁·m + (1 − β₁)·g", f"{b1:g} × {_n(n['m_prev'])} + {1 - b1:g} × {_n(g)}", n["m"]),
                Line("v", "v = β₂·v + (1 − β₂)·g²", f"{b2:g} × {_n(n['v_prev'])} + {1 - b2:g} × {_n(g)}²",
                     n["v"]),
                Line("m_hat", "m̂ = m / (1 − β₁ᵗ)", f"{_n(n['m'])} / (1 − {b1:g}^{t})", n["m_hat"]),
                Line("v_hat", "v̂ = v / (1 − β₂ᵗ)", f"{_n(n['v'])} / (1 − {b2:g}^{t})", n["v_hat"]),
                Line("w_new", "w_new = w − lr·m̂ / (√v̂ + ε)",
                     f"{number(n['w'])} − {lr} × {_n(n['m_hat'])} / (√{number(n['v_hat'])} + {ADAM_EPS:g})",
                     n["w_new"])]
    return [*lines,
            Line("v", "v = α·v + (1 − α)·g²", f"{RMSPROP_ALPHA:g} × {_n(n['v_prev'])} + {1 - RMSPROP_ALPHA:.2g} × "
                 f"{_n(g)}²", n["v"]),
            Line("w_new", "w_new = w − lr·g / (√v + ε)",
                 f"{number(n['w'])} − {lr} × {_n(g)} / (√{number(n['v'])} + {RMSPROP_EPS:g})", n["w_new"])]


# -- the loss with the numbers filled in ------------------------------------------------------------------

def image_loss_formula(scores: torch.Tensor, label: int, classes: list[str], loss: str) -> str:
    """One image's loss with its numbers in, e.g. "loss = −ln p(cat) = −ln 0.093 = 2.37"."""
    if loss == "cross-entropy":
        p = float(torch.softmax(scores.double(), 0)[label])
        return f"loss = −ln p({classes[label]}) = −ln {p:.4g} = {-math.log(p) if p > 0 else math.inf:.4g}"
    target = F.one_hot(torch.tensor(label), len(scores)).to(scores.dtype)
    total = float(((scores - target) ** 2).sum())
    return (f"loss = ((s₁ − t₁)² + … + (s{_sub(len(scores))} − t{_sub(len(scores))})²) / {len(scores)} = "
            f"{total:.4g} / {len(scores)} = {total / len(scores):.4g}")


def _sub(n: int) -> str:
    return str(n).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


def batch_loss_formula(losses: torch.Tensor) -> str:
    """The batch's loss as the mean of its images' losses, e.g. "(2.37 + 2.21 + 2.40 + 2.29) / 4 = 2.32"."""
    values = [f"{v:.3g}" for v in losses.tolist()]
    shown = values if len(values) <= 8 else [*values[:3], "…", values[-1]]
    return f"batch loss = ({' + '.join(shown)}) / {len(values)} = {float(losses.mean()):.4g}"


def confident_wrong(scores: torch.Tensor, labels: torch.Tensor) -> int | None:
    """The image of the batch the network is most sure of and wrong about, or None when it gets all right."""
    probs = torch.softmax(scores, 1)
    confidence, guess = probs.max(1)
    wrong = (guess != labels).nonzero().flatten()
    return int(wrong[confidence[wrong].argmax()]) if len(wrong) else None


def curve_verdict(etas: list[float], curve: list[float], lr: float, before: float) -> str:
    """What the loss along the step says about the learning rate, in a sentence (markdown)."""
    finite = [(e, v) for e, v in zip(etas, curve) if math.isfinite(v)]
    if not finite:
        return "Every step size along this direction blew the loss up (inf or NaN)."
    best, lowest = min(finite, key=lambda p: p[1])
    if best == etas[-1]:
        return (f"Along this direction the loss still falls at η = 100·lr = {best:.3g}: on this batch a far larger "
                "step would have helped. Early in training the gradient is small and the valley is far away.")
    worse = next((e for e, v in zip(etas, curve) if e > best and not v <= before), None)
    text = (f"On this batch the loss along d is lowest at η ≈ **{best:.3g}**, {best / lr:.3g} × the learning rate; "
            "a larger step goes past the valley and the loss rises again")
    if worse is not None:
        text += (f". From η ≈ {worse:.3g} on it is higher than before the step: a learning rate that large makes "
                 "training blow up")
    return text + ". (One batch's valley: the next batch's lies elsewhere.)"


def warm_up() -> None:
    """Pay the one-time costs of a first step (torch.optim's first use imports torch._dynamo: seconds here) before
    a student's first click: the server calls it once, in the background, as it starts."""
    from core.data import make_shapes
    from core.model import Net

    data = make_shapes(num_train=16, num_test=8, seed=0)
    for optimizer in ("sgd", "adam", "rmsprop"):
        Stepper(Net(), data, Rule(optimizer, 0.01), batch_size=4).take()
