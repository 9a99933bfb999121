"""The one watch on a process's parent: a dashboard worker's on its server, a data-parallel rank's on its launcher."""

from __future__ import annotations

import os
import threading
import time


def watch_parent(on_gone, parent: int | None = None, grace: float = 10.0) -> None:
    """Call on_gone once this process's parent is gone (the server, for a worker; the launcher, for a rank of a
    data-parallel run), then end this process `grace` seconds later if it has not ended: nothing trains on as an
    orphan nobody reads. `parent`: its pid as the parent gave it (a process that imported torch first could find
    itself adopted already); by default the parent now."""
    parent = parent or os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        on_gone()
        time.sleep(grace)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()
