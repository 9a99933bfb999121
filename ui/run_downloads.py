"""A run's files, as the Runs and Network pages offer them: made at the click by the app's own route.

    GET api/run?run=NAME&as=zip | loss.csv | epochs.csv | tensorboard | onnx

Not st.download_button: the file a button holds lives in Streamlit's media store, which any session's page run
may clear before the browser fetches it, and a button's file made at every redraw is made for every session.
TensorBoard and ONNX need optional packages (requirements-export.txt): without them the pages say the pip
command instead of the link, and the route answers with it.
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from core.runs import RunError, run_path
from core.runs.archive import export_bytes, run_csv
from core.runs.export import missing_extra, read_export, run_onnx, tensorboard_zip
from ui.common import runs_root

URL = "api/run"


def _onnx(root, name) -> bytes:
    return run_onnx(read_export(root, name))


# as=KIND: (what it is made by, its file name's ending, its media type, the optional package it needs)
KINDS = {
    "zip": (lambda root, name: export_bytes(root / name), ".zip", "application/zip", None),
    "loss.csv": (lambda root, name: run_csv(root / name, "loss"), "-loss.csv", "text/csv", None),
    "epochs.csv": (lambda root, name: run_csv(root / name, "epoch"), "-epochs.csv", "text/csv", None),
    "tensorboard": (tensorboard_zip, "-tensorboard.zip", "application/zip", "tensorboard"),
    "onnx": (_onnx, ".onnx", "application/octet-stream", "onnx"),
}
LABELS = {"zip": ("Download run (.zip)", "The whole run: another server takes it in on its Runs page."),
          "loss.csv": ("Loss history (.csv)", "Every running-loss point, for a spreadsheet."),
          "epochs.csv": ("Accuracy per epoch (.csv)", "Test and train accuracy of every epoch."),
          "tensorboard": ("Download for TensorBoard (.zip)",
                          "Event files: unzip into a folder and run tensorboard --logdir on it."),
          "onnx": ("Download the network (.onnx)",
                   "The trained network, for Netron (every layer's shape) or onnxruntime.")}


async def run_route(request: Request) -> Response:
    name, kind = request.query_params.get("run", "")[:120], request.query_params.get("as", "")
    if kind not in KINDS:
        return PlainTextResponse(f"error: as= is one of {', '.join(KINDS)}", status_code=400)
    make, ending, media, extra = KINDS[kind]
    if extra and (message := missing_extra(extra)):
        return PlainTextResponse(f"error: {message}", status_code=501)
    root = Path(runs_root())
    try:
        run_path(root, name)
    except RunError:  # its message names the server's folder: not for the browser
        return PlainTextResponse(f"error: there is no run {name!r} on this server", status_code=404)
    try:
        data = await run_in_threadpool(make, root, name)
    except RunError as exc:
        return PlainTextResponse(f"error: {exc}", status_code=404)
    text = data.encode() if isinstance(data, str) else data
    return Response(text, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="{name}{ending}"', "Cache-Control": "no-store"})


def link(name: str, kind: str) -> str:
    """The download as a link (plain HTML: the browser fetches it at the click), or, where the optional package is
    missing, one line with the pip command."""
    label, title = LABELS[kind]
    if KINDS[kind][3] and (message := missing_extra(KINDS[kind][3])):
        return (f'<span class="cnn-missing" title="{html.escape(message)}">{html.escape(label)} needs '
                f'<code>pip install {html.escape(" ".join(_packages(kind)))}</code></span>')
    href = html.escape(f"{URL}?{urlencode({'run': name, 'as': kind})}")
    return (f'<a class="cnn-download" href="{href}" download title="{html.escape(title)}">&#x2913; '
            f'{html.escape(label)}</a>')


def _packages(kind: str) -> list[str]:
    from core.runs.export import EXTRAS

    return list(EXTRAS[KINDS[kind][3]])


def links(name: str, kinds: list[str]) -> str:
    return '<div class="cnn-downloads">' + " ".join(link(name, k) for k in kinds) + "</div>"


ROUTES = [Route("/" + URL, run_route, methods=["GET"])]
