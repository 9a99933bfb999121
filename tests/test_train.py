import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from core.config import TrainConfig
from core.device import DeviceError, available_devices, resolve_device
from core.loop import Control, train
from core.train_step import CudaGraphStep, make_step


def cfg(**kw):
    base = dict(dataset="shapes", epochs=1, batch_size=32, lr=0.01, momentum=0.9, log_interval=10, seed=0)
    return TrainConfig(**{**base, **kw})


def test_events_arrive_in_order_with_what_the_ui_needs(small_shapes):
    events = list(train(cfg(epochs=2), small_shapes))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("epoch") == 2 and kinds.count("loss") >= 2 * (2000 // 32 // 10)
    start, end = events[0], events[-1]
    assert start["steps_per_epoch"] == 63 and start["total_steps"] == 126 and start["parameters"] == 62006
    steps = [e["step"] for e in events if e["type"] == "loss"]
    assert steps == sorted(steps) and steps[-1] == 126
    epoch = [e for e in events if e["type"] == "epoch"][-1]
    assert len(epoch["per_class_accuracy"]) == 10 and sum(map(sum, epoch["confusion"])) == 500
    assert epoch["images_per_second"] > 0 and epoch["seconds"] > 0
    assert end["status"] == "finished" and end["epochs_completed"] == 2 and end["images_seen"] == 4000
    assert set(end["per_class_accuracy"]) == set(small_shapes.classes)


def test_training_uses_one_thread_for_tiny_batches_and_every_core_for_big_ones(small_shapes):
    """The thread rule the Train page's progress bar reports: measured in benchmarks/, not tuned live."""
    cores = os.cpu_count() or 1
    for batch_size, expected in ((4, 1), (64, cores)):
        events = list(train(cfg(threads=0, batch_size=batch_size, device="cpu"), small_shapes))
        assert events[0]["threads"] == expected and events[-1]["status"] == "finished"
        assert {e["threads"] for e in events if e["type"] == "loss"} == {expected}


FAULTS_PER_STEP = """
import resource
import torch
from core.model import Net
from core.device import keep_freed_memory
applied = keep_freed_memory()
torch.set_num_threads(1)
model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
images, labels = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
def step():
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    optimizer.step()
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    step()
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings exist on Linux only")
def test_training_steps_reuse_freed_memory_unless_the_user_set_mallocs_own_variables():
    """The CLI and every dashboard worker call keep_freed_memory(): a batch-64 step then takes (almost) no fresh
    pages from the OS. With glibc's variables set by hand (here: every block over 128 KiB from the OS, fresh each
    time) it leaves them alone, and the same step page-faults thousands of times."""
    def run(**malloc_env):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        out = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP], capture_output=True, text=True, check=True,
                             cwd=os.path.dirname(os.path.dirname(__file__)), env={**env, **malloc_env}).stdout.split()
        return out[0] == "True", float(out[1])

    applied, kept = run()
    respected, fresh = run(MALLOC_MMAP_THRESHOLD_="131072")
    assert applied and not respected
    assert kept < 20 < 1000 < fresh, f"{kept} page faults a step with freed memory kept, {fresh} with fresh pages"


def test_training_learns(small_shapes):
    events = list(train(cfg(epochs=3, batch_size=16, lr=0.02), small_shapes))
    losses = [e["running_loss"] for e in events if e["type"] == "loss"]
    assert losses[-1] < losses[0] - 0.3
    assert events[-1]["test_accuracy"] > 0.2  # chance is 0.1


def test_same_seed_same_history_different_seed_different(small_shapes):
    history = lambda seed: [e["running_loss"] for e in train(cfg(seed=seed), small_shapes)
                            if e["type"] == "loss"]
    assert history(5) == history(5)
    assert history(5) != history(6)


def test_a_too_high_learning_rate_diverges_and_keeps_the_history(small_shapes):
    # batch 4: at batch 32 the weights jump so far at once that every ReLU dies and the loss stays finite
    events = list(train(cfg(lr=10, momentum=0.99, epochs=3, batch_size=4, log_interval=2), small_shapes))
    end = events[-1]
    assert end["status"] == "diverged" and "lower it" in end["message"].lower()
    assert end["steps"] < 3 * 500  # stopped at once, not after three epochs
    assert not any(e["type"] == "epoch" for e in events)


def test_a_run_that_learned_nothing_says_what_to_change():
    from core.loop import no_learning_hint

    high, low = cfg(lr=1.0), cfg(lr=0.0001)
    assert "Lower it, e.g. to 0.1" in no_learning_hint(high, 0.10, 10)  # collapsed: a finite loss, one class
    assert "more epochs, or raise the learning rate" in no_learning_hint(low, 0.12, 10)
    assert no_learning_hint(high, 0.54, 10) == "" and no_learning_hint(low, 0.6, 2) == ""
    assert no_learning_hint(low, 0.52, 2) != ""  # two classes: 52% is a coin toss


def test_a_run_at_chance_ends_finished_with_the_hint(small_shapes):
    end = list(train(cfg(lr=0.0001, momentum=0.0), small_shapes))[-1]  # one epoch that barely moves the weights
    assert end["status"] == "finished" and end["test_accuracy"] <= 0.15
    assert "no better than guessing" in end["message"] and "raise the learning rate" in end["message"]
    assert end["learned_nothing"]  # the Train page shows it as a warning


def test_stop_ends_within_a_second_and_keeps_the_losses(small_shapes):
    control = Control()
    events, stopped_at = [], None
    for event in train(cfg(epochs=50, batch_size=4, log_interval=50), small_shapes, control):
        events.append(event)
        if event["type"] == "loss" and stopped_at is None:
            threading.Timer(0.2, control.stop).start()
            stopped_at = time.monotonic() + 0.2
    assert time.monotonic() - stopped_at < 1.0
    assert events[-1]["status"] == "stopped" and events[-1]["steps"] < 50 * 500
    assert any(e["type"] == "loss" for e in events)


def test_pause_holds_training_until_resume(small_shapes):
    control = Control()
    control.pause()
    started = time.monotonic()
    events = []
    for event in train(cfg(max_steps=20, log_interval=5), small_shapes, control):
        if event["type"] == "start":  # timed from here: setting up a GPU can take longer than the pause
            started = time.monotonic()
            threading.Timer(0.5, control.resume).start()
        events.append(event)
    kinds = [e["type"] for e in events]
    assert "paused" in kinds and "resumed" in kinds and kinds.index("paused") < kinds.index("resumed")
    assert time.monotonic() - started >= 0.45
    assert events[-1]["status"] == "finished"
    assert events[-1]["train_seconds"] < time.monotonic() - started - 0.3  # paused time is not training time


def test_max_steps_and_target_accuracy_stop_early(small_shapes):
    end = list(train(cfg(epochs=5, max_steps=7), small_shapes))[-1]
    assert end["steps"] == 7 and end["status"] == "finished" and end["test_accuracy"] is not None
    events = list(train(cfg(epochs=10, target_accuracy=0.15, batch_size=16, lr=0.02), small_shapes))
    assert events[-1]["status"] == "finished" and "target" in events[-1]["message"]
    assert sum(e["type"] == "epoch" for e in events) < 10


def test_unavailable_device_is_a_clear_error(small_shapes):
    assert resolve_device("auto").type in available_devices()
    missing = next((d for d in ("cuda", "mps") if d not in available_devices()), None)
    if missing is None:
        pytest.skip("this machine has both CUDA and MPS")
    with pytest.raises(DeviceError, match=f"device '{missing}' is not available on this machine"):
        list(train(cfg(device=missing), small_shapes))


def test_mnist_like_single_channel_data_trains(small_shapes):
    from core.data import Dataset

    gray = small_shapes.train_images[:, :1, 2:30, 2:30].contiguous()
    d = Dataset("gray", small_shapes.classes, gray, small_shapes.train_labels,
                small_shapes.test_images[:, :1, 2:30, 2:30].contiguous(), small_shapes.test_labels)
    events = list(train(cfg(max_steps=5), d))
    assert events[0]["channels"] == 1 and events[0]["image_size"] == 28 and events[-1]["status"] == "finished"
    assert torch.isfinite(torch.tensor(events[-1]["final_running_loss"]))


def test_the_tutorial_preset_teaches_on_the_offline_shapes():
    """A class without internet sees the network learn: the running loss falls below 2.0 within the first
    epoch, and 2 epochs end well above chance but short of perfect, so the confusion matrix has something to
    show (seeds 1 and 2 are in benchmarks/bench_presets.py)."""
    from core.config import preset
    from core.data import make_shapes

    events = list(train(preset("tutorial", dataset="shapes", seed=0), make_shapes()))
    first_epoch = [e["running_loss"] for e in events if e["type"] == "loss" and e["epoch"] == 1]
    assert first_epoch[-1] < 2.0, first_epoch[-5:]
    epochs = [e for e in events if e["type"] == "epoch"]
    assert 0.75 <= epochs[-1]["test_accuracy"] <= 0.97, epochs[-1]["test_accuracy"]
    assert all(0 <= e["train_accuracy"] <= 1 for e in epochs)


@pytest.mark.xdist_group("cifar10")  # one test process unpacks and decodes it once
def test_the_fast_preset_learns_real_cifar10(cifar10_folder, cifar10_data_dir):
    """The Fast preset as the Train page sends it (2 epochs) learns the real CIFAR-10 copy: past 50%, where chance
    is 10%. Its target, 55% on every seed 0-4, is benchmarks/bench_presets.py's to check (57.5-59.0% there,
    docs/benchmarks.md): asserting 55% here left 2.5 points between a pass and a fail, and another CPU's kernels
    take another path (the overfitting lesson: 82.1% here, 69.4% on an AMD EPYC, issue 43). Its first epoch
    alone was tested before: 49% here, but 29% in a CI run, the same seed."""
    from core.config import preset
    from core.data import load_dataset

    data = load_dataset(f"folder:{cifar10_folder}", cifar10_data_dir)
    end = list(train(preset("fast", dataset=f"folder:{cifar10_folder}"), data))[-1]
    assert end["status"] == "finished" and end["test_accuracy"] >= 0.50, end  # all of it: speed, threads, ...
    assert end["per_class_accuracy"]["airplane"] > 0


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none)")


@needs_cuda
def test_cuda_graph_steps_train_exactly_like_the_tutorials_steps(small_shapes):
    # batch 64 over 2000 images: 31 replayed steps and a last batch of 16 run eagerly, every epoch
    config = cfg(device="cuda", epochs=2, batch_size=64, schedule="one-cycle", lr=0.05, nesterov=True)
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
        graphed = list(train(config, small_shapes))
        eager = list(train(config, small_shapes, cuda_graph=False))
    assert graphed[0]["cuda_graph"] is True and eager[0]["cuda_graph"] is False
    losses = [[e["running_loss"] for e in run if e["type"] == "loss"] for run in (graphed, eager)]
    assert len(losses[0]) == len(losses[1]) > 5
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    assert losses[0][-1] < losses[0][0]  # it learns, with the scheduler's learning rate reaching the graph
    assert graphed[-1]["test_accuracy"] == pytest.approx(eager[-1]["test_accuracy"], abs=0.01)


@needs_cuda
def test_recording_a_cuda_graph_leaves_the_model_as_it_was():
    from core.data import Normalizer
    from core.model import Net
    from core.train_step import make_optimizer

    device = torch.device("cuda")
    torch.manual_seed(0)
    model = Net().to(device)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = make_optimizer(model, cfg(lr=0.5), device)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (40,), device=device)
    step = make_step(model, torch.nn.CrossEntropyLoss(), optimizer, Normalizer((0.5,) * 3, (0.5,) * 3, device),
                     device, 8, images, labels)
    assert isinstance(step, CudaGraphStep)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    first = step(images[:8], labels[:8])
    assert torch.isfinite(first) and not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert torch.isfinite(step(images[:3], labels[:3]))  # a short batch runs eagerly on the same weights


def test_on_a_cpu_a_step_is_the_tutorials_four_lines(small_shapes):
    """The step the loop takes on a CPU gives the weights and loss of the tutorial's own lines, written out here,
    step after step: zero_grad, forward and loss, backward, step."""
    import copy

    from core.data import Normalizer
    from core.model import Net

    torch.manual_seed(0)
    net = Net()
    tutorial = copy.deepcopy(net)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    tutorial_optimizer = torch.optim.SGD(tutorial.parameters(), lr=0.01, momentum=0.9)
    normalize = Normalizer((0.5,) * 3, (0.5,) * 3, torch.device("cpu"))
    images, labels = small_shapes.train_images[:12], small_shapes.train_labels[:12]
    step = make_step(net, criterion, optimizer, normalize, torch.device("cpu"), 4, images, labels)
    for batch in range(3):
        inputs, targets = images[4 * batch:4 * batch + 4], labels[4 * batch:4 * batch + 4]
        loss = step(inputs, targets)
        tutorial_optimizer.zero_grad()  # the tutorial's lines, on the same normalized batch
        outputs = tutorial(normalize(inputs))
        tutorial_loss = criterion(outputs, targets)
        tutorial_loss.backward()
        tutorial_optimizer.step()
        assert torch.equal(loss, tutorial_loss)
        assert all(torch.equal(a, b) for a, b in zip(net.parameters(), tutorial.parameters())), batch
    # and the loop itself takes such a step on a CPU (no CUDA graph there)
    events = list(train(cfg(device="cpu", max_steps=3), small_shapes))
    assert events[0]["cuda_graph"] is False and events[-1]["steps"] == 3


@pytest.mark.serial  # a quiet machine, then its own load on every core
def test_a_run_reports_the_share_of_the_cpu_it_got(small_shapes):
    """The Speed page's race warns when another program took the cores: a CPU run says what share it got."""
    end = list(train(cfg(device="cpu", threads=1, max_steps=60), small_shapes))[-1]
    assert 0.75 < end["cpu_share"] < 1.6, end["cpu_share"]  # one thread on a quiet machine: about all of it
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3 * (os.cpu_count() or 1))]
    try:
        busy = list(train(cfg(device="cpu", threads=os.cpu_count() or 1, max_steps=60), small_shapes))[-1]
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert busy["cpu_share"] < 0.75, busy["cpu_share"]
