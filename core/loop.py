"""The training loop of the tutorial as an iterator of events (the command line is core/train.py).

    for event in train(config, dataset, control):
        ...   # {"type": "start" | "loss" | "epoch" | "paused" | "resumed" | "end", ...}

Events are plain JSON-able dicts, so the same stream feeds the CLI, the dashboard's job
log and the run directory. Run it headless with `python -m core.train --help`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Iterator

import torch
import torch.nn as nn

from core.config import ConfigError, TrainConfig, preset
from core.data import Dataset, Normalizer, Progress, augment, epoch_steps, load_dataset, rank_batches
from core.device import (
    DeviceError,
    channels_last,
    choose_threads,
    cpu_kernels,
    cuda_kernels,
    inference_kernels,
    resolve_device,
)
from core.distributed import RankLost, Team, World, join, lost_rank, rank_device, world_from_env
from core.evaluate import infer, summarize
from core.memory import check_fits
from core.model import ModelArgs, Net, count_parameters
from core.optimizers import Rule, build
from core.runs import DEFAULT_ROOT, RunWriter
from core.train_step import CudaGraphStep, make_optimizer, make_scheduler, make_step

TUTORIAL_ACCURACY = 0.54  # what the tutorial's own loop reaches after 2 epochs
STOP_MESSAGE = "stopped by the user"  # a stop with a reason of its own (Control.stop) says that instead
TRAIN_SAMPLE = 2000  # training images measured at each epoch end: train accuracy beside test accuracy


def spread(n: int, k: int) -> torch.Tensor:
    """k of the indices 0..n-1 (all of them where k >= n), drawn the same way every time and sorted: a fair share of
    every class even where the images are stored class after class (an image folder)."""
    if k >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:k].sort().values


def train_share(dataset: Dataset, images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images and labels a run trains on: all of them, or (images > 0) that many, the same ones
    every run."""
    if not images:
        return dataset.train_images, dataset.train_labels
    pick = spread(len(dataset.train_labels), images)
    return dataset.train_images[pick], dataset.train_labels[pick]


class Control:
    """Stop and pause requests from outside the loop (UI thread, signal handler, parent process).

    Takes threading.Event or multiprocessing.Event objects, so it works in a thread or a child process.
    """

    def __init__(self, stop_event=None, pause_event=None):
        self._stop = stop_event if stop_event is not None else threading.Event()
        self._pause = pause_event if pause_event is not None else threading.Event()
        self.reason: tuple[str, str] | None = None  # (status, message) of a stop that is not the user's

    def stop(self, message: str | None = None, status: str = "stopped") -> None:
        """Stop at the next step; the run ends with `status` and `message` (by default: stopped by the user)."""
        if message and self.reason is None:
            self.reason = (status, message)
        self._stop.set()

    def pause(self) -> None:
        self._pause.set()

    def resume(self) -> None:
        self._pause.clear()

    @property
    def events(self) -> tuple:
        """(stop, pause): the events themselves, for what hears Stop and Pause by other means (a DDP job's ranks)."""
        return self._stop, self._pause

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return self._pause.is_set()


# -- the loop ---------------------------------------------------------------------------

def warm_up() -> None:
    """Pay the one-time costs of a first training step before a job needs it.

    The first forward and backward pass of each kind set up their kernels: the tutorial's batch 4 in the default
    memory format, and batch 64 in channels_last as the loop trains it (the Fast preset's widths). A spare dashboard
    worker does this while it waits, so the first loss point follows the click on Train within a second or two.
    Adam and RMSProp train with torch.optim, whose first optimizer in a process imports torch._dynamo (1.3-1.8 s
    here): building one here pays that too.
    """
    cpu = torch.device("cpu")
    build(Net().parameters(), Rule("adam"), cpu)
    for batch, config in ((4, TrainConfig()), (64, preset("fast", dataset="shapes"))):
        model = Net(ModelArgs(conv_width=config.conv_width, conv2_width=config.conv2_width))
        layout = torch.channels_last if channels_last(cpu, batch) else torch.contiguous_format
        model = model.to(memory_format=layout)
        optimizer = make_optimizer(model, config, cpu)
        with cpu_kernels(cpu, batch):
            images = torch.zeros(batch, 3, 32, 32).contiguous(memory_format=layout)
            loss = nn.functional.cross_entropy(model(images), torch.zeros(batch, dtype=torch.long))
            loss.backward()
            optimizer.step()


def build_model(config: TrainConfig, dataset: Dataset) -> Net:
    return Net(ModelArgs(in_channels=dataset.channels, image_size=dataset.image_size,
                         num_classes=dataset.num_classes, conv_width=config.conv_width,
                         conv2_width=config.conv2_width))


def train(config: TrainConfig, dataset: Dataset, control: Control | None = None, writer: RunWriter | None = None,
          cuda_graph: bool = True, team: Team | None = None) -> Iterator[dict]:
    """Train the tutorial's network; yield events as it goes. Pausing, stopping and every end are events.

    writer: the run folder each epoch's checkpoint and predictions go to (none: nothing is kept).
    cuda_graph: on a CUDA GPU, replay each step as a recorded CUDA graph (see CudaGraphStep).
    team: this process's rank among several training data-parallel (core/distributed.py); alone by default.
    """
    team = team or Team(World(), resolve_device(config.device))
    with cpu_kernels(team.device, config.batch_size), cuda_kernels(team.device):
        yield from Loop(config, dataset, team, control or Control(), writer, cuda_graph).run()


class Clock:
    """Training time: wall and CPU seconds while the loop trains; time spent outside it (evaluating, paused,
    a caller reading an event) is left out by `restart`."""

    def __init__(self):
        self.seconds = self.cpu_seconds = 0.0
        self.restart()

    def restart(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self) -> float:
        """Seconds of training since the last lap or restart, now counted."""
        wall, cpu = time.perf_counter(), time.process_time()
        seconds = wall - self._wall
        self.seconds += seconds
        self.cpu_seconds += cpu - self._cpu
        self._wall, self._cpu = wall, cpu
        return seconds


class Tally:
    """Steps, images, summed loss and training seconds since it was last reset: a log interval's or an epoch's."""

    def __init__(self, device: torch.device):
        self.on_host = device.type == "cpu"  # reading a CPU loss is free; on a GPU it is a sync point
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.loss = 0.0 if self.on_host else torch.zeros((), device=self.device)
        self.steps = self.images = 0
        self.seconds = 0.0

    def add(self, loss: torch.Tensor, images: int) -> None:
        self.loss += loss.item() if self.on_host else loss.detach()
        self.steps += 1
        self.images += images


class Loop:
    """One training run: `run` reads in the order it goes (set up here, then per epoch forward, backward and step
    over the batches with a running-loss point every log interval, then evaluate and checkpoint at the epoch's
    end); the methods below it are its steps."""

    def __init__(self, config: TrainConfig, dataset: Dataset, team: Team, control: Control,
                 writer: RunWriter | None, cuda_graph: bool):
        self.created = time.time()  # start-up phases (core.train --profile): building all this is one
        self.config, self.dataset, self.team, self.control = config, dataset, team, control
        self.device = device = team.device
        self.writer = writer
        self.threads = choose_threads(config, device, team.world.local_size)
        if device.type == "cpu":
            torch.set_num_threads(self.threads)
        torch.manual_seed(config.seed)  # every rank builds the same network (and DDP starts them from rank 0's)
        self.order = torch.Generator().manual_seed(config.seed)  # the batches' shuffle: the same on every rank
        # the flips and crops (config.augment): each rank its own, from the seed
        self.augment = torch.Generator().manual_seed(config.seed * 1000 + 1 + team.rank) if config.augment else None
        self.net = build_model(config, dataset).to(device)
        # on a CPU, channels_last memory format: oneDNN's convolutions run faster on it (core/device.py)
        fast_format = channels_last(device, config.batch_size, team.distributed)
        if fast_format:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.model = team.wrap(self.net)  # what trains: the network, or DDP around it
        self.optimizer = make_optimizer(self.model, config, device)
        self.normalize = Normalizer(dataset.mean, dataset.std, device, channels_last=fast_format)
        # the whole dataset lives on the device once; batches are slices of it
        self.train_x, self.train_y = (t.to(device) for t in train_share(dataset, config.train_images))
        # the training images whose accuracy is measured at every epoch's end: the same ones every epoch, drawn
        # from the whole set (an image folder lists its classes one after another)
        sample = spread(len(self.train_y), TRAIN_SAMPLE).to(device)
        self.sample_x, self.sample_y = self.train_x[sample], self.train_y[sample]
        self.test_x, self.test_y = dataset.test_images.to(device), dataset.test_labels.to(device)
        self.global_batch = config.batch_size * team.size
        self.steps_per_epoch = epoch_steps(len(self.train_y), config.batch_size, team.size)
        self.total_steps = min(config.epochs * self.steps_per_epoch, config.max_steps or math.inf)
        self.log_every = config.steps_per_log(self.steps_per_epoch)
        self.scheduler = make_scheduler(self.optimizer, config, self.total_steps)
        self.step_fn = make_step(self.model, nn.CrossEntropyLoss(), self.optimizer, self.normalize, device,
                                 min(config.batch_size, len(self.train_y)), self.train_x, self.train_y,
                                 # DDP hooks are not graphed; nor are Adam's and RMSProp's step counters
                                 cuda_graph=cuda_graph and not team.distributed and config.optimizer == "sgd")
        # a guess spread evenly over the classes has a loss of ln(classes); ten times that means the weights blew
        # up (the network is sure of wrong answers), even where the numbers stay finite
        self.diverged_above = 10 * math.log(max(2, dataset.num_classes))
        self.clock = Clock()
        self.step = self.images_seen = self.epochs_completed = 0
        self.status, self.message = "finished", ""
        self.final_loss = math.nan
        self.last_eval: dict = {}
        self.replica_difference: float | None = None
        # when the first and the last step ended, and the seconds each epoch's end took (evaluate, checkpoint)
        self.first_step_wall = self.last_step_wall = None
        self.eval_seconds = 0.0

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self) -> Iterator[dict]:
        yield self.start_event()
        self.clock.restart()
        for epoch in range(1, self.config.epochs + 1):
            epoch_tally, interval = Tally(self.device), Tally(self.device)  # the epoch's and the log interval's
            for images, labels, images_now in rank_batches(self.train_x, self.train_y, self.config.batch_size,
                                                           self.order, self.team.rank, self.team.size):
                if self.team.controls_due(self.step):  # Pause and Stop, ~20 times a second
                    yield from self.obey_controls(epoch_tally)
                    if self.status != "finished":  # stopped: by the user, or interrupted (its launcher gone)
                        break
                if self.augment is not None:
                    images = augment(images, self.augment)  # flipped and shifted pictures, made on the device
                loss = self.step_fn(images, labels)  # forward, loss, backward, optimizer step (train_step.py)
                if self.scheduler is not None:
                    self.scheduler.step()
                self.step += 1
                if self.step == 1:
                    self.sync()
                    self.first_step_wall = time.time()
                self.images_seen += images_now  # every rank's images: the global batch
                interval.add(loss, images_now)
                if self.log_due(interval, epoch_tally):  # the running loss
                    if point := self.log_point(epoch, interval, epoch_tally):
                        yield point
                    if self.status == "diverged":
                        break
                if self.step == self.total_steps:
                    break
            if self.status != "finished":  # stopped or diverged: no evaluation of a half-trained epoch
                break
            if epoch_tally.steps == self.steps_per_epoch:
                self.epochs_completed = epoch
            self.sync()
            self.last_step_wall = time.time()
            if self.team.main:  # under DDP rank 0 alone evaluates and checkpoints; the others wait for its word
                result, probabilities = self.evaluate(epoch, epoch_tally)
                if self.writer is not None:
                    self.writer.checkpoint(self.net, epoch, probabilities)
                self.eval_seconds += time.time() - self.last_step_wall
                self.clock.restart()  # none of it was training time
                yield result
            done = self.team.decide(self.team.main and self.done(epoch))  # a target or step limit reached
            self.team.restart_clock(self.step)
            if done:
                break
        self.replica_difference = self.team.replica_difference(self.net)
        yield self.end_event()

    def log_due(self, interval: Tally, epoch_tally: Tally) -> bool:
        """A running-loss point is due: a log interval's steps done, or the epoch's or the run's last step. The
        run's very first point comes after a tenth of an interval, so a chart shows life at once."""
        last = self.step == self.total_steps or interval.steps + epoch_tally.steps == self.steps_per_epoch
        due = self.log_every if self.step > interval.steps else max(1, self.log_every // 10)
        return interval.steps >= due or last

    def obey_controls(self, epoch_tally: Tally) -> Iterator[dict]:
        """Pause (events either side of the wait, which is not training time) and Stop: rank 0's, under DDP."""
        stop, pause = self.team.agree(self.step, self.control.stopped, self.control.paused)
        if pause and not stop:
            epoch_tally.seconds += self.clock.lap()
            yield dict(type="paused", step=self.step)
            while pause and not stop:
                time.sleep(0.05)
                stop, pause = self.team.agree(self.step, self.control.stopped, self.control.paused)
            yield dict(type="resumed", step=self.step)
            self.clock.restart()
            self.team.restart_clock(self.step)
        if stop:
            self.status, self.message = self.control.reason or ("stopped", STOP_MESSAGE)

    def log_point(self, epoch: int, interval: Tally, epoch_tally: Tally) -> dict | None:
        """The interval's running loss as an event (none where it is not a number), then a new interval; a loss
        that blew up ends the run."""
        self.sync()
        interval.seconds += self.clock.lap()
        value = float(self.team.mean(interval.loss, interval.steps))  # every rank's: on a GPU a sync point
        self.final_loss = value
        point = None
        if math.isfinite(value):
            point = dict(type="loss", epoch=epoch, step=self.step, epoch_step=epoch_tally.steps + interval.steps,
                       images_seen=self.images_seen, running_loss=value, train_seconds=self.clock.seconds,
                       images_per_second=interval.images / max(interval.seconds, 1e-9), threads=self.threads)
        if not value <= self.diverged_above:  # after its point, so the chart shows the loss shooting up; NaN too
            self.status, self.message = "diverged", self.divergence_message(value)
        epoch_tally.loss += value * interval.steps
        epoch_tally.steps += interval.steps
        epoch_tally.images += interval.images
        epoch_tally.seconds += interval.seconds
        interval.reset()
        self.clock.restart()  # the time the caller takes with the event is not training time
        return point

    def divergence_message(self, value: float) -> str:
        what = f"exploded to {value:,.1f}" if math.isfinite(value) else "became infinite or NaN"
        c = self.config
        rule = f"momentum {c.momentum:g}" if c.optimizer == "sgd" else c.optimizer
        return (f"the loss {what} at step {self.step}: the learning rate {c.lr:g} is too high for this network "
                f"(with {rule}). Lower it, e.g. to {max(c.lr / 10, 0.0001):g}; the tutorial "
                "uses 0.001.")

    def evaluate(self, epoch: int, epoch_tally: Tally) -> tuple[dict, torch.Tensor]:
        """Test accuracy (and train accuracy on fixed training images) at the epoch's end, as an event, and the
        test images' class probabilities (the Results page's predictions)."""
        self.sync()
        self.clock.lap()
        started = time.perf_counter()
        with inference_kernels():  # big inference batches: oneDNN is faster
            logits = infer(self.net, self.test_x, self.normalize)
            # the same fixed training images every epoch: train accuracy climbing while test accuracy stalls
            # is overfitting
            train_logits = infer(self.net, self.sample_x, self.normalize)
        result = summarize(logits, self.test_y, self.dataset.num_classes)
        result["train_accuracy"] = (train_logits.argmax(1) == self.sample_y).float().mean().item()
        full_epoch = epoch_tally.steps == self.steps_per_epoch
        self.last_eval = dict(type="epoch", epoch=epoch, partial=not full_epoch, steps=self.step,
                              images_seen=self.images_seen, **result, eval_seconds=time.perf_counter() - started,
                              train_loss=epoch_tally.loss / max(1, epoch_tally.steps), seconds=epoch_tally.seconds,
                              images_per_second=epoch_tally.images / max(epoch_tally.seconds, 1e-9))
        return self.last_eval, torch.softmax(logits, 1)

    def done(self, epoch: int) -> bool:
        """The run ends early: it reached its target accuracy or its step limit."""
        c = self.config
        if c.target_accuracy is not None and self.last_eval["test_accuracy"] >= c.target_accuracy:
            self.message = f"reached the target test accuracy of {c.target_accuracy:.1%}"
            return True
        if self.step >= self.total_steps:
            if c.max_steps and self.step == c.max_steps and epoch < c.epochs:
                self.message = f"reached the step limit of {c.max_steps}"
            return True
        return False

    def start_event(self) -> dict:
        d = self.dataset
        return dict(type="start", device=str(self.device), threads=self.threads, classes=list(d.classes),
                    num_train=len(self.train_y), num_test=len(self.test_y), image_size=d.image_size,
                    channels=d.channels, steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps,
                    log_interval=self.log_every, parameters=count_parameters(self.net),
                    cuda_graph=isinstance(self.step_fn, CudaGraphStep), wall=time.time(),
                    setup_seconds=time.time() - self.created, **self.batch_sizes())

    def batch_sizes(self) -> dict:
        """The batch size is per process; a step of `world_size` processes takes the global batch."""
        return dict(world_size=self.team.size, batch_size=self.config.batch_size, global_batch_size=self.global_batch)

    def end_event(self) -> dict:
        learned_nothing = ""
        if self.status == "finished" and not self.message and self.epochs_completed and self.last_eval:
            self.message = learned_nothing = no_learning_hint(self.config, self.last_eval["test_accuracy"],
                                                              self.dataset.num_classes)
        seconds, cpu = self.clock.seconds, self.device.type == "cpu"
        return dict(type="end", status=self.status, message=self.message, learned_nothing=bool(learned_nothing),
                    epochs_completed=self.epochs_completed, steps=self.step, images_seen=self.images_seen,
                    train_seconds=seconds, images_per_second=self.images_seen / seconds if seconds > 0 else 0.0,
                    test_accuracy=self.last_eval.get("test_accuracy"),
                    per_class_accuracy=dict(zip(self.dataset.classes, self.last_eval.get("per_class_accuracy", []))),
                    final_running_loss=self.final_loss if math.isfinite(self.final_loss) else None,
                    device=str(self.device), threads=self.threads, wall=time.time(), **self.batch_sizes(),
                    replica_difference=self.replica_difference, eval_seconds=self.eval_seconds,
                    first_step_wall=self.first_step_wall, last_step_wall=self.last_step_wall,
                    # the CPU the threads got: well below 1 on a machine another program keeps busy
                    cpu_share=self.clock.cpu_seconds / (seconds * self.threads) if cpu and seconds else None)


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


def check_fits_dataset(config: TrainConfig, device: torch.device, dataset: Dataset, processes: int = 1) -> None:
    """Bad input (memory too small for the network and batch) before the first step, and before a run folder;
    `processes` of them on this machine's memory, when a launcher checks a CPU data-parallel run."""
    check_fits(config, str(device), processes, channels=dataset.channels, image_size=dataset.image_size,
               num_classes=dataset.num_classes,
               num_train=min(config.train_images or math.inf, len(dataset.train_labels)),
               num_test=len(dataset.test_labels))


def load_checked(config: TrainConfig, device: torch.device, progress: Progress | None = None) -> Dataset:
    """The run's dataset (decoded into its cache the first time), checked to fit the device with the network."""
    dataset = load_dataset(config.dataset, config.data_dir, progress)
    check_fits_dataset(config, device, dataset)
    return dataset


def check_launch(config: TrainConfig, progress: Progress | None = None) -> torch.device:
    """Before the processes of a data-parallel run start (the CLI's --nproc, a dashboard job): what a user can
    fix, said once: the device (and a GPU for each process), the dataset (decoded into its cache now, so the
    ranks only read it), the memory. Returns the device."""
    device = resolve_device(config.device)
    if device.type == "cuda" and config.nproc > torch.cuda.device_count():
        raise DeviceError(f"--nproc {config.nproc} needs a GPU each, and this machine has "
                          f"{torch.cuda.device_count()}")
    dataset = load_dataset(config.dataset, config.data_dir, progress)
    check_fits_dataset(config, device, dataset, config.nproc if device.type == "cpu" else 1)  # every rank's share
    return device


def run_training(config: TrainConfig, control: Control | None = None, progress: Progress | None = None,
                 runs_root: str | os.PathLike = DEFAULT_ROOT, dataset: Dataset | None = None,
                 run_name: str | None = None) -> Iterator[dict]:
    """Load the data, train, and record everything in a new run directory; yields the events.

    Under torchrun every rank calls this: each joins the process group and trains its share; rank 0 alone
    decodes the dataset first (the others then read its cache) and writes the run directory.
    A crash is recorded in the run directory as `failed` and then raised to the caller.
    """
    world = world_from_env()
    if config.nproc != world.size:
        raise ConfigError(f"this run is for {config.nproc} processes but {world.size} started: launch it with "
                          f"`python -m core.train --nproc {config.nproc}` or torchrun --nproc-per-node")
    device = rank_device(world, resolve_device(config.device))  # a missing device is bad input: before any work
    join(world, device)
    team = Team(world, device)
    if dataset is None:
        dataset = team.rank_0_first(lambda: load_checked(config, device, progress if team.main else None))
    else:
        check_fits_dataset(config, device, dataset)
    if not team.main:
        try:
            yield from train(config, dataset, control, team=team)
        except RuntimeError as exc:
            if team.distributed and lost_rank(exc):
                raise RankLost() from exc
            raise
        return
    writer = RunWriter(runs_root, config, run_name)  # a launcher names it, to end it where rank 0 could not
    try:
        for event in train(config, dataset, control, writer, team=team):
            event["run_dir"] = str(writer.path)
            writer.event(event)
            if event["type"] == "end":
                writer.summary(event)
            yield event
    except BaseException as exc:
        lost = team.distributed and lost_rank(exc)
        failed = dict(type="end", status="failed", run_dir=str(writer.path), wall=time.time(),
                      message=str(RankLost()) if lost else f"{type(exc).__name__}: {exc}")
        try:
            writer.event(failed)
            writer.summary(failed)
        except OSError:
            pass  # a full disk: the run is marked interrupted when it can be written again
        if lost:
            raise RankLost() from exc
        raise
    finally:
        writer.close()
