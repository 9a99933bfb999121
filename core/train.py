"""`python -m core.train`: train from the command line, progress on stderr, a JSON summary on stdout.

The loop itself is core/loop.py; this module is only the command line, so running it as __main__ runs it once.

Exit codes: 0 finished (or stopped at --target-accuracy), 2 bad input, 3 diverged, 4 stopped by Ctrl-C,
SIGTERM or SIGHUP (the run is kept, its summary says stopped), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from core.config import PRESETS, SETTINGS, ArgParser, ConfigError, TrainConfig, add_setting_flags

EXIT_OK, EXIT_OTHER, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_STOPPED = 0, 1, 2, 3, 4


def build_parser() -> argparse.ArgumentParser:
    """The flags: one per TrainConfig setting (core/config.py says each one's flag and help), and these."""
    p = ArgParser(prog="python -m core.train", description="Train the PyTorch CIFAR-10 tutorial's network.")
    p.add_argument("--preset", choices=list(PRESETS), help="start from a preset; explicit flags override it")
    add_setting_flags(p)
    p.add_argument("--runs-dir", default="runs", help="where run directories are written (default: runs)")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = dict(PRESETS[args.preset]) if args.preset else {}
    values.update({name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None})
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from core.data import DatasetError
    from core.loop import Control, DeviceError, keep_freed_memory, run_training
    from core.runs import RunWriteError

    keep_freed_memory()
    try:
        config = config_from_args(args)
    except (ConfigError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

    control = Control()
    # Ctrl-C, a `kill` and a closed terminal stop cleanly: the run keeps its history and gets its summary
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, lambda *_: control.stop())
    progress = ProgressLine()
    end: dict = {}
    total_steps = 0
    try:
        for event in run_training(config, control, progress.dataset, runs_root=args.runs_dir):
            if event["type"] == "start":
                total_steps = event["total_steps"]
                print(f"training on {event['device']} ({event['threads']} thread(s)), {event['num_train']} images, "
                      f"{event['parameters']:,} parameters -> {event['run_dir']}", file=sys.stderr)
            progress.event(event, total_steps)
            if event["type"] == "end":
                end = event
    except (ConfigError, DatasetError, DeviceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunWriteError as exc:
        print(f"error: the run could not be saved: {exc}", file=sys.stderr)
        return EXIT_OTHER
    except Exception as exc:  # noqa: BLE001 - the run directory has the details; the user gets one line
        print(f"error: training failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_OTHER

    return report(end, args.json)


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
                                                  "per_class_accuracy", "final_running_loss", "device", "run_dir")}))
    return EXIT_CODES.get(end["status"], EXIT_OTHER)


if __name__ == "__main__":
    raise SystemExit(main())
