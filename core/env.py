"""The server's settings from the environment, and its log: light, so that a worker reads them before torch."""

from __future__ import annotations

import os
import sys
import time


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
