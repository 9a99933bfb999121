"""Inside one step (core/step.py): the hand-written update rules against torch.optim, the loss along the step,
gradients that add up without zero_grad, and the Step page's first step being the training loop's first step."""

import copy
import math

import pytest
import torch
import torch.nn as nn

from core.config import TrainConfig
from core.model import Net
from core.optimizers import Rule
from core.step import (
    Stepper,
    curve_etas,
    largest_difference,
    loss_along,
    per_image_losses,
    score_gradient,
    update_lines,
)

RULES = {
    "sgd": Rule("sgd", 0.05, 0.0),
    "sgd-momentum": Rule("sgd", 0.02, 0.9),
    "nesterov": Rule("sgd", 0.02, 0.9, nesterov=True),
    "sgd-weight-decay": Rule("sgd", 0.02, 0.9, weight_decay=5e-3),
    "adam": Rule("adam", 0.003),
    "adam-weight-decay": Rule("adam", 0.003, weight_decay=1e-2),
    "rmsprop": Rule("rmsprop", 0.002),
}


def torch_optimizer(params, rule: Rule):
    """torch.optim itself, as the tutorial's tellings build it (no fused kernels, none of this app's code)."""
    if rule.optimizer == "adam":
        return torch.optim.Adam(params, lr=rule.lr, weight_decay=rule.weight_decay)
    if rule.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=rule.lr, weight_decay=rule.weight_decay)
    return torch.optim.SGD(params, lr=rule.lr, momentum=rule.momentum, nesterov=rule.nesterov,
                           weight_decay=rule.weight_decay)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", list(RULES))
def test_the_hand_written_rule_follows_torch_optim_step_after_step(small_shapes, name, seed):
    """A network stepped by the hand-written rules and a copy stepped by torch.optim's own optimizer, which keeps
    its own state, in lockstep, batch after batch (the momentum buffer or Adam's m and v carrying over): the
    same weights to 1e-6, every step. The copy is given the step's gradients: Adam divides by the gradient's
    size, so on a weight whose gradient is ~1e-10 a forward pass of its own, rounded differently, could move
    it another way, which is float rounding, not the rule."""
    rule = RULES[name]
    torch.manual_seed(seed)
    stepper = Stepper(Net(), small_shapes, rule, batch_size=16, seed=seed)
    twin = copy.deepcopy(stepper.model)
    optimizer = torch_optimizer(twin.parameters(), rule)
    for step in range(5):
        result = stepper.take()
        for n, p in twin.named_parameters():
            p.grad = result.grads[n].clone()
        optimizer.step()
        ours = dict(stepper.model.named_parameters())
        theirs = dict(twin.named_parameters())
        assert largest_difference({n: p.detach() for n, p in ours.items()},
                                  {n: p.detach() for n, p in theirs.items()}) < 1e-6, (name, step)
        assert result.torch_difference < 1e-6  # the page's own check, over every parameter
        assert result.step == step + 1
        assert not result.diverged
        stepper.next_batch()
    assert result.parameters == 62006


def test_a_weights_numbers_fill_in_its_rule(small_shapes):
    """What the Step page writes for one weight: w_new = w - lr·buf, buf = μ·buf + g with the last step's buf."""
    torch.manual_seed(0)
    rule = RULES["sgd-momentum"]
    stepper = Stepper(Net(), small_shapes, rule, batch_size=8)
    where = ("conv1.weight", (0, 0, 2, 2))
    first = stepper.take().weight(*where)
    assert first["buf_prev"] == 0.0 and first["buf"] == pytest.approx(first["g"], rel=1e-6)
    second = stepper.take().weight(*where)
    assert second["w"] == first["w_new"]
    assert second["buf"] == pytest.approx(0.9 * first["buf"] + second["g"], rel=1e-5, abs=1e-9)
    assert second["w_new"] == pytest.approx(second["w"] - 0.02 * second["buf"], rel=1e-6, abs=1e-9)
    lines = update_lines(second, rule)
    assert [line.name for line in lines] == ["buf", "w_new"]
    assert lines[0].rule == "buf = μ·buf + g" and lines[0].numbers.startswith("0.9 × ")
    assert lines[1].value == second["w_new"]


@pytest.mark.parametrize("name, names", [("adam", ["m", "v", "m_hat", "v_hat", "w_new"]),
                                         ("rmsprop", ["v", "w_new"]), ("nesterov", ["buf", "d", "w_new"]),
                                         ("sgd", ["w_new"])])
def test_each_rule_is_written_out_with_the_numbers_that_give_its_result(small_shapes, name, names):
    torch.manual_seed(3)
    rule = RULES[name]
    stepper = Stepper(Net(), small_shapes, rule, batch_size=8)
    stepper.take()
    n = stepper.take().weight("fc1.bias", (5,))
    lines = update_lines(n, rule)
    assert [line.name for line in lines] == names
    if name == "adam":  # the bias corrections and the update, recomputed from the numbers shown
        assert n["m"] == pytest.approx(0.9 * n["m_prev"] + 0.1 * n["g"], rel=1e-5, abs=1e-12)
        assert n["v"] == pytest.approx(0.999 * n["v_prev"] + 0.001 * n["g"] ** 2, rel=1e-5, abs=1e-15)
        assert n["m_hat"] == pytest.approx(n["m"] / (1 - 0.9**2))
        assert n["w_new"] == pytest.approx(n["w"] - 0.003 * n["m_hat"] / (math.sqrt(n["v_hat"]) + 1e-8), rel=1e-5)
        assert "/ (1 − 0.9^2)" in lines[2].numbers
    if name == "rmsprop":
        assert n["w_new"] == pytest.approx(n["w"] - 0.002 * n["g"] / (math.sqrt(n["v"]) + 1e-8), rel=1e-5)


def test_the_loss_along_the_step_starts_at_the_batch_loss_and_passes_the_loss_after(small_shapes):
    torch.manual_seed(0)
    stepper = Stepper(Net(), small_shapes, RULES["sgd-momentum"], batch_size=16)
    result = stepper.take()
    x = stepper.normalize(result.images)
    at_zero = loss_along(stepper.model, result.before, result.direction, [0.0], x, result.labels, "cross-entropy")
    assert at_zero[0] == pytest.approx(result.loss, abs=1e-6)
    assert len(result.curve) == 25 and result.etas[12] == pytest.approx(0.02)  # lr, the middle point
    assert result.etas[0] == pytest.approx(0.02 / 100) and result.etas[-1] == pytest.approx(0.02 * 100)
    assert result.curve[12] == pytest.approx(result.loss_after, abs=1e-6)
    assert result.loss_after < result.loss  # a small step down the gradient lowers this batch's loss
    assert curve_etas(1.0, 5) == pytest.approx([0.01, 0.1, 1.0, 10.0, 100.0])


def test_two_backward_passes_without_zero_grad_give_exactly_twice_the_gradient(small_shapes):
    torch.manual_seed(0)
    model = Net()
    stepper = Stepper(model, small_shapes, RULES["sgd"], batch_size=8)
    x = stepper.normalize(stepper.images)
    nn.functional.cross_entropy(model(x), stepper.labels).backward()
    once = {n: p.grad.clone() for n, p in model.named_parameters()}
    nn.functional.cross_entropy(model(x), stepper.labels).backward()  # no zero_grad in between
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, 2 * once[n]), n


def test_skipping_zero_grad_adds_this_backward_to_the_last_ones_gradient(small_shapes):
    torch.manual_seed(0)
    stepper = Stepper(Net(), small_shapes, RULES["sgd"], batch_size=8)
    first = stepper.take()
    fresh = copy.deepcopy(stepper.model)  # the weights after step 1: what this backward alone would give
    nn.functional.cross_entropy(fresh(stepper.normalize(stepper.images)), stepper.labels).backward()
    second = stepper.take(zero_grad=False)
    for n, p in fresh.named_parameters():
        assert torch.equal(second.left_over[n], first.grads[n])
        assert torch.allclose(second.grads[n], first.grads[n] + p.grad, atol=1e-7)
    assert second.doubled is True and first.doubled is None  # and the page's check of exactly 2·g holds
    numbers = second.weight("fc3.bias", (0,))
    assert numbers["g"] == pytest.approx(numbers["g_left"] + numbers["g_new"])
    assert stepper.take().left_over is None  # zero_grad again: this backward's gradient alone


def test_the_first_step_here_is_the_training_loops_first_step(shapes_dir):
    """A fresh network (the seed's initial weights) on the seed's first batch: the loss the Train page's loop logs
    for its very first step, and the first batch rank_batches draws."""
    from core.data import load_dataset, rank_batches
    from core.loop import build_model, train

    config = TrainConfig(dataset="shapes", data_dir=shapes_dir, batch_size=8, lr=0.01, seed=7, log_interval=1,
                         max_steps=1, epochs=1)
    dataset = load_dataset("shapes", shapes_dir)
    first_loss = next(e for e in train(config, dataset) if e["type"] == "loss")["running_loss"]
    torch.manual_seed(7)
    stepper = Stepper(build_model(config, dataset), dataset, Rule.of(config), batch_size=8, seed=7)
    images, labels, _ = next(rank_batches(dataset.train_images, dataset.train_labels, 8,
                                          torch.Generator().manual_seed(7)))
    assert torch.equal(stepper.images, images) and torch.equal(stepper.labels, labels)
    assert stepper.take().loss == pytest.approx(first_loss, abs=1e-5)


def test_cross_entropy_and_mse_gradients_on_the_scores_are_autograds(small_shapes):
    scores = torch.tensor([0.5, 4.0, -1.0, 0.2], requires_grad=True)  # confident in class 1; the truth is 0
    for loss in ("cross-entropy", "mse"):
        per_image_losses(scores[None], torch.tensor([0]), loss).sum().backward()
        assert torch.allclose(score_gradient(scores.detach(), 0, loss), scores.grad, atol=1e-7), loss
        scores.grad = None
    mse = per_image_losses(scores[None].detach(), torch.tensor([0]), "mse")
    target = torch.tensor([[1.0, 0, 0, 0]])
    assert mse.item() == pytest.approx(nn.MSELoss()(scores[None].detach(), target).item())
    with pytest.raises(ValueError, match="unknown loss"):
        Stepper(Net(), small_shapes, RULES["sgd"], 4, loss="hinge")


def test_an_mse_step_matches_torch_optim_too(small_shapes):
    torch.manual_seed(0)
    stepper = Stepper(Net(), small_shapes, RULES["sgd-momentum"], batch_size=8, loss="mse")
    result = stepper.take()
    assert result.torch_difference < 1e-6 and result.loss == pytest.approx(float(result.losses.mean()))
    assert result.loss < 1  # MSE of scores near 0 against one-hot targets: about 1/classes


def test_a_step_that_blows_up_is_marked_diverged_not_raised(small_shapes):
    torch.manual_seed(0)
    stepper = Stepper(Net(), small_shapes, Rule("sgd", 1e30, 0.9), batch_size=8)
    result = stepper.take()
    assert result.diverged
    stepper.take()  # another step on the ruined weights: still no exception
    assert not math.isfinite(stepper.take().loss)


def test_largest_difference_counts_a_nan_or_an_infinity_on_one_side_only():
    a = {"w": torch.tensor([1.0, float("inf"), float("nan")])}
    assert largest_difference(a, {"w": torch.tensor([1.0, float("inf"), float("nan")])}) == 0.0
    assert largest_difference(a, {"w": torch.tensor([1.5, float("inf"), float("nan")])}) == 0.5
    assert math.isnan(largest_difference(a, {"w": torch.tensor([1.0, float("inf"), 0.0])}))
    assert math.isinf(largest_difference(a, {"w": torch.tensor([1.0, 0.0, float("nan")])}))
