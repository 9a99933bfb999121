"""The class board's live element: its state, the route it is served from, and the element.

Like the Train page's live view (ui/live.py): one source of truth, the jobs in the server's memory; the board's
state is made once per change of its jobs (not once per browser that asks) and served by the app's own route,
`api/board?board=KEY&chart=accuracy|loss&seq=N`; the element (ui/static/board.js) asks it once a second and
redraws its table and chart in place, with no Streamlit rerun. Training never waits for it.
"""

from __future__ import annotations

import math
import threading
import time
from urllib.parse import urlencode

import streamlit as st
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.board import CLASS, board_csv, board_rows, differing_knobs
from core.jobs import get_manager
from core.runs.names import KNOB_TEXT
from ui.job_status import clock
from ui.live import AXIS, PLOTLY_URL, STYLE, _asset

BOARD_URL = "api/board"
CSV_URL = "api/board.csv"
POLL_MS = 1000
MAX_POINTS = 200  # a run's loss line on the board: enough for its shape, little for 30 runs a second
CHARTS = ("accuracy", "loss")
COLOURS = ["#1565c0", "#ef6c00", "#2e7d32", "#c62828", "#6a1b9a", "#00838f", "#ad1457", "#5d4037", "#9e9d24",
           "#455a64"]  # ten runs' loss lines, each its own colour


def board_jobs(board: str) -> list:
    """The training jobs started for `board` since the teacher last cleared it, oldest first."""
    return [job for job in get_manager().jobs()
            if job.kind == "train" and job.entry.board == board and CLASS.shows(board, job.created)]


def boards() -> list[str]:
    """Every board that has jobs on this server, the one with the newest job first."""
    newest: dict[str, float] = {}
    for job in get_manager().jobs():
        if job.kind == "train":
            newest[job.entry.board] = max(newest.get(job.entry.board, 0.0), job.created)
    return sorted(newest, key=newest.get, reverse=True)


def _thin(points: list[dict], n: int = MAX_POINTS) -> list[dict]:
    step = max(1, math.ceil(len(points) / n))
    return points[::step] + ([points[-1]] if points and (len(points) - 1) % step else [])


def board_state(board: str, chart: str, seq: int = 0) -> dict:
    """Everything the board element shows, as plain JSON: counts, rows (best first) and the chart."""
    jobs = board_jobs(board)
    snaps = [job.snapshot() for job in jobs]
    rows = board_rows([(snap, snap.entry) for snap in snaps], CLASS.hide_names)
    knob = next(iter(differing_knobs([s.config for s in snaps])[0]), "lr") if snaps else "lr"
    counts = {"runs": len(rows), "training": sum(r["status"] in ("training", "paused") for r in rows),
              "waiting": sum(r["status"] == "waiting" for r in rows),
              "finished": sum(r["status"] == "finished" for r in rows),
              "passed": sum(r["result"] == "passed" for r in rows),
              "challenge": any(s.entry.challenge for s in snaps)}
    for row in rows:  # what the table says, ready to show
        row["accuracy_text"] = "" if row["accuracy"] is None else f"{row['accuracy']:.1%}"
        row["seconds_text"] = "" if row["seconds"] is None else clock(row["seconds"])
        row["settings_text"] = " · ".join(row["settings"].values())
    names = {row["id"]: row["name"] for row in rows}
    if chart == "loss":
        traces = [{"type": "scatter", "mode": "lines", "name": names[s.id],
                   "x": [p["images_seen"] for p in _thin(s.losses)], "y": [p["running_loss"] for p in _thin(s.losses)],
                   "hovertemplate": "%{fullData.name}: %{y:.3f}<extra></extra>"} for s in snaps if s.losses]
        # a run that diverged goes off the top: the others' curves keep the chart's height
        calm = [p["running_loss"] for s in snaps if s.status != "diverged" for p in s.losses]
        top = max([2.5, *calm]) * 1.05
        layout = {"xaxis": {"title": {"text": "images seen"}},
                  "yaxis": {"title": {"text": "running loss"}, "range": [0, top]},
                  "showlegend": len(traces) <= 12, "colorway": COLOURS}
    else:
        done = [(s, names[s.id]) for s in snaps if s.epochs]
        numeric = all(isinstance(getattr(s.config, knob), (int, float)) and not isinstance(getattr(s.config, knob),
                                                                                              bool) for s, _ in done)
        traces = [{"type": "scatter", "mode": "markers+text", "textposition": "top center",
                   "x": [getattr(s.config, knob) for s, _ in done],
                   "y": [s.epochs[-1]["test_accuracy"] for s, _ in done], "text": [n for _, n in done],
                   "marker": {"size": 16}, "cliponaxis": False,
                   "hovertemplate": "%{text}: %{y:.1%}<extra></extra>"}]
        log_axis = knob == "lr" or (numeric and done and min(getattr(s.config, knob) for s, _ in done) > 0
                                    and knob in ("batch_size",))
        top = max([1.0] + [s.epochs[-1]["test_accuracy"] for s, _ in done])
        layout = {"xaxis": {"title": {"text": KNOB_TEXT.get(knob, knob)}, "type": "log" if log_axis else "-"},
                  "yaxis": {"title": {"text": "test accuracy"}, "tickformat": ".0%", "range": [0, top * 1.05]},
                  "showlegend": False}
        if not done:
            layout["xaxis"].update(showticklabels=False, type="-")
            layout["annotations"] = [{"text": "Each run's accuracy appears here after its first epoch",
                                      "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}]
    layout = {**STYLE, **layout, "margin": {"t": 20, "b": 50, "l": 60, "r": 20}, "font": {**STYLE["font"], "size": 16}}
    for axis in ("xaxis", "yaxis"):
        layout[axis] = {**AXIS, **layout[axis]}
    return {"seq": seq, "poll_ms": POLL_MS, "counts": counts, "rows": rows, "chart": chart, "knob": knob,
            "figure": {"data": traces, "layout": layout}}


class BoardStates:
    """Each board's newest state, made once per change of its jobs (the same for every browser that asks)."""

    def __init__(self):
        self._states: dict[tuple, tuple[tuple, dict]] = {}
        self._seq = 0
        self._lock = threading.Lock()

    def of(self, board: str, chart: str) -> dict:
        version = (CLASS.changes, tuple((job.id, job.version()) for job in board_jobs(board)))
        with self._lock:
            made = self._states.get((board, chart))
            if made and made[0] == version:
                return made[1]
            self._seq += 1
            state = board_state(board, chart, self._seq)
            self._states[(board, chart)] = (version, state)
            return state


STATES = BoardStates()


async def board_route(request: Request) -> Response:
    """GET api/board?board=KEY&chart=accuracy|loss&seq=N: the board's state, or 204 when the browser has it."""
    board = request.query_params.get("board", "")[:300]
    chart = request.query_params.get("chart", "accuracy")
    if chart not in CHARTS:
        return JSONResponse({"error": f"chart is one of {', '.join(CHARTS)}"}, status_code=400)
    state = STATES.of(board, chart)
    if request.query_params.get("seq") == str(state["seq"]):
        return Response(status_code=204, headers={"Cache-Control": "no-store"})
    return JSONResponse(state, headers={"Cache-Control": "no-store"})


async def board_csv_route(request: Request) -> Response:
    """GET api/board.csv?board=KEY: the board as it is at the click, as a spreadsheet (the Board page's download).

    Served here, not by a download button's file made on the click: the teacher's download failed in about one
    test run in five that way (cancelled, or the button spun for 30 s). Streamlit's media_file_manager.py leaves
    such a file to no session, so the end of any two page runs of any session, which a class's pages make every
    second or two, can delete it before the browser fetches it."""
    board = request.query_params.get("board", "")[:300]
    text = board_csv(board_rows([(s, s.entry) for s in (job.snapshot() for job in board_jobs(board))],
                                CLASS.hide_names))
    name = f"board-{time.strftime('%Y%m%d-%H%M')}.csv"
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


def csv_link(board: str) -> str:
    """The board's download, as the page shows it: a link to CSV_URL (plain HTML: the browser downloads it)."""
    import html

    href = html.escape(f"{CSV_URL}?{urlencode({'board': board})}")
    return (f'<a class="cnn-download" href="{href}" download title="Download the board (.csv): name, settings, '
            'status, accuracy, seconds and challenge of every run, as the board is at the click.">'
            "&#x2913; Board (.csv)</a>")


ROUTES = [Route("/" + BOARD_URL, board_route, methods=["GET"]), Route("/" + CSV_URL, board_csv_route, methods=["GET"])]

_board = st.components.v2.component("cnn_board", js=_asset("feed.js", "board.js"), css=_asset("board.css"),
                                    isolate_styles=False)


def board_element(board: str, chart: str, height: str, key: str = "class_board") -> None:
    """The board's table and chart, drawn with its state now and then kept up to date by the browser."""
    feed = f"{BOARD_URL}?{urlencode({'board': board, 'chart': chart})}"
    _board(data={"state": STATES.of(board, chart), "feed": feed, "src": PLOTLY_URL, "height": height}, key=key)
