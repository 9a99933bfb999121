"""The live view: what the Train page's live elements show, and the route they follow a job through."""

import asyncio
import concurrent.futures
import json
import shutil
import subprocess
import time
from dataclasses import replace

import pytest
from starlette.requests import Request

import core.jobs
from core.config import TrainConfig
from core.history import History
from core.jobs import JobManager, Snapshot
from tests.conftest import ROOT
from ui import live
from ui.live import STATES, live_route, live_state, plotly_route


def snapshot(losses: int, epochs: int = 0, status: str = "running") -> Snapshot:
    config = TrainConfig(dataset="shapes", epochs=2, batch_size=64)
    start = {"type": "start", "total_steps": 64, "num_train": 2000, "device": "cpu", "threads": 2,
             "classes": [str(i) for i in range(10)], "wall": time.time() - 10}
    points = [{"type": "loss", "epoch": 1, "step": 4 * (i + 1), "images_seen": 256 * (i + 1),
               "running_loss": 2.3 - 0.05 * i, "images_per_second": 5000.0 + i, "threads": 2} for i in range(losses)]
    results = [{"type": "epoch", "epoch": e + 1, "test_accuracy": 0.4 + 0.1 * e} for e in range(epochs)]
    return Snapshot(1, "train", status, "", config, 0, History.of([start, *points, *results]), None, time.time())


def test_the_state_holds_what_the_page_shows_as_it_changes(manager):
    state = live_state(snapshot(losses=5), seq=7)
    assert state["seq"] == 7 and state["status"] == "running" and state["phase"] == "running"
    assert state["poll_ms"] == 2000  # once it draws points, every 2 s: each redraw takes CPU training would use
    assert state["progress"]["text"].startswith("epoch 1 of 2 · step 20 of 64")
    assert 0.31 < state["progress"]["fraction"] < 0.32
    metrics = {m["label"]: m for m in state["metrics"]}
    assert metrics["Images/s"]["value"] == "5,004"
    assert metrics["Running loss"]["value"] == "2.100" and metrics["Running loss"]["delta"] == "-0.050"
    assert metrics["Test accuracy (after epoch 1)"]["value"] == "–"  # a short value: a projector's tile keeps one line
    (loss,) = state["traces"]["running_loss"]
    assert loss["x"] == [256, 512, 768, 1024, 1280] and loss["y"][-1] == pytest.approx(2.1)
    # the live chart's axes: the whole run (2 epochs of 2000 images); 0 to a half above the top loss + 10%
    assert state["ranges"]["running_loss"] == {"x": [0, 4000], "y": [0, 3.0]}
    done = live_state(snapshot(losses=16, epochs=2, status="finished"))
    assert {m["label"]: m["value"] for m in done["metrics"]}["Test accuracy (epoch 2)"] == "50.0%"
    assert done["traces"]["test_accuracy"][0]["y"] == [0.4, 0.5] and done["phase"] == "finished"
    assert state["status_line"]["detail"] == "" and done["status_line"]["detail"] == ": epoch 1 of 2, step 64 of 64"
    json.dumps(state, allow_nan=False)  # what the browser parses: plain JSON


def test_before_the_job_starts_only_its_status_is_shown(manager):  # (its place in the queue: the manager)
    waiting = Snapshot(2, "train", "waiting", "", TrainConfig(dataset="shapes"), 3, History(), None, time.time())
    state = live_state(waiting)
    assert state["phase"] == "waiting" and state["status_line"]["word"] == "waiting for a free slot"
    assert state["poll_ms"] == 500  # until the first loss point, twice a second: it shows at once
    assert state["status_line"]["detail"].startswith(" (place 3 in the queue")  # the element shows a new place
    # starting and running show the same buttons: the page is not drawn again when the job starts training
    assert live_state(replace(waiting, status="starting"))["phase"] == "running"
    assert state["progress"] is None and state["metrics"] == [] and state["ranges"]["running_loss"] is None


@pytest.fixture
def manager(tmp_path, monkeypatch):
    """The server's job manager, as the route finds it (thread workers: no 5 s torch import per test)."""
    m = JobManager(max_running=1, runs_root=str(tmp_path / "runs"), worker="thread")
    monkeypatch.setattr(core.jobs, "_manager", m)
    yield m
    m.shutdown()


def get(path: str, token: str, seq: int | None = None):
    """Call a route of the app as the browser does: GET path?seq=N."""
    scope = {"type": "http", "method": "GET", "path": path, "path_params": {"token": token}, "headers": [],
             "query_string": f"seq={seq}".encode() if seq is not None else b""}
    route = live_route if "live" in path else plotly_route
    # in a thread of its own: the session's Playwright keeps an event loop running in this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        response = pool.submit(asyncio.run, route(Request(scope))).result()
    return response.status_code, (json.loads(response.body) if response.status_code == 200 and "live" in path
                                  else response)


def test_the_route_serves_a_job_from_memory_as_it_trains_and_to_its_end(manager, tmp_path, small_shapes):
    from core.data import _write_cache, shapes_cache

    _write_cache(shapes_cache(tmp_path / "data"), small_shapes)
    job = manager.start(TrainConfig(dataset="shapes", data_dir=str(tmp_path / "data"), epochs=2, batch_size=16,
                                    lr=0.01, log_interval=5))
    url = live.feed_url(job)
    assert url == f"api/live/{job.token}"
    seen, seq = [], None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        code, state = get("/" + url, job.token, seq)
        if code == 200:
            seen.append((state["seq"], len(state["traces"]["running_loss"][0]["x"])))
            seq = state["seq"]
            if state["status"] == "finished":
                break
        else:
            assert code == 204  # nothing new since the state the browser has: no body at all
        time.sleep(0.02)
    assert state["status"] == "finished" and len(state["traces"]["test_accuracy"][0]["x"]) == 2
    assert seen == sorted(seen) and len({points for _, points in seen}) >= 3  # it grew while the job ran
    assert state["traces"]["running_loss"][0]["x"][-1] == 2 * 2000  # every point, the last one included
    assert get("/" + url, job.token, seq)[0] == 204 and get("/" + url, job.token)[1] == state
    assert not (tmp_path / "static").exists() and not (ROOT / "static").exists()  # nothing written


def test_a_state_is_made_once_per_change_of_the_job_not_per_request():
    class Still:  # a job that has stopped moving (paused, say)
        token, made = "still", 0

        def version(self):
            return ("paused", 4, 0)

        def snapshot(self):
            Still.made += 1
            return snapshot(losses=3, status="paused")

    first = STATES.of(Still())
    assert STATES.of(Still()) is first and Still.made == 1
    Still.version = lambda self: ("paused", 5, 0)
    assert STATES.of(Still())["seq"] > first["seq"] and Still.made == 2


def test_an_unknown_job_is_a_404_and_plotly_is_served_from_the_plotly_package(manager):
    code, response = get("/api/live/nope", "not-a-job")
    assert code == 404 and b"no such job" in response.body
    code, response = get("/api/plotly.min.js", "")
    assert code == 200 and response.path == live.PLOTLY_JS and live.PLOTLY_JS.stat().st_size > 1_000_000


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js checks the JavaScript's syntax (.ci/run installs it)")
@pytest.mark.parametrize("name", ["cnn_live_numbers", "cnn_live_chart"])
def test_the_javascript_the_browser_gets_is_valid(name, tmp_path):
    """Each element's JavaScript (ui/static/*.js, joined as the element gets it) parses as an ES module."""
    js = {"cnn_live_numbers": ("feed.js", "live_numbers.js"), "cnn_live_chart": ("feed.js", "live_chart.js")}[name]
    module = tmp_path / "element.mjs"
    module.write_text(live._asset(*js))
    result = subprocess.run(["node", "--check", str(module)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = module.read_text()
    assert "_fullLayout" not in text and "l2p" not in text and "js-line" not in text  # Plotly's public API only
