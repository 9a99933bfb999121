"""The lessons walked as a teacher walks them, in a real browser at 1280x720: Back from a lesson's Train page
returns to the lesson; the overfitting lesson reaches its point (train and test accuracy 15 points apart) within
about a minute; the
Lessons page runs every lesson on the teacher's own image folder, its words and links on that folder.

Skipped where Chromium or Playwright is missing (`.ci/run` installs both).
"""

import json
import re
import time

import pytest

from core.lessons import OVERFIT
from tests.web import FINISHED, choose, newest_run, shown_scale, sync_api, wait_idle

CLASSES = ("circle", "square", "stripes")


def draw_folder(root):
    """A small image folder: 3 classes, 30 training and 10 test pictures each (16x16 PNGs told apart by pattern)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    masks = {"circle": (yy - 8) ** 2 + (xx - 8) ** 2 < 25, "square": (abs(yy - 8) < 5) & (abs(xx - 8) < 5),
             "stripes": yy % 4 < 2}
    for split, count in (("train", 30), ("test", 10)):
        for name, mask in masks.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
                pixels[mask] = rng.integers(150, 255, 3, dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def pictures(server):
    """The teacher's image folder, beside the shared server's data."""
    return draw_folder(server.home / "pictures")


ACCURACY = """() => { const g = [...document.querySelectorAll('.js-plotly-plot')]
    .find(g => g.layout && g.layout.title && (g.layout.title.text || '').includes('accuracy'));
    return g ? Object.fromEntries(g.data.filter(t => t.name).map(t => [t.name, [...t.y]])) : null; }"""


def train_with_name(pg, runs, name="Ada") -> dict:
    """Type a name (a lesson's Train asks for one), press Train; the config that trained."""
    box = pg.get_by_placeholder("Your name, for the class board")
    box.fill(name)
    box.press("Enter")
    pg.wait_for_function(f"() => new URL(location.href).searchParams.get('name') === '{name}'")
    before = set(runs.glob("*"))
    pg.get_by_role("button", name="Train", exact=True).click()
    return json.loads((newest_run(runs, before) / "config.json").read_text())


def test_the_overfitting_lesson_parts_train_and_test_by_15_points_and_back_returns_to_it(server, projector):
    url = server.url
    pg = projector
    pg.goto(f"{url}/lessons?lesson=8")
    pg.get_by_role("heading", name="8. Overfitting").wait_for()
    pg.get_by_role("link", name=re.compile("^Train on 500 images")).click()
    pg.get_by_role("heading", name="Train the network").wait_for()
    pg.wait_for_function("() => location.search.includes('lesson=8')")
    wait_idle(pg)  # the page has drawn its controls and written its URL
    pg.go_back()  # the lesson, at once: the Train page's own URL writing spends no step of the history
    pg.get_by_role("heading", name="8. Overfitting").wait_for(timeout=10_000)
    assert pg.url.endswith("/lessons?lesson=8")
    pg.get_by_role("link", name=re.compile("^Train on 500 images")).click()
    pg.get_by_role("heading", name="Train the network").wait_for()
    pg.get_by_text("Epochs, Flips and crops, Training images: set by the lesson").wait_for()
    started = time.monotonic()
    config = train_with_name(pg, server.runs)
    assert {k: config[k] for k in OVERFIT} == OVERFIT
    pg.wait_for_function(FINISHED, timeout=240_000, polling=500)
    seconds = time.monotonic() - started
    lines = pg.evaluate(ACCURACY)
    assert len(lines["test"]) == len(lines["train"]) == OVERFIT["epochs"], lines
    gap = max(train - test for train, test in zip(lines["train"], lines["test"]))
    print(f"overfitting lesson: {seconds:.0f} s, largest train-test gap {gap:.1%}")
    assert gap >= 0.15, lines
    # 30 epochs on a projector's chart: the legend above the plot, where no point is; a readable number of ticks
    look = pg.evaluate("""() => { const g = [...document.querySelectorAll('.js-plotly-plot')]
        .find(g => g.layout && g.layout.title && (g.layout.title.text || '').includes('accuracy'));
        const legend = g.querySelector('.legend').getBoundingClientRect();
        const plot = g.querySelector('.nsewdrag').getBoundingClientRect();
        const ticks = g.querySelectorAll('.xtick text').length;
        return {legend_bottom: legend.bottom, plot_top: plot.top, ticks: ticks}; }""")
    assert look["legend_bottom"] <= look["plot_top"] + 1 and 3 <= look["ticks"] <= 12, look
    # the run's pictures on the Results page: their captions' largest font shows at 12 px or more at 1280x720
    pg.get_by_role("link", name="Results", exact=True).click()
    grid = pg.locator('[data-testid="stImage"]').filter(has_text="a green frame is a right guess").locator("img")
    shown = shown_scale(grid)
    assert shown * 18 >= 12, (shown, grid.evaluate("img => [img.clientWidth, img.naturalWidth, innerWidth]"))

    # the standard fix, the lesson's second link: the same run with flips and crops, ticked and locked; the gap
    # closes (Shapes, seed 0: 30.6 points without, under 10 with; docs/benchmarks.md) and the network still learns:
    # its last test accuracy was 82.1% here and 69.4% on an AMD EPYC (issue 43), so the bound is 50% (chance: 10%)
    pg.goto(f"{url}/lessons?lesson=8")
    pg.get_by_role("link", name="The same, with flips and crops").click()
    pg.get_by_text("Epochs, Flips and crops, Training images: set by the lesson").wait_for()
    pg.get_by_text("More settings").click()  # where the tick is, as a student looks for it
    box = pg.get_by_role("checkbox", name="Flips and crops")
    box.wait_for()
    assert box.is_checked() and box.is_disabled()
    fixed = train_with_name(pg, server.runs, "Alan")
    assert fixed["augment"] is True and {k: fixed[k] for k in OVERFIT} == OVERFIT
    pg.wait_for_function(FINISHED, timeout=240_000, polling=500)
    lines = pg.evaluate(ACCURACY)
    narrower = max(train - test for train, test in zip(lines["train"], lines["test"]))
    print(f"overfitting lesson with flips and crops: largest train-test gap {narrower:.1%}")
    assert narrower < gap - 0.1 and lines["test"][-1] > 0.5, lines


def test_the_lessons_run_on_the_teachers_image_folder(server, pictures, projector):
    url, folder = server.url, pictures
    pg = projector
    pg.goto(f"{url}/lessons")
    pg.get_by_role("heading", name="1. The data").wait_for()
    choose(pg, "The class's dataset", "Another image folder…")
    path = pg.get_by_role("textbox", name="Folder path", exact=True)
    path.fill(str(folder))
    path.press("Enter")
    pg.get_by_text(f"the pictures in your folder {folder}").wait_for()  # lesson 1's words are the folder's
    pg.wait_for_function("() => new URLSearchParams(location.search).get('dataset') || ''", timeout=10_000)
    assert pg.evaluate("() => new URLSearchParams(location.search).get('dataset')") == f"folder:{folder}"
    share = pg.locator("p", has_text="or share:").first.inner_text()
    assert f"data?dataset=folder&folder={folder}" in share
    pg.get_by_role("link", name="Open the Data page").click()
    pg.get_by_role("heading", name="The data").wait_for()
    pg.get_by_text("90 training").wait_for()  # 3 classes x 30: the folder's pictures
    assert pg.get_by_role("combobox", name="Dataset").input_value() == "Image folder"
    pg.go_back()
    pg.get_by_role("heading", name="1. The data").wait_for()
    # a class sent to lesson 3 on the folder: its question counts the folder's classes, its link trains on it
    pg.goto(f"{url}/lessons?lesson=3&dataset=folder:{folder}")
    pg.get_by_role("heading", name="3. Train it the tutorial's way").wait_for()
    assert pg.get_by_text("better than guessing (33%)").is_visible()
    assert pg.get_by_text("A guess spread evenly over 3 classes has a loss of ln(3) = 1.10").is_visible()
    pg.get_by_role("link", name="Train with the tutorial's settings").click()
    pg.get_by_role("heading", name="Train the network").wait_for()
    assert pg.get_by_role("combobox", name="Dataset").input_value() == "Image folder"
    path = pg.get_by_role("textbox", name="Folder path", exact=True)
    sync_api.expect(path).to_have_value(str(folder))  # the page sets it a moment after drawing the box
    assert path.is_disabled()  # locked with the dataset
    assert pg.get_by_role("combobox", name="Dataset").is_disabled()
    config = train_with_name(pg, server.runs, "Grace")
    assert config["dataset"] == f"folder:{folder}" and config["epochs"] == 2 and config["lr"] == 0.001
    pg.wait_for_function(FINISHED, timeout=120_000, polling=500)


def folder_links():
    """Every link of every lesson on an image folder (a placeholder path here; the test's own folder in the test)."""
    from core.lessons import lessons

    tour = lessons("folder:/PLACEHOLDER", gpu=False, classes=len(CLASSES))
    return [(i, j) for i, lesson in enumerate(tour) for j, _ in enumerate(lesson.links)]


SLIDERS = {"epochs": "Epochs", "lr": "Learning rate", "momentum": "Momentum", "batch_size": "Batch size",
           "conv_width": "Conv width"}


@pytest.mark.parametrize("lesson, index", folder_links(), ids=[f"{i + 1}.{j + 1}" for i, j in folder_links()])
def test_every_lesson_link_on_the_teachers_folder_sets_its_page_up(server, pictures, projector, lesson, index):
    """Each link, as the Lessons page gives it on the teacher's folder: its page on that folder, the values and
    locks set; a Train link trains on the folder."""
    from core.lessons import lessons
    from core.links import parse_link

    url, folder = server.url, pictures
    title, link = (lambda ls: (ls[lesson].title, ls[lesson].links[index]))(
        lessons(f"folder:{folder}", gpu=False, classes=len(CLASSES)))
    pg = projector
    pg.goto(f"{url}/{link.url()}")
    if link.page == "data":
        pg.get_by_text("90 training").wait_for()
        assert pg.get_by_role("combobox", name="Dataset").input_value() == "Image folder"
        return
    if link.page == "network":
        pg.get_by_role("heading", name="The network, layer by layer").wait_for()
        return
    if link.page == "speed":
        pg.get_by_role("heading", name="Sweep: images per second by width").wait_for()
        return
    if link.page == "runs":
        pg.get_by_role("heading", name="Compare runs").wait_for()
        return
    if link.page == "own":
        pg.get_by_role("heading", name="A new dataset").wait_for()
        return
    if link.page == "step":  # one step on a batch of the folder's pictures, the learning rate held
        pg.get_by_text("Step 1 on batch 1").wait_for(timeout=60_000)
        pg.get_by_text(re.compile("Settings: ")).click()
        assert pg.get_by_role("slider", name="Learning rate").is_disabled()
        sync_api.expect(pg.get_by_role("textbox", name="Folder path", exact=True)).to_have_value(str(folder))
        return
    settings = parse_link(link.query()).values
    pg.get_by_role("slider", name="Learning rate").wait_for()
    assert pg.get_by_role("combobox", name="Dataset").input_value() == "Image folder", title
    sync_api.expect(pg.get_by_role("textbox", name="Folder path", exact=True)).to_have_value(str(folder))
    for name, label in SLIDERS.items():
        slider = pg.get_by_role("slider", name=label)
        assert float(slider.get_attribute("aria-valuetext")) == float(settings[name]), (title, label)
        sgd_only = name == "momentum" and settings.get("optimizer", "sgd") != "sgd"
        assert slider.is_disabled() == (name in link.locked or sgd_only), (title, label, link.locked)
    config = train_with_name(pg, server.runs)
    assert config["dataset"] == f"folder:{folder}", title
    assert all(config[k] == v for k, v in settings.items() if k not in ("preset", "folder", "dataset")), title
    try:  # a diverging run can end on its own between a look at Stop and the click
        pg.get_by_role("button", name="Stop", exact=True).click(timeout=5000)
    except sync_api.TimeoutError:
        pass
    pg.wait_for_function("() => [...document.querySelectorAll('p')].some(p => p.innerText.startsWith('Status:') "
                         "&& /stopped|finished|diverged|failed/.test(p.innerText))", timeout=60_000)
