"""The classroom path in a real browser, at projector sizes: lesson links, the live view above the fold, the
confusion matrix's cells, the app's own navigation on every fresh load.

Skipped where Chromium or Playwright is missing (`.ci/run` installs both).
"""

import json
import re
import time
from pathlib import Path

import pytest

from core.lessons import lessons
from core.links import parse_link
from tests.conftest import PROJECTOR
from tests.web import CHART_POINTS, newest_run, sync_api

SLIDERS = {"epochs": "Epochs", "lr": "Learning rate", "momentum": "Momentum", "batch_size": "Batch size",
           "conv_width": "Conv width"}
LESSON_LINKS = [(lesson.title, link) for lesson in lessons("shapes") for link in lesson.links]


def in_view(pg, title: str) -> dict:
    """Where a Plotly chart with this title is on the screen, and whether all of it is inside the viewport."""
    return pg.evaluate("""title => {
      const g = [...document.querySelectorAll('.js-plotly-plot')]
          .find(g => g.layout && g.layout.title && (g.layout.title.text || '').includes(title));
      if (!g) return null;
      const r = g.getBoundingClientRect();
      return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, inside: r.top >= 0 && r.left >= 0 &&
              r.bottom <= window.innerHeight && r.right <= window.innerWidth && r.height > 100};
    }""", title)


def lesson_runs(server) -> None:
    """What a class has trained by the lessons' Compare links: a run with momentum 0 and one with Adam (short ones,
    here, so that the test needs no other test to have run before it on this server)."""
    from core.config import TrainConfig
    from core.loop import run_training

    for knobs in (dict(momentum=0.0), dict(optimizer="adam", lr=0.001)):
        config = TrainConfig(dataset="shapes", data_dir=str(server.home / "data"), max_steps=3, **knobs)
        list(run_training(config, runs_root=server.runs))


@pytest.mark.parametrize("title, link", LESSON_LINKS, ids=[f"{t[:2]}{link.label[:24]}" for t, link in LESSON_LINKS])
def test_a_lesson_link_opens_its_page_set_up_and_trains_in_view(server, projector, title, link):
    url = server.url
    pg = projector
    if link.page == "runs":
        lesson_runs(server)
    pg.goto(f"{url}/{link.url()}")
    if link.page == "data":
        pg.get_by_role("heading", name="The data").wait_for()
        pg.wait_for_function("() => [...document.querySelectorAll('p')].some(p => p.innerText.includes('training'))")
        assert "10,000 training" in pg.locator("p", has_text="test images of").first.inner_text()  # Shapes
        return
    if link.page == "network":
        pg.get_by_role("heading", name="The network, layer by layer").wait_for()
        width = link.settings["conv_width"]
        assert pg.get_by_role("slider", name="Conv width").first.get_attribute("aria-valuetext") == str(width)
        pg.wait_for_function("w => [...document.querySelectorAll('tr')].some(r => r.innerText.includes('conv1') "
                             "&& r.innerText.includes(w + 'x28x28'))", arg=str(width))
        return
    if link.page == "speed":
        pg.get_by_role("heading", name="Sweep: images per second by width").wait_for()
        return
    if link.page == "own":  # where the class makes its own dataset: none on this server yet, so a new one
        pg.get_by_role("heading", name="Own pictures").wait_for()
        pg.get_by_role("heading", name="A new dataset").wait_for()
        return
    if link.page == "runs":  # after the lesson's trainings: they are there to compare, named by what they are
        pg.get_by_role("heading", name="Compare runs").wait_for()
        box = pg.get_by_role("combobox", name="Compare runs", exact=True)
        box.click()
        box.press("ArrowDown")
        named = "optimizer adam" if title.endswith("Optimizers") else "momentum 0 "
        assert pg.get_by_role("option").filter(has_text=named).count() >= 1
        return
    if link.page == "step":  # one step taken on the lesson's settings, the learning rate held
        pg.get_by_text("Step 1 on batch 1").wait_for(timeout=60_000)
        pg.get_by_role("tab", name="Update", exact=True).click()
        rule = pg.locator(".step-rule[data-line=w_new] .symbols")
        assert rule.inner_text() == "w_new = w − lr·buf"
        assert pg.get_by_text(re.compile(r"lr = 0.001, μ = 0.9, step t = 1")).is_visible()
        pg.get_by_text(re.compile("Settings: ")).click()
        assert pg.get_by_role("slider", name="Learning rate").is_disabled()
        assert pg.get_by_role("slider", name="Momentum").is_enabled()
        return
    # a Train link: the controls show its values, the lesson's locks and only those are disabled
    settings = parse_link(link.query()).values
    pg.get_by_role("slider", name="Learning rate").wait_for()
    for name, label in SLIDERS.items():
        slider = pg.get_by_role("slider", name=label)
        shown = slider.get_attribute("aria-valuetext")
        assert float(shown) == float(settings[name]), (label, shown, settings[name])
        sgd_only = name == "momentum" and settings.get("optimizer", "sgd") != "sgd"  # Adam's momentum is its own
        assert slider.is_disabled() == (name in link.locked or sgd_only), (label, link.locked)
    assert pg.get_by_text("set by the lesson").is_visible()
    assert pg.get_by_role("combobox", name="Dataset").input_value() == "Shapes (offline)"
    name = pg.get_by_placeholder("Your name, for the class board")  # a student in a class gives a name first
    name.fill("Ada")
    name.press("Enter")
    pg.wait_for_function("() => new URL(location.href).searchParams.get('name') === 'Ada'")
    before = set(server.runs.glob("*"))
    button = pg.get_by_role("button", name="Train", exact=True)
    assert button.bounding_box()["y"] + button.bounding_box()["height"] <= PROJECTOR["height"]  # no scrolling
    button.click()
    # the config that trained is the link's
    run = newest_run(server.runs, before)
    trained = json.loads((run / "config.json").read_text())
    for name, value in settings.items():
        if name in ("preset", "folder"):
            continue
        assert trained[name] == value, (name, trained[name], value)
    deadline = time.monotonic() + 30  # the run folder records who trained it, and for which lesson
    while not (run / "meta.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["name"] == "Ada" and meta["board"] == link.board() and meta["owner"]
    # its running loss shows (or, too high a rate, the page says it diverged), in view, without the test scrolling
    pg.wait_for_function(f"() => {{ const p = ({CHART_POINTS})('Running loss'); return p && p[0] > 0 || "
                         "[...document.querySelectorAll('p')].some(p => p.innerText.startsWith('Status:') "
                         "&& p.innerText.includes('diverged')); }", timeout=60_000)
    for chart in ("Running loss", "Test accuracy"):
        box = in_view(pg, chart)
        assert box and box["inside"], (chart, box)
    assert pg.evaluate("() => window.scrollY") == 0
    try:  # a diverging run can end on its own between a look at Stop and the click
        pg.get_by_role("button", name="Stop", exact=True).click(timeout=3000)
    except sync_api.TimeoutError:
        pass
    pg.wait_for_function("() => [...document.querySelectorAll('p')].some(p => p.innerText.startsWith('Status:') "
                         "&& /stopped|finished|diverged/.test(p.innerText))", timeout=30_000)


def test_the_lessons_page_walks_the_tour_and_its_link_sets_up_the_train_page(server, projector):
    url = server.url
    pg = projector
    pg.goto(f"{url}/lessons")
    pg.get_by_role("heading", name="1. The data").wait_for()
    for expected in ("2. The network's shapes", "3. Train it the tutorial's way"):
        pg.get_by_role("button", name="Next ▶").click()
        pg.get_by_role("heading", name=expected).wait_for()
    pg.wait_for_function("() => new URLSearchParams(location.search).get('lesson') === '3'")  # a class can be sent
    other = pg.context.new_page()
    other.goto(pg.url)
    other.get_by_role("heading", name="3. Train it the tutorial's way").wait_for()
    share = other.locator("p", has_text="or share:").first.inner_text()
    assert f"{url}/train?" in share and "lock=" in share  # the address of the app, not of this page
    other.close()
    pg.get_by_role("link", name="Train with the tutorial's settings").click()
    pg.get_by_role("heading", name="Train the network").wait_for()
    pg.wait_for_function("() => location.search.includes('lock=')")
    assert pg.get_by_role("slider", name="Learning rate").get_attribute("aria-valuetext") == "0.001"
    assert pg.get_by_role("slider", name="Learning rate").is_disabled()
    assert pg.get_by_role("radio", name="Tutorial").is_checked()


def test_a_click_on_a_confusion_matrix_cell_shows_that_pair(server, projector):
    from core.config import TrainConfig
    from core.loop import run_training

    url = server.url
    config = TrainConfig(dataset="shapes", data_dir=str(server.home / "data"), epochs=1, batch_size=32, lr=0.02)
    run_dir = [e for e in run_training(config, runs_root=server.runs)][-1]["run_dir"]
    pg = projector
    pg.goto(f"{url}/results")
    pg.get_by_role("heading", name="Confusion matrix").first.scroll_into_view_if_needed()  # drawn once in view
    assert Path(run_dir).name in pg.get_by_role("combobox", name="Run").input_value()  # the newest run
    chart = ("[...document.querySelectorAll('.js-plotly-plot')]"
             ".find(g => g.layout && g.layout.title && (g.layout.title.text || '').includes('Confusion matrix'))")
    pg.wait_for_function(f"() => !!{chart}")
    pg.evaluate(f"() => {chart}.scrollIntoView({{block: 'center'}})")
    # the scroll has settled: the chart stands still, inside the window, across two animation frames
    pg.wait_for_function(f"""() => new Promise(done => {{ const top = () => {chart}.getBoundingClientRect().top;
        const before = top(); requestAnimationFrame(() => requestAnimationFrame(() =>
            done(top() === before && before >= 0 && before < window.innerHeight))); }})""")
    # the cell of true class 3 (diamond), predicted 1 (square): off the diagonal
    x, y = pg.evaluate(f"""() => {{ const g = {chart}, r = g.getBoundingClientRect(), L = g._fullLayout;
        return [r.left + L.xaxis._offset + L.xaxis.l2p(1), r.top + L.yaxis._offset + L.yaxis.l2p(3)]; }}""")
    pg.mouse.click(x, y)
    pg.wait_for_function("() => document.querySelector('input[aria-label=\"True class\"]').value === 'diamond'")
    assert pg.get_by_role("combobox", name="Predicted class").input_value() == "square"
    caption = pg.get_by_text("that are diamond and were taken for square")
    no_images = pg.get_by_text("No diamond was taken for square")
    assert caption.count() + no_images.count() == 1  # that pair's images, or the line saying there are none


def test_every_fresh_load_shows_the_apps_own_navigation_and_the_job_section(browser, own_server):
    """On the first loads after a start, Streamlit used to run a page script on its own and show its automatic
    page list (dashboard, data, home, ...) without the app's sidebar. Ten loads at once of a fresh server."""
    url = own_server().url
    context = browser.new_context(viewport=PROJECTOR)
    try:
        pages = []
        for _ in range(10):
            pg = context.new_page()
            pg.goto(f"{url}/train", wait_until="commit")
            pages.append(pg)
        for pg in pages:
            pg.get_by_text("Your training job").wait_for(timeout=60_000)
            pg.get_by_role("heading", name="Train the network").wait_for(timeout=30_000)  # drawn after the sidebar
            nav = pg.locator('[data-testid="stSidebarNav"]').inner_text()
            assert "Lessons" in nav and "Train" in nav and "dashboard" not in nav, nav
    finally:
        context.close()


def test_share_box_gives_a_link_with_the_locks_ticked_and_never_the_job(server, projector):
    url = server.url
    pg = projector
    pg.goto(f"{url}/train?dataset=shapes&lr=0.02&momentum=0.5")
    pg.get_by_role("slider", name="Learning rate").wait_for()
    pg.get_by_text("Share these settings").click()
    pg.get_by_text("Lock learning rate").click()
    pg.wait_for_function("() => [...document.querySelectorAll('code')].some(c => c.innerText.includes('lock=lr'))")
    link = next(c for c in pg.locator("code").all_inner_texts() if "lock=lr" in c)
    assert link.startswith(url + "/train?") and "lr=0.02" in link and "momentum=0.5" in link
    assert "job=" not in link
    # the link, opened elsewhere, sets the same and locks the learning rate
    other = pg.context.new_page()
    other.goto(link)
    slider = other.get_by_role("slider", name="Learning rate")
    slider.wait_for()
    assert slider.get_attribute("aria-valuetext") == "0.02" and slider.is_disabled()
    assert other.get_by_role("slider", name="Momentum").get_attribute("aria-valuetext") == "0.50"
    other.close()


def test_presentation_mode_enlarges_the_numbers_and_hides_the_terminal_command(server, projector):
    url = server.url
    pg = projector
    pg.goto(f"{url}/train?dataset=shapes")
    pg.get_by_text("The same run from a terminal").wait_for()
    normal = pg.get_by_role("heading", name="Train the network").evaluate("h => getComputedStyle(h).fontSize")
    label = pg.locator("label", has_text="Learning rate").first
    small = float(label.evaluate("l => getComputedStyle(l.querySelector('p') || l).fontSize")[:-2])
    pg.get_by_text("Presentation mode").click()
    pg.wait_for_function("() => location.search.includes('present=true')")
    pg.wait_for_function("() => ![...document.querySelectorAll('p')]"
                         ".some(p => p.innerText.includes('from a terminal'))")
    large = float(label.evaluate("l => getComputedStyle(l.querySelector('p') || l).fontSize")[:-2])
    assert large > small * 1.1, (small, large)
    assert pg.get_by_role("heading", name="Train the network").evaluate("h => getComputedStyle(h).fontSize") == normal


def test_every_lessons_question_is_in_view_at_1280x720(server, projector):
    from core.device import available_devices

    url = server.url
    for number, lesson in enumerate(lessons("shapes", gpu=available_devices() != ["cpu"]), 1):
        projector.goto(f"{url}/lessons?lesson={number}")
        projector.get_by_role("heading", name=lesson.title).wait_for()
        question = projector.locator('[data-testid="stAlert"]', has_text="Question:")
        assert lesson.question in question.inner_text()
        box = question.bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= PROJECTOR["height"], (lesson.title, box)


def test_a_server_on_every_interface_shares_its_network_address_not_127(own_server, browser):
    from ui.common import network_address

    url = own_server(STREAMLIT_SERVER_ADDRESS="0.0.0.0").url  # the browser still opens it on 127.0.0.1
    context = browser.new_context(viewport=PROJECTOR)
    try:
        pg = context.new_page()
        pg.goto(f"{url}/lessons?lesson=3")  # the teacher's own browser, on 127.0.0.1
        shared = pg.get_by_text("or share:").first
        shared.wait_for()
        text = shared.inner_text()
        ip = network_address()  # this machine's, as the server finds it
        if ip is None:  # a machine on no network: nobody could open a link, and the page says so
            pg.get_by_text("no network address that others could reach").wait_for()
        else:
            assert "127.0.0.1" not in text and "localhost" not in text, text
            assert f"http://{ip}:" in text and "/train?" in text, text
    finally:
        context.close()
