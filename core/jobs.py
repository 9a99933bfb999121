"""Background training jobs for the dashboard: one worker per job, an event log per job, a server-wide limit.

A job runs in a worker, a process of its own (core/worker.py: what runs there, and why). Importing torch takes
seconds, so one spare worker is kept warm (torch already imported) and the next job starts in it at once.
Only plain data crosses the process boundary: a task in, events out, as JSON lines.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.classroom import Entry, estimated_wait
from core.config import TrainConfig
from core.env import env_int, env_path, log  # noqa: F401 - env_path: the pages' folders
from core.history import History
from core.worker import CONTROLS

ACTIVE = ("waiting", "starting", "running", "paused")
STOP_GRACE_SECONDS = 1.0


# -- the worker: a process of its own (core/worker.py), or a thread in tests --------------------------------

ROOT = Path(__file__).resolve().parents[1]


class Worker:
    """A started worker waiting for its one task: `python -m core.worker` (plain data over pipes, see there), or a
    thread of the server in tests. The server sends it the task and the Stop, Pause and Resume clicks; its events
    come back on `events`, a queue."""

    def __init__(self, kind: str):
        self.kind = kind
        self.events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()  # one line at a time to the worker, from whichever thread clicks
        self.stop_requested = False
        if kind == "process":
            self._start_process()
        else:
            from core.loop import Control
            from core.worker import thread_worker

            self.control, self.tasks = Control(), queue.Queue()
            self.handle = threading.Thread(target=thread_worker, args=(self.tasks, self.events, self.control),
                                           name="cnn-dashboard-worker", daemon=True)
            self.handle.start()

    def _start_process(self) -> None:
        read_end, write_end = os.pipe()
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}
        try:
            self.handle = subprocess.Popen(
                [sys.executable, "-m", "core.worker", "--events", str(write_end), "--parent", str(os.getpid())],
                stdin=subprocess.PIPE, pass_fds=(write_end,), env=env)
        finally:
            os.close(write_end)  # the worker's now: the reader sees the end of the pipe when the worker exits
        self.reader = threading.Thread(target=self._read_events, args=(read_end,), daemon=True, name="worker-events")
        self.reader.start()

    def _read_events(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as stream:
            for line in stream:
                try:
                    self.events.put(json.loads(line))
                except ValueError:
                    log(f"a worker sent a line that is not an event: {line[:200]!r}")

    def _send(self, message) -> None:
        if self.kind != "process":
            if message in CONTROLS:
                getattr(self.control, message)()
            else:
                self.tasks.put(message)
            return
        with self._lock:
            try:
                self.handle.stdin.write((json.dumps(message) + "\n").encode())
                self.handle.stdin.flush()
            except (OSError, ValueError):  # the worker has ended: its end is noticed by _follow
                pass

    def send(self, task: dict) -> None:
        self._send(task)

    def stop(self) -> None:
        self.stop_requested = True
        self._send("stop")

    def pause(self) -> None:
        self._send("pause")

    def resume(self) -> None:
        self._send("resume")

    def alive(self) -> bool:
        """Running, or (a process) with events still on their way."""
        if self.kind == "process":
            return self.handle.poll() is None or self.reader.is_alive()
        return self.handle.is_alive()

    def exit_description(self) -> str:
        code = self.handle.returncode if self.kind == "process" else None
        if code is not None and code < 0:
            return f"the training process was killed by signal {-code}" + (" (out of memory?)" if code == -9 else "")
        return f"the training process ended unexpectedly (exit code {code})"

    def terminate(self) -> None:
        if self.kind == "process" and self.handle.poll() is None:
            self.handle.terminate()

    def reap(self, seconds: float = 10.0) -> None:
        """Wait for an ended worker, so that it leaves no zombie process behind."""
        if self.kind == "process":
            try:
                self.handle.wait(seconds)
            except subprocess.TimeoutExpired:
                self.handle.kill()
                self.handle.wait(2)
            self._close()

    def _close(self) -> None:
        with self._lock:
            try:
                self.handle.stdin.close()
            except OSError:
                pass

    def dismiss(self) -> None:
        """A spare that is no longer needed ends now: it has no job, so nothing is lost (a process is ended, not
        left to finish importing torch on the cores a job may need)."""
        if self.kind != "process":
            self._send(None)
            return
        self._close()
        self.terminate()
        threading.Thread(target=self.reap, daemon=True, name="reap-spare").start()


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
    entry: Entry = Entry()  # who started it, for which lesson or challenge

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

    @property
    def seconds_left(self) -> float | None:
        return seconds_left(self.status, self.history)


def seconds_left(status: str, history: History) -> float | None:
    """Training seconds still to go, from the training time so far (the last loss point's), not the wall clock
    since the job started: loading the data and the first step's set-up would make the first estimates minutes too
    long. None until there is something to go on."""
    last = history.last_loss
    if not history.start or status != "running" or len(history.losses) < 3 or last.get("train_seconds", 0) < 1:
        return None
    done = history.fraction_done
    return last["train_seconds"] * (1 - done) / done if done > 0 else None


class Job:
    """One queued or running piece of work in a worker: a training run (TrainJob) or a speed sweep (SweepJob).

    Its worker's events go into its History as they come (see JobManager._follow), each handled once.
    """

    kind = ""

    def __init__(self, id: int, config: Any, queue: "JobManager", entry: Entry = Entry()):
        self.id, self.config, self.created, self.entry = id, config, time.time(), entry
        self.token = secrets.token_urlsafe(12)  # names the job in its page's URL and its live view's route
        self.status, self.message = "waiting", ""
        self.run_dir: str | None = None
        self.history = History()
        self.worker: Worker | None = None
        self.started: float | None = None  # when it left the queue
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
        worker.stop()
        timer = threading.Timer(STOP_GRACE_SECONDS + 1.0, self._force_stop)
        timer.daemon = True  # a server shutting down does not wait for it
        timer.start()

    def _force_stop(self) -> None:
        """A worker still busy (e.g. decoding a dataset) after Stop is ended by force."""
        if self.status in ACTIVE and self.worker is not None:
            self.worker.terminate()

    def pause(self) -> None:
        with self._lock:
            if self.worker is not None and self.status in ("running", "starting"):
                self.worker.pause()
                self._become_locked("paused")

    def resume(self) -> None:
        with self._lock:
            if self.worker is not None and self.status == "paused":
                self.worker.resume()
                self._become_locked("running")

    # -- state ---------------------------------------------------------------------------
    def version(self) -> tuple:
        """Changes whenever what a snapshot shows does (cheap: for a live view asking many times a second); a
        waiting job's, when its place or its estimated wait (to 5 s) does."""
        place = self._queue.place(self)
        wait = self._queue.wait_seconds(self) if place else None
        return self.status, self.history.count, place, None if wait is None else round(wait / 5)

    def seconds_left(self) -> float | None:
        with self._lock:
            return seconds_left(self.status, self.history)

    def snapshot(self) -> Snapshot:
        with self._lock:
            history, status, message = self.history.copy(), self.status, self.message
        place = self._queue.place(self) if status == "waiting" else 0
        return Snapshot(self.id, self.kind, status, message, self.config, place, history, self.run_dir,
                        self.created, self.entry)

    def owned_by(self, owner: str) -> bool:
        """Whether the browser holding `owner` (its digest) started this job."""
        return bool(owner) and bool(self.entry.owner) and secrets.compare_digest(owner, self.entry.owner)

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
        self._spare: Worker | None = None
        self._closed = False  # shut down: no spare is warmed any more
        from core.runs import mark_interrupted

        for name in mark_interrupted(runs_root):  # runs a stopped server (or a killed CLI) left unfinished
            log(f"run {name} ended without finishing: marked interrupted")
        if self.keep_spare:
            threading.Thread(target=self._warm_spare, daemon=True).start()

    def start(self, config: TrainConfig, entry: Entry = Entry()) -> TrainJob:
        """Queue a training job and return its handle at once; it starts as soon as the server-wide limit allows.

        One waiting job per browser: a browser (entry.owner) that has a job waiting already gets that job back
        with the new settings, in the same place in the queue (so 100 clicks are one job)."""
        with self._lock:
            if entry.owner:
                for waiting in self._pending:
                    if waiting.kind == "train" and waiting.owned_by(entry.owner):
                        with waiting._lock:
                            if waiting.status == "waiting":
                                waiting.config, waiting.entry = config, entry
                                return waiting
            return self._add(TrainJob(next(self._ids), config, self, entry))

    def start_sweep(self, spec) -> SweepJob:
        """Queue a speed sweep (a core.speed.SweepSpec), as a job like any other."""
        return self._add(SweepJob(next(self._ids), spec, self))

    def start_scaling(self, spec, data_dir: str) -> ScalingJob:
        """Queue a scaling measurement (a core.speed.ScalingSpec) on the Shapes set in data_dir."""
        return self._add(ScalingJob(next(self._ids), spec, self, data_dir))

    def _add(self, job: Job) -> Job:
        with self._lock:  # (re-entrant: start holds it)
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

    def newest_of(self, owner: str) -> Job | None:
        """The newest training job the browser holding `owner` (its digest) started, or None."""
        return max((j for j in self.jobs() if j.kind == "train" and j.owned_by(owner)), key=lambda j: j.created,
                   default=None)

    def running(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.status in ("starting", "running", "paused")]

    def wait_seconds(self, job: Job) -> float | None:
        """About how long until a waiting job starts: the running jobs' own time-left figures, then a usual run's
        length (the median of the jobs that finished here, else of the running ones' whole estimated length) for
        each job ahead. None when there is nothing to go on yet."""
        place = self.place(job)
        if not place:
            return None
        left, lengths, now = [], [], time.time()
        for other in self.jobs():
            status, started = other.status, other.started
            if status in ("starting", "running", "paused"):
                seconds = other.seconds_left()
                if seconds is None:
                    return None  # a job just started: its estimate comes within seconds
                left.append(seconds)
                if started:
                    lengths.append(now - started + seconds)
            elif status == "finished" and started and other.history.end.get("wall"):
                lengths.append(other.history.end["wall"] - started)
        return estimated_wait(place, self.max_running, left, lengths)

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
                job.worker, job.started = self._take_worker(), time.time()
                log(f"job {job.id} starting ({job.kind}; {len(self._pending)} waiting)")
                job.worker.send(job.task(self.runs_root))
                threading.Thread(target=self._follow, args=(job,), daemon=True, name=f"job-{job.id}").start()
            # A spare warms up (imports torch, runs a first step: seconds of CPU) only when no job trains or
            # another could start now: warming beside a running job would take the cores it trains on.
            warm = self.keep_spare and (not self.running() or len(self.running()) < self.max_running)
        if warm:
            threading.Thread(target=self._warm_spare, daemon=True).start()

    # -- internals ---------------------------------------------------------------------------
    def _take_worker(self) -> Worker:
        spare, self._spare = self._spare, None
        if spare is not None and spare.alive():
            return spare
        return Worker(self.worker_kind)

    def _warm_spare(self) -> None:
        with self._lock:
            if not self._closed and (self._spare is None or not self._spare.alive()):
                self._spare = Worker(self.worker_kind)

    def _follow(self, job: Job) -> None:
        """Move the worker's events into the job's log until it ends, however it ends.

        Nothing may end this thread before the job has ended: an error here (a full disk while writing the
        summary of a dead worker, say) ends the job as failed with the reason, and the job's slot is freed.
        """
        worker, wrote_meta = job.worker, False
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
                if job.run_dir and not wrote_meta:
                    wrote_meta = True
                    self._write_meta(job)
                if event["type"] == "end":
                    break
        except BaseException as exc:  # noqa: BLE001 - the job must end whatever went wrong here
            log(f"job {job.id}: following it failed: {traceback.format_exc(limit=6)}")
            worker.terminate()
            job.record({"type": "end", "status": "failed", "wall": time.time(),
                         "message": f"the server could not follow this job ({type(exc).__name__}: {exc})"})
        finally:
            worker.reap()
            self.schedule()

    @staticmethod
    def _write_meta(job: Job) -> None:
        """The run folder keeps who started it and for what (meta.json), for the Runs page and later boards."""
        meta = job.entry.meta()
        if not meta:
            return
        from core.runs import add_meta

        try:
            add_meta(job.run_dir, meta)
        except OSError as exc:  # a full disk: the run trains on; only its name is missing from its folder
            log(f"job {job.id}: its run's name could not be written ({exc})")

    def _worker_died(self, job: Job, worker: Worker) -> None:
        if worker.stop_requested:
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
