"""What the real-browser tests share: Playwright's API, the JavaScript that reads Plotly charts and Streamlit's
page, and the steps a user takes (open a page, choose an option, move a slider, press Train, wait for the end).

The fixtures (one Chromium and one dashboard server for the whole run, a page at a projector's size) are in
tests/conftest.py. Playwright drives Debian's Chromium; where either is missing the browser tests skip, saying so.
"""

import time
from pathlib import Path

import pytest

from core.config import TrainConfig
from tests.conftest import server_log

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")

# Streamlit marks its app element with the script's state: "rerunRequested" from a widget's change until the server
# runs the page, "running" while it does, "notRunning" once the page run has ended
IDLE = "() => { const a = document.querySelector('[data-testid=stApp]'); " \
       "return !!a && a.getAttribute('data-test-script-state') === 'notRunning'; }"


def wait_idle(pg, timeout: float = 30_000) -> None:
    """Until the page's script run (a rerun after a click, a key press or a slider's move) has ended."""
    pg.wait_for_function(IDLE, timeout=timeout, polling=100)


CHART_POINTS = """title => {
  const g = [...document.querySelectorAll('.js-plotly-plot')]
      .filter(g => g.layout && g.layout.title && (g.layout.title.text || '').includes(title));
  return g.length ? g[g.length - 1].data.map(t => (t.x || []).length) : null;
}"""

# The live loss chart's y axis: (autorange, range). Fixed while a job trains (0 to above the top loss):
# a chart rescaling at every point is hard to follow on a projector, and re-lays out the page each time.
LOSS_Y_AXIS = """() => {
  const g = [...document.querySelectorAll('.js-plotly-plot')]
      .find(g => g.layout && g.layout.title && (g.layout.title.text || '').includes('Running loss'));
  return g && g.data[0] && g.data[0].x.length ? JSON.stringify([g.layout.yaxis.autorange, g.layout.yaxis.range]) : null;
}"""

# Each chart element remembers the point counts it has shown: one updated in place shows several,
# one rebuilt for every update only ever shows one.
MARK_CHART = """title => [...document.querySelectorAll('.js-plotly-plot')]
  .filter(g => g.layout && g.layout.title && (g.layout.title.text || '').includes(title) && g.data)
  .forEach(g => { (g.cnnCounts = g.cnnCounts || new Set()).add(g.data[0].x.length); })"""
CHART_MARKED = """title => [...document.querySelectorAll('.js-plotly-plot')]
  .some(g => g.layout && (g.layout.title.text || '').includes(title) && g.cnnCounts && g.cnnCounts.size >= 3)"""


# The live loss chart as drawn: (points in its data, x pixel of the drawn line's right end, markers drawn).
# The live view appends points with Plotly.extendTraces: what is drawn must follow the data.
LOSS_DRAWN = """() => {
  const g = [...document.querySelectorAll('.js-plotly-plot')]
      .filter(g => g.layout && (g.layout.title.text || '').includes('Running loss')).pop();
  const path = g && g.querySelector('.scatterlayer .trace path.js-line');
  if (!path || !g.data[0].x.length || !path.getAttribute('d')) return null;
  const xs = path.getAttribute('d').split(/[ML]/).filter(Boolean).map(p => parseFloat(p.split(',')[0]));
  return [g.data[0].x.length, Math.max(...xs), g.querySelectorAll('.scatterlayer .trace path.point').length];
}"""


# the epoch numbers under the Test accuracy chart, as drawn
ACCURACY_TICKS = """() => {
  const g = [...document.querySelectorAll('.js-plotly-plot')]
      .find(g => g.layout && g.layout.title && (g.layout.title.text || '').includes('Test accuracy'));
  return g ? [...g.querySelectorAll('.xtick text')].map(t => t.textContent).join(' ') : null;
}"""
LIVE_PROGRESS = "() => { const p = document.querySelector('.cnn-progress-text'); return p ? p.innerText : null; }"


def home_page(browser, url: str, width: int = 1400, height: int = 1000):
    """A new browser context at this viewport, on the app's home page; yields the page, then closes."""
    context = browser.new_context(viewport={"width": width, "height": height})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(url)
    pg.get_by_role("heading", name="Train a CNN live").wait_for()
    yield pg
    context.close()


def newest_run(runs: Path, before: set) -> Path:
    """The run folder a click on Train made: the first one in `runs` not in `before`, once its config is written."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = [p for p in runs.glob("*") if p.is_dir() and p not in before]
        if new and (new[0] / "config.json").exists():
            return new[0]
        time.sleep(0.1)
    raise AssertionError("no run folder appeared after Train")


def chart_points(pg, title):
    return pg.evaluate(CHART_POINTS, title)


def open_page(pg, name):
    pg.get_by_role("link", name=name, exact=True).click()


def choose(pg, label, option):
    pg.get_by_role("combobox", name=label, exact=True).click()
    pg.get_by_role("option", name=option, exact=True).click()


def set_slider(pg, label, value: str, key="ArrowLeft"):
    """Move a slider with the keyboard, as a user can, until it shows `value`.

    Each key press reruns the page, and a rerun can draw the slider anew while a press is under way: that
    press then times out on a detached element (or, for a moment, two sliders of that name are on the page,
    the old and the new), and the next try finds the new slider; or the rerun sets the slider back to the
    value before that press, so a value counts once it stays.
    """
    slider = pg.get_by_role("slider", name=label)
    deadline = time.monotonic() + 90
    shown = None
    while time.monotonic() < deadline:
        try:
            shown = (slider.get_attribute("aria-valuetext", timeout=3000),
                     slider.get_attribute("aria-valuenow", timeout=3000))
            if value in shown:
                # a press during the rerun of the one before can show a value the rerun then takes back:
                # done when the value stays once the page has finished running
                wait_idle(pg)
                if value in (slider.get_attribute("aria-valuetext", timeout=3000),
                             slider.get_attribute("aria-valuenow", timeout=3000)):
                    return
                continue
            slider.press(key, timeout=3000)
        except sync_api.Error:
            time.sleep(0.1)
    raise AssertionError(f"could not set {label} to {value}: it shows {shown}")


def wait_for_command(pg, *fragments, timeout: float | None = None):
    """The Train page shows the run's command line; wait until the knobs have reached the server."""
    pg.wait_for_function("parts => [...document.querySelectorAll('code')].some("
                         "c => parts.every(p => c.innerText.includes(p)))", arg=list(fragments), timeout=timeout)


def status_text(pg) -> str:
    return pg.get_by_text("Status:").first.inner_text()


HAS_STATUS = "() => [...document.querySelectorAll('p')].some(p => p.innerText.startsWith('Status:'))"
FINISHED = ("() => [...document.querySelectorAll('p')].some(p => p.innerText.startsWith('Status:') "
            "&& p.innerText.includes('finished'))")


def diagnosis(pg) -> str:
    """What the page and the server show: for a test that timed out."""
    try:
        lines = pg.evaluate("() => [...document.querySelectorAll('p')].map(p => p.innerText)"
                            ".filter(t => t.startsWith('Status:') || t.includes('training job') || t.includes('rror'))")
        sidebar = pg.locator('[data-testid="stSidebar"]').inner_text(timeout=5000)
    except sync_api.Error as exc:
        lines, sidebar = f"(the page could not be read: {exc})", ""
    log = server_log(pg.url)
    return f"Page lines: {lines}\nSidebar: {sidebar}\nServer log (end):\n{log}"


def loaded_width(img, timeout: float = 30_000) -> int:
    """An image's width in pixels once the browser has loaded it: read before, it is 0 (CI met that, twice)."""
    handle = img.element_handle()
    img.page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=handle, timeout=timeout)
    return handle.evaluate("img => img.naturalWidth")


def shown_scale(img, timeout: float = 30_000) -> float:
    """How large an image shows against its own pixels, read once it has loaded and its width has held for half a
    second: read sooner, a page still laying itself out gave 0.48 where the settled page gives 0.7 (CI, once)."""
    natural = loaded_width(img, timeout)
    handle = img.element_handle()
    img.page.wait_for_function("""img => { const w = img.clientWidth, now = performance.now();
        if (w !== img.cnnWidth) { img.cnnWidth = w; img.cnnSince = now; }
        return w > 0 && now - img.cnnSince >= 500; }""", arg=handle, timeout=timeout, polling=100)
    return handle.evaluate("img => img.clientWidth") / natural


def wait_until_finished(pg, seconds=120):
    """Wait for the Train page to say the job finished; on a timeout, say what the page and the server show."""
    try:
        pg.wait_for_function(FINISHED, timeout=seconds * 1000, polling=250)
    except sync_api.TimeoutError:
        raise AssertionError(f"no 'finished' after {seconds} s.\n" + diagnosis(pg)) from None


def train_shapes(pg, epochs="1"):
    open_page(pg, "Train")
    choose(pg, "Dataset", "Shapes (offline)")
    wait_for_command(pg, "--dataset shapes")
    shown = ["--dataset shapes", *([f"--epochs {epochs}"] if epochs != str(TrainConfig().epochs) else [])]
    for attempt in range(3):  # the command line leaves out what is the default (2 epochs)
        current = int(pg.get_by_role("slider", name="Epochs").first.get_attribute("aria-valuetext"))
        set_slider(pg, "Epochs", epochs, key="ArrowRight" if int(epochs) > current else "ArrowLeft")
        try:
            wait_for_command(pg, *shown, timeout=10_000)
            break
        except sync_api.TimeoutError:  # a rerun took the last press back after all: set it again
            if attempt == 2:
                raise
    pg.get_by_role("button", name="Train", exact=True).click()
    # the job exists once the page shows its status: one click must be enough (a lost click is a bug to see,
    # not one to click through)
    try:
        pg.wait_for_function(HAS_STATUS, timeout=60_000, polling=250)
    except sync_api.TimeoutError:
        raise AssertionError("no job started 60 s after one click on Train.\n" + diagnosis(pg)) from None
