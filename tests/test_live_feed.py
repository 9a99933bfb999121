"""The live feed: what the Train page's live elements fetch while a job trains, and how the file is kept."""

import json
import time
from dataclasses import replace

import pytest

from core.config import TrainConfig
from core.jobs import JobManager, Snapshot
from ui.live_feed import LiveFeed, live_state


def snapshot(losses: int, epochs: int = 0, status: str = "running") -> Snapshot:
    config = TrainConfig(dataset="shapes", epochs=2, batch_size=64)
    start = {"type": "start", "total_steps": 64, "num_train": 2000, "device": "cpu", "threads": 2,
             "classes": [str(i) for i in range(10)], "wall": time.time() - 10}
    points = [{"type": "loss", "epoch": 1, "step": 4 * (i + 1), "images_seen": 256 * (i + 1),
               "running_loss": 2.3 - 0.05 * i, "images_per_second": 5000.0 + i, "threads": 2} for i in range(losses)]
    results = [{"type": "epoch", "epoch": e + 1, "test_accuracy": 0.4 + 0.1 * e} for e in range(epochs)]
    return Snapshot(1, status, "", config, 0, start, points, results, {}, {}, None, time.time())


def test_the_state_holds_what_the_page_shows_as_it_changes():
    state = live_state(snapshot(losses=5), seq=7)
    assert state["seq"] == 7 and state["status"] == "running" and state["phase"] == "running"
    assert state["progress"]["text"].startswith("epoch 1 of 2 · step 20 of 64")
    assert 0.31 < state["progress"]["fraction"] < 0.32
    metrics = {m["label"]: m for m in state["metrics"]}
    assert metrics["Images/s"]["value"] == "5,004"
    assert metrics["Running loss"]["value"] == "2.100" and metrics["Running loss"]["delta"] == "-0.050"
    assert metrics["Test accuracy"]["value"] == "after epoch 1"
    (loss,) = state["traces"]["running_loss"]
    assert loss["x"] == [256, 512, 768, 1024, 1280] and loss["y"][-1] == pytest.approx(2.1)
    # the live chart's axes: the whole run (2 epochs of 2000 images); 0 to a half above the top loss + 10%
    assert state["ranges"]["running_loss"] == {"x": [0, 4000], "y": [0, 3.0]}
    done = live_state(snapshot(losses=16, epochs=2, status="finished"))
    assert {m["label"]: m["value"] for m in done["metrics"]}["Test accuracy (epoch 2)"] == "50.0%"
    assert done["traces"]["test_accuracy"][0]["y"] == [0.4, 0.5] and done["phase"] == "finished"
    assert state["status_line"]["detail"] == "" and done["status_line"]["detail"] == ": epoch 1 of 2, step 64 of 64"
    json.dumps(state, allow_nan=False)  # what the browser parses: plain JSON


def test_before_the_job_starts_only_its_status_is_shown():
    waiting = Snapshot(2, "waiting", "", TrainConfig(dataset="shapes"), 3, {}, [], [], {}, {}, None, time.time())
    state = live_state(waiting)
    assert state["phase"] == "waiting" and state["status_line"]["word"] == "waiting for a free slot"
    assert state["status_line"]["detail"].startswith(" (place 3 in the queue")  # the element shows a new place
    # starting and running show the same buttons: the page is not drawn again when the job starts training
    assert live_state(replace(waiting, status="starting"))["phase"] == "running"
    assert state["progress"] is None and state["metrics"] == [] and state["ranges"]["running_loss"] is None


@pytest.fixture
def manager(tmp_path):
    m = JobManager(max_running=1, runs_root=str(tmp_path / "runs"), worker="thread")
    yield m
    m.shutdown()


def test_a_followed_job_s_file_follows_it_to_the_end_and_then_goes(manager, tmp_path, small_shapes):
    from core.data import _write_cache, shapes_cache

    _write_cache(shapes_cache(tmp_path / "data"), small_shapes)
    job = manager.start(TrainConfig(dataset="shapes", data_dir=str(tmp_path / "data"), epochs=2, batch_size=16,
                                    lr=0.01, log_interval=5))
    feed = LiveFeed(tmp_path / "live", every=0.05, keep=0.5)
    first = feed.follow(job)
    path = tmp_path / "live" / f"{job.token}.json"
    assert feed.url(job) == f"app/static/live/{job.token}.json"
    assert json.loads(path.read_text()) == first  # there at once, for the page's first fetch
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = json.loads(path.read_text())
        seen.append((state["seq"], len(state["traces"]["running_loss"][0]["x"])))
        if state["status"] == "finished":
            break
        time.sleep(0.05)
    assert state["status"] == "finished" and len(state["traces"]["test_accuracy"][0]["x"]) == 2
    assert seen == sorted(seen) and len({points for _, points in seen}) >= 3  # it grew while the job ran
    assert state["traces"]["running_loss"][0]["x"][-1] == 2 * 2000  # every point, the last one included
    deadline = time.monotonic() + 10
    while (path.exists() or feed._thread is not None) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not path.exists() and feed._thread is None  # deleted after `keep`; the writer thread has ended


def test_an_unchanged_job_is_not_written_again(tmp_path):
    class Still:  # a job that has stopped moving (paused, say)
        token = "still"

        def snapshot(self):
            return snapshot(losses=3, status="paused")

    feed = LiveFeed(tmp_path / "live", every=0.02)
    state = feed.follow(Still())
    path = tmp_path / "live" / "still.json"
    written = path.stat().st_mtime_ns
    time.sleep(0.2)
    assert feed.follow(Still()) == state and path.stat().st_mtime_ns == written


def test_no_feed_where_its_folder_cannot_be_written(manager, tmp_path, small_shapes):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    job = manager.start(TrainConfig(dataset="shapes", data_dir=str(tmp_path / "data"), epochs=1))
    assert LiveFeed(blocker / "live").follow(job) is None  # the page then falls back to fragments
    job.stop()
