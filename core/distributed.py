"""Data-parallel training with torch.distributed: DistributedDataParallel (DDP) under torchrun.

    torchrun --standalone --nproc-per-node 2 -m core.train --dataset shapes
    python -m core.train --nproc 2 --dataset shapes     # the same, through torch.distributed's launcher API

Every process (a rank) builds the same network from the seed, draws the same shuffled order each epoch and
trains on its own slice of each global batch (batch size x processes images); DDP averages the gradients
every step, so the replicas stay identical. Rank 0 alone evaluates, writes the run folder and reports.

Nothing may leave one rank waiting for another that went on: every decision that ends or pauses the loop is
rank 0's, sent to all ranks at a step number all of them know (`Team.agree`), and every collective has a
timeout. gloo on a CPU, nccl on CUDA GPUs (one per rank, `LOCAL_RANK`).
"""

from __future__ import annotations

import datetime
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Client, Listener
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

# A rank waits this long for the others in any one collective: rank 0 evaluating and checkpointing an epoch
# while the others wait fits in it (seconds; about a minute for a width-1024 network on one CPU thread); a rank
# that hangs ends the run as failed instead of hanging it. A rank that dies is noticed far sooner: its sockets
# close, and the launcher sees its exit within a tenth of a second.
COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=300)
CHECK_SECONDS = 0.05  # how often rank 0 looks at Stop and Pause: ~20 times a second, as in one process


class LaunchError(RuntimeError):
    """A rank of a data-parallel run failed; the message says which and how, `code` is its exit code (None: killed
    by a signal), `stopped` whether the launcher itself was told to stop (Ctrl-C, SIGTERM)."""

    def __init__(self, message: str, code: int | None = None, stopped: bool = False):
        super().__init__(message)
        self.code, self.stopped = code, stopped


class RankLost(RuntimeError):
    """Another rank of the run stopped answering: it ended, was killed, or hung past COLLECTIVE_TIMEOUT."""

    def __init__(self):
        super().__init__("another process of this data-parallel run stopped answering (it ended, was killed, or "
                         f"hung for {COLLECTIVE_TIMEOUT.seconds} s); this process stopped too")


def lost_rank(exc: BaseException) -> bool:
    """Whether exc is a collective failing for want of another rank (gloo and nccl raise RuntimeErrors)."""
    text = str(exc)
    return isinstance(exc, dist.DistError) or any(word in text for word in ("gloo", "NCCL", "Connection reset",
                                                                             "Connection closed", "Timed out"))


@dataclass(frozen=True)
class World:
    """This process's place among the ranks, as torchrun sets it in the environment."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    launched: bool = False  # started by torchrun (or the launcher API), even as a world of one

    @property
    def main(self) -> bool:
        return self.rank == 0


def world_from_env() -> World:
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return World()
    return World(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)),
                 int(env.get("LOCAL_WORLD_SIZE", 1)), launched=True)


def rank_device(world: World, device: torch.device) -> torch.device:
    """A CUDA rank trains on its own GPU: the one its LOCAL_RANK names."""
    if device.type != "cuda" or not world.launched:
        return device
    if world.local_rank >= torch.cuda.device_count():
        raise LaunchError(f"rank {world.rank} needs GPU {world.local_rank}, but this machine has "
                          f"{torch.cuda.device_count()}: start at most that many processes per machine")
    torch.cuda.set_device(world.local_rank)
    return torch.device("cuda", world.local_rank)


def backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def join(world: World, device: torch.device) -> None:
    """Join the process group torchrun's rendezvous set up (its address and port are in the environment)."""
    if world.launched and not dist.is_initialized():
        dist.init_process_group(backend(device), timeout=COLLECTIVE_TIMEOUT,
                                device_id=device if device.type == "cuda" else None)


class Team:
    """What the training loop asks of the other ranks. One process alone (size 1) asks nothing of anyone."""

    def __init__(self, world: World, device: torch.device):
        self.world, self.device = world, device
        self.size, self.rank, self.main = world.size, world.rank, world.main
        self.distributed = world.launched and dist.is_initialized()
        self.next_check = 0  # the step at which every rank next hears rank 0's Stop and Pause
        self._looked = -math.inf
        self._last = (0, time.perf_counter())  # (step, time) at rank 0's last check: how long a step takes

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model every rank trains: DDP averages the gradients over the ranks in backward."""
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def controls_due(self, step: int) -> bool:
        """Time to look at Stop and Pause: ~20 times a second; under DDP at steps rank 0 named in advance."""
        if self.distributed:
            return step >= self.next_check
        if time.monotonic() - self._looked > CHECK_SECONDS:
            self._looked = time.monotonic()
            return True
        return False

    def agree(self, step: int, stop: bool, pause: bool) -> tuple[bool, bool]:
        """Rank 0's Stop and Pause, as every rank hears them, and the step of the next check: as many steps as
        rank 0 takes in CHECK_SECONDS (one tiny broadcast per check, not per step)."""
        if not self.distributed:
            return stop, pause
        every = 1
        if self.main:
            last_step, last_time = self._last
            now = time.perf_counter()
            if step > last_step:
                every = max(1, min(10_000, int(CHECK_SECONDS * (step - last_step) / max(now - last_time, 1e-6))))
            self._last = (step, now)
        flags = torch.tensor([int(stop), int(pause), every], dtype=torch.int64, device=self.device)
        dist.broadcast(flags, src=0)
        stop, pause, every = (int(v) for v in flags.tolist())
        self.next_check = step + every
        return bool(stop), bool(pause)

    def restart_clock(self, step: int) -> None:
        """After a pause or an evaluation: the time since is not a step's time."""
        self._last = (step, time.perf_counter())

    def decide(self, flag: bool) -> bool:
        """Rank 0's decision (from what only it knows, e.g. the test accuracy) for every rank."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)], dtype=torch.int64, device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def mean(self, total, count: int):
        """The mean of a summed value over every rank's count (a log interval's loss: the global batch's loss)."""
        if not self.distributed:
            return total / max(1, count)
        values = torch.as_tensor(total, dtype=torch.float64, device=self.device).reshape(1).clone()
        dist.all_reduce(values)
        return values[0] / max(1, count * self.size)

    def replica_difference(self, model: nn.Module) -> float | None:
        """The largest difference between any rank's weights and rank 0's (0.0: the replicas stayed identical)."""
        if not self.distributed:
            return None
        mine = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
        theirs = mine.clone()
        dist.broadcast(theirs, src=0)
        worst = (mine - theirs).abs().max().reshape(1)
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        return float(worst.item())

    def rank_0_first(self, fn):
        """Run fn on rank 0 first (e.g. decoding a dataset into its cache), then on the others."""
        if not self.distributed:
            return fn()
        result = fn() if self.main else None
        dist.barrier()
        return result if self.main else fn()


def leave(world: World, code: int) -> None:
    """End a rank: after the run is recorded, through a barrier and os._exit.

    With torch 2.14 a gloo process group's normal teardown (destroy_process_group, or interpreter exit) aborts
    in about 1 run of 4 after its work is done ("terminate called without an active exception", SIGABRT), and
    torchrun reports the run failed. Rank 0 has written the summary and printed its JSON line by now, so the
    outcome does not depend on teardown; the barrier keeps a rank from leaving while another still talks.
    """
    if world.launched and dist.is_initialized():
        try:
            dist.barrier()
        except Exception:  # noqa: BLE001 - another rank already failed: leave anyway, with this rank's code
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def watch_launcher(on_gone) -> None:
    """Call on_gone once this rank's launcher (torchrun or a dashboard worker) is gone, and take away the
    launcher's temporary folder, which it can no longer remove; the rank ends ten seconds later if it has not
    (core/watch.py: the watch a dashboard worker keeps on its server too)."""
    from core.watch import watch_parent

    def gone() -> None:
        on_gone()
        folder = os.environ.get(TEMP_FOLDER)
        if folder and Path(folder).name.startswith("cnn-ddp-") and Path(folder).parent == Path(tempfile.gettempdir()):
            shutil.rmtree(folder, ignore_errors=True)

    watch_parent(gone)


# -- heartbeats: a rank that stops answering is noticed in a minute, not at the 5-minute collective timeout ----

HEARTBEAT_SECONDS = 5.0
# a rank with no heartbeat for this long is ended (SIGSTOP, a debugger, a hang in C); the variable is for tests
SILENT_SECONDS = float(os.environ.get("CNN_DDP_SILENT_SECONDS") or 60)
TEMP_FOLDER = "CNN_DDP_TEMP"  # the launcher's temporary folder, told to its ranks: heartbeats go there


def heartbeat(rank: int) -> None:
    """In a rank: a file of the launcher's folder, written every HEARTBEAT_SECONDS with this process's id."""
    folder = os.environ.get(TEMP_FOLDER)
    if not folder:
        return  # under torchrun itself: there the collective timeout is the watch
    path = Path(folder) / f"heartbeat-{rank}"

    def beat() -> None:
        while True:
            try:
                path.write_text(str(os.getpid()))
            except OSError:
                return  # the folder went with the launcher
            time.sleep(HEARTBEAT_SECONDS)

    threading.Thread(target=beat, daemon=True, name="heartbeat").start()


class Heartbeats:
    """In the launcher: a rank whose heartbeat is older than SILENT_SECONDS is ended (SIGKILL; the others then
    fail for want of it, and rank 0 writes the summary), and `silent` says which and why."""

    def __init__(self, folder: str):
        self.folder = Path(folder)
        self.silent: str | None = None
        self._done = threading.Event()

    def __enter__(self) -> "Heartbeats":
        threading.Thread(target=self._watch, daemon=True, name="heartbeats").start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(HEARTBEAT_SECONDS / 5):
            for path in self.folder.glob("heartbeat-*"):
                try:
                    age, pid = time.time() - path.stat().st_mtime, int(path.read_text())
                except (OSError, ValueError):
                    continue
                if age > SILENT_SECONDS and _is_child(pid):
                    self.silent = (f"rank {path.name.removeprefix('heartbeat-')} gave no sign of life for "
                                   f"{age:.0f} s (stopped or hung), so it was ended")
                    os.kill(pid, signal.SIGKILL)
                    return


def _is_child(pid: int) -> bool:
    """Whether pid is a process this one started (a heartbeat file never gets another process killed)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid()
    except (OSError, ValueError, IndexError):
        return False


def end_unended(run_dir: str | os.PathLike, failure: "LaunchError") -> None:
    """The summary rank 0 could not write (it was killed, or ended by force when the launcher was stopped), with
    the true reason; a run that rank 0 ended itself keeps its own."""
    from core.runs import RunWriter

    status = "interrupted" if failure.stopped else "failed"
    message = str(failure) if failure.stopped else f"the data-parallel run failed: {failure}"
    try:
        RunWriter.write_summary(run_dir, {"type": "end", "status": status, "message": message,
                                          "run_dir": str(run_dir), "wall": time.time()})
    except OSError:
        pass  # a full disk: the run is listed as interrupted, from its .running marker


# -- launching ---------------------------------------------------------------------------------

def launch(argv: list[str], nproc: int) -> None:
    """Run `python -m core.train ARGV` on nproc processes of this machine, as `torchrun --standalone
    --nproc-per-node N` does, through torch.distributed's launcher API. Returns when every rank ended with
    exit code 0; otherwise raises LaunchError naming the first rank that failed, with its exit code."""
    import logging

    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.launcher.api import LaunchConfig

    # the launcher logs every non-zero exit at length; a stopped run (exit code 4) is not an error to a user
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ["PYTHONPATH"] = python_path()  # the ranks find core/ from wherever the server was started
    # the launcher's own folders (a torchelastic_* folder per launch, left in /tmp otherwise) go when it ends
    with tempfile.TemporaryDirectory(prefix="cnn-ddp-") as logs, Heartbeats(logs) as heartbeats:
        config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=uuid.uuid4().hex,
                              rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                              monitor_interval=0.1, shutdown_timeout=5, logs_specs=DefaultLogsSpecs(log_dir=logs))
        os.environ[TEMP_FOLDER] = logs  # the ranks' heartbeats, and whoever cleans up after a killed launcher
        try:
            _launch(config, argv)
        except LaunchError as exc:
            if heartbeats.silent:
                raise LaunchError(heartbeats.silent, exc.code) from None
            raise
        finally:
            os.environ.pop(TEMP_FOLDER, None)


def _launch(config, argv: list[str]) -> None:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    try:
        elastic_launch(config, sys.executable)("-u", "-m", "core.train", *argv)
    except ChildFailedError as exc:
        rank, failure = first_failure(exc.failures)
        code = failure.exitcode
        if code is not None and code < 0:
            raise LaunchError(f"rank {rank} was killed by signal {-code} ({failure.signal_name()})") from None
        raise LaunchError(f"rank {rank} ended with exit code {code}", code) from None
    except SignalException as exc:
        raise LaunchError(f"the launcher was stopped by signal {exc.sigval.name}, and every rank with it",
                          stopped=True) from None


def python_path() -> str:
    """PYTHONPATH for a child `python -m core.train`: the project's folder first, whatever the working folder."""
    root = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join(dict.fromkeys(filter(None, [root, os.environ.get("PYTHONPATH")])))


def first_failure(failures: dict) -> tuple:
    """A rank killed by a signal first (the others then fail for want of it), else the first to fail."""
    return min(failures.items(), key=lambda kv: ((kv[1].exitcode or 0) >= 0, kv[1].timestamp, kv[0]))


# -- a dashboard worker and its rank 0 ---------------------------------------------------------------

class EventLink:
    """Rank 0's line to the dashboard worker that launched it: events go up, Stop/Pause/Resume come down."""

    def __init__(self, where: str, stop: threading.Event, pause: threading.Event):
        key, _, address = where.partition("@")  # RankRelay.where
        self.conn = Client(address, authkey=bytes.fromhex(key))
        self.stop, self.pause = stop, pause
        threading.Thread(target=self._listen, daemon=True, name="dashboard-controls").start()

    def _listen(self) -> None:
        try:
            while True:
                message = self.conn.recv()
                if message == "stop":
                    self.stop.set()
                elif message == "pause":
                    self.pause.set()
                elif message == "resume":
                    self.pause.clear()
        except (EOFError, OSError):  # the worker is gone: stop, keeping what was trained
            self.stop.set()

    def send(self, event: dict) -> None:
        try:
            self.conn.send(event)
        except OSError:
            self.stop.set()


class RankRelay:
    """In a dashboard worker: takes rank 0's events to the job's queue and the job's Stop/Pause to rank 0."""

    def __init__(self, events, stop, pause):
        self.events, self.stop, self.pause = events, stop, pause
        self.key = os.urandom(16)
        self.listener = Listener(family="AF_UNIX", authkey=self.key)
        self.end: dict | None = None
        self.run_dir: str | None = None
        self.conn = None

    @property
    def where(self) -> str:
        """What rank 0 is told (`--events`): the key and the address of the worker's socket, a file of its own."""
        return f"{self.key.hex()}@{self.listener.address}"

    def start(self) -> None:
        threading.Thread(target=self._relay, daemon=True, name="rank-events").start()

    def _relay(self) -> None:
        self.conn = self.listener.accept()
        threading.Thread(target=self._controls, daemon=True, name="rank-controls").start()
        try:
            while True:
                event = self.conn.recv()
                self.run_dir = event.get("run_dir") or self.run_dir
                if event["type"] == "end":
                    self.end = event  # sent on once the launch has ended: a rank may still fail in teardown
                else:
                    self.events.put(event)
        except (EOFError, OSError):
            pass

    def wait_end(self, seconds: float) -> dict | None:
        """Rank 0's end event, once the launch has returned (it was sent before the rank left)."""
        deadline = time.monotonic() + seconds
        while self.end is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.end

    def _controls(self) -> None:
        sent_pause = False
        try:
            while True:
                if self.stop.is_set():
                    self.conn.send("stop")
                    return
                if self.pause.is_set() != sent_pause:
                    sent_pause = self.pause.is_set()
                    self.conn.send("pause" if sent_pause else "resume")
                time.sleep(0.02)
        except OSError:
            pass
