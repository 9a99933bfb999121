"""Helpers shared by the benchmarks: find and unpack the CIFAR-10 copy, run the CLI, time things."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


def cifar10_folder(work: Path) -> Path:
    """The JPEG CIFAR-10 in ImageFolder layout, unpacked under work/ (once)."""
    target = work / "cifar10"
    if not (target / "test").is_dir():
        if not ARCHIVE.exists():
            sys.exit(f"error: the CIFAR-10 copy is not at {ARCHIVE}; these benchmarks need it")
        work.mkdir(parents=True, exist_ok=True)
        with tarfile.open(ARCHIVE) as tar:
            tar.extractall(work, filter="data")
    return target


def run_cli(*args: str, env: dict | None = None) -> tuple[dict, float]:
    """`python -m core.train ... --json`: its JSON summary and the wall-clock seconds of the whole command."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "core.train", *args, "--json"], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - started
    if result.returncode not in (0, 3):
        sys.exit(f"error: core.train failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1]), wall
