"""Data parallelism in a real browser at a projector's size (1280x720): a teacher picks Processes "2 (DDP,
gloo)" on the Train page and trains, and the run that trained is a 2-process run with the global
batch the page said; on the Speed page "Measure scaling" draws images/s for 1 and 2 processes with the efficiency.

Skipped where Chromium or Playwright is missing (`.ci/run` installs both).
"""

import json
import os

import pytest

from tests.web import (
    HAS_STATUS,
    choose,
    home_page,
    loaded_width,
    open_page,
    set_slider,
    status_text,
    wait_for_command,
    wait_until_finished,
)

# the Speed page's fragment redraws its charts while a measurement runs, and a busy page can hold the old copy
# beside the new one for a while: BARS reads the copy with the most bars
BARS = """title => {
  const gs = [...document.querySelectorAll('.js-plotly-plot')]
      .filter(g => g.layout && g.layout.title && (g.layout.title.text || '').includes(title) && g.data.length);
  gs.sort((a, b) => (b.data[0].x || []).length - (a.data[0].x || []).length);
  const g = gs[0];
  return g ? g.data.map(t => ({name: t.name, x: [...t.x], y: [...t.y], text: [...(t.text || [])]})) : null;
}"""


@pytest.fixture
def home_1280(browser, server):
    """The app's home page at a projector's 1280x720."""
    yield from home_page(browser, server.url, 1280, 720)


def test_two_processes_chosen_on_the_train_page_train_one_run_data_parallel(home_1280, server):
    pg = home_1280
    before = set(server.runs.glob("2*"))
    open_page(pg, "Train")
    choose(pg, "Dataset", "Shapes (offline)")
    choose(pg, "Processes", "2 (DDP, gloo)")
    set_slider(pg, "Epochs", "1")
    wait_for_command(pg, "--dataset shapes", "--epochs 1", "--nproc 2", "--threads 1")
    # the tutorial's batch of 4 is per process: the page says what a step takes
    pg.get_by_text("global batch 8").wait_for()
    assert "nproc=2" in pg.url and "device=cpu" in pg.url
    pg.get_by_role("button", name="Train", exact=True).click()
    pg.wait_for_function(HAS_STATUS, timeout=30_000, polling=250)
    wait_until_finished(pg, seconds=180)
    assert "2 processes (DDP, 1 thread each) × batch 4 = global batch 8" in status_text(pg)

    (run,) = set(server.runs.glob("2*")) - before  # one run folder, written by rank 0 alone
    summary = json.loads((run / "summary.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert summary["status"] == "finished" and summary["replica_difference"] == 0.0
    assert (summary["world_size"], summary["batch_size"], summary["global_batch_size"]) == (2, 4, 8)
    assert (config["nproc"], config["threads"], config["epochs"], config["device"]) == (2, 1, 1, "cpu")
    assert summary["images_seen"] == 10_000 and summary["steps"] == 1250  # 10,000 images, 8 a step

    # rank 0's checkpoint and predictions serve the Results page as any run's do
    open_page(pg, "Results")
    pg.get_by_text(f"Predictions after epoch 1: {summary['test_accuracy']:.1%}").wait_for()
    assert loaded_width(pg.locator('[data-testid="stImage"] img').first) > 100


def test_measure_scaling_draws_images_per_second_by_processes(home_1280):
    pg = home_1280
    open_page(pg, "Speed")
    pg.get_by_role("button", name="Measure scaling").wait_for()
    # one width keeps it short: the tutorial's 6
    widths = pg.get_by_test_id("stMultiSelect").filter(has_text="Scaling conv widths")
    widths.get_by_role("button", name="Remove 64").last.click()
    widths.get_by_role("button", name="Remove 64").last.wait_for(state="detached")
    pg.get_by_role("button", name="Measure scaling").click()
    ladder = sorted({*(2**i for i in range(8) if 2**i <= max(2, os.cpu_count())), max(2, os.cpu_count())})
    expected = ["1 process, 1 thread", *(f"{n} processes (DDP)" for n in ladder[1:])]
    if os.cpu_count() > 1:
        expected.append(f"1 process, {os.cpu_count()} threads")
    pg.get_by_text(f"{len(expected)} of {len(expected)} measured (finished)").wait_for(timeout=240_000)
    every_bar = f"() => {{ const b = ({BARS})('Scaling out'); return b && b[0].x.length === {len(expected)}; }}"
    pg.wait_for_function(every_bar, timeout=30_000)
    bars = pg.evaluate(BARS, "Scaling out")
    assert [b["name"] for b in bars] == ["conv width 6"]
    assert bars[0]["x"] == expected and all(y > 100 for y in bars[0]["y"])
    efficiency = bars[0]["text"][1]
    assert efficiency.endswith("% efficient") and 5 <= int(efficiency.split("%")[0]) <= 150
    # kept like the other speed results: the Runs page lists it
    open_page(pg, "Runs")
    pg.get_by_text("Scaling, ").first.wait_for()
