"""The training loop of the tutorial as an iterator of events.

    for event in train(config, dataset, control):
        ...   # {"type": "start" | "loss" | "epoch" | "paused" | "resumed" | "end", ...}

Events are plain JSON-able dicts, so the same stream feeds the CLI, the dashboard's job
log and the run directory. Run it headless with `python -m core.train --help`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import sys
import threading
import time
from typing import Callable, Iterator

import torch
import torch.nn as nn
import torch.optim as optim

from core.config import TrainConfig
from core.data import Dataset, Normalizer, Progress, load_dataset, shuffled_batches
from core.evaluate import infer, summarize
from core.memory import check_fits
from core.model import ModelArgs, Net, count_parameters
from core.runs import DEFAULT_ROOT, RunWriter

TUTORIAL_ACCURACY = 0.54  # what the tutorial's own loop reaches after 2 epochs
STOP_MESSAGE = "stopped by the user"  # a dashboard worker whose server went away says so instead
TRAIN_SAMPLE = 2000  # training images measured at each epoch end: train accuracy beside test accuracy


class DeviceError(ValueError):
    """The chosen device does not exist on this machine."""


class Control:
    """Stop and pause requests from outside the loop (UI thread, signal handler, parent process).

    Takes threading.Event or multiprocessing.Event objects, so it works in a thread or a child process.
    """

    def __init__(self, stop_event=None, pause_event=None):
        self._stop = stop_event if stop_event is not None else threading.Event()
        self._pause = pause_event if pause_event is not None else threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def pause(self) -> None:
        self._pause.set()

    def resume(self) -> None:
        self._pause.clear()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return self._pause.is_set()


# -- devices and threads ----------------------------------------------------------

def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(name: str) -> torch.device:
    """'auto' picks the fastest device present; asking for an absent one is a clear error."""
    present = available_devices()
    if name == "auto":
        return torch.device(present[1] if len(present) > 1 else "cpu")
    if name not in present:
        raise DeviceError(f"device {name!r} is not available on this machine (available: {', '.join(present)}); "
                          "choose one of those or 'auto'")
    return torch.device(name)


def choose_threads(config: TrainConfig, device: torch.device) -> int:
    """CPU threads: tiny batches run faster on one thread (less synchronization than work); see benchmarks/."""
    if config.threads:
        return config.threads
    if device.type != "cpu":
        return 1
    return 1 if config.batch_size <= 8 else max(1, os.cpu_count() or 1)


mkldnn_default = torch.backends.mkldnn.enabled


@contextlib.contextmanager
def cpu_kernels(device: torch.device, batch_size: int):
    """At batch sizes up to 4, PyTorch's plain convolution kernels beat oneDNN's on a CPU (measured: ~1.3x
    at the tutorial's batch 4, see benchmarks/); from batch 8 up oneDNN wins, by 3x at batch 32."""
    with _mkldnn(torch.backends.mkldnn.enabled and not (device.type == "cpu" and batch_size <= 4)):
        yield


def cuda_kernels(device: torch.device):
    """On a CUDA GPU, cuDNN's deterministic convolution kernels: the same seed gives the same run there too
    (some of the faster ones add up in a different order each time)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, benchmark=False, deterministic=True)


@contextlib.contextmanager
def _mkldnn(enabled: bool):
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


# glibc mallopt() parameters
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MALLOC_SETTINGS = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 1 << 30, M_TOP_PAD: 64 << 20}
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep the memory a training step frees, for the next step to reuse.

    By default glibc hands big freed blocks back to the OS and takes fresh pages on the next step: at
    batch 64 on CIFAR-10 that is 170,000-800,000 page faults an epoch, 0.6-3 s of kernel time, and how
    many depends on what the process did before (the dashboard's worker got more than the CLI). With
    fixed thresholds it is ~40,000, alike in every process (docs/benchmarks.md). Call it once, at the
    start of a process that trains. Returns whether it applied; a no-op off glibc, or when the user
    set glibc's MALLOC_* variables.
    """
    if not sys.platform.startswith("linux") or any(name in os.environ for name in MALLOC_ENV):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(param, value) == 1 for param, value in MALLOC_SETTINGS.items())


# -- the loop ---------------------------------------------------------------------------

def warm_up() -> None:
    """Pay the one-time costs of a first training step before a job needs it.

    The first optimizer built in a process imports torch._dynamo (several seconds here), and the
    first forward and backward pass set up their kernels. A spare dashboard worker does this while
    it waits, so the first loss point follows the click on Train within a second or two.
    """
    model = Net()
    optimizer = make_optimizer(model, TrainConfig(), torch.device("cpu"))
    for batch in (4, 64):
        with cpu_kernels(torch.device("cpu"), batch):
            images, labels = torch.zeros(batch, 3, 32, 32), torch.zeros(batch, dtype=torch.long)
            loss = nn.functional.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()


def build_model(config: TrainConfig, dataset: Dataset) -> Net:
    return Net(ModelArgs(in_channels=dataset.channels, image_size=dataset.image_size,
                         num_classes=dataset.num_classes, conv_width=config.conv_width,
                         conv2_width=config.conv2_width))


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> optim.Optimizer:
    # fused SGD updates all parameters in one kernel: fewer launches per step on CPU and CUDA
    fused = device.type in ("cpu", "cuda")
    # on a GPU the learning rate lives in GPU memory, so a step recorded as a CUDA graph reads the
    # value a scheduler sets (fill_) instead of the number it was recorded with
    lr = torch.tensor(float(config.lr), dtype=torch.float32, device=device) if device.type == "cuda" else config.lr
    return optim.SGD(model.parameters(), lr=lr, momentum=config.momentum, nesterov=config.nesterov,
                     fused=fused or None)


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


def _make_scheduler(optimizer: optim.Optimizer, config: TrainConfig, total_steps: int):
    """one-cycle: the learning rate climbs to config.lr over the first quarter of the steps, then falls to 0."""
    if config.schedule != "one-cycle":
        return None
    return optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=max(total_steps, 2),
                                         pct_start=0.25, anneal_strategy="linear", cycle_momentum=False)


def train(config: TrainConfig, dataset: Dataset, control: Control | None = None,
          on_epoch_end: Callable[[Net, int, torch.Tensor], None] | None = None,
          cuda_graph: bool = True) -> Iterator[dict]:
    """Train the tutorial's network; yield events as it goes. Pausing, stopping and every end are events.

    cuda_graph: on a CUDA GPU, replay each step as a recorded CUDA graph (see CudaGraphStep).
    """
    device = resolve_device(config.device)
    with cpu_kernels(device, config.batch_size), cuda_kernels(device):
        yield from _train(config, dataset, device, control or Control(), on_epoch_end, cuda_graph)


def _train(config: TrainConfig, dataset: Dataset, device: torch.device, control: Control,
           on_epoch_end: Callable[[Net, int, torch.Tensor], None] | None, cuda_graph: bool) -> Iterator[dict]:
    threads = choose_threads(config, device)
    if device.type == "cpu":
        torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    batches = torch.Generator().manual_seed(config.seed)

    model = build_model(config, dataset).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = make_optimizer(model, config, device)
    normalize = Normalizer(dataset.mean, dataset.std, device)
    # the whole dataset lives on the device once; batches are slices of it
    train_x, train_y = dataset.train_images.to(device), dataset.train_labels.to(device)
    test_x, test_y = dataset.test_images.to(device), dataset.test_labels.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    steps_per_epoch = math.ceil(len(train_y) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    scheduler = _make_scheduler(optimizer, config, total_steps)
    step_fn = make_step(model, criterion, optimizer, normalize, device, min(config.batch_size, len(train_y)),
                        train_x, train_y, cuda_graph=cuda_graph)
    yield dict(type="start", device=str(device), threads=threads, classes=list(dataset.classes),
               num_train=len(train_y), num_test=len(test_y), image_size=dataset.image_size,
               channels=dataset.channels, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
               log_interval=config.steps_per_log(steps_per_epoch), parameters=count_parameters(model),
               cuda_graph=isinstance(step_fn, CudaGraphStep), wall=time.time())

    step = images_seen = epochs_completed = 0
    train_seconds = 0.0
    status, message = "finished", ""
    last_eval: dict = {}
    final_running_loss = float("nan")
    host_loss = device.type == "cpu"  # reading a CPU loss is free; on a GPU it is a sync point
    log_every = config.steps_per_log(steps_per_epoch)
    # a guess spread evenly over the classes has a loss of ln(classes); ten times that means the weights blew
    # up (the network is sure of wrong answers), even where the numbers stay finite
    exploded = 10 * math.log(max(2, dataset.num_classes))
    cpu_seconds = 0.0  # the process's CPU time while it trained: well below threads x train_seconds on a busy machine
    clock, cpu_clock = time.perf_counter(), time.process_time()

    def lap() -> float:
        """Seconds of training since the last lap; time spent outside the loop is not counted."""
        nonlocal clock, cpu_clock, train_seconds, cpu_seconds
        now, cpu_now = time.perf_counter(), time.process_time()
        seconds, clock = now - clock, now
        cpu_seconds, cpu_clock = cpu_seconds + cpu_now - cpu_clock, cpu_now
        train_seconds += seconds
        return seconds

    def evaluate(epoch: int, partial: bool) -> dict:
        nonlocal clock, cpu_clock
        sync()
        lap()
        started = time.perf_counter()
        with _mkldnn(mkldnn_default):  # big inference batches: oneDNN is faster
            logits = infer(model, test_x, normalize)
            # the same fixed training images every epoch: train accuracy climbing while test accuracy
            # stalls is overfitting
            train_logits = infer(model, train_x[:TRAIN_SAMPLE], normalize)
        result = summarize(logits, test_y, dataset.num_classes)
        result["train_accuracy"] = (train_logits.argmax(1) == train_y[:TRAIN_SAMPLE]).float().mean().item()
        if on_epoch_end:
            on_epoch_end(model, epoch, torch.softmax(logits, 1))
        result["eval_seconds"] = time.perf_counter() - started
        clock, cpu_clock = time.perf_counter(), time.process_time()
        return dict(type="epoch", epoch=epoch, partial=partial, steps=step, images_seen=images_seen, **result)

    for epoch in range(1, config.epochs + 1):
        running = torch.zeros((), device=device) if not host_loss else 0.0
        running_steps = epoch_steps = 0
        epoch_loss = 0.0
        interval_images, interval_seconds, epoch_seconds, epoch_images = 0, 0.0, 0.0, 0
        last_check = -math.inf  # look at once: a whole short run can take less than one interval
        for images, labels in shuffled_batches(train_x, train_y, config.batch_size, batches):
            if time.monotonic() - last_check > 0.05:  # look for Stop/Pause ~20 times a second
                last_check = time.monotonic()
                if control.paused and not control.stopped:
                    epoch_seconds += lap()
                    yield dict(type="paused", step=step)
                    while control.paused and not control.stopped:
                        time.sleep(0.05)
                    yield dict(type="resumed", step=step)
                    clock, cpu_clock = time.perf_counter(), time.process_time()
                if control.stopped:
                    status, message = "stopped", STOP_MESSAGE
                    break

            loss = step_fn(images, labels)
            if scheduler is not None:
                scheduler.step()

            step += 1
            epoch_steps += 1
            running_steps += 1
            images_seen += len(labels)
            interval_images += len(labels)
            epoch_images += len(labels)
            if host_loss:
                value = loss.item()
                if not math.isfinite(value):
                    status, final_running_loss = "diverged", value
                    break
                running += value
            else:
                running += loss.detach()

            last_step = step == total_steps
            # the run's very first point comes after a tenth of an interval, so a chart shows life at once
            due = log_every if step > running_steps else max(1, log_every // 10)
            if running_steps >= due or last_step or epoch_steps == steps_per_epoch:
                sync()
                seconds = lap()
                interval_seconds += seconds
                epoch_seconds += seconds
                value = float(running) / running_steps  # note: a CPU-GPU sync point, once per log interval
                if not math.isfinite(value):
                    status, final_running_loss = "diverged", value
                    break
                final_running_loss = value
                epoch_loss += value * running_steps
                yield dict(type="loss", epoch=epoch, step=step, epoch_step=epoch_steps, images_seen=images_seen,
                           running_loss=value, train_seconds=train_seconds,
                           images_per_second=interval_images / max(interval_seconds, 1e-9),
                           threads=threads)
                if value > exploded:  # after its point, so the chart shows the loss shooting up
                    status = "diverged"
                    break
                running = torch.zeros((), device=device) if not host_loss else 0.0
                running_steps = interval_images = 0
                interval_seconds = 0.0
                clock, cpu_clock = time.perf_counter(), time.process_time()
            if last_step:
                break

        if status == "diverged":
            what = (f"exploded to {final_running_loss:,.1f}" if math.isfinite(final_running_loss)
                    else "became infinite or NaN")
            message = (f"the loss {what} at step {step}: the learning rate {config.lr:g} is too high "
                       f"for this network (with momentum {config.momentum:g}). Lower it, e.g. to "
                       f"{max(config.lr / 10, 0.0001):g}; the tutorial uses 0.001.")
            break
        if status == "stopped":
            break
        epoch_done = epoch_steps == steps_per_epoch
        last_eval = evaluate(epoch, partial=not epoch_done)
        last_eval.update(train_loss=epoch_loss / max(1, epoch_steps), seconds=epoch_seconds,
                         images_per_second=epoch_images / max(epoch_seconds, 1e-9))
        if epoch_done:
            epochs_completed = epoch
        yield last_eval
        if config.target_accuracy is not None and last_eval["test_accuracy"] >= config.target_accuracy:
            message = f"reached the target test accuracy of {config.target_accuracy:.1%}"
            break
        if step >= total_steps:
            if config.max_steps and step == config.max_steps and epoch < config.epochs:
                message = f"reached the step limit of {config.max_steps}"
            break

    learned_nothing = ""
    if status == "finished" and not message and epochs_completed:
        message = learned_nothing = no_learning_hint(config, last_eval["test_accuracy"], len(dataset.classes))
    yield dict(type="end", status=status, message=message, learned_nothing=bool(learned_nothing),
               epochs_completed=epochs_completed, steps=step,
               images_seen=images_seen, train_seconds=train_seconds,
               images_per_second=images_seen / train_seconds if train_seconds > 0 else 0.0,
               test_accuracy=last_eval.get("test_accuracy"),
               per_class_accuracy=dict(zip(dataset.classes, last_eval.get("per_class_accuracy", []))),
               final_running_loss=final_running_loss if math.isfinite(final_running_loss) else None,
               device=str(device), threads=threads, wall=time.time(),
               cpu_share=cpu_seconds / (train_seconds * threads) if device.type == "cpu" and train_seconds else None)


def no_learning_hint(config: TrainConfig, accuracy: float, num_classes: int) -> str:
    """What to change when a run ends no better than guessing, or "" when it learned something.

    Too high a learning rate does not always end in a NaN: the weights can jump so far that every ReLU
    outputs 0 for every image, the loss stays finite and the network predicts one class (seen on a
    GPU machine with learning rate 10 at batch 64, which diverges with a NaN here).
    """
    chance = 1 / num_classes
    if accuracy > chance + 0.05 * (1 - chance):  # 14.5% for 10 classes, 52.5% for 2
        return ""
    if config.lr >= 0.1:
        return (f"the test accuracy, {accuracy:.1%}, is no better than guessing ({chance:.0%}): with learning rate "
                f"{config.lr:g} the weights probably jumped so far that the network stopped learning. Lower it, "
                f"e.g. to {config.lr / 10:g}; the tutorial uses 0.001.")
    return (f"the test accuracy, {accuracy:.1%}, is no better than guessing ({chance:.0%}) yet: train for more "
            f"epochs, or raise the learning rate (now {config.lr:g}).")


def run_training(config: TrainConfig, control: Control | None = None, progress: Progress | None = None,
                 runs_root: str | os.PathLike = DEFAULT_ROOT, dataset: Dataset | None = None) -> Iterator[dict]:
    """Load the data, train, and record everything in a new run directory; yields the events.

    A crash is recorded in the run directory as `failed` and then raised to the caller.
    """
    device = resolve_device(config.device)  # a missing device is bad input: fail before any work
    dataset = dataset if dataset is not None else load_dataset(config.dataset, config.data_dir, progress)
    check_fits(config, str(device), channels=dataset.channels, image_size=dataset.image_size,
               num_classes=dataset.num_classes, num_train=len(dataset.train_labels),
               num_test=len(dataset.test_labels))  # before the first step, and before a run folder
    writer = RunWriter(runs_root, config)
    try:
        for event in train(config, dataset, control, on_epoch_end=writer.checkpoint):
            event["run_dir"] = str(writer.path)
            writer.event(event)
            if event["type"] == "end":
                writer.summary(event)
            yield event
    except BaseException as exc:
        failed = dict(type="end", status="failed", message=f"{type(exc).__name__}: {exc}",
                      run_dir=str(writer.path), wall=time.time())
        try:
            writer.event(failed)
            writer.summary(failed)
        except OSError:
            pass  # a full disk: the run is marked interrupted when it can be written again
        raise
    finally:
        writer.close()


if __name__ == "__main__":
    # `python -m core.train` runs this file as __main__; the CLI imports core.train, which would run it a
    # second time as another module (two of every class, Control and DeviceError included): this one serves
    sys.modules["core.train"] = sys.modules["__main__"]
    from core.cli import main

    raise SystemExit(main())
