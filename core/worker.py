"""A dashboard job's own process: `python -m core.worker`, started and kept warm by core/jobs.py.

The server and a worker speak JSON lines, plain data only:

    server -> worker, on the worker's stdin: the task, e.g. {"kind": "train", "config": {...}, "runs_root": "runs"}
        (or null: a spare that is not needed), then "stop", "pause" and "resume" as they are clicked
    worker -> server, on a pipe of its own (--events FD): the job's events, e.g. {"type": "loss", ...}

Training in a process of its own keeps it off the server's GIL; a crash in it cannot take the server down, and
its GPU memory is freed when it exits. Importing torch and a first step take seconds, so a worker does both while
it is a spare, waiting for its task: the first loss point follows the click on Train within a second or two.
A worker ends with its server: a watch notices the server gone and stops the job (the run keeps its history and
is marked stopped), as the same watch ends the ranks of a data-parallel run whose launcher is gone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

from core.watch import watch_parent

SERVER_GONE = "the dashboard's server stopped, and its training jobs with it"
CONTROLS = ("stop", "pause", "resume")


class EventPipe:
    """The worker's side of the events: one JSON line per event, from any thread (rank 0's relay sends too)."""

    def __init__(self, fd: int):
        os.set_inheritable(fd, False)  # the ranks a data-parallel job launches must not hold the server's pipe
        self.stream = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
        self.lock = threading.Lock()
        self.open = True

    def put(self, event: dict) -> None:
        line = json.dumps(event, default=_plain) + "\n"
        with self.lock:
            if not self.open:
                return
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):  # the server is gone: nobody reads the events any more
                self.open = False


def _plain(value):
    """A value json cannot write as it is: a tensor's or numpy's number or list, else its text."""
    for method in ("item", "tolist"):
        if hasattr(value, method):
            try:
                return getattr(value, method)()
            except (TypeError, ValueError, RuntimeError):
                pass
    return str(value)


def main(argv: list[str] | None = None) -> int:
    """A worker process: warm up, wait for one task on stdin, run it, report every event; then exit."""
    parser = argparse.ArgumentParser(prog="python -m core.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, required=True, help="the pipe's file descriptor for the events")
    parser.add_argument("--parent", type=int, required=True, help="the server's process id")
    args = parser.parse_args(argv)
    events = EventPipe(args.events)
    stop, pause = threading.Event(), threading.Event()
    controls: list = []  # the job's Control, once torch is imported
    working = threading.Event()  # a task taken: no longer a spare

    def server_gone() -> None:  # the job stops within a step and writes its summary; a spare simply ends
        if not working.is_set():
            os._exit(0)  # nothing to keep: it must not go on importing torch on the cores of whatever comes next
        for control in controls:
            control.stop(SERVER_GONE)
        stop.set()

    watch_parent(server_gone, args.parent, grace=8.0)  # before the seconds of importing torch
    import core.device
    import core.loop  # the slow imports and first-step set-up happen while the worker is a spare

    control = core.loop.Control(stop, pause)
    controls.append(control)
    core.device.keep_freed_memory()
    core.loop.warm_up()
    server = lines(sys.stdin.fileno())
    task = json.loads(next(server, "null"))  # a spare waits here (null or the end of stdin: dismissed)
    if task is None:
        return 0
    working.set()
    threading.Thread(target=_obey, args=(server, control), daemon=True, name="controls").start()
    run_job(task, events, control)
    return 0


def lines(fd: int):
    """The lines the server writes, read straight from the file descriptor: a thread still waiting in it when the
    job has ended holds none of Python's stream locks, so the process exits at once."""
    pending = b""
    while chunk := os.read(fd, 65536):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())


def _obey(server, control) -> None:
    """Stop, Pause and Resume from the server, a line each, until it closes stdin."""
    for line in server:
        word = json.loads(line)
        if word in CONTROLS:
            getattr(control, word)()


def thread_worker(tasks, events, control) -> None:
    """The same, as a thread of the server (tests): the task from a queue, the controls straight on `control`."""
    import core.loop

    core.loop.warm_up()
    task = tasks.get()
    if task is not None:
        run_job(task, events, control)


# -- the jobs -----------------------------------------------------------------------------------------------

def run_job(task: dict, events, control) -> None:
    """Run one task, reporting its events; bad input and crashes become a `failed` end event."""
    from core.config import ConfigError, TrainConfig
    from core.data import DatasetError
    from core.device import DeviceError
    from core.env import env_int
    from core.loop import run_training
    from core.speed import SpeedError

    progress = Throttled(events)
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
        events.put({"type": "end", "status": "failed", "message": describe_error(exc),
                    "traceback": traceback.format_exc(limit=8)})


class Throttled:
    """Progress of a slow start (decoding a dataset) as events, at most five a second, and the last one."""

    def __init__(self, events):
        self.events, self.last = events, 0.0

    def __call__(self, message: str, fraction: float) -> None:
        now = time.monotonic()
        if fraction >= 1 or now - self.last > 0.2:
            self.last = now
            self.events.put({"type": "progress", "message": message, "fraction": float(fraction)})


def describe_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if "out of memory" in str(exc).lower():
        text += " - the network or batch is too big for this device; lower the batch size or the width."
    return text


def _run_ranks(config, runs_root: str, events, stop, pause, progress) -> None:
    """A data-parallel job: this worker is the torchrun launch (core/distributed.py). Rank 0's events come up
    through a RankRelay, Stop and Pause go down to it, and it tells every rank."""
    from core.config import config_argv
    from core.distributed import LaunchError, RankRelay, launch
    from core.loop import check_launch
    from core.runs import RunWriter, run_name
    from core.train import ENDED_BY_RANK_0

    check_launch(config, progress)  # bad input, said before any process starts
    events.put({"type": "progress", "message": f"starting {config.nproc} processes (DDP)", "fraction": 1.0})
    relay = RankRelay(events, stop, pause)
    relay.start()
    failure, name = None, run_name(config.dataset)  # rank 0 makes the folder; named here, so it can be ended here
    try:
        launch([*config_argv(config), "--runs-dir", runs_root, "--events", relay.where, "--run-name", name],
               config.nproc)
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


if __name__ == "__main__":
    raise SystemExit(main())
