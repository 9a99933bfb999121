"""What every page needs: this session's job, the runs on disk, and the standard messages."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core import runs as runs_mod
from core.jobs import Job, Snapshot, env_path, get_manager

STATUS_WORDS = {
    "waiting": "waiting for a free slot",
    "starting": "starting",
    "running": "running",
    "paused": "paused",
    "finished": "finished",
    "stopped": "stopped",
    "diverged": "diverged",
    "failed": "failed",
    "interrupted": "interrupted",
}
STATUS_ICONS = {"waiting": "hourglass_empty", "starting": "rocket_launch", "running": "directions_run",
                "paused": "pause_circle", "finished": "check_circle", "stopped": "stop_circle",
                "diverged": "trending_up", "failed": "error", "interrupted": "warning"}  # Material Symbols' names


def app_url() -> str:
    """The app's address as the browser reached it, without a page's path or the query: links start here."""
    from ui.app import app_pages

    base = (st.context.url or "").split("?")[0].rstrip("/")
    for name in (page.url_path for page in app_pages()):
        if name and base.endswith("/" + name):
            return base[: -len(name) - 1]
    return base


def runs_root() -> str:
    return get_manager().runs_root


def data_dir() -> str:
    return env_path("CNN_DASHBOARD_DATA", "data")


LEARNING_RATES = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
_MARKDOWN = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()#+-.!|<>~$"})


def plain(text: str) -> str:
    """Text from outside (a link's values, a file's name) as Streamlit markdown shows it: as text, never a link,
    an image or formatting: every punctuation mark markdown reads is escaped, and a zero-width space breaks what
    it would take for a bare address."""
    text = str(text)
    for literal in ("://", "www.", "@"):  # markdown makes a bare address a link even with its marks escaped
        text = text.replace(literal, literal[0] + "\u200b" + literal[1:])
    return text.translate(_MARKDOWN)


def with_value(options: list, value) -> list:
    """A select slider's options, with the current value among them (a link or preset may hold any valid one)."""
    return sorted(set(options) | {value})


JOB_PARAM = "job"  # the page URL names the session's training job: a reload finds it again


def current_job() -> Job | None:
    """This browser session's job, if it has started one since the server started.

    The job's token is kept in the page's URL, so a reloaded page (a new session) follows the same job.
    """
    manager = get_manager()
    job = manager.get(st.session_state.get("job_id"))
    if job is None:
        job = manager.by_token(st.query_params.get(JOB_PARAM))
        if job is not None and job.kind == "train":
            st.session_state.job_id = job.id
        else:
            job = None
    if job is not None and st.query_params.get(JOB_PARAM) != job.token:
        st.query_params[JOB_PARAM] = job.token
    elif job is None and JOB_PARAM in st.query_params:  # e.g. a job from before the server restarted
        del st.query_params[JOB_PARAM]
    return job


def job_active(job: Job | None) -> bool:
    """The job exists and is waiting, starting, running or paused."""
    return job is not None and job.snapshot().active


def status_parts(snap: Snapshot, steps: bool = True) -> tuple[str, str, str]:
    """(icon, word, detail) of the job's state, e.g. ('directions_run', 'running', ': epoch 1 of 2, step 500 of
    25,000'): the icon a Material Symbols name;
    no epoch and step for steps=False (the live progress bar shows them)."""
    detail = ""
    if snap.status == "waiting":
        detail = f" (place {snap.place} in the queue; {get_manager().max_running} job(s) train at once)"
    elif snap.last_loss and snap.start and steps:
        detail = (f": epoch {snap.last_loss['epoch']} of {snap.config.epochs}, step {snap.last_loss['step']:,} "
                  f"of {snap.start['total_steps']:,}")
    return STATUS_ICONS.get(snap.status, ""), STATUS_WORDS.get(snap.status, snap.status), detail


def describe(snap: Snapshot) -> str:
    """The job's state in words (markdown), e.g. ':material/directions_run: **running**: epoch 1 of 2, step 500 of
    25,000'."""
    icon, word, detail = status_parts(snap)
    return f":material/{icon}: **{word}**{detail}" if icon else f"**{word}**{detail}"


PRESENT = "present"  # the presentation switch's key, and its URL parameter
STATIC_UI = Path(__file__).resolve().parent / "static"
APP_CSS, PRESENTATION_CSS = ((STATIC_UI / name).read_text() for name in ("app.css", "presentation.css"))  # once


def presentation_switch() -> None:
    """The sidebar's presentation switch: larger text and charts, no terminal commands (kept in the URL)."""
    with st.sidebar:
        st.toggle("Presentation mode", key=PRESENT, bind="query-params",
                  help="Larger text and charts for a projector; hides the terminal commands.")
    css = APP_CSS + (PRESENTATION_CSS if presenting() else "")
    st.html(f"<style>{css}</style>")


def presenting() -> bool:
    return bool(st.session_state.get(PRESENT, False))


SIDEBAR_EVERY = 2.0


def every(seconds: float, active: bool) -> float | None:
    """A fragment's timer: `seconds` while a job is active, none otherwise (nothing redraws)."""
    return seconds if active else None


def sidebar_status(live: bool = True) -> None:
    """The current job's state, on every page; refreshed every two seconds while the job is active.

    live=False (the Train page, which shows the job live itself): the sidebar is drawn with the page
    and not on a timer of its own. Every redraw costs the browser CPU that the job, on a
    small machine, would otherwise train with.
    """
    job = current_job()
    active = job_active(job)
    with st.sidebar:
        st.fragment(_sidebar_view, run_every=every(SIDEBAR_EVERY, active and live))(job, active, live)


def _sidebar_view(job: Job | None, was_active: bool, live: bool = True) -> None:
    st.markdown("**Your training job**")
    if job is None:
        st.caption("None yet: start one on the Train page.")
        return
    snap = job.snapshot()
    if snap.active and not live:
        st.caption("In progress: its status, progress and charts are on this page.")
        return
    st.markdown(describe(snap))
    if snap.active:
        st.progress(snap.fraction_done)
    elif snap.message:
        st.caption(snap.message)
    if was_active and not snap.active:
        st.rerun(scope="app")  # the job has ended: the page shows its results, and the timer stops


def pick_run(key: str, label: str = "Run", history: bool = True) -> runs_mod.RunInfo | None:
    """A select box over the runs on disk, newest first, this session's current run chosen by default; the run
    with its history read when `history`.

    Damaged run directories are listed with what is wrong, and never crash the page.
    """
    all_runs = runs_mod.list_runs(runs_root())
    if not all_runs:
        return None
    job = current_job()
    names = [r.name for r in all_runs]
    # this session's run first, else the newest run that got somewhere (has predictions)
    default = next((i for i, r in enumerate(all_runs) if (r.path / "predictions.pt").exists()), 0)
    if job is not None and job.run_dir and Path(job.run_dir).name in names:
        default = names.index(Path(job.run_dir).name)
    by_name = {r.name: r for r in all_runs}

    def fmt(name: str) -> str:
        r = by_name[name]
        if r.error:
            return f"{name} (damaged)"
        return f"{r.title} ({r.status}, {name})"

    name = st.selectbox(label, names, index=default, format_func=fmt, key=key)
    run = runs_mod.load_run(Path(runs_root()) / name, with_events=history)
    if run.error:
        st.error(f"Run {name} cannot be shown: {run.error}. Delete it or choose another run.")
        return None
    if damaged := run.history.damaged:
        st.warning(f"{damaged} damaged line(s) of this run's history were left out.")
    return run


def from_link(param: str, session_key: str, parse) -> None:
    """Set a page's own control from its URL (a lesson link, e.g. /data?dataset=shapes) when the URL's value
    is new to this session; a value `parse` refuses (ValueError) is dropped with one line."""
    from ui.app import entered

    text = st.query_params.get(param)
    seen = st.session_state.setdefault("_link_seen", {})
    if text is None or seen.get(session_key) == text or not entered():
        return
    seen[session_key] = text
    try:
        st.session_state[session_key] = parse(text)
    except ValueError as exc:
        st.warning(f"From the link: {plain(f'{param}={text} was ignored: {exc}.')}")


def keep_in_link(param: str, session_key: str, text: str) -> None:
    """Write a page's own control to its URL (from_link then takes it for the page's own, not a new link)."""
    st.session_state.setdefault("_link_seen", {})[session_key] = text
    if st.query_params.get(param) != text:
        st.query_params[param] = text


def remember(keys: list[str]) -> None:
    """Keep widget values when the user visits another page and comes back.

    Streamlit drops a widget's value once a run does not draw it. Call this just before the widgets
    are drawn, and `save_widgets` after: it puts back the values saved last time for keys Streamlit
    dropped. A live widget's value is never written, so the browser never resets it. Call it only in
    a run that draws these widgets: a value set for a widget the run does not draw stays behind in
    Streamlit's state, and comes back, stale, after the widget next leaves the page.
    """
    saved = st.session_state.setdefault("_saved_widgets", {})
    for key in keys:
        if key not in st.session_state and key in saved:
            st.session_state[key] = saved[key]


def save_widgets(keys: list[str]) -> None:
    saved = st.session_state.setdefault("_saved_widgets", {})
    for key in keys:
        if key in st.session_state:
            saved[key] = st.session_state[key]


# -- cached loads (shared by all sessions; invalidated by file modification time) ------------------

@st.cache_resource(show_spinner="Loading the dataset (cached after the first time) ...", max_entries=4)
def _dataset(name: str, directory: str):
    from core.data import load_dataset

    return load_dataset(name, directory)


def dataset_for(name: str):
    """The dataset, from the server's own data folder, or None with the reason shown (no network, missing folder,
    ...). Never from a folder a run's config.json names: an uploaded run would choose where the server writes."""
    from core.data import DatasetError

    try:
        return _dataset(name, data_dir())
    except DatasetError as exc:
        st.error(f"The dataset cannot be loaded: {exc}")
        return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@st.cache_resource
def _run_files():
    """One byte-bounded cache of loaded checkpoints and predictions for all sessions (core/runs/cache.py)."""
    from core.runs.cache import FileCache

    return FileCache()


def _from_run(run: runs_mod.RunInfo, filename: str, loader):
    try:
        return _run_files().get(loader, run.path, filename)
    except runs_mod.RunError as exc:
        st.warning(str(exc))
        return None


def model_for(run: runs_mod.RunInfo):
    """The run's latest checkpoint as a network, or None with the reason shown."""
    return _from_run(run, "checkpoint.pt", runs_mod.load_model)


def predictions_for(run: runs_mod.RunInfo):
    """The run's latest test-set probabilities, or None (none yet, or damaged: the reason is shown)."""
    return _from_run(run, "predictions.pt", runs_mod.load_predictions)


def no_runs_yet() -> None:
    st.info("There is no training run yet. Train the network on the **Train** page first (see the sidebar); "
            "this page then shows what it learned.")


def follow_running(run: runs_mod.RunInfo) -> None:
    """While a run is still training, redraw the page when an epoch ends (a new predictions.pt appears)."""
    training = any(j.run_dir and Path(j.run_dir) == run.path and j.status in ("running", "paused", "starting")
                   for j in get_manager().jobs())
    if run.summary is not None or not training:
        return
    seen = _mtime(run.path / "predictions.pt")

    @st.fragment(run_every=2.0)
    def watch() -> None:
        if _mtime(run.path / "predictions.pt") != seen or (run.path / "summary.json").exists():
            st.rerun(scope="app")
        st.caption("This run is still training: the page updates at the end of each epoch.")

    watch()
