"""The live view of a training job, without Streamlit reruns: the server writes, the browser fetches.

While a job trains, a server thread rewrites `static/live/<job token>.json` (its status, progress,
metrics and chart traces) a few times a second, and the Train page's live elements fetch that file
twice a second and update themselves in place. A Streamlit fragment on a timer did the same job, but
each of its runs cost the browser about 80 ms of CPU here: three of them on the Train page took about
a third of a core from training on a 2-core machine (measured; see docs/benchmarks.md). The page reruns only
when the job's status changes (running, paused, finished, ...), which a live element asks for.

The file is named by the job's unguessable token, like the page URL that follows the job, and is
deleted a minute after the job ends. Where the static folder cannot be used, `LiveFeed.follow`
returns None and the page falls back to fragments.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import streamlit as st

from core.figures import accuracy_traces, loss_ranges, running_loss_trace
from core.jobs import Job, Snapshot
from ui.common import status_parts
from ui.live_chart import STATIC, SUBSCRIBE_JS, _static_ready

WRITE_EVERY = 0.25  # seconds between looks at each followed job; a file is rewritten only when it changed
KEEP_SECONDS = 60.0  # a finished job's file stays this long, for a page still catching up
URL_PREFIX = "app/static/live/"


# -- what the live elements show (also drawn by the page itself, with st.progress and st.metric) -----

def time_left(snap: Snapshot) -> str:
    """From the training time so far (the last loss point's), not the wall clock since the job started:
    loading the data and the first step's set-up would make the first estimates minutes too long."""
    last = snap.last_loss
    if not snap.start or snap.status != "running" or len(snap.losses) < 3 or last.get("train_seconds", 0) < 1:
        return ""
    done = snap.fraction_done
    if done <= 0:
        return ""
    seconds = last["train_seconds"] * (1 - done) / done
    return f" · about {int(seconds // 60)}:{int(seconds % 60):02d} left"


def threads_note(snap: Snapshot) -> str:
    if snap.start.get("cuda_graph"):
        return " · GPU, each step one CUDA graph"
    threads = snap.last_loss.get("threads")
    if not threads or not snap.start["device"].startswith("cpu"):
        return ""
    return f" · {threads} CPU thread{'s' if threads > 1 else ''}"


def progress(snap: Snapshot) -> tuple[float, str] | None:
    """The progress bar: training's (epoch, step, time left), or the dataset's preparation before it."""
    if snap.start:
        last = snap.last_loss
        return snap.fraction_done, (f"epoch {last.get('epoch', 1)} of {snap.config.epochs} · step "
                                    f"{last.get('step', 0):,} of {snap.start['total_steps']:,}"
                                    f"{time_left(snap)}{threads_note(snap)}")
    if snap.progress and snap.active:
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
        accuracy = "after epoch 1" if snap.active else "–"
    return [("Images/s" if snap.active or not snap.end else "Images/s (whole run)", f"{rate or 0:,.0f}", None),
            ("Running loss", f"{value:.3f}" if value is not None else "–",
             f"{value - previous:+.3f}" if value is not None and previous is not None and snap.active else None),
            (f"Test accuracy (epoch {snap.epochs[-1]['epoch']})" if snap.epochs else "Test accuracy", accuracy, None)]


def total_images(snap: Snapshot) -> int | None:
    """Images the whole run will have seen at its end: the live loss chart's x axis."""
    if not snap.start:
        return None
    return min(snap.start["num_train"] * snap.config.epochs, snap.start["total_steps"] * snap.config.batch_size)


# The page's buttons for each status (Pause or Resume, and whether they can be clicked): the page is drawn
# again only when these change. Starting and running show the same buttons; the status line, which says
# which of the two it is, is part of the live element.
PHASES = {"waiting": "waiting", "starting": "running", "running": "running", "paused": "paused"}


def live_state(snap: Snapshot, seq: int = 0) -> dict:
    """Everything the live elements show, as plain JSON data."""
    bar, total = progress(snap), total_images(snap)
    icon, word, detail = status_parts(snap, steps=not snap.active)  # as the page says it once the job ends
    return {"seq": seq, "status": snap.status, "phase": PHASES.get(snap.status, snap.status),
            "status_line": {"icon": icon, "word": word, "detail": detail},
            "progress": {"fraction": bar[0], "text": bar[1]} if bar else None,
            "metrics": [{"label": label, "value": value, "delta": delta} for label, value, delta in metrics(snap)],
            "traces": {"running_loss": [running_loss_trace(snap.losses)],
                       "test_accuracy": accuracy_traces(snap.epochs)},
            "ranges": {"running_loss": loss_ranges(snap.losses, total) if total else None}}


# -- the writer ----------------------------------------------------------------------------------------

def _filename(token: str) -> str:
    """A job's file, in the folder and in its URL: named by the job's unguessable token."""
    return f"{token}.json"


class LiveFeed:
    """Keeps one JSON file per followed job up to date while it is active, from one server thread."""

    def __init__(self, folder: Path, every: float = WRITE_EVERY, keep: float = KEEP_SECONDS):
        self.folder, self.every, self.keep = Path(folder), every, keep
        self._followed: dict[str, Job] = {}
        self._written: dict[str, tuple] = {}  # token -> (what was written, its state) for unchanged checks
        self._expired: dict[str, float] = {}  # token -> when its file is deleted
        self._seq = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def url(self, job: Job) -> str:
        return URL_PREFIX + _filename(job.token)

    def _path(self, token: str) -> Path:
        return self.folder / _filename(token)

    def follow(self, job: Job) -> dict | None:
        """Start (or keep) writing `job`'s file; its current state, or None if no file can be written."""
        with self._lock:
            self._followed[job.token] = job
            self._expired.pop(job.token, None)
            try:
                state = self._write(job)
            except OSError:
                self._followed.pop(job.token, None)
                return None
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, daemon=True, name="live-feed")
                self._thread.start()
        return state

    def _write(self, job: Job) -> dict:
        """Write the job's state if it changed since the last write (call with the lock held)."""
        snap = job.snapshot()
        key = (snap.status, len(snap.losses), len(snap.epochs), bool(snap.start), snap.progress.get("fraction"),
               snap.place)
        written = self._written.get(job.token)
        if written and written[0] == key:
            state = written[1]
        else:
            self._seq += 1
            state = live_state(snap, self._seq)
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self._path(job.token)
            partial = path.with_suffix(".part")
            partial.write_text(json.dumps(state, separators=(",", ":")))
            os.replace(partial, path)  # a fetch never sees half a file
            self._written[job.token] = (key, state)
        if not snap.active:  # its final state is written: nothing more to follow
            self._followed.pop(job.token, None)
            self._expired.setdefault(job.token, time.monotonic() + self.keep)
        return state

    def _loop(self) -> None:
        while True:
            time.sleep(self.every)
            with self._lock:
                for job in list(self._followed.values()):
                    try:
                        self._write(job)
                    except OSError:  # e.g. the disk is full: the page shows the last state it got
                        pass
                now = time.monotonic()
                for token, when in list(self._expired.items()):
                    if when <= now:
                        self._path(token).unlink(missing_ok=True)
                        del self._expired[token]
                        self._written.pop(token, None)
                if not self._followed and not self._expired:
                    self._thread = None
                    return


_feed: LiveFeed | None = None
_feed_lock = threading.Lock()


def live_feed() -> LiveFeed | None:
    """The server's one LiveFeed, or None where the app's static folder cannot serve it."""
    global _feed
    if not _static_ready():
        return None
    with _feed_lock:
        if _feed is None:
            _feed = LiveFeed(STATIC / "live")
            _remove_stale(_feed.folder)
        return _feed


def _remove_stale(folder: Path, age: float = 2 * KEEP_SECONDS) -> None:
    """Files left by a server that stopped while its jobs ran. A followed job's file is rewritten several
    times a second and deleted KEEP_SECONDS after its job ends, so one older than twice that is nobody's
    (another server from the same folder may be writing the newer ones)."""
    try:
        for path in folder.glob("*.json"):
            if time.time() - path.stat().st_mtime > age:
                path.unlink(missing_ok=True)
    except OSError:
        pass


# -- the live progress bar and metrics --------------------------------------------------------------

NUMBERS_JS = SUBSCRIBE_JS + """
function build(parentElement) {
  let root = parentElement.querySelector(".cnn-live-numbers");
  if (!root) {
    root = document.createElement("div");
    root.className = "cnn-live-numbers";
    root.innerHTML = '<p class="cnn-status">Status: <span class="cnn-status-icon"></span> ' +
      '<strong class="cnn-status-word"></strong><span class="cnn-status-detail"></span></p>' +
      '<div class="cnn-progress"><div class="cnn-progress-text"></div>' +
      '<div class="cnn-progress-track"><div class="cnn-progress-bar"></div></div></div>' +
      '<div class="cnn-metrics"></div>';
    parentElement.appendChild(root);
  }
  return root;
}

function setText(element, text) { if (element.textContent !== text) element.textContent = text; }

function render(root, state) {
  setText(root.querySelector(".cnn-status-icon"), state.status_line.icon);
  setText(root.querySelector(".cnn-status-word"), state.status_line.word);
  setText(root.querySelector(".cnn-status-detail"), state.status_line.detail);
  const bar = root.querySelector(".cnn-progress");
  bar.style.display = state.progress ? "" : "none";
  if (state.progress) {
    setText(bar.querySelector(".cnn-progress-text"), state.progress.text);
    bar.querySelector(".cnn-progress-bar").style.width = (100 * state.progress.fraction).toFixed(2) + "%";
  }
  const tiles = root.querySelector(".cnn-metrics");
  while (tiles.children.length < state.metrics.length) {
    const tile = document.createElement("div");
    tile.className = "cnn-metric";
    tile.innerHTML = '<div class="cnn-metric-label"></div><div class="cnn-metric-value"></div>' +
      '<div class="cnn-metric-delta"></div>';
    tiles.appendChild(tile);
  }
  state.metrics.forEach((m, i) => {
    const tile = tiles.children[i];
    setText(tile.querySelector(".cnn-metric-label"), m.label);
    setText(tile.querySelector(".cnn-metric-value"), m.value);
    const delta = tile.querySelector(".cnn-metric-delta");
    setText(delta, m.delta ? (m.delta.startsWith("-") ? "↓ " : "↑ ") + m.delta : "");  // as st.metric shows it
    delta.className = "cnn-metric-delta" + (m.delta && m.delta.startsWith("-") ? " better" : " worse");
  });
}

export default function ({ parentElement, data, setTriggerValue }) {
  const root = build(parentElement);
  if (root.cnnUnsubscribe) root.cnnUnsubscribe();
  if (root.cnnFeed !== data.feed) { root.cnnFeed = data.feed; root.cnnSeq = -1; }
  const show = state => {
    if (state.seq < root.cnnSeq) return;
    root.cnnSeq = state.seq;
    render(root, state);
  };
  show(data.state);
  // The page is rerun (by a trigger) when the job's phase (its buttons) is no longer the one it was drawn
  // with, or when the feed has been unreadable for 3 s: the page then draws what the server knows.
  root.cnnUnsubscribe = subscribe(data.feed, (state, failures) => {
    if (state) show(state);
    const changed = state ? state.phase !== data.state.phase : failures >= 6;
    if (changed && Date.now() - (root.cnnAsked || 0) > 1500) {
      root.cnnAsked = Date.now();
      setTriggerValue("changed", (state ? state.phase : "unreadable") + " " + root.cnnAsked);
    }
  });
  return () => { if (root.cnnUnsubscribe) root.cnnUnsubscribe(); root.cnnUnsubscribe = null; };
}
"""

NUMBERS_CSS = """
.cnn-live-numbers { font-family: var(--st-font, "Source Sans", sans-serif); color: var(--st-text-color, #1a1a1a); }
.cnn-status { margin: 0 0 0.3rem 0; }
.cnn-progress { margin: 0 0 0.6rem 0; }
.cnn-progress-text { font-size: 0.9rem; margin-bottom: 0.3rem; }
.cnn-progress-track { height: 0.5rem; border-radius: 0.25rem;
                      background: var(--st-secondary-background-color, #eef2f6); }
.cnn-progress-bar { height: 100%; border-radius: 0.25rem; background: var(--st-primary-color, #1565c0); width: 0; }
.cnn-metrics { display: flex; gap: 1rem; }
/* label above; value and its change side by side, so the metrics take one line of the screen's height */
.cnn-metric { flex: 1 1 0; display: grid; grid-template-columns: auto 1fr; column-gap: 0.6rem;
              align-items: baseline; }
.cnn-metric-label { font-size: 0.9rem; grid-column: 1 / span 2; }
.cnn-metric-value { font-size: 2.1rem; line-height: 1.2; }
.cnn-metric-delta { font-size: 0.9rem; }
.cnn-metric-delta.better { color: #2e7d32; }
.cnn-metric-delta.worse { color: #c62828; }
"""

_numbers = st.components.v2.component("cnn_live_numbers", js=NUMBERS_JS, css=NUMBERS_CSS, isolate_styles=False)


def live_numbers(feed: str, state: dict, key: str) -> None:
    """The job's status line, progress bar and metrics, following `feed` in the browser; the page reruns
    when the job's buttons must change (see PHASES)."""
    _numbers(data={"feed": feed, "state": state}, key=key, on_changed_change=lambda: None)
