"""A class on one server, in a real browser at 1280x720: three students with names follow one challenge link and
press Train; the teacher, with the key, watches the board; nobody but a job's own browser (and the teacher) can
stop it or delete its run.

Skipped where Chromium or Playwright is missing (`.ci/run` installs both).
"""

import csv
import io
import json
import re
import time
from urllib.parse import parse_qs, urlparse

from tests.conftest import PROJECTOR, ROOT, TEACHER_KEY
from tests.web import CHART_POINTS, sync_api

# one challenge: 30% on Shapes within the first epoch. Ada trains long (20 epochs of batch 4: a job to stop),
# Grace trains a quick epoch that passes (about 64% at lr 0.05), Alan one that cannot (about 10% at lr 0.0001)
CHALLENGE = "challenge=accuracy:0.3,epochs_max:1"
STUDENTS = {"Ada": "epochs=20&batch_size=4&lr=0.001", "Grace": "epochs=1&batch_size=64&lr=0.05",
            "Alan <b>T</b>": "epochs=1&batch_size=64&lr=0.0001"}


def open_browser(browser, url: str, path: str):
    context = browser.new_context(viewport=PROJECTOR, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(f"{url}/{path}")
    return context, pg


def train_as(pg, name: str) -> None:
    """Type the name beside Train, as a student does, and press Train."""
    pg.get_by_role("button", name="Train", exact=True).wait_for()
    box = pg.get_by_placeholder("Your name, for the class board")
    box.fill(name)
    box.press("Enter")
    pg.wait_for_function("() => new URL(location.href).searchParams.has('name')")
    pg.get_by_role("button", name="Train", exact=True).click()
    pg.wait_for_function("() => new URL(location.href).searchParams.has('job')")


def board_rows(pg) -> dict[str, dict]:
    rows = pg.evaluate("""() => [...document.querySelectorAll('.cnn-board-table tbody tr')].map(tr =>
        [...tr.querySelectorAll('td')].map(td => td.innerText.trim()))""")
    return {r[1]: {"status": r[3], "accuracy": r[4], "result": r[6]} for r in rows}


def wait_board(pg, check, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    rows = {}
    while time.monotonic() < deadline:
        rows = board_rows(pg)
        if check(rows):
            return rows
        time.sleep(0.25)
    raise AssertionError(f"the board never showed {what}: {rows}")


def test_a_class_trains_a_challenge_and_the_teacher_sees_it_on_the_board(server, browser):
    url = server.url  # one job at a time on it, as on a 2-core machine
    before = set(server.runs.glob("*"))
    link = f"train?dataset=shapes&{CHALLENGE}"
    contexts, pages = [], {}
    for name, settings in STUDENTS.items():
        context, pg = open_browser(browser, url, f"{link}&{settings}")
        contexts.append(context)
        goal = pg.locator('[data-testid="stAlert"]', has_text="Challenge:")
        goal.wait_for()
        assert "reach 30% test accuracy within 1 epoch" in goal.inner_text()
        train_as(pg, name)
        pages[name] = pg
    try:
        # the teacher opens the board with the key: it leaves the address bar at once
        teacher_context, board = open_browser(browser, url, f"board?teacher={TEACHER_KEY}")
        contexts.append(teacher_context)
        board.wait_for_selector(".cnn-board-table tbody tr")
        assert "teacher" not in parse_qs(urlparse(board.url).query)
        rows = wait_board(board, lambda r: set(r) == set(STUDENTS) and r["Ada"]["status"].endswith("training"),
                          "three students, Ada training")
        assert all(rows[n]["status"].endswith("waiting") for n in ("Grace", "Alan <b>T</b>"))  # one job at a time
        assert board.locator(".cnn-board-name b").count() == 0  # a name with HTML in it is shown as text

        # Grace opens the URL from Ada's address bar: she follows Ada's job, and cannot pause or stop it
        ada_url = pages["Ada"].url
        assert "job=" in ada_url
        grace = pages["Grace"]
        grace.goto(ada_url)
        grace.get_by_text("Following Ada's job").wait_for()
        assert grace.get_by_role("button", name="Stop", exact=True).count() == 0
        assert grace.get_by_role("button", name="Pause", exact=True).count() == 0
        # it trains on: Grace's page follows Ada's loss as it grows, and the board still says training
        followed = grace.evaluate(f"() => (({CHART_POINTS})('Running loss') || [0])[0]")
        grace.wait_for_function(f"n => (({CHART_POINTS})('Running loss') || [0])[0] > n", arg=followed,
                                timeout=60_000)
        assert board_rows(board)["Ada"]["status"].endswith("training")
        # the same URL in Ada's own browser, reloaded: her Stop is there (her browser's cookie)
        pages["Ada"].reload()
        pages["Ada"].get_by_role("button", name="Stop", exact=True).wait_for()

        # the teacher stops Ada's job from the board
        board.get_by_role("combobox", name="A job to stop").wait_for()
        board.get_by_role("button", name="Stop it").click()
        rows = wait_board(board, lambda r: r["Ada"]["status"].endswith("stopped"), "Ada's job stopped")
        # then the others train in turn, and the board gives their accuracies and marks
        rows = wait_board(board, lambda r: all(r[n]["status"].endswith("finished") for n in ("Grace", "Alan <b>T</b>")),
                          "Grace's and Alan's runs finished", timeout=180)
        assert rows["Grace"]["result"] == "passed" and rows["Alan <b>T</b>"]["result"] == "not yet"
        grace_accuracy = float(rows["Grace"]["accuracy"].rstrip("%"))
        assert grace_accuracy >= 30 and float(rows["Alan <b>T</b>"]["accuracy"].rstrip("%")) < 30
        passed = [n for n, r in rows.items() if r["result"] == "passed"]  # Ada too, if her first epoch ended in time
        assert f"{len(passed)} passed" in board.locator(".cnn-board-counts").inner_text()
        assert set(list(rows)[:len(passed)]) == set(passed), rows  # passes first
        # then the rest by accuracy, best first (Ada's stopped run has what it reached when the teacher stopped it:
        # above or below Alan's, as the machine's speed has it)
        rest = [float(r["accuracy"].rstrip("%")) if r["accuracy"].endswith("%") else -1.0
                for n, r in rows.items() if n not in passed]
        assert rest == sorted(rest, reverse=True), rows

        # the board's CSV: the three rows
        with board.expect_download() as download:
            board.get_by_role("link", name="Board (.csv)").click()  # a link served by the app's own route
        table = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
        assert sorted(r["name"] for r in table) == sorted(STUDENTS)
        by_name = {r["name"]: r for r in table}
        assert by_name["Grace"]["challenge"] == "passed" and by_name["Ada"]["status"] == "stopped"
        assert abs(float(by_name["Grace"]["test_accuracy"]) * 100 - grace_accuracy) < 0.06
        (ROOT / "test-artifacts").mkdir(exist_ok=True)
        board.screenshot(path=ROOT / "test-artifacts" / "board-1280x720.png")  # the teacher's projector

        # Grace cannot delete Ada's run on the Runs page; the run folder records Ada's name
        ada_run = next(p for p in set(server.runs.glob("*")) - before
                       if json.loads((p / "meta.json").read_text())["name"] == "Ada")
        grace.goto(f"{url}/runs")
        grace.get_by_role("heading", name="Compare runs").wait_for()  # the page drawn whole before she picks
        runs = grace.get_by_role("combobox", name="Run", exact=True)
        # CI met this pick failing now and then (the typed name's option never listed, or Enter picking nothing;
        # cause not found): each failed pick is said, with a screenshot, and tried again, up to 3 times
        for attempt in range(3):
            runs.click()
            runs.fill(ada_run.name)  # typed, as a user narrows a long list, then the run clicked
            try:
                grace.get_by_role("option", name=re.compile(re.escape(ada_run.name))).click(timeout=15_000)
                grace.get_by_text("This run is Ada's").wait_for(timeout=15_000)
                break
            except sync_api.TimeoutError:  # said, with what the page showed, and tried again
                (ROOT / "test-artifacts").mkdir(exist_ok=True)
                grace.screenshot(path=ROOT / "test-artifacts" / f"runs-pick-{attempt + 1}.png")
                print(f"pick {attempt + 1}: the Run box shows {runs.input_value()!r}; options "
                      f"{[o.inner_text() for o in grace.get_by_role('option').all()][:4]}")
                grace.keyboard.press("Escape")
                if attempt == 2:
                    raise
        assert grace.get_by_text("Delete this run").count() == 0
        assert ada_run.exists()
    finally:
        for context in contexts:
            context.close()


def test_a_wrong_teacher_key_gives_no_powers_and_no_hint(server, browser):
    context, pg = open_browser(browser, server.url, "board?teacher=not-the-key")
    try:
        pg.get_by_text("That teacher key is not right").wait_for()
        text = pg.locator("body").inner_text()
        assert TEACHER_KEY not in text and "Clear the board" not in text
        assert "teacher" not in parse_qs(urlparse(pg.url).query)
    finally:
        context.close()
