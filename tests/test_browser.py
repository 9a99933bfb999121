"""End to end in a real browser: Debian's Chromium driven by Playwright against a real server (tests/conftest.py).

Skipped where Chromium or Playwright is missing (`.ci/run` installs both).
"""

import json
import os
import time

import pytest

from tests.web import (
    ACCURACY_TICKS,
    CHART_MARKED,
    CHART_POINTS,
    LIVE_PROGRESS,
    LOSS_DRAWN,
    LOSS_Y_AXIS,
    MARK_CHART,
    chart_points,
    home_page,
    loaded_width,
    open_page,
    set_slider,
    status_text,
    train_shapes,
    wait_until_finished,
)


@pytest.fixture
def page(browser, server):
    yield from home_page(browser, server.url)


def test_training_streams_the_running_loss_live(page):
    train_shapes(page, epochs="4")  # ~200 points: markers on the first 60, then the line alone
    seen = []  # point counts of the Running loss chart while the job runs
    drawn = []  # (points, where the drawn line ends, markers) meanwhile
    progress = set()  # what the live progress bar said meanwhile
    axes = set()  # the loss chart's y axis meanwhile
    epochs_shown = set()  # the accuracy chart's epoch ticks meanwhile
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        points = chart_points(page, "Running loss")
        status = status_text(page)
        if points and "running" in status:
            seen.append(points[0])
            page.evaluate(MARK_CHART, "Running loss")
            progress.add(page.evaluate(LIVE_PROGRESS))
            axes.add(page.evaluate(LOSS_Y_AXIS))
            epochs_shown.add(page.evaluate(ACCURACY_TICKS))
            drawn.append(page.evaluate(LOSS_DRAWN))
        if "finished" in status:
            break
        time.sleep(0.25)
    if "finished" not in status_text(page):
        wait_until_finished(page, 5)  # fails, saying what the page and the server show
    assert "epoch 4 of 4" in status_text(page), status_text(page)
    distinct = sorted(set(seen))
    assert len(distinct) >= 3, f"the chart did not grow while training ran: {seen}"
    assert seen == sorted(seen)  # it only grows
    # ... in place: the browser updates the chart it has rather than building a new one each time
    assert page.evaluate(CHART_MARKED, "Running loss"), "the live chart was rebuilt instead of updated"
    assert len(progress - {None}) >= 2, f"the progress bar did not move while training ran: {progress}"
    # what is drawn follows the data: the line ends at the newest point, and moves right as the run goes on
    drawn = [d for d in drawn if d]
    assert all(marks == (n if n <= 60 else 0) for n, _, marks in drawn), f"a marker per point, up to 60: {drawn}"
    assert len({round(end) for n, end, _ in drawn if n > 60}) >= 2, f"the long line was not redrawn: {drawn}"
    assert len({round(end) for _, end, _ in drawn}) >= 3, f"the drawn line did not grow: {drawn}"
    assert [d[1] for d in drawn] == sorted(d[1] for d in drawn)
    fixed = [json.loads(a) for a in axes - {None}]
    assert fixed and all(auto is False and y[0] == 0 for auto, y in fixed), f"the loss axes moved: {axes}"
    # the accuracy chart's axis is the job's 4 epochs from the first loss point on, before any accuracy point
    assert epochs_shown == {"0 1 2 3 4"}, f"the epoch axis was not the job's 4 epochs throughout: {epochs_shown}"
    page.wait_for_function(f"() => ({CHART_POINTS})('Running loss')[0] >= 10")
    accuracy = page.locator(".cnn-metric", has_text="Test accuracy")
    page.wait_for_function("() => [...document.querySelectorAll('.cnn-metric')]"
                           ".some(m => m.innerText.includes('Test accuracy') && m.innerText.includes('%'))")
    assert "%" in accuracy.inner_text()
    # one point per epoch
    page.wait_for_function(f"() => ({CHART_POINTS})('Test accuracy')[0] === 4")


def test_results_and_network_pages_show_what_was_learned(page):
    train_shapes(page)
    wait_until_finished(page)
    assert "job=" in page.url  # the URL names the job: a reloaded page follows it
    page.reload()
    page.get_by_role("heading", name="Train the network").wait_for()
    wait_until_finished(page, 30)
    open_page(page, "Results")
    page.get_by_role("heading", name="Ground truth vs prediction").wait_for()
    assert loaded_width(page.locator('[data-testid="stImage"] img').first) > 100
    page.wait_for_function(f"() => ({CHART_POINTS})('Per-class accuracy') !== null")
    assert sum(chart_points(page, "Per-class accuracy")) == 10  # a bar per class, in two coloured traces

    open_page(page, "Network")
    conv1 = page.locator("tr", has_text="Conv2d(3,").first
    conv1.wait_for()
    assert "6x28x28" in conv1.inner_text()
    set_slider(page, "Conv width", "12", key="ArrowRight")
    page.wait_for_function("() => [...document.querySelectorAll('tr')].some(r => r.innerText.includes('conv1') "
                           "&& r.innerText.includes('12x28x28'))")
    assert "12x28x28" in page.locator("tr", has_text="Conv2d(3,").first.inner_text()


def test_speed_lab_sweep_draws_a_point_per_width(page):
    open_page(page, "Speed")
    page.get_by_role("heading", name="Sweep: images per second by width").wait_for()
    set_slider(page, "Timed steps per point", "3")
    page.get_by_role("button", name="Run sweep").click()
    # every series the page's defaults ask for (each device, thread count and batch size of 4 and 64) gets a point
    # per width; the sweep's fragment redraws its chart twice a second, and on a busy machine the page can hold the
    # old copy beside the new one for a while: the copy whose every line has all six widths
    from core.device import available_devices

    cores = os.cpu_count() or 1
    threads = [f"{n} thread{'s' if n != 1 else ''}" for n in dict.fromkeys((1, cores))]
    expected = sorted([f"cpu, {t}, batch {b}" for t in threads for b in (4, 64)] +
                      [f"{d}, batch {b}" for d in available_devices() if d != "cpu" for b in (4, 64)])
    whole = ("n => [...document.querySelectorAll('.js-plotly-plot')].find(g => g.layout && g.layout.title && "
             "(g.layout.title.text || '').includes('Training speed') && g.data.length === n && "
             "g.data.every(t => (t.x || []).join() === '6,16,32,64,128,256'))")
    page.wait_for_function(f"n => !!({whole})(n)", arg=len(expected), timeout=180_000)
    lines = page.evaluate(f"n => ({whole})(n).data.map(t => [t.name, [...t.y]])", len(expected))
    assert sorted(name for name, _ in lines) == expected, lines
    assert all(len(ys) == 6 and all(y > 0 for y in ys) for _, ys in lines), lines
