"""`python -m core.train`: train from the command line, progress on stderr, a JSON summary on stdout.

Exit codes: 0 finished (or stopped at --target-accuracy), 2 bad input, 3 diverged, 4 stopped by Ctrl-C,
SIGTERM or SIGHUP (the run is kept, its summary says stopped), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

EXIT_OK, EXIT_OTHER, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_STOPPED = 0, 1, 2, 3, 4


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line and exit 2, as for every other bad input
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m core.train", description="Train the PyTorch CIFAR-10 tutorial's network.")
    p.add_argument("--dataset", help="cifar10, mnist, fashion-mnist, shapes (offline) or folder:PATH")
    p.add_argument("--data-dir", help="where datasets are downloaded and cached (default: data)")
    p.add_argument("--runs-dir", default="runs", help="where run directories are written (default: runs)")
    p.add_argument("--preset", choices=["tutorial", "fast"], help="start from a preset; explicit flags override it")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--momentum", type=float)
    p.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum")
    p.add_argument("--schedule", choices=["constant", "one-cycle"], help="learning-rate schedule")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--width", type=int, dest="conv_width", help="out-channels of conv1 = in-channels of conv2")
    p.add_argument("--conv2-width", type=int)
    p.add_argument("--device", help="auto, cpu, cuda or mps")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="CPU threads (0 = automatic)")
    p.add_argument("--log-interval", type=int, help="steps per running-loss point (0 = automatic, about 50 an epoch)")
    p.add_argument("--max-steps", type=int, help="stop after N optimizer steps")
    p.add_argument("--target-accuracy", type=float, help="stop once test accuracy reaches X (e.g. 0.55)")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    return p


FIELDS = ("dataset", "data_dir", "epochs", "lr", "momentum", "nesterov", "schedule", "batch_size", "conv_width",
          "conv2_width", "device",
          "seed", "threads", "log_interval", "max_steps", "target_accuracy")


def config_from_args(args: argparse.Namespace):
    from core.config import PRESETS, TrainConfig

    values = dict(PRESETS[args.preset]) if args.preset else {}
    values.update({f: getattr(args, f) for f in FIELDS if getattr(args, f) is not None})
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
    from core.config import ConfigError
    from core.data import DatasetError
    from core.runs import RunWriteError
    from core.train import Control, DeviceError, keep_freed_memory, run_training

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

    summary = {k: end.get(k) for k in ("status", "epochs_completed", "steps", "images_seen", "train_seconds",
                                       "images_per_second", "test_accuracy", "per_class_accuracy",
                                       "final_running_loss", "device", "run_dir")}
    if end["status"] == "diverged":
        print(f"diverged: {end['message']}", file=sys.stderr)
    elif end.get("test_accuracy") is not None:
        print(f"{end['status']}: test accuracy {end['test_accuracy']:.1%} after {end['steps']} steps "
              f"({end['images_per_second']:,.0f} img/s){'; ' + end['message'] if end['message'] else ''}",
              file=sys.stderr)
    else:
        print(f"{end['status']}: {end['message']}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    if end["status"] == "diverged":
        return EXIT_DIVERGED
    if end["status"] == "finished":
        return EXIT_OK
    if end["status"] == "stopped":
        return EXIT_STOPPED
    return EXIT_OTHER
