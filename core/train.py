"""`python -m core.train`: train from the command line, progress on stderr, a JSON summary on stdout.

The loop itself is core/loop.py; this module is only the command line, so running it as __main__ runs it once.

Exit codes: 0 finished (or stopped at --target-accuracy), 2 bad input, 3 diverged, 4 stopped by Ctrl-C,
SIGTERM or SIGHUP (the run is kept, its summary says stopped), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

from core.cli import ArgParser
from core.config import PRESETS, SETTINGS, ConfigError, TrainConfig, add_setting_flags

IMPORTED = time.time()  # when this module was imported: the process's start where /proc cannot say

EXIT_OK, EXIT_OTHER, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_STOPPED = 0, 1, 2, 3, 4
# a data-parallel run whose ranks exit with one of these ended its own way, and rank 0 has said why
ENDED_BY_RANK_0 = (EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_STOPPED)


def build_parser() -> argparse.ArgumentParser:
    """The flags: one per TrainConfig setting (core/config.py says each one's flag and help), and these."""
    p = ArgParser(prog="python -m core.train", description="Train the PyTorch CIFAR-10 tutorial's network.")
    p.add_argument("--preset", choices=list(PRESETS), help="start from a preset; explicit flags override it")
    add_setting_flags(p)
    p.add_argument("--runs-dir", default="runs", help="where run directories are written (default: runs)")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    p.add_argument("--profile", action="store_true", help="say on stderr where the command's time went: start-up "
                   "phases up to the first step, training, evaluation, the end")
    p.add_argument("--tensorboard", metavar="DIR", help="also write the run as TensorBoard event files, live, in "
                   "DIR/<run folder> (needs: pip install tensorboard); `tensorboard --logdir DIR` shows it")
    p.add_argument("--events", help=argparse.SUPPRESS)  # rank 0 of a dashboard job: where its worker listens
    p.add_argument("--run-name", type=folder_name, help=argparse.SUPPRESS)  # a launcher's name for the run folder
    return p


def folder_name(text: str) -> str:
    """A run folder's name as a launcher gives it to its ranks: one plain name, never a path."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a run folder name")
    return text


def config_from_args(args: argparse.Namespace, processes: int = 0) -> TrainConfig:
    """The run's settings. Under torchrun (processes > 0), the processes are torchrun's."""
    values = dict(PRESETS[args.preset]) if args.preset else {}
    values.update({name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None})
    if processes:
        if values.get("nproc", processes) != processes:
            raise ConfigError(f"--nproc {values['nproc']} does not match the {processes} processes torchrun "
                              "started; leave --nproc out under torchrun")
        values["nproc"] = processes
    return TrainConfig(**values)


class ProgressLine:
    """A progress bar on stderr: redrawn in place on a terminal, a line per step of 10% otherwise."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.tty = stream.isatty()
        self.last_draw = 0.0
        self.last_tenth = -1

    def dataset(self, message: str, fraction: float) -> None:
        self._draw(f"{message} [{fraction:4.0%}]", fraction >= 1)

    def event(self, event: dict, total_steps: int) -> None:
        if event["type"] == "loss":
            done = event["step"] / max(1, total_steps)
            rate = event["images_per_second"]
            bar = "#" * int(done * 30) + "." * (30 - int(done * 30))
            self._draw(f"[{bar}] epoch {event['epoch']} step {event['step']}/{total_steps} "
                       f"loss {event['running_loss']:.3f} {rate:,.0f} img/s", False, int(done * 10))
        elif event["type"] == "epoch":
            self._draw(f"epoch {event['epoch']}: test accuracy {event['test_accuracy']:.1%} "
                       f"({event['images_per_second']:,.0f} img/s, {event['seconds']:.1f} s)", True)

    def _draw(self, text: str, final: bool, tenth: int | None = None) -> None:
        now = time.monotonic()
        if self.tty:
            if final or now - self.last_draw > 0.2:
                self.stream.write("\r\033[K" + text + ("\n" if final else ""))
                self.stream.flush()
                self.last_draw = now
        elif final or (tenth is not None and tenth > self.last_tenth):
            self.last_tenth = tenth if tenth is not None else self.last_tenth
            self.stream.write(text + "\n")
            self.stream.flush()


def process_started() -> float:
    """When this process started, as time.time() (Linux: /proc; elsewhere when this module was imported)."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks after boot
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return IMPORTED


class Timeline:
    """The moments a command's time is split by (core.train --profile, and --json's startup_seconds)."""

    def __init__(self):
        self.marks = {"process": process_started(), "main": time.time()}

    def mark(self, name: str, at: float | None = None) -> None:
        self.marks.setdefault(name, time.time() if at is None else at)

    def seconds(self, a: str, b: str) -> float | None:
        return self.marks[b] - self.marks[a] if a in self.marks and b in self.marks else None

    def startup_seconds(self) -> float | None:
        return self.seconds("process", "first step")

    def lines(self, end: dict) -> str:
        m = self.marks
        phases = [("Python and core.train", "process", "main"), ("import torch and the loop", "main", "imports"),
                  ("the dataset (cached, or decoded)", "imports", "loop"),
                  ("network, optimizer, data onto the device", "loop", "built"),
                  ("the first step", "built", "first step")]
        parts = [f"{self.seconds(a, b):.2f} s {what}" for what, a, b in phases if self.seconds(a, b) is not None]
        first = self.startup_seconds()
        training = end.get("train_seconds")
        after = (m["done"] - end["last_step_wall"]) if end.get("last_step_wall") and "done" in m else None
        rest = [f"training {training:.2f} s" if isinstance(training, (int, float)) else None,
                f"evaluation and checkpoints at the epochs' ends {end.get('eval_seconds', 0):.2f} s",
                f"after the last step {after:.2f} s" if after is not None else None,
                f"whole command {m['done'] - m['process']:.2f} s" if "done" in m else None]
        return (f"profile: first step {first:.2f} s after the command started: " + "; ".join(parts) + "\n"
                "profile: " + "; ".join(r for r in rest if r)) if first is not None else "profile: no step was taken"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    timeline = Timeline()
    args = build_parser().parse_args(argv)
    from core.device import keep_freed_memory
    from core.distributed import leave, world_from_env

    world = world_from_env()
    keep_freed_memory()
    try:
        config = config_from_args(args, world.size if world.launched else 0)
    except (ConfigError, TypeError) as exc:
        if world.main:
            print(f"error: {exc}", file=sys.stderr)
        return leave(world, EXIT_BAD_INPUT) if world.launched else EXIT_BAD_INPUT
    if args.tensorboard and world.main:
        from core.runs.export import missing_extra

        if message := missing_extra("tensorboard"):
            print(f"error: --tensorboard: {message}", file=sys.stderr)
            return leave(world, EXIT_BAD_INPUT) if world.launched else EXIT_BAD_INPUT
    if config.nproc > 1 and not world.launched:
        return launch_ranks(argv, config, args)
    code = train_here(args, config, world, timeline)
    if world.launched:  # through a barrier and os._exit: see core/distributed.py
        leave(world, code)
    return code


def train_here(args: argparse.Namespace, config: TrainConfig, world, timeline: Timeline | None = None) -> int:
    """Train in this process (under torchrun: as one rank of the run); messages and the summary from rank 0."""
    import threading

    from core.data import DatasetError
    from core.device import DeviceError
    from core.distributed import EventLink, LaunchError, RankLost, heartbeat, watch_launcher
    from core.loop import Control, run_training
    from core.runs import RunWriteError

    if timeline is not None:
        timeline.mark("imports")
    stop, pause = threading.Event(), threading.Event()
    control = Control(stop, pause)
    # Ctrl-C, a `kill` and a closed terminal stop cleanly: the run keeps its history and gets its summary
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, lambda *_: control.stop())
    link = EventLink(args.events, stop, pause) if args.events and world.main else None  # rank 0 of a dashboard job
    if world.launched:
        watch_launcher(lambda: control.stop("its launcher (torchrun, or the command or dashboard worker that started "
                                            "it) was killed, and every process of this run stopped with it",
                                            "interrupted"))
        heartbeat(world.rank)
    sinks = Sinks(args, config, world, link, timeline or Timeline())

    def error(text: str, code: int) -> int:
        print(f"error: {text}" if world.main else f"rank {world.rank}: error: {text}", file=sys.stderr)
        if link is not None:
            link.send({"type": "end", "status": "failed", "message": text, "bad_input": code == EXIT_BAD_INPUT})
        return code

    try:
        for event in run_training(config, control, None if sinks.quiet else sinks.progress.dataset,
                                  runs_root=args.runs_dir, run_name=args.run_name):
            sinks.event(event)
    except (ConfigError, DatasetError, DeviceError, LaunchError) as exc:
        return error(str(exc), EXIT_BAD_INPUT)
    except RunWriteError as exc:
        return error(f"the run could not be saved: {exc}", EXIT_OTHER)
    except RankLost as exc:
        return error(str(exc), EXIT_OTHER)
    except Exception as exc:  # noqa: BLE001 - the run directory has the details; the user gets one line
        return error(f"training failed: {type(exc).__name__}: {exc}", EXIT_OTHER)
    finally:
        sinks.close()

    end = sinks.end
    if not world.main or link is not None:  # a dashboard job's page says how it ended
        return EXIT_CODES.get(end["status"], EXIT_OTHER)
    sinks.timeline.mark("done")
    if args.profile:
        print(sinks.timeline.lines(end), file=sys.stderr)
    return report({**end, "startup_seconds": sinks.timeline.startup_seconds()}, args.json)


class Sinks:
    """Where a run's events go in this process: the dashboard's worker (rank 0 of a dashboard job), the progress
    line on stderr (a command's rank 0), TensorBoard (--tensorboard), the profile's timeline; the end kept."""

    def __init__(self, args: argparse.Namespace, config: TrainConfig, world, link, timeline: Timeline):
        self.link, self.timeline = link, timeline
        self.quiet = link is not None or not world.main
        self.board = None
        if args.tensorboard and world.main:
            from core.runs.export import LiveTensorBoard

            self.board = LiveTensorBoard(args.tensorboard, config)
        self.progress = ProgressLine()
        self.end: dict = {}
        self.total_steps = 0

    def event(self, event: dict) -> None:
        if self.link is not None:
            self.link.send(event)
        if self.board is not None:
            self.board.event(event)
        if event["type"] == "start":
            self.timeline.mark("loop", event["wall"] - event.get("setup_seconds", 0))
            self.timeline.mark("built", event["wall"])
            self.total_steps = event["total_steps"]
            if not self.quiet:
                print(f"training on {event['device']} ({event['threads']} thread(s){ranks(event)}), "
                      f"{event['num_train']} images, {event['parameters']:,} parameters -> {event['run_dir']}",
                      file=sys.stderr)
        if not self.quiet:
            self.progress.event(event, self.total_steps)
        if event["type"] == "end":
            self.end = event
            if event.get("first_step_wall"):
                self.timeline.mark("first step", event["first_step_wall"])

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def ranks(event: dict) -> str:
    size = event.get("world_size", 1)
    return "" if size == 1 else (f" each, {size} processes (DDP) x batch {event['batch_size']} = "
                                 f"global batch {event['global_batch_size']}")


def launch_ranks(argv: list[str], config: TrainConfig, args: argparse.Namespace) -> int:
    """`--nproc N`: start the same command on N processes through torch.distributed's launcher API.

    What a user can fix is said once, here, before any process starts: the device, the dataset (decoded into
    its cache now, with progress), the memory.
    """
    from core.data import DatasetError
    from core.device import DeviceError
    from core.distributed import LaunchError, backend, end_unended, launch
    from core.loop import check_launch
    from core.runs import run_name

    try:
        device = check_launch(config, ProgressLine().dataset)
    except (ConfigError, DatasetError, DeviceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"starting {config.nproc} processes (DDP over {backend(device)}), batch {config.batch_size} each: "
          f"global batch {config.global_batch_size}", file=sys.stderr)
    name = run_name(config.dataset)
    try:
        launch([*argv, "--run-name", name], config.nproc)
    except LaunchError as exc:
        end_unended(Path(args.runs_dir) / name, exc)
        if exc.stopped:
            return EXIT_STOPPED
        if exc.code in ENDED_BY_RANK_0:
            return exc.code  # rank 0 has said why
        print(f"error: the data-parallel run failed: {exc}", file=sys.stderr)
        return EXIT_OTHER
    return EXIT_OK


EXIT_CODES = {"finished": EXIT_OK, "diverged": EXIT_DIVERGED, "stopped": EXIT_STOPPED}


def report(end: dict, as_json: bool) -> int:
    """How the run ended, in one line on stderr (and a JSON summary on stdout); the exit code."""
    if end["status"] == "diverged":
        print(f"diverged: {end['message']}", file=sys.stderr)
    elif end.get("test_accuracy") is not None:
        print(f"{end['status']}: test accuracy {end['test_accuracy']:.1%} after {end['steps']} steps "
              f"({end['images_per_second']:,.0f} img/s){'; ' + end['message'] if end['message'] else ''}",
              file=sys.stderr)
    else:
        print(f"{end['status']}: {end['message']}", file=sys.stderr)
    if as_json:
        print(json.dumps({k: end.get(k) for k in ("status", "epochs_completed", "steps", "images_seen",
                                                  "train_seconds", "images_per_second", "test_accuracy",
                                                  "per_class_accuracy", "final_running_loss", "device", "run_dir",
                                                  "world_size", "batch_size", "global_batch_size",
                                                  "replica_difference", "cpu_share", "startup_seconds",
                                                  "eval_seconds")}))
    return EXIT_CODES.get(end["status"], EXIT_OTHER)


if __name__ == "__main__":
    raise SystemExit(main())
