"""The optimizer and schedule a run trains with on a CPU: core's PlainSGD and OneCycle, against torch.optim's own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.model import ModelArgs, Net
from core.optimizers import PlainSGD, Rule
from core.train_step import OneCycle, make_optimizer

ROOT = Path(__file__).resolve().parents[1]


def two_copies(channels_last: bool) -> tuple[Net, Net]:
    torch.manual_seed(0)
    a = Net(ModelArgs(conv_width=8, conv2_width=24))
    if channels_last:
        a = a.to(memory_format=torch.channels_last)
    b = Net(ModelArgs(conv_width=8, conv2_width=24))
    b.load_state_dict(a.state_dict())
    if channels_last:
        b = b.to(memory_format=torch.channels_last)
    return a, b


@pytest.mark.parametrize("rule", [Rule("sgd", 0.05, 0.9, nesterov=True), Rule("sgd", 0.001, 0.9),
                                  Rule("sgd", 0.1, 0.0), Rule("sgd", 0.01, 0.9, nesterov=True, weight_decay=5e-4)],
                         ids=["nesterov", "the tutorial's", "no momentum", "weight decay"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_plain_sgd_gives_torch_optims_weights_bit_for_bit(rule, channels_last):
    ours, theirs = two_copies(channels_last)
    plain = PlainSGD(ours.parameters(), rule)
    reference = torch.optim.SGD(theirs.parameters(), lr=rule.lr, momentum=rule.momentum, nesterov=rule.nesterov,
                                weight_decay=rule.weight_decay, foreach=False)
    torch.manual_seed(1)
    images, labels = torch.rand(6, 16, 3, 32, 32), torch.randint(0, 10, (6, 16))
    for x, y in zip(images, labels):
        for net, opt in ((ours, plain), (theirs, reference)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
            assert torch.equal(p, q), name
    assert not torch.equal(ours.conv1.weight, two_copies(channels_last)[0].conv1.weight)  # it did train


@pytest.mark.parametrize("total", [2, 3, 7, 117, 1564])
def test_one_cycle_gives_torchs_one_cycle_rates_exactly(total):
    weight = torch.zeros(1, requires_grad=True)
    reference = torch.optim.SGD([weight], lr=0.1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=0.1, total_steps=total, pct_start=0.25,
                                                    anneal_strategy="linear", cycle_momentum=False)
    ours = PlainSGD([torch.zeros(1, requires_grad=True)], Rule("sgd", 0.1))
    schedule = OneCycle(ours, 0.1, total)
    rates = []
    for _ in range(total):
        assert ours.param_groups[0]["lr"] == reference.param_groups[0]["lr"]
        rates.append(ours.param_groups[0]["lr"])
        reference.step()
        scheduler.step()
        schedule.step()
    assert max(rates) <= 0.1
    if total > 100:  # from a 25th of the peak, it climbs to the peak a quarter of the way in
        assert rates[0] == pytest.approx(0.1 / 25) and max(rates) > 0.099
    assert 0 < ours.param_groups[0]["lr"] <= rates[-1]  # past the last step it stays at its end, never below 0


def test_a_tensor_learning_rate_is_set_in_place():
    rate = torch.tensor(0.1)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=rate)
    OneCycle(optimizer, 0.1, 100).step()
    assert optimizer.param_groups[0]["lr"] is rate and rate.item() == pytest.approx(0.004 + 0.096 / 24)


def test_a_run_on_a_cpu_trains_with_plain_sgd_and_never_imports_torch_dynamo(tmp_path):
    from core.config import TrainConfig

    model = Net()
    assert isinstance(make_optimizer(model, TrainConfig(dataset="shapes"), torch.device("cpu")), PlainSGD)
    assert not isinstance(make_optimizer(model, TrainConfig(dataset="shapes", optimizer="adam"),
                                         torch.device("cpu")), PlainSGD)
    # what a user runs: its one-cycle schedule and Nesterov, in a fresh process; torch._dynamo costs 1.3-1.8 s
    code = ("import sys, core.train as t; code = t.main(sys.argv[1:]); "
            "print('dynamo' if 'torch._dynamo' in sys.modules else 'no dynamo'); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code, "--dataset", "shapes", "--preset", "fast", "--max-steps", "30",
                             "--runs-dir", str(tmp_path), "--data-dir", str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "no dynamo", result.stdout[-500:]
    assert "reached the step limit of 30" in result.stderr
