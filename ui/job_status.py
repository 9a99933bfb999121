"""This browser session's training job: found again from the page's URL, its state in words, the sidebar."""

from __future__ import annotations

import streamlit as st

from core.jobs import Job, Snapshot, get_manager

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


def clock(seconds: float) -> str:
    """Seconds as a clock shows them: 1:05."""
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def status_parts(snap: Snapshot, steps: bool = True) -> tuple[str, str, str]:
    """(icon, word, detail) of the job's state, e.g. ('directions_run', 'running', ': epoch 1 of 2, step 500 of
    25,000'): the icon a Material Symbols name;
    no epoch and step for steps=False (the live progress bar shows them)."""
    detail = ""
    if snap.status == "waiting":
        manager = get_manager()
        job = manager.get(snap.id)
        wait = manager.wait_seconds(job) if job is not None else None
        about = f", about {clock(wait)} to wait" if wait is not None else ""
        slots = manager.max_running
        at_once = f"{slots} jobs train at once" if slots > 1 else "one job trains at a time"
        detail = f" (place {snap.place} in the queue{about}; {at_once})"
    elif snap.last_loss and snap.start and steps:
        detail = (f": epoch {snap.last_loss['epoch']} of {snap.config.epochs}, step {snap.last_loss['step']:,} "
                  f"of {snap.start['total_steps']:,}")
    return STATUS_ICONS.get(snap.status, ""), STATUS_WORDS.get(snap.status, snap.status), detail


def status_line(snap: Snapshot) -> str:
    """The job's state in words (markdown), e.g. ':material/directions_run: **running**: epoch 1 of 2, step 500 of
    25,000'."""
    icon, word, detail = status_parts(snap)
    return f":material/{icon}: **{word}**{detail}" if icon else f"**{word}**{detail}"


SIDEBAR_EVERY = 2.0


def refresh_every(seconds: float, active: bool) -> float | None:
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
        st.fragment(_sidebar_view, run_every=refresh_every(SIDEBAR_EVERY, active and live))(job, active, live)


def _sidebar_view(job: Job | None, was_active: bool, live: bool = True) -> None:
    from ui.classroom import may_control, owner_id

    # a job followed from someone else's URL is not this browser's own
    st.markdown("**Your training job**" if job is None or may_control(job) else "**The job you follow**")
    if job is None:
        elsewhere = get_manager().newest_of(owner_id())  # started in another tab of this browser
        if elsewhere is None:
            st.caption("None yet: start one on the Train page.")
        else:
            st.markdown(f"{status_line(elsewhere.snapshot())} (in another tab)")
            st.page_link("pages/train.py", label="Open it here", icon=":material/open_in_new:",
                         query_params={JOB_PARAM: elsewhere.token})
        return
    snap = job.snapshot()
    if snap.active and not live:  # drawn once with the page, so it says nothing that the job's end makes untrue
        st.caption("Its status, progress and charts are on this page.")
        return
    st.markdown(status_line(snap))
    if snap.active:
        st.progress(snap.fraction_done)
    elif snap.message:
        st.caption(snap.message)
    if was_active and not snap.active:
        st.rerun(scope="app")  # the job has ended: the page shows its results, and the timer stops
