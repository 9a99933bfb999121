"""The runs on disk as the pages load them: a run chosen from a list, its network, predictions and dataset (one
cache for every session, bounded by bytes), and a page that follows a run still training."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core import runs as runs_mod
from core.jobs import get_manager
from ui.common import data_dir, runs_root
from ui.job_status import current_job


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


# -- cached loads (shared by all sessions; invalidated by file modification time) ------------------

@st.cache_resource(show_spinner="Loading the dataset (cached after the first time) ...", max_entries=4)
def _dataset(name: str, directory: str, version: str):
    from core.data import load_dataset

    return load_dataset(name, directory)


def dataset_for(name: str):
    """The dataset, from the server's own data folder, or None with the reason shown (no network, missing folder,
    ...). Never from a folder a run's config.json names: an uploaded run would choose where the server writes."""
    from core.data import DatasetError, dataset_version

    try:
        return _dataset(name, data_dir(), dataset_version(name, data_dir()))
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
