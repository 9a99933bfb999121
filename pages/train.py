"""Train: the tutorial's steps 3 and 4 (define a loss and optimizer, train the network), live.

Every setting lives in the page's URL, so a lesson is a link: `/train?dataset=shapes&lr=0.01` sets those knobs,
and `lock=lr,momentum` holds them fixed for the class. The controls are ui/train_form.py; the job's buttons and
live charts ui/train_view.py.
"""

import streamlit as st

from core.config import command_line
from ui.app import require_app
from ui.common import plain, presenting
from ui.job_status import current_job
from ui.train_form import (
    challenge,
    changed_knobs,
    in_lesson,
    key,
    leave_lesson,
    locked_line,
    read_link,
    run_values,
    share_box,
    summary_line,
    train_settings,
)
from ui.train_view import buttons, charts

require_app()  # first: a page run without dashboard.py is run again through it

job = current_job()
snap = job.snapshot() if job is not None else None
read_link()

# While a job is shown its charts take the room's height: a smaller title (none on a projector), and the settings
# folded away, so a run that ends with a message (it diverged, say) still has both charts in view at 1280x720. A
# challenge's link (core/classroom.py) puts its goal where the title is.
goal = challenge()
if job is None:
    st.title("Train the network")
    if goal:
        st.info(f"**Challenge:** {goal.text()}.", icon=":material/flag:")
    elif not presenting():
        st.caption("The tutorial's steps 3 and 4: a classification cross-entropy loss, SGD with momentum, and a "
                   "loop over the data. Set the knobs, click Train, and watch the loss fall.")
elif not presenting():
    st.subheader(f":material/flag: Challenge: {goal.text()}" if goal else "Train the network")
for problem in st.session_state.pop(key("problems"), []):
    st.warning(f"From the link: {plain(problem)}")
if note := st.session_state.pop(key("dataset_note"), ""):
    st.info(note)

top = st.container()  # Train, Pause and Stop above the settings, so Train is in view on a projector
lock = " :material/lock:" if locked_line() else ""
# Folded, they name the run shown (what it trained with, not what the controls say since), and stay open while
# the controls change (the key holds the expander's state through a new label)
shown = run_values(snap.config) if snap is not None and snap.kind == "train" else None
with st.expander(f"Settings{lock}: {summary_line(shown)}", key=key("settings_open"), on_change=lambda: None) \
        if job is not None else st.container():
    if shown and (changed := changed_knobs(shown)):
        st.info(f"The controls differ from the run shown ({', '.join(changed)}): click **Train** to train them.",
                icon=":material/edit:")
    if in_lesson():
        line, leave = st.columns([5, 2], vertical_alignment="center")
        line.caption(locked_line() or "These settings are a lesson's.")
        leave.button("Leave the lesson", icon=":material/lock_open:", on_click=leave_lesson, width="stretch",
                     help="Unlock every control and go back to your own settings from before the lesson's link.")
    config = train_settings()
    if config is not None and not presenting():
        st.caption("The same run from a terminal:")
        st.code(command_line(config), language="bash")
    share_box()
with top:
    buttons(job, snap, config)
charts(job, snap)
