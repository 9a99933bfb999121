"""The Train page's job: Train, Pause and Stop, what went wrong if it did, and the live charts.

    buttons(job, snap)      # Train, Pause/Resume, Stop and the job's messages
    charts(job, snap)       # the live status, metrics and charts (ui/live.py keeps them up to date)

The Train button's callback starts exactly what the controls show at the click (ui/train_form.py).
"""

from __future__ import annotations

import time

import streamlit as st

import ui.live as live
from core.classroom import MAX_NAME, Entry, board_of
from core.config import TrainConfig
from core.data import DatasetError, check_folder, own_dataset
from core.figures import accuracy_figure, loss_ranges, running_loss_figure
from core.jobs import get_manager
from core.loop import TUTORIAL_ACCURACY
from ui.classroom import is_teacher, may_control, owner_id
from ui.common import held, plain, presenting
from ui.job_status import current_job, job_active
from ui.train_form import NAME, chosen, key, school, settings_config, student_name

# The live charts take the screen's height below the status and metrics: 270 px on a 1280x720 projector (where
# the page above them takes 450 px with a message such as "diverged"), up to 620 px on a 1920x1080 one
CHART_HEIGHT = "clamp(260px, calc(100vh - 450px), 620px)"


# -- starting a job (buttons' callbacks: they act before the page is drawn, which then shows their effect) ------

def start(config: TrainConfig) -> None:
    """Start a job for `config` (before the page is drawn, so the sidebar follows the new job at once); a folder
    (or an own dataset) that cannot be used is said instead. A job of this browser's still waiting takes the new
    settings instead, keeping its place in the queue: one waiting job per student."""
    st.session_state.pop("confirm_config", None)
    try:
        if config.dataset.startswith("folder:"):
            check_folder(config.dataset[len("folder:"):])
        elif config.dataset.startswith("own:"):
            own_dataset(config.data_dir, config.dataset[len("own:"):])  # can it train: the pictures still missing
    except DatasetError as exc:
        st.session_state[key("start_error")] = str(exc)
        return
    name, _ = student_name()
    where = school()
    entry = Entry(name=name or ("Teacher" if is_teacher() else ""), owner=owner_id(),
                  board=board_of(where["lesson"], where["challenge"]), challenge=where["challenge"])
    asked = time.time()
    job = get_manager().start(config, entry)
    if job.created < asked:  # this browser's waiting job, given the new settings
        st.session_state[key("replaced")] = True
    st.session_state.job_id = job.id


def on_train() -> None:
    """The Train button: the settings as the controls show them now; a second job of one's own is asked about
    first. A student's first Train from a lesson's or challenge's link, without a name, asks for one (a second
    click trains without): the class board shows who trained what. Training alone, from the menu, asks nothing."""
    config, problem = settings_config(chosen())
    name, bad_name = student_name()
    if config is None:
        st.session_state[key("start_error")] = problem
    elif bad_name:
        st.session_state[key("start_error")] = bad_name
    elif not name and ask_for_name():
        st.session_state[key("ask_name")] = True
    elif job_active(current_job()) and may_control(current_job()) and current_job().snapshot().status != "waiting":
        st.session_state.confirm_config = config
    else:
        start(config)


def ask_for_name() -> bool:
    """Once a session, for a student (not the teacher) training from a lesson's or a challenge's link."""
    where = school()
    if is_teacher() or not (where["lesson"] or where["challenge"]) or st.session_state.get(key("name_asked")):
        return False
    st.session_state[key("name_asked")] = True
    return True


def stop_and_start() -> None:
    """The running job ends (keeping its history), and the settings the user asked for start."""
    pending = st.session_state.get("confirm_config")
    if pending is None:  # a click that came after another had already answered the question
        return
    if (job := current_job()) is not None and may_control(job):
        job.stop()
    start(pending)


def control(job, what: str) -> None:
    """Pause, Resume or Stop, for the browser that started the job or the teacher; refused otherwise (a click on a
    page drawn before the job changed hands cannot act on someone else's job)."""
    if may_control(job):
        getattr(job, what)()
    else:
        st.session_state[key("start_error")] = "Only the browser that started this job, or the teacher, can do that."


def use_shapes() -> None:
    st.session_state[key("dataset")] = "shapes"


# -- the buttons and messages -----------------------------------------------------------------------------------

def buttons(job, snap, config: TrainConfig | None) -> None:
    """Train, Pause/Resume and Stop in one row with the student's name, and what went wrong if it did (no job yet:
    Train alone). Someone else's job (a URL copied from another browser) is followed, never controlled."""
    train_col, pause_col, stop_col, name_col = st.columns([1, 1, 1, 3])
    train_col.button("Train", type="primary", disabled=config is None, width="stretch", on_click=on_train)
    name_col.text_input("Your name", key=NAME, persist_state="session", max_chars=MAX_NAME, **held(NAME),
                        label_visibility="collapsed", placeholder="Your name, for the class board",
                        help="Shown on the class board beside your runs. Plain text, at most 40 characters.")
    if problem := st.session_state.pop(key("start_error"), None):
        st.error(problem)
    if st.session_state.pop(key("ask_name"), False):
        st.warning("What is your name? Type it in the box beside Train, so the class board shows whose run this is, "
                   "and click Train again (or click Train again to train without a name).")
    if st.session_state.pop(key("replaced"), False):
        st.info("Your job was still waiting: it now has these settings, and keeps its place in the queue.")
    if snap is None:
        return
    if not may_control(job):
        who = plain(snap.entry.name) if snap.entry.name else "someone else"
        pause_col.caption(f"Following {who}'s job")
        stop_col.caption("Pause and Stop: theirs (and the teacher's)")
    elif snap.status == "paused":
        pause_col.button("Resume", width="stretch", on_click=control, args=(job, "resume"))
    else:
        pause_col.button("Pause", disabled=snap.status not in ("running", "starting"), width="stretch",
                         on_click=control, args=(job, "pause"))
    if may_control(job):
        stop_col.button("Stop", disabled=not snap.active, width="stretch", on_click=control, args=(job, "stop"))
    if st.session_state.get("confirm_config") is not None and snap.active:
        st.warning("Your last training job is still running. Stop it and start the new one?")
        yes, no = st.columns(2)
        yes.button("Stop it and train the new settings", on_click=stop_and_start)
        no.button("Keep the running job", on_click=lambda: st.session_state.pop("confirm_config", None))
    with st.container():  # messages come and go inside it; the elements below keep their places
        notices(snap)
        challenge_result(snap)


def challenge_result(snap) -> None:
    """A challenge's verdict, once the run has ended (or can no longer meet it)."""
    goal = snap.entry.challenge
    if goal is None:
        return
    verdict = goal.result(snap.epochs, not snap.active)
    reached = goal.reached(snap.epochs)
    if verdict == "passed":
        st.success(f"Challenge passed: {reached['test_accuracy']:.1%} after epoch {reached['epoch']} "
                   f"({reached.get('seconds', 0):.0f} s of training).", icon=":material/emoji_events:")
    elif verdict == "not yet":
        best = max((e["test_accuracy"] for e in snap.epochs), default=None)
        st.warning(f"Not yet: {goal.text()}" + (f" (best {best:.1%})" if best is not None else "")
                   + ". Change a setting and train again.", icon=":material/flag:")


def notices(snap) -> None:
    if snap.status == "failed":
        st.error(f"Training failed: {snap.message}")
        if "shapes" in snap.message.lower() and snap.config.dataset != "shapes":
            st.button("Use Shapes (offline) instead", on_click=use_shapes)
    elif snap.status == "diverged":
        st.error(f"The loss diverged: {snap.message}")
    elif snap.status == "stopped":
        st.info(f"Stopped: the history so far is kept ({snap.run_dir or 'no run directory'}).")
    elif snap.status == "finished" and snap.message:  # e.g. it learned nothing, and what to change
        if snap.end.get("learned_nothing"):
            st.warning(f"Finished, but {snap.message}")
        else:
            st.info(f"Finished: {snap.message}.")


# -- the live view -------------------------------------------------------------------------------------------

def sized(fig):
    """A live chart as the page shows it: low enough to fit under the metrics on a projector, with larger text
    in presentation mode."""
    # as high as the element (CHART_HEIGHT); a top margin that holds a legend under the title is kept
    fig.update_layout(autosize=True, margin=dict(t=max(50, fig.layout.margin.t or 0), b=45))
    if presenting():
        big = dict(tickfont=dict(size=20), title_font=dict(size=21))
        fig.update_layout(font=dict(size=20), title_font=dict(size=23), legend_font=dict(size=19))
        fig.update_xaxes(**big)
        fig.update_yaxes(**big)
    return fig


def charts(job, snap) -> None:
    """The job's status, metrics and charts, drawn once by the page and then kept up to date by the browser
    itself while the job is active (ui/live.py): training never waits for any of it. No job yet: the charts are
    drawn empty, so the browser loads its charting code before Train is clicked (seconds on a slow machine) and
    the first loss point shows at once."""
    # the epochs the x axis is for: the job's, else the controls' (the chart is drawn once; the browser adds points)
    planned = snap.config.epochs if job is not None else st.session_state.get("train_epochs")
    feed, seq, losses, total, accuracy = None, 0, [], None, accuracy_figure([], 10, None, planned=planned)
    if job is None:
        st.info("Choose the settings and click **Train**. The running loss will appear here as it falls.")
    else:
        state = live.STATES.of(job)
        feed, seq = (live.feed_url(job) if snap.active else None), state["seq"]  # an ended job has none to follow
        live.live_numbers(state, key="live_numbers", feed=feed)
        losses, total = snap.losses, live.total_images(snap)
        if snap.start:
            cifar = "cifar" in snap.config.dataset.lower()
            accuracy = accuracy_figure(snap.epochs, len(snap.start["classes"]), TUTORIAL_ACCURACY if cifar else None,
                                       planned=snap.config.epochs)
    left, right = st.columns([3, 2])
    with left:
        live.live_chart(sized(running_loss_figure(losses, total_images=total)), key="running_loss_chart",
                        height=CHART_HEIGHT, feed=feed, series="running_loss", seq=seq,
                        ranges=loss_ranges(losses, total) if total else None)
    with right:
        live.live_chart(sized(accuracy), key="test_accuracy_chart", height=CHART_HEIGHT, feed=feed,
                        series="test_accuracy", seq=seq)
