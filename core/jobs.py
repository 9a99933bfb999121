"""Background training jobs for the dashboard: one worker per job, an event log per job, a server-wide limit.

The worker is a spawned child process by default: the training loop runs off the
server's GIL, a crash in it cannot take the server down, and its GPU memory is freed
when it exits. Importing torch takes seconds, so one spare worker is kept warm (torch
already imported) and the next job starts in it at once.

Only plain data crosses the process boundary: a config dict in, event dicts out.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import multiprocessing.spawn as mp_spawn
import os
import queue
import secrets
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import TrainConfig
from core.history import History

ACTIVE = ("waiting", "starting", "running", "paused")
STOP_GRACE_SECONDS = 1.0


def log(line: str) -> None:
    """One line in the server's log (stderr): what an operator reads when a job misbehaves."""
    print(f"{time.strftime('%H:%M:%S')} cnn-dashboard: {line}", file=sys.stderr, flush=True)


def env_int(name: str, default: int, low: int, high: int) -> int:
    """A whole-number setting from the environment; a value that is not one (or out of range) is replaced by
    the default, with one line in the server's log saying so."""
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        value = int(text.strip())
        if low <= value <= high:
            return value
    except ValueError:
        pass
    log(f"{name}={text!r} is not a whole number from {low} to {high}; using {default}")
    return default


_said: set[str] = set()


def env_path(name: str, default: str) -> str:
    """A folder setting from the environment. Empty (or blank) is not a folder: it would make the folder the server
    was started in the runs or data folder, so the default is used, with one line in the server's log."""
    text = os.environ.get(name)
    if text is None:
        return default
    if text.strip() == "":
        if name not in _said:
            _said.add(name)
            log(f"{name} is empty; using {default!r}")
        return default
    return text


# -- the worker (runs in the child process or a thread) -----------------------------------

SERVER_GONE = "the dashboard's server stopped, and its training jobs with it"


def _die_with_parent(parent: int, tasks, events, control) -> None:
    """In a worker process: when the server is gone (killed, say), stop training (the run keeps its history
    and is marked stopped) and exit, instead of training on to the end as an orphan nobody reads."""
    while os.getppid() == parent:
        time.sleep(0.5)
    events.cancel_join_thread()  # nobody reads the events any more: exiting must not wait to send them
    control.stop(SERVER_GONE)  # a training job stops within a step and writes its summary, then the process ends
    tasks.put(None)  # a spare, still waiting for its task, ends at once
    time.sleep(8)  # whatever is still busy (decoding a dataset, say) ends here
    os._exit(1)


def _worker_main(tasks, events, stop, pause) -> None:
    """Wait for one job, run it, report every event; exceptions become a `failed` end event."""
    import core.device
    import core.loop  # the slow imports and first-step set-up happen while the worker is still a spare

    control = core.loop.Control(stop, pause)  # Stop and Pause from the server; Stop with a reason from the watch
    parent = mp.parent_process()
    if parent is not None:  # a process of its own (a thread worker must not change the server's malloc)
        # the server's pid as it spawned this process: os.getppid() here, after the seconds of importing torch,
        # would be init's already if the server died meanwhile, and the worker would wait for it forever
        threading.Thread(target=_die_with_parent, args=(parent.pid, tasks, events, control), daemon=True).start()
        core.device.keep_freed_memory()
    core.loop.warm_up()
    task = tasks.get()  # a spare waits here (None: dismissed; its server gone: _die_with_parent ends it)
    if task is None:
        return
    _run_job(task, events, control)


def _run_job(task: dict, events, control) -> None:
    from core.config import ConfigError
    from core.data import DatasetError
    from core.device import DeviceError
    from core.loop import run_training

    last_progress = [0.0]

    def progress(message: str, fraction: float) -> None:
        now = time.monotonic()
        if fraction >= 1 or now - last_progress[0] > 0.2:
            last_progress[0] = now
            events.put({"type": "progress", "message": message, "fraction": float(fraction)})

    from core.speed import SpeedError

    stop, pause = control.events
    try:
        if task.get("kind") == "sweep":
            _run_sweep(task["spec"], events, stop)
            return
        if task.get("kind") == "scaling":
            _run_scaling(task["spec"], task["data_dir"], events, stop)
            return
        config = TrainConfig.from_dict(task["config"])
        fixed = env_int("CNN_DASHBOARD_WORKER_THREADS", 0, 1, 256)
        if config.threads == 0 and fixed:
            config = config.replace(threads=fixed)
        if config.nproc > 1:
            _run_ranks(config, task["runs_root"], events, stop, pause, progress)
            return
        for event in run_training(config, control, progress, runs_root=task["runs_root"]):
            events.put(event)
    except (ConfigError, DatasetError, DeviceError, SpeedError) as exc:
        events.put({"type": "end", "status": "failed", "message": str(exc), "bad_input": True})
    except Exception as exc:  # noqa: BLE001 - reported to the user as the job's message
        events.put({"type": "end", "status": "failed", "message": _describe(exc),
                    "traceback": traceback.format_exc(limit=8)})


def _run_ranks(config: TrainConfig, runs_root: str, events, stop, pause, progress) -> None:
    """A data-parallel job: this worker is the torchrun launch (core/distributed.py). Rank 0's events come up
    through a RankRelay, Stop and Pause go down to it, and it tells every rank."""
    from core.config import command_line
    from core.distributed import LaunchError, RankRelay, launch, rank_argv
    from core.loop import check_launch
    from core.runs import RunWriter, run_name
    from core.train import ENDED_BY_RANK_0

    check_launch(config, progress)  # bad input, said before any process starts
    events.put({"type": "progress", "message": f"starting {config.nproc} processes (DDP)", "fraction": 1.0})
    relay = RankRelay(events, stop, pause)
    relay.start()
    failure, name = None, run_name(config.dataset)  # rank 0 makes the folder; named here, so it can be ended here
    try:
        launch(rank_argv(command_line(config)) + ["--runs-dir", runs_root, "--events", relay.where,
                                                  "--run-name", name], config.nproc)
    except LaunchError as exc:
        failure = exc
    end = relay.wait_end(2.0)
    expected = end is not None and (failure is None or failure.code in ENDED_BY_RANK_0)
    if not expected:
        stopped = failure is not None and failure.stopped and stop.is_set()  # Stop, then ended by force
        end = {"type": "end", "status": "stopped" if stopped else "failed", "run_dir": relay.run_dir,
               "wall": time.time(), "message": "stopped by the user" if stopped else
               f"the data-parallel run failed: {failure or 'rank 0 ended without a word'}"}
        run_dir = relay.run_dir or str(Path(runs_root) / name)  # rank 0 may have died before its first event
        end["run_dir"] = run_dir if Path(run_dir).is_dir() else None
        if end["run_dir"]:
            RunWriter.write_summary(run_dir, end)
    events.put(end)


def _run_sweep(spec: dict, events, stop) -> None:
    from core.speed import SweepSpec, sweep

    spec = SweepSpec.from_dict(spec)
    _stream_rows(sweep(spec, stop=stop.is_set), len(spec.combinations()), events)


def _run_scaling(spec: dict, data_dir: str, events, stop) -> None:
    from core.data import load_dataset
    from core.speed import ScalingSpec, scaling

    spec = ScalingSpec.from_dict(spec)
    load_dataset("shapes", data_dir)  # made once here, not by each measurement
    _stream_rows(scaling(spec, data_dir, stop=stop.is_set), len(spec.combinations()), events)


def _stream_rows(rows, total: int, events) -> None:
    """A measuring job's events: start, a row per measurement as it comes, and how many were made."""
    events.put({"type": "start", "total_steps": total, "wall": time.time()})
    done = 0
    for row in rows:
        done += 1
        events.put({"type": "speed_row", "index": done, **row})
    status = "stopped" if done < total else "finished"
    events.put({"type": "end", "status": status, "message": f"{done} of {total} measurements", "wall": time.time()})


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if "out of memory" in str(exc).lower():
        text += " - the network or batch is too big for this device; lower the batch size or the width."
    return text


_without_main = threading.local()
_preparation_data = mp_spawn.get_preparation_data


def _preparation_data_without_main(name):
    data = _preparation_data(name)
    if getattr(_without_main, "on", False):
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


mp_spawn.get_preparation_data = _preparation_data_without_main


def _start_without_main(process) -> None:
    """Start a spawned process that does not re-run the caller's __main__.

    spawn re-imports the parent's __main__ in the child. Under Streamlit that is the page script
    being run, which would draw a page and start more workers in the child. The worker needs
    nothing from __main__ (its target lives in this module), so the child is told of none. Only
    this thread's start is changed: Streamlit sets sys.modules["__main__"] at the start of every
    script run, in other threads, so that global is never touched here.
    """
    _without_main.on = True
    try:
        process.start()
    finally:
        _without_main.on = False


class _Worker:
    """A started worker waiting for its one task: a spawned process, or a thread in tests."""

    def __init__(self, kind: str):
        self.kind = kind
        if kind == "process":
            ctx = mp.get_context("spawn")
            self.tasks, self.events = ctx.Queue(), ctx.Queue()
            self.stop_event, self.pause_event = ctx.Event(), ctx.Event()
            self.handle = ctx.Process(target=_worker_main, name="cnn-dashboard-worker", daemon=True,
                                      args=(self.tasks, self.events, self.stop_event, self.pause_event))
            _start_without_main(self.handle)
        else:
            self.tasks, self.events = queue.Queue(), queue.Queue()
            self.stop_event, self.pause_event = threading.Event(), threading.Event()
            self.handle = threading.Thread(target=_worker_main, name="cnn-dashboard-worker", daemon=True,
                                           args=(self.tasks, self.events, self.stop_event, self.pause_event))
            self.handle.start()

    def alive(self) -> bool:
        return self.handle.is_alive()

    def exit_description(self) -> str:
        code = getattr(self.handle, "exitcode", None)
        if code is not None and code < 0:
            return f"the training process was killed by signal {-code}" + (" (out of memory?)" if code == -9 else "")
        return f"the training process ended unexpectedly (exit code {code})"

    def terminate(self) -> None:
        if self.kind == "process" and self.handle.is_alive():
            self.handle.terminate()

    def reap(self, seconds: float = 10.0) -> None:
        """Wait for an ended worker, so that it leaves no zombie process behind."""
        if self.kind == "process":
            self.handle.join(seconds)
            if self.handle.is_alive():
                self.handle.kill()
                self.handle.join(2)

    def dismiss(self) -> None:
        """A spare that is no longer needed exits on its own."""
        try:
            self.tasks.put(None)
        except (OSError, ValueError):
            pass


# -- jobs ----------------------------------------------------------------------------------

@dataclass
class Snapshot:
    """What a page draws: a consistent copy of a job's state at one moment."""

    id: int
    kind: str
    status: str
    message: str
    config: Any  # TrainConfig (a training job) or SweepSpec (a speed sweep)
    place: int  # place in the queue while waiting (1 = next), else 0
    history: History
    run_dir: str | None
    created: float

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    # what pages read most, from the history
    start = property(lambda self: self.history.start)
    losses = property(lambda self: self.history.losses)
    epochs = property(lambda self: self.history.epochs)
    rows = property(lambda self: self.history.rows)
    end = property(lambda self: self.history.end)
    progress = property(lambda self: self.history.progress)
    last_loss = property(lambda self: self.history.last_loss)
    fraction_done = property(lambda self: self.history.fraction_done)


class Job:
    """One queued or running piece of work in a worker: a training run (TrainJob) or a speed sweep (SweepJob).

    Its worker's events go into its History as they come (see JobManager._follow), each handled once.
    """

    kind = ""

    def __init__(self, id: int, config: Any, queue: "JobManager"):
        self.id, self.config, self.created = id, config, time.time()
        self.token = secrets.token_urlsafe(12)  # names the job in its page's URL and its live view's route
        self.status, self.message = "waiting", ""
        self.run_dir: str | None = None
        self.history = History()
        self.worker: _Worker | None = None
        self._queue = queue
        self._lock = threading.Lock()

    def task(self, runs_root: str) -> dict:
        """What the worker is sent: plain data only."""
        raise NotImplementedError

    # -- controls ----------------------------------------------------------------------
    def stop(self) -> None:
        """End the job within a second, keeping what it has (history and last checkpoint)."""
        with self._lock:
            if self.status not in ACTIVE:
                return
            worker = self.worker
            if worker is None:  # still waiting: it simply never starts
                self._finish_locked("stopped", "stopped before it started")
        if worker is None:
            self._queue.schedule()
            return
        worker.stop_event.set()
        threading.Timer(STOP_GRACE_SECONDS + 1.0, self._force_stop).start()

    def _force_stop(self) -> None:
        """A worker still busy (e.g. decoding a dataset) after Stop is ended by force."""
        if self.status in ACTIVE and self.worker is not None:
            self.worker.terminate()

    def pause(self) -> None:
        with self._lock:
            if self.worker is not None and self.status in ("running", "starting"):
                self.worker.pause_event.set()
                self._become_locked("paused")

    def resume(self) -> None:
        with self._lock:
            if self.worker is not None and self.status == "paused":
                self.worker.pause_event.clear()
                self._become_locked("running")

    # -- state ---------------------------------------------------------------------------
    def version(self) -> tuple:
        """Changes whenever what a snapshot shows does (cheap: for a live view asking many times a second)."""
        return self.status, self.history.count, self._queue.place(self)

    def snapshot(self) -> Snapshot:
        with self._lock:
            history, status, message = self.history.copy(), self.status, self.message
        place = self._queue.place(self) if status == "waiting" else 0
        return Snapshot(self.id, self.kind, status, message, self.config, place, history, self.run_dir,
                        self.created)

    def record(self, event: dict) -> None:
        """One event from the worker."""
        with self._lock:
            self.history.add(event)
            kind = event["type"]
            if event.get("run_dir"):
                self.run_dir = event["run_dir"]
            if kind in ("start", "resumed") or (kind in ("loss", "speed_row") and self.status == "starting"):
                self._become_locked("running")
            elif kind == "paused":
                self._become_locked("paused")
            elif kind == "end":
                self._finish_locked(event["status"], event.get("message", ""))

    def _become_locked(self, status: str) -> bool:
        """The one place a job's status changes (its lock held). A job that has ended never becomes active again:
        a Pause or Resume that loses the race with the worker's end event changes nothing, so the job cannot hold
        its slot for good. Returns whether the status changed."""
        if self.status not in ACTIVE:
            return False
        self.status = status
        return True

    def _finish_locked(self, status: str, message: str) -> None:
        if self._become_locked(status):
            self.message = message
            log(f"job {self.id} {status} after {time.time() - self.created:.1f} s" + (f": {message}" if message
                                                                                       else ""))


class TrainJob(Job):
    kind = "train"

    def task(self, runs_root: str) -> dict:
        return {"kind": "train", "config": self.config.to_dict(), "runs_root": runs_root}


class SweepJob(Job):
    """A speed sweep (core/speed.py): a row per measurement, no run folder."""

    kind = "sweep"

    def task(self, runs_root: str) -> dict:
        return {"kind": "sweep", "spec": self.config.to_dict()}


class ScalingJob(Job):
    """Training on 1, 2, ... processes (core/speed.py's scaling): a row per measurement."""

    kind = "scaling"

    def __init__(self, id: int, config: Any, queue: "JobManager", data_dir: str):
        super().__init__(id, config, queue)
        self.data_dir = data_dir

    def task(self, runs_root: str) -> dict:
        return {"kind": "scaling", "spec": self.config.to_dict(), "data_dir": self.data_dir}


class JobManager:
    """Starts jobs, keeps at most `max_running` at once (the rest wait in order), tracks their events."""

    def __init__(self, max_running: int | None = None, runs_root: str = "runs", worker: str = "process",
                 keep_spare: bool = True):
        default = max(1, (os.cpu_count() or 2) // 2)
        self.max_running = max_running or env_int("CNN_DASHBOARD_MAX_JOBS", default, 1, 64)
        self.runs_root = runs_root
        self.worker_kind = worker
        self.keep_spare = keep_spare and worker == "process"
        self._jobs: dict[int, Job] = {}
        self._pending: list[Job] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._spare: _Worker | None = None
        self._closed = False  # shut down: no spare is warmed any more
        from core.runs import mark_interrupted

        for name in mark_interrupted(runs_root):  # runs a stopped server (or a killed CLI) left unfinished
            log(f"run {name} ended without finishing: marked interrupted")
        if self.keep_spare:
            threading.Thread(target=self._warm_spare, daemon=True).start()

    def start(self, config: TrainConfig) -> TrainJob:
        """Queue a training job and return its handle at once; it starts as soon as the server-wide limit allows."""
        return self._add(TrainJob(next(self._ids), config, self))

    def start_sweep(self, spec) -> SweepJob:
        """Queue a speed sweep (a core.speed.SweepSpec), as a job like any other."""
        return self._add(SweepJob(next(self._ids), spec, self))

    def start_scaling(self, spec, data_dir: str) -> ScalingJob:
        """Queue a scaling measurement (a core.speed.ScalingSpec) on the Shapes set in data_dir."""
        return self._add(ScalingJob(next(self._ids), spec, self, data_dir))

    def _add(self, job: Job) -> Job:
        with self._lock:
            self._jobs[job.id] = job
            self._pending.append(job)
        self.schedule()
        return job

    def get(self, job_id: int | None) -> Job | None:
        return self._jobs.get(job_id) if job_id is not None else None

    def by_token(self, token: str | None) -> Job | None:
        """The job whose token this is (a page reloaded from its URL), or None."""
        if not token:
            return None
        return next((j for j in list(self._jobs.values()) if secrets.compare_digest(j.token, str(token))), None)

    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    def running(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.status in ("starting", "running", "paused")]

    def place(self, job: Job) -> int:
        with self._lock:
            return self._pending.index(job) + 1 if job in self._pending else 0

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True  # a job that ends after this does not warm a new spare (one was left running)
        for job in self.jobs():
            job.stop()
        with self._lock:
            if self._spare is not None:
                self._spare.dismiss()
                self._spare = None

    def schedule(self) -> None:
        """Start waiting jobs while the limit allows (after a job is queued, stopped or has ended)."""
        with self._lock:
            self._pending = [j for j in self._pending if j.status == "waiting"]
            while self._pending and len(self.running()) < self.max_running:
                job = self._pending.pop(0)
                with job._lock:
                    if not job._become_locked("starting"):  # stopped while it waited
                        continue
                job.worker = self._take_worker()
                log(f"job {job.id} starting ({job.kind}; {len(self._pending)} waiting)")
                job.worker.tasks.put(job.task(self.runs_root))
                threading.Thread(target=self._follow, args=(job,), daemon=True, name=f"job-{job.id}").start()
            # A spare warms up (imports torch, runs a first step: seconds of CPU) only when no job trains or
            # another could start now: warming beside a running job would take the cores it trains on.
            warm = self.keep_spare and (not self.running() or len(self.running()) < self.max_running)
        if warm:
            threading.Thread(target=self._warm_spare, daemon=True).start()

    # -- internals ---------------------------------------------------------------------------
    def _take_worker(self) -> _Worker:
        spare, self._spare = self._spare, None
        if spare is not None and spare.alive():
            return spare
        return _Worker(self.worker_kind)

    def _warm_spare(self) -> None:
        with self._lock:
            if not self._closed and (self._spare is None or not self._spare.alive()):
                self._spare = _Worker(self.worker_kind)

    def _follow(self, job: Job) -> None:
        """Move the worker's events into the job's log until it ends, however it ends.

        Nothing may end this thread before the job has ended: an error here (a full disk while writing the
        summary of a dead worker, say) ends the job as failed with the reason, and the job's slot is freed.
        """
        worker = job.worker
        try:
            while True:
                try:
                    event = worker.events.get(timeout=0.2)
                except queue.Empty:
                    if worker.alive():
                        continue
                    try:  # the last events may still be in the pipe after the process exits
                        event = worker.events.get(timeout=0.5)
                    except queue.Empty:
                        self._worker_died(job, worker)
                        break
                job.record(event)
                if event["type"] == "end":
                    break
        except BaseException as exc:  # noqa: BLE001 - the job must end whatever went wrong here
            log(f"job {job.id}: following it failed: {traceback.format_exc(limit=6)}")
            worker.terminate()
            job.record({"type": "end", "status": "failed", "wall": time.time(),
                         "message": f"the server could not follow this job ({_describe(exc)})"})
        finally:
            worker.reap()
            self.schedule()

    def _worker_died(self, job: Job, worker: _Worker) -> None:
        if worker.stop_event.is_set():
            status, message = "stopped", "stopped by the user"
        else:
            status, message = "failed", worker.exit_description()
        end = {"type": "end", "status": status, "message": message, "run_dir": job.run_dir, "wall": time.time()}
        if job.run_dir:
            from core.runs import RunWriter  # the worker could not write its own summary

            try:
                RunWriter.write_summary(job.run_dir, end)
            except OSError as exc:  # a full disk, say: the job still ends, in memory, with the reason
                end["message"] += f" (its summary could not be written: {exc.strerror or exc})"
        job.record(end)


_manager: JobManager | None = None
_manager_lock = threading.Lock()


def get_manager() -> JobManager:
    """The one JobManager of this server process, shared by every browser session."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = JobManager(runs_root=env_path("CNN_DASHBOARD_RUNS", "runs"))
        return _manager
