"""Own pictures in a real browser at 1280x720: a student makes a 3-class dataset by uploading pictures, removes a bad
one, trains on it and reads the three classes on Results; the dataset's zip goes to a second server; a hostile zip
gets one line; a photo from the (fake) camera lands in its class.

Skipped where Chromium or Playwright is missing (`.ci/run` installs both).
"""

import io
import os
import re
import zipfile

from tests.conftest import BROWSER_FLAGS, CHROMIUM, PROJECTOR
from tests.test_datasets import COLOURS, picture
from tests.web import CHART_POINTS, loaded_width, wait_until_finished

PER_CLASS = 12
ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "test-artifacts")
BARS = """title => {
  const g = [...document.querySelectorAll('.js-plotly-plot')]
      .find(g => g.layout && g.layout.title && (g.layout.title.text || '').includes(title));
  return g ? [...new Set(g.data.flatMap(t => [...(t.x || [])]))].sort() : null;
}"""


def own_page(context, url):
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(f"{url}/own")
    pg.get_by_role("heading", name="Own pictures").wait_for()
    return pg


def upload(pg, label: str, files) -> None:
    """Files into the file uploader whose label has `label`, as a user's file dialog gives them."""
    pg.locator('[data-testid="stFileUploader"]', has_text=label).locator("input[type=file]").set_input_files(files)


def said(pg, text: str) -> None:
    """A line the page shows after an action (an alert)."""
    pg.locator('[data-testid="stAlert"]', has_text=text).first.wait_for()


def make_fruit(pg, folder):
    pg.get_by_role("textbox", name="Name").fill("fruit")
    pg.get_by_role("textbox", name="Classes, separated by commas").fill("apple, banana, cherry")
    pg.get_by_role("textbox", name="Classes, separated by commas").press("Tab")
    pg.get_by_role("button", name="Make the dataset").click()
    said(pg, "fruit is made, with 3 classes")
    for cls, colour in COLOURS.items():
        files = []
        for i in range(PER_CLASS):
            path = folder / f"{cls}-{i}.png"
            path.write_bytes(picture(colour, i, size=(64, 48)))
            files.append(str(path))
        pg.get_by_role("tab", name=cls, exact=True).click()
        upload(pg, f"Add pictures of {cls}", files)
        said(pg, f"{PER_CLASS} pictures added to {cls}")
        pg.get_by_role("tabpanel").get_by_text(f"{cls}: {PER_CLASS} pictures").wait_for()  # the tab stays open


def test_a_dataset_made_in_the_browser_trains_and_goes_to_another_server(browser, own_server, tmp_path):
    """On servers of their own: the dataset is the first on the one, and new to the other."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    url = own_server().url
    context = browser.new_context(viewport=PROJECTOR, accept_downloads=True)
    try:
        pg = own_page(context, url)
        make_fruit(pg, folder)
        pg.get_by_text("Ready to train.").wait_for()
        # the pictures: each beside the 32x32 the network sees; a bad one removed with a click
        pg.get_by_role("tab", name="apple", exact=True).click()
        tiles = pg.locator('[data-testid="stImage"] img')
        assert loaded_width(tiles.first) == 2 * 96 + 4
        pg.get_by_role("button", name="Remove").first.click()
        said(pg, "One picture removed from apple.")
        pg.get_by_role("tabpanel").get_by_text("apple: 11 pictures").wait_for()
        os.makedirs(ARTIFACTS, exist_ok=True)
        pg.screenshot(path=os.path.join(ARTIFACTS, "own-1280x720.png"))

        # train on it: the page's link sets the Train page's dataset
        pg.get_by_role("link", name="Train on fruit").click()
        pg.get_by_role("heading", name="Train the network").wait_for()
        pg.wait_for_function("() => [...document.querySelectorAll('code')].some(c => "
                             "c.innerText.includes('--dataset own:fruit'))")
        pg.get_by_role("button", name="Train", exact=True).click()
        wait_until_finished(pg, 180)
        pg.get_by_role("link", name="Results", exact=True).click()
        pg.wait_for_function(f"() => ({CHART_POINTS})('Per-class accuracy') !== null")
        assert pg.evaluate(BARS, "Per-class accuracy") == ["apple", "banana", "cherry"]
        # its confusion matrix is of its classes; a photo is classified into them
        heatmaps = pg.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')].filter(g => g.data && "
                               "g.data[0].type === 'heatmap').map(g => [...g.data[0].x])")
        assert heatmaps == [["apple", "banana", "cherry"]]
        photo = folder / "photo.jpg"
        photo.write_bytes(picture(COLOURS["banana"], 99, size=(120, 90), fmt="JPEG"))
        upload(pg, "Upload a photo (PNG or JPEG)", str(photo))
        said_class = pg.locator("p", has_text="The network says").first
        said_class.wait_for()
        assert re.match(r"The network says (apple|banana|cherry) \(\d+% sure\)", said_class.inner_text())

        # share: the zip downloads; a second server takes it in, with the same pictures
        pg.get_by_role("link", name="Own pictures", exact=True).click()
        with pg.expect_download() as download:
            pg.get_by_role("link", name="Download dataset (.zip)").click()
        zipped = tmp_path / "fruit.zip"
        download.value.save_as(zipped)
        with zipfile.ZipFile(zipped) as zf:
            assert len([n for n in zf.namelist() if n.endswith(".png")]) == 3 * PER_CLASS - 1
        second = own_page(context, own_server().url)
        upload(second, "A zip of class folders", str(zipped))
        said(second, f"{3 * PER_CLASS - 1} pictures added to fruit.")
        second.get_by_text("apple: 11 pictures").wait_for()
        second.get_by_text("Ready to train.").wait_for()

        # a hostile zip: one line, and nothing made
        bomb = io.BytesIO()
        with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("apple/a.png", bytes(300 * 2**20))
        (tmp_path / "bomb.zip").write_bytes(bomb.getvalue())
        second.get_by_role("combobox", name="Dataset").click()
        second.get_by_role("option", name="New dataset…").click()
        upload(second, "A zip of class folders", str(tmp_path / "bomb.zip"))
        error = second.locator('[data-testid="stAlert"]', has_text="bomb.zip was not taken in")
        error.wait_for()
        assert "would be 300 MB unpacked" in error.inner_text() and error.inner_text().count("\n") == 0
        second.get_by_role("combobox", name="Dataset").click()
        assert [o.inner_text() for o in second.get_by_role("option").all()] == ["fruit", "New dataset…"]
    finally:
        context.close()


def test_a_photo_from_the_camera_lands_in_its_class(browser, own_server, tmp_path):
    from core.datasets import create_own, get_own

    create_own(tmp_path / "data", "pets", ["cat", "dog"])
    url = own_server(tmp_path).url
    camera = browser.browser_type.launch(executable_path=CHROMIUM, args=[  # Chromium's own fake camera, allowed
        *BROWSER_FLAGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
    try:
        context = camera.new_context(viewport=PROJECTOR, permissions=["camera"])
        pg = own_page(context, url)
        pg.get_by_role("tab", name="dog", exact=True).click()
        panel = pg.get_by_role("tabpanel")  # the shown tab's (the others are hidden)
        panel.get_by_text("Use the camera").click()
        pg.wait_for_function("() => [...document.querySelectorAll('video')].some(v => v.readyState >= 2 "
                             "&& v.videoWidth > 0)")  # the camera shows a picture
        panel.get_by_role("button", name="Take Photo").click()
        said(pg, "1 picture added to dog.")
        panel.get_by_text("dog: 1 picture ").wait_for()
        assert get_own(tmp_path / "data", "pets").count("dog") == 1
        assert loaded_width(panel.locator('[data-testid="stImage"] img').first) == 2 * 96 + 4
    finally:
        camera.close()
