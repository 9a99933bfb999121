"""What every command line of the engine shares (core.train, core.runs, core.speed, core.datasets): bad input said
in one line with exit code 2, as argparse's own errors are."""

from __future__ import annotations

import argparse
import sys
from typing import Callable


class ArgParser(argparse.ArgumentParser):
    """argparse, with bad input said in one line and exit code 2, as for every other bad input."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


def exit_code(command: Callable[[], None], bad_input: tuple[type[Exception], ...]) -> int:
    """A command-line tool's work done, as its exit code: 0 done, 2 bad input (`bad_input`: its one line on stderr),
    1 a file that could not be read or written (its line)."""
    try:
        command()
    except bad_input as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.strerror or exc} ({getattr(exc, 'filename', '') or ''})", file=sys.stderr)
        return 1
    return 0
