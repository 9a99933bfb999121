"""Where a browser on the same machine spends the CPU that a dashboard job would train with.

    python benchmarks/bench_browser_cpu.py [--work /tmp/cifar10-bench] [--rounds 3]

The dashboard trains at batch 64 at about 87% of the same run headless (benchmarks/bench_dashboard.py), and a
job without a browser is not slower than headless: the difference is the browser's CPU, which on 2 cores stalls
both of the job's threads. Each round, in one Chromium at 1280x720, on the CIFAR-10 folder from ../shared, CPU:
- a page run of the Train page with nothing else changed (the Seed's + clicked): the browser's CPU seconds in the
  3 s after it;
- a click on Train (batch 64, 2 epochs): the same, in the 3 s after the click;
- the browser's CPU per second from then on to the run's end, while the live view redraws (ui/live.py: POLL_MS).
Counted from /proc: every process whose command line names chromium. Needs Debian's chromium and playwright.
`--load-rounds N` adds, without a browser, `python -m core.train` at batch 64 for 1 epoch alone and beside a process
that takes about what the live view takes (busy 5 ms of every 80: 0.06 of a core), in turn, N times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_dashboard import CHROMIUM_ARGS, newest_summary, start_server  # noqa: E402
from benchmarks.common import cifar10_folder, run_cli  # noqa: E402
from tests.test_browser import wait_for_command  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(word: str = "chromium") -> float:
    """User and system CPU seconds of every process whose command line holds `word`."""
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if word.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / TICKS
        except OSError:  # the process ended meanwhile
            pass
    return total


def after(button, seconds: float = 3.0) -> float:
    """The browser's CPU seconds in the `seconds` after a click on `button`."""
    before = cpu_seconds()
    button.click()
    time.sleep(seconds)
    return cpu_seconds() - before


LOAD = "import time\nwhile True:\n    t = time.perf_counter()\n    while time.perf_counter() - t < 0.005: pass\n" \
       "    time.sleep(0.075)"


def beside_a_load(work: Path, folder: Path, rounds: int) -> None:
    """The headless loop's images/s alone and beside a small steady load, in turn."""
    cli = ("--dataset", f"folder:{folder}", "--device", "cpu", "--data-dir", str(work / "browser-cpu-data"),
           "--runs-dir", str(work / "browser-cpu-runs"), "--batch-size", "64", "--epochs", "1")
    for r in range(rounds):
        alone = run_cli(*cli)[0]["images_per_second"]
        load = subprocess.Popen([sys.executable, "-c", LOAD])
        try:
            loaded = run_cli(*cli)[0]["images_per_second"]
        finally:
            load.kill()
        print(f"load round {r + 1}: alone {alone:,.0f} images/s, beside 0.06 of a core {loaded:,.0f} "
              f"({loaded / alone:.1%})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/cifar10-bench"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load-rounds", type=int, default=0)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    folder = cifar10_folder(args.work)
    if args.load_rounds:
        beside_a_load(args.work, folder, args.load_rounds)
    runs = args.work / "browser-cpu-runs"
    runs.mkdir(parents=True, exist_ok=True)
    proc, url = start_server(args.work / "browser-cpu-data", runs)
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for r in range(args.rounds):
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.goto(f"{url}/train?dataset=folder&folder={folder}&batch_size=64&epochs=2")
                page.get_by_role("heading", name="Train the network").wait_for(timeout=60_000)
                wait_for_command(page, "--batch-size 64")
                time.sleep(4)  # the page has settled
                rerun = after(page.get_by_test_id("stNumberInputStepUp").first)
                before = {q.name for q in runs.iterdir()}
                click = after(page.get_by_role("button", name="Train", exact=True))
                start, used = time.monotonic(), cpu_seconds()
                summary = newest_summary(runs, before)
                steady = (cpu_seconds() - used) / (time.monotonic() - start)
                page.close()
                rows.append((rerun, click, steady))
                print(f"round {r + 1}: page run {rerun:.2f} CPU s, Train click {click:.2f} CPU s (3 s after each); "
                      f"while training {steady:.3f} of a core; the job {summary['images_per_second']:,.0f} images/s",
                      flush=True)
    finally:
        proc.kill()
    print("medians: page run {:.2f} CPU s, Train click {:.2f} CPU s, while training {:.3f} of a core".format(
        *(statistics.median(col) for col in zip(*rows))))


if __name__ == "__main__":
    main()
