"""A class of N students on one small server: does every job finish, does every page stay responsive, does the
board show them all?

    python -m benchmarks.bench_class [--students 30] [--work /tmp/class-bench]

A real server (its default number of jobs at once: half the cores). Each student is a browser context of its
own (its own owner cookie) that opens the Shapes lesson link (1 epoch, the tutorial's settings), types a name
and presses Train, one after the other as a class does; the student's tab then closes, and a light client polls
that job's live route once a second in its place (twice as often as the open Train page asks; a real class's
browsers run on their own machines, not on the server's two cores). Meanwhile one browser, the teacher's, shows
the board, and another switches pages (Train -> Runs -> Board) and times each switch. It reports when the last
run ended, the slowest switch, what the board showed, every job's status, and the server's peak memory (VmHWM of
the server process; and the largest worker's).
Needs Debian's chromium and playwright (see README).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.lessons import lessons  # noqa: E402
from tests.conftest import CHROMIUM, TEACHER_KEY, start_server  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
BOARD_ROWS = "() => document.querySelectorAll('.cnn-board-table tbody tr').length"


def lesson_number() -> int:
    return next(i for i, lesson in enumerate(lessons("shapes"), 1) if lesson.title.endswith("The learning rate"))


def lesson_link() -> str:
    """The lesson's one-epoch run with the tutorial's settings, on Shapes ("The learning rate": about right)."""
    link = next(link for link in lessons("shapes")[lesson_number() - 1].links if "0.001" in link.label)
    return link.url()


def peak_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return found


def poll_live(url: str, token: str, stop: threading.Event, failures: list) -> None:
    """What a student's open Train page asks of the server, twice as often: the job's live state, once a second."""
    seq = -1
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"{url}/api/live/{token}?seq={seq}", timeout=10) as response:
                if response.status == 200:
                    state = json.loads(response.read())
                    seq = state["seq"]
                    if state["status"] not in ("waiting", "starting", "running", "paused"):
                        return
        except OSError as exc:
            failures.append(str(exc))
        stop.wait(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--work", type=Path, default=None, help="where the server's data and runs go (a temp dir)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    home = args.work or Path(tempfile.mkdtemp(prefix="class-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    proc, url = start_server(home)
    link = lesson_link()
    stop, failures, pollers = threading.Event(), [], []
    switches: list[float] = []
    worker_peak = 0
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            teacher = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
            teacher.goto(f"{url}/board?board=lesson:{lesson_number()}&teacher={TEACHER_KEY}")
            teacher.wait_for_selector(".cnn-board")
            watcher = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
            watcher.goto(f"{url}/train")
            watcher.get_by_role("button", name="Train", exact=True).wait_for(timeout=60_000)

            def switch() -> None:  # Train -> Runs -> Board, each until its page is drawn
                for name, ready in (("Runs", "Runs: keep, compare and share"), ("Board", "Class board"),
                                    ("Train", None)):
                    began = time.perf_counter()
                    watcher.get_by_role("link", name=name, exact=True).click()
                    if ready:
                        watcher.get_by_role("heading", name=ready).wait_for(timeout=60_000)
                    else:
                        watcher.get_by_role("button", name="Train", exact=True).wait_for(timeout=60_000)
                    switches.append(time.perf_counter() - began)

            first_click = None
            for i in range(args.students):
                context = browser.new_context(viewport={"width": 1280, "height": 720})
                page = context.new_page()
                page.goto(f"{url}/{link}")
                page.get_by_role("button", name="Train", exact=True).wait_for(timeout=60_000)
                box = page.get_by_placeholder("Your name, for the class board")
                box.fill(f"Student {i + 1:02d}")
                box.press("Enter")
                page.wait_for_function("() => new URL(location.href).searchParams.has('name')", timeout=60_000)
                page.get_by_role("button", name="Train", exact=True).click()
                first_click = first_click or time.time()
                page.wait_for_function("() => new URL(location.href).searchParams.has('job')", timeout=60_000)
                token = parse_qs(urlparse(page.url).query)["job"][0]
                context.close()
                poller = threading.Thread(target=poll_live, args=(url, token, stop, failures), daemon=True)
                poller.start()
                pollers.append(poller)
                if i % 5 == 4:
                    switch()
            queued = time.time()
            print(f"{args.students} students pressed Train in {queued - first_click:.0f} s", flush=True)
            shown = 0
            deadline = time.monotonic() + 60 * 60
            while time.monotonic() < deadline and any(t.is_alive() for t in pollers):
                shown = max(shown, teacher.evaluate(BOARD_ROWS))
                switch()
                worker_peak = max([worker_peak] + [peak_kib(pid) for pid in children(proc.pid)])
                time.sleep(5)
            shown = max(shown, teacher.evaluate(BOARD_ROWS))
            statuses = teacher.evaluate("""() => [...document.querySelectorAll('.cnn-board-table tbody tr')]
                .map(tr => tr.dataset.status)""")
            browser.close()
        summaries = [json.loads((run / "summary.json").read_text()) for run in (home / "runs").iterdir()
                     if (run / "summary.json").exists()]
        ends = [s["wall"] for s in summaries if "wall" in s]
        counts = {status: statuses.count(status) for status in sorted(set(statuses))}
        print(f"runs: {len(summaries)}, statuses on the board: {counts}; the board showed {shown} rows")
        print(f"last run ended {max(ends) - first_click:.0f} s after the first click "
              f"({(max(ends) - first_click) / 60:.1f} min)")
        print(f"page switches: {len(switches)}, median {statistics.median(switches):.2f} s, slowest "
              f"{max(switches):.2f} s; live-route failures: {len(failures)}")
        print(f"server peak RSS: {peak_kib(proc.pid) / 1024:.0f} MB; largest worker seen: {worker_peak / 1024:.0f} MB")
        print(f"on {os.cpu_count()} cores")
        ok = counts == {"finished": args.students} and shown == args.students and max(switches) <= 3.0
        return 0 if ok else 1
    finally:
        stop.set()
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    raise SystemExit(main())
