"""The Own pictures page's parts: its actions (callbacks that act before the page is drawn, saying what they did
in one line each), a picture as the class sees it, and the dataset's zip as the app's own route.

The work is core/datasets.py's: every file taken in is checked there.
"""

from __future__ import annotations

import html
import io
import time
from urllib.parse import urlencode

import streamlit as st
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from core.datasets import (
    OwnError,
    add_class,
    add_pictures,
    add_zip,
    create_own,
    delete_own,
    export_own,
    import_own,
    remove_class,
    remove_picture,
)
from ui.common import data_dir

ZIP_URL = "api/own.zip"
CHOSEN = "own_dataset"  # the page's dataset control: a dataset's name, or NEW
NEW = ""  # the choice that makes a new dataset
SAID = "own_said"  # what the last action did: [(kind, line)], shown once at the top of the page
MOST_SAID = 8  # lines of left-out pictures shown; the rest counted


def say(kind: str, line: str) -> None:
    st.session_state.setdefault(SAID, []).append((kind, line))


def said() -> list[tuple[str, str]]:
    return st.session_state.pop(SAID, [])


def _report(added: int, problems: list[str], where: str) -> None:
    if added:
        say("success", f"{added} picture{'s' if added != 1 else ''} added to {where}.")
    for line in problems[:MOST_SAID]:
        say("warning", f"Left out: {line}.")
    if len(problems) > MOST_SAID:
        say("warning", f"... and {len(problems) - MOST_SAID} more left out.")


def _uploader_key(name: str) -> str:
    """A file uploader's key, new after each upload taken in: the uploader then shows empty again."""
    return f"{name}_{st.session_state.get(name + '_n', 0)}"


def _renew(name: str) -> None:
    st.session_state[name + "_n"] = st.session_state.get(name + "_n", 0) + 1


# -- actions --------------------------------------------------------------------------------------------------------

def on_create() -> None:
    name = st.session_state.get("own_new_name", "")
    classes = [c for c in (st.session_state.get("own_new_classes") or "").replace("\n", ",").split(",") if c.strip()]
    try:
        if len(classes) < 2:
            raise OwnError("name at least 2 classes, separated by commas (for example: apple, banana, cherry)")
        dataset = create_own(data_dir(), name, classes)
    except OwnError as exc:
        say("error", f"The dataset was not made: {exc}.")
        return
    st.session_state[CHOSEN] = dataset.name
    st.session_state["own_new_name"] = st.session_state["own_new_classes"] = ""
    say("success", f"{dataset.name} is made, with {len(dataset.classes)} classes: now add pictures to each.")


def _take(uploader: str, add, failed: str, where=None):
    """What the uploader holds (files, a zip or a photo), given to `add(upload)` once: the uploader is made anew,
    empty, for the next. What was added and left out is said (`where`: the class or dataset, or from the result);
    a refusal, in one line after `failed(upload)`. The result, or None."""
    upload = st.session_state.get(_uploader_key(uploader))
    if not upload:
        return None
    _renew(uploader)
    try:
        result = add(upload)
    except OwnError as exc:
        say("error", f"{failed(upload)}: {exc}.")
        return None
    _report(result.added, result.problems, where or result.dataset.name)
    return result


def on_import() -> None:
    result = _take("own_zip", lambda zipped: import_own(data_dir(), zipped.getvalue(),
                                                        default_name=zipped.name.rsplit(".", 1)[0]),
                   lambda zipped: f"{zipped.name} was not taken in")
    if result is not None:
        st.session_state[CHOSEN] = result.dataset.name


def on_add_zip(name: str) -> None:
    _take("own_add_zip", lambda zipped: add_zip(data_dir(), name, zipped.getvalue()),
          lambda zipped: f"{zipped.name} was not taken in", name)


def on_upload(name: str, cls: str) -> None:
    _take(f"own_up_{cls}", lambda files: add_pictures(data_dir(), name, cls, ((f.name, f.getvalue()) for f in files)),
          lambda files: "Nothing was added", cls)


def on_camera(name: str, cls: str) -> None:
    _take(f"own_cam_{cls}",
          lambda shot: add_pictures(data_dir(), name, cls, [(f"photo-{time.strftime('%H%M%S')}.jpg", shot.getvalue())]),
          lambda shot: "The photo was not added", cls)


def on_remove(name: str, cls: str, picture_id: str) -> None:
    try:
        remove_picture(data_dir(), name, cls, picture_id)
        say("info", f"One picture removed from {cls}.")
    except OwnError as exc:
        say("error", str(exc))


def on_add_class(name: str) -> None:
    cls = st.session_state.get("own_add_class", "")
    try:
        add_class(data_dir(), name, cls)
    except OwnError as exc:
        say("error", f"The class was not added: {exc}.")
        return
    st.session_state["own_add_class"] = ""
    say("success", f"Class {cls.strip()} added.")


def on_remove_class(name: str, cls: str) -> None:
    try:
        remove_class(data_dir(), name, cls)
        say("info", f"Class {cls} and its pictures removed.")
    except OwnError as exc:
        say("error", str(exc))


def on_delete(name: str) -> None:
    try:
        delete_own(data_dir(), name)
    except OwnError as exc:
        say("error", str(exc))
        return
    st.session_state[CHOSEN] = NEW
    say("info", f"{name} deleted.")


# -- pictures -------------------------------------------------------------------------------------------------------

TILE = 96  # pixels a side of each half of a tile


@st.cache_data(max_entries=2000, show_spinner=False)
def tile(path: str, picture_id: str) -> bytes:
    """A picture as kept beside the 32x32 the network sees (enlarged, pixels kept square), as one PNG. Keyed by the
    picture's id: its content's hash."""
    from PIL import Image

    with Image.open(path) as img:
        original = img.convert("RGB")
    small = original.resize((32, 32), Image.BILINEAR).resize((TILE, TILE), Image.NEAREST)
    shown = original.resize((TILE, TILE), Image.BILINEAR)
    out = Image.new("RGB", (2 * TILE + 4, TILE), (255, 255, 255))
    out.paste(shown, (0, 0))
    out.paste(small, (TILE + 4, 0))
    buffer = io.BytesIO()
    out.save(buffer, "PNG")
    return buffer.getvalue()


# -- the zip, as the app's own route --------------------------------------------------------------------------------

async def zip_route(request: Request) -> Response:
    """GET api/own.zip?name=NAME: the dataset as a zip, made at the click (as the Board's CSV: a download button's
    file can be deleted by any session's page runs before the browser fetches it)."""
    name = request.query_params.get("name", "")[:60]
    try:
        data = await run_in_threadpool(export_own, data_dir(), name)
    except OwnError as exc:
        return PlainTextResponse(f"error: {exc}", status_code=404)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}.zip"', "Cache-Control": "no-store"})


def zip_link(name: str) -> str:
    href = html.escape(f"{ZIP_URL}?{urlencode({'name': name})}")
    return (f'<a class="cnn-download" href="{href}" download title="Every picture, in train/ and test/ folders of '
            f'one folder per class: another server takes it in on this page.">&#x2913; Download dataset (.zip)</a>')


ROUTES = [Route("/" + ZIP_URL, zip_route, methods=["GET"])]
