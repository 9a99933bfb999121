"""The server's garbage: what page runs leave behind is collected, and collecting costs milliseconds.

Each page run's namespace is a reference cycle (a function defined on the page refers back to it), so the
tensors and images a run made (a width-1024 network's feature maps, a run's predictions) stay until Python's
cycle collector runs. Streamlit's own collection after every run is off (.streamlit/config.toml: it took
~230 ms each time with torch loaded, twice a second under the live charts), and Python's own runs by object
counts, not bytes: ten uploads of a large run took the server from 0.8 to 4 GB (docs/benchmarks.md).

So: once the server has imported what the pages use, the objects alive then (modules, classes: ~230 ms to
scan) are frozen out of the collector's way (gc.freeze), and every full page run (not the live fragments)
starts with a collection, at most one every COLLECT_EVERY seconds, which then takes a few milliseconds.
"""

from __future__ import annotations

import gc
import importlib
import threading
import time

COLLECT_EVERY = 2.0  # seconds
MODULES = ("pandas", "plotly.graph_objects", "PIL.Image", "torchvision", "core.figures", "core.evaluate",
           "core.runs.compare", "core.speed", "core.step")  # what the pages import on their first view

_last = [0.0]
_lock = threading.Lock()


def freeze_imports() -> None:
    """Import what the pages use, collect, and freeze what is alive: the collector never scans it again."""
    for name in MODULES:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()


def collect() -> None:
    """Collect the cycles earlier page runs left, unless that was done less than COLLECT_EVERY seconds ago."""
    now = time.monotonic()
    with _lock:
        if now - _last[0] < COLLECT_EVERY:
            return
        _last[0] = now
    gc.collect()
