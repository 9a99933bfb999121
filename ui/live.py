"""The Train page's live view of a job: what it shows, the route it is served from, and its two elements.

One source of truth: the job's History in the server's memory (core/jobs.py). `live_state` turns a
snapshot of it into plain JSON: status line, progress bar, metrics, chart traces and axes. The page
draws its elements once with that state; while the job is active the browser then asks the app's own
route, `api/live/<job token>` (ROUTES, served by Streamlit's server through `st.App` in dashboard.py),
for newer states (every FIRST_POLL_MS until the first loss point, then every POLL_MS) and updates the elements in
place, with no Streamlit rerun. Nothing is
written to disk for it. The page reruns only when the job's buttons must change (PHASES).

The elements are Streamlit custom components (v2) whose JavaScript and CSS are the files in ui/static/;
the charts use Plotly.js's public API only (react, extendTraces, relayout), with the copy of Plotly.js
that ships with the plotly package, served by the route `api/plotly.min.js`.

Why not Streamlit fragments on timers: each fragment run cost the browser about 80 ms of CPU, and three of
them took about a third of a core from training on a 2-core machine (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import plotly
import plotly.graph_objects as go
import streamlit as st
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from core.figures import accuracy_traces, loss_ranges, running_loss_trace
from core.jobs import Snapshot, get_manager
from ui.job_status import clock, status_parts

STATIC = Path(__file__).resolve().parent / "static"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
FEED_URL = "api/live/{token}"  # relative to the page, like every URL the page fetches
PLOTLY_URL = f"api/plotly.min.js?v={plotly.__version__}"
# Close to Streamlit's own chart theme, which st.plotly_chart applies and Plotly.js alone does not.
STYLE = dict(paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
             font=dict(family='"Source Sans", "Source Sans Pro", sans-serif', color="#1a1a1a"),
             colorway=["#1565c0", "#ef6c00", "#2e7d32", "#c62828", "#6a1b9a"])
AXIS = dict(gridcolor="#e6eaf1", zerolinecolor="#d5dae3", linecolor="#d5dae3", automargin=True)


# -- what the live elements show ------------------------------------------------------------------------

def time_left(snap: Snapshot) -> str:
    seconds = snap.seconds_left
    return "" if seconds is None else f" · about {clock(seconds)} left"


def processes_note(snap: Snapshot) -> str:
    """A data-parallel run's processes and batches (the batch size is per process), else ""."""
    start = snap.start
    if not start or start.get("world_size", 1) == 1:
        return ""
    each = f", {start['threads']} thread each" if start["device"].startswith("cpu") else ""
    return (f" · {start['world_size']} processes (DDP{each}) × batch {start['batch_size']} = global batch "
            f"{start['global_batch_size']}")


def threads_note(snap: Snapshot) -> str:
    start = snap.start
    if start.get("world_size", 1) > 1:
        return processes_note(snap)
    if start.get("cuda_graph"):
        return " · GPU, each step one CUDA graph"
    threads = snap.last_loss.get("threads")
    if not threads or not start["device"].startswith("cpu"):
        return ""
    return f" · {threads} CPU thread{'s' if threads > 1 else ''}"


def progress(snap: Snapshot) -> tuple[float, str] | None:
    """The progress bar while the job is active: training's (epoch, step, time left), or the dataset's
    preparation before it. Once the job has ended the status line says how far it got."""
    if not snap.active:
        return None
    if snap.start:
        last = snap.last_loss
        return snap.fraction_done, (f"epoch {last.get('epoch', 1)} of {snap.config.epochs} · step "
                                    f"{last.get('step', 0):,} of {snap.start['total_steps']:,}"
                                    f"{time_left(snap)}{threads_note(snap)}")
    if snap.progress:
        return snap.progress["fraction"], snap.progress["message"]
    return None


def metrics(snap: Snapshot) -> list[tuple[str, str, str | None]]:
    """(label, value, change since the last point) for Images/s, Running loss and Test accuracy.

    While the job trains, Images/s is the last interval's; once it has ended, the whole run's (as in its
    summary). Test accuracy is the last epoch's, with the epoch it was measured after.
    """
    if not snap.start:
        return []
    last = snap.last_loss
    previous = snap.losses[-2]["running_loss"] if len(snap.losses) > 1 else None
    value = last.get("running_loss")
    rate = snap.end.get("images_per_second") if snap.end.get("images_per_second") else last.get("images_per_second")
    if snap.epochs:
        accuracy = f"{snap.epochs[-1]['test_accuracy']:.1%}"
    else:
        accuracy = "–"
    return [("Images/s" if snap.active or not snap.end else "Images/s (whole run)", f"{rate or 0:,.0f}", None),
            ("Running loss", loss_text(value),
             f"{value - previous:+.3f}" if value is not None and previous is not None and snap.active else None),
            (f"Test accuracy (epoch {snap.epochs[-1]['epoch']})" if snap.epochs else
             "Test accuracy (after epoch 1)" if snap.active else "Test accuracy", accuracy, None)]


def loss_text(value: float | None) -> str:
    """A running loss as a tile can hold it: 0.646, or 8.79e+12 for one that exploded."""
    if value is None:
        return "–"
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:.3g}"


def total_images(snap: Snapshot) -> int | None:
    """Images the whole run will have seen at its end: the live loss chart's x axis."""
    if not snap.start:
        return None
    per_step = snap.start.get("global_batch_size", snap.config.batch_size)  # every process's images
    return min(snap.start["num_train"] * snap.config.epochs, snap.start["total_steps"] * per_step)


# The page's buttons for each status (Pause or Resume, and whether they can be clicked): the page is drawn
# again only when these change. Starting and running show the same buttons; the status line, which says
# which of the two it is, is part of the live element.
FIRST_POLL_MS, POLL_MS = 500, 2000
PHASES = {"waiting": "waiting", "starting": "running", "running": "running", "paused": "paused"}


def live_state(snap: Snapshot, seq: int = 0) -> dict:
    """Everything the live elements show, as plain JSON data."""
    bar, total = progress(snap), total_images(snap)
    icon, word, detail = status_parts(snap, steps=not snap.active)  # the progress bar has them while active
    if not snap.active:
        detail += processes_note(snap)
    return {"seq": seq, "status": snap.status, "phase": PHASES.get(snap.status, snap.status),
            # how soon the browser asks again: soon while it waits for the first loss point, then every 2 s
            # (each redraw takes CPU from training on a small machine: docs/benchmarks.md)
            "poll_ms": POLL_MS if snap.losses else FIRST_POLL_MS,
            "status_line": {"icon": icon, "word": word, "detail": detail},
            "progress": {"fraction": bar[0], "text": bar[1]} if bar else None,
            "metrics": [{"label": label, "value": value, "delta": delta} for label, value, delta in metrics(snap)],
            "traces": {"running_loss": [running_loss_trace(snap.losses)],
                       "test_accuracy": accuracy_traces(snap.epochs)},
            "ranges": {"running_loss": loss_ranges(snap.losses, total) if total else None}}


class LiveStates:
    """Each job's newest live state, made once per change of the job (not once per browser that asks).

    Sequence numbers only grow, across jobs, so an element never takes an older state for a newer one.
    """

    def __init__(self):
        self._states: dict[str, tuple[tuple, dict]] = {}  # job token -> (the job's version, its state)
        self._seq = 0
        self._lock = threading.Lock()

    def of(self, job) -> dict:
        version = job.version()
        with self._lock:
            made = self._states.get(job.token)
            if made and made[0] == version:
                return made[1]
            self._seq += 1
            state = live_state(job.snapshot(), self._seq)
            if state["status"] not in PHASES:  # it has ended: nothing will change any more
                self._states = {t: s for t, s in self._states.items() if s[1]["status"] in PHASES}
            self._states[job.token] = (version, state)
            return state


STATES = LiveStates()
NO_STORE = {"Cache-Control": "no-store"}


async def live_route(request: Request) -> Response:
    """GET api/live/<token>?seq=N: the job's state, or 204 when the browser has it already (seq N)."""
    job = get_manager().by_token(request.path_params["token"])
    if job is None:
        return JSONResponse({"error": "no such job on this server"}, status_code=404, headers=NO_STORE)
    state = STATES.of(job)
    if request.query_params.get("seq") == str(state["seq"]):
        return Response(status_code=204, headers=NO_STORE)
    return JSONResponse(state, headers=NO_STORE)


async def plotly_route(request: Request) -> Response:
    """GET api/plotly.min.js: the copy of Plotly.js that ships with the plotly package (offline, versioned URL)."""
    return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})


ROUTES = [Route("/" + FEED_URL, live_route, methods=["GET"]),
          Route("/" + PLOTLY_URL.split("?")[0], plotly_route, methods=["GET"])]


def feed_url(job) -> str:
    return FEED_URL.format(token=job.token)


# -- the elements -----------------------------------------------------------------------------------------

def _asset(*names: str) -> str:
    return "\n".join((STATIC / name).read_text() for name in names)


_numbers = st.components.v2.component("cnn_live_numbers", js=_asset("feed.js", "live_numbers.js"),
                                      css=_asset("live_numbers.css"), isolate_styles=False)
_chart = st.components.v2.component("cnn_live_chart", js=_asset("feed.js", "live_chart.js"), isolate_styles=False)


def live_numbers(state: dict, key: str, feed: str | None = None) -> None:
    """The job's status line, progress bar and metrics; following `feed` in the browser while the job is
    active, and rerunning the page when the job's buttons must change (see PHASES)."""
    _numbers(data={"feed": feed, "state": state}, key=key, on_changed_change=lambda: None)


def figure_data(fig: go.Figure) -> dict:
    """The figure as Plotly.js takes it, styled like Streamlit's charts, without plotly.py's template."""
    spec = fig.to_plotly_json()
    layout = {**STYLE, **{k: v for k, v in spec["layout"].items() if k != "template"}}
    for axis in ("xaxis", "yaxis"):
        layout[axis] = {**AXIS, **layout.get(axis, {})}
    return {"data": spec["data"], "layout": layout}


def live_chart(fig: go.Figure, key: str, height: str, feed: str | None = None, series: str = "", seq: int = 0,
               ranges: dict | None = None) -> None:
    """Draw `fig` in an element `height` high (CSS, e.g. "300px" or a clamp() of the screen's height; the figure
    fills it); drawn again under the same key, the browser updates the chart it already has.

    With `feed` the browser then follows the traces `series` of the job's live state by itself; `seq` is the
    sequence number of the state `fig` shows, and `ranges` ({"x": [lo, hi], "y": [lo, hi]}) its fixed axes,
    which later states may move.
    """
    spec = figure_data(fig)
    layout_key = hashlib.sha1(json.dumps(spec["layout"], sort_keys=True).encode()).hexdigest()[:16]
    _chart(data={"figure": spec, "layout_key": layout_key, "src": PLOTLY_URL, "height": height, "feed": feed,
                 "series": series, "seq": seq, "ranges": ranges}, key=key)
