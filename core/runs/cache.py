"""Networks and predictions loaded from run folders, kept for the pages in a memory bound stated in bytes.

    cache = FileCache(max_bytes=256 * 2**20)
    model = cache.get(load_model, run_path, "checkpoint.pt")

An entry is keyed by the loader, the run folder and the file's modification time and size, so a file that
changes (a new epoch's checkpoint) is loaded again. When the total passes `max_bytes` the least recently used
entries go; one that alone is larger than the bound is returned and not kept. Shared by every session of the
server (the pages' st.cache_resource counted entries, and 16 networks of an uploaded run took gigabytes).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch

RUN_CACHE_BYTES = 256 * 2**20  # the widest network a checkpoint may hold (~180 MB) and its predictions fit


def size_of(value: Any) -> int:
    """Bytes held by the tensors of a network, a tensor, or a dict or list of them (other values count 0)."""
    if isinstance(value, torch.nn.Module):
        return sum(t.numel() * t.element_size() for t in value.state_dict().values())
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(size_of(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(size_of(v) for v in value)
    return 0


class FileCache:
    def __init__(self, max_bytes: int = RUN_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        with self._lock:
            return sum(size for _, size in self._entries.values())

    def get(self, loader: Callable[[str], Any], run_path: str | os.PathLike, filename: str) -> Any:
        """loader(run_path), from memory while `filename` in the folder is unchanged. Errors are not kept."""
        try:
            info = (Path(run_path) / filename).stat()
            stamp = (info.st_mtime_ns, info.st_size)
        except OSError:
            stamp = None
        key = (loader.__module__, loader.__qualname__, str(run_path), stamp)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
        value = loader(str(run_path))  # outside the lock: a slow load does not hold up the other sessions
        size = size_of(value)
        with self._lock:
            stale = [k for k in self._entries if k[:3] == key[:3]]  # the same file, older: never read again
            for k in stale:
                del self._entries[k]
            if size <= self.max_bytes:
                self._entries[key] = (value, size)
                total = sum(s for _, s in self._entries.values())
                while total > self.max_bytes:
                    _, (_, dropped) = self._entries.popitem(last=False)
                    total -= dropped
        return value
