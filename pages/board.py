"""Board: the class's runs of one lesson or challenge, live, for the projector.

Who trained what, how far each run is, and how well it did, best first; a chart of the class's answer to the
lesson's question. The teacher (a session opened with ?teacher=KEY) can stop any job, clear the board and hide
the names. The table and chart are kept up to date by the browser from the server's memory (ui/board_live.py).
"""

import time

import streamlit as st

from core.board import CLASS, board_title
from core.lessons import lesson_boards, lessons
from ui.app import require_app
from ui.board_live import board_element, board_jobs, boards, csv_link
from ui.classroom import is_teacher
from ui.common import held, plain, presenting
from ui.lesson_data import lesson_dataset
from ui.url_state import controls_from_link, to_link

require_app()  # first: a page run without dashboard.py is run again through it

# Board heights: the table and chart take what the screen has below the title and the controls
BOARD_HEIGHT = "clamp(300px, calc(100vh - 330px), 760px)"

dataset = lesson_dataset()  # the Lessons page's: its challenges' boards
titles = [lesson.title for lesson in lessons(dataset)]
known = boards()  # the ones with runs, newest first; then every lesson's and challenge's, ready before a class starts
label = lambda board: board_title(board, titles)

if not presenting():
    st.title("Class board")
choices = list(dict.fromkeys([*known, *lesson_boards(dataset), ""]))


def board_key(text: str) -> str:
    if text not in choices:
        raise ValueError("no runs on this server were started from that lesson or challenge")
    return text


controls_from_link("board", {"board": ("board_choice", board_key)})
if st.session_state.get("board_choice") not in choices:
    st.session_state["board_choice"] = choices[0]
top_left, top_middle, top_right = st.columns([5, 4, 3], vertical_alignment="bottom")
board = top_left.selectbox("Lesson or challenge", choices, format_func=label, key="board_choice",
                           **held("board_choice", choices))
chart = top_middle.radio("Chart", ["accuracy", "loss"], horizontal=True, key="board_chart",
                         **held("board_chart", ["accuracy", "loss"]),
                         format_func={"accuracy": "Accuracy against the knob", "loss": "Every run's loss"}.get)
to_link("board", {"board": board}, ["board"])
top_right.html(csv_link(board))  # the board as it is at the click (ui/board_live.py: board_csv_route)

board_element(board, chart, BOARD_HEIGHT)


def teacher_tools() -> None:
    """Stop any job of this board, hide the names, clear the board: in the sidebar, so the board keeps the screen."""
    st.markdown("**Teacher**")
    hide = st.toggle("Hide names on every board", value=CLASS.hide_names, key="board_hide",
                     help="For the projector: each run shows as 'student'. The CSV follows it.")
    CLASS.set_hide_names(hide)
    active = {job.id: job for job in board_jobs(board) if job.snapshot().active}
    if active:
        pick = st.selectbox("A job to stop", list(active), key="board_stop_pick",
                            format_func=lambda i: f"{active[i].entry.name or '(no name)'} · job {i}")
        if st.button("Stop it", icon=":material/stop_circle:", key="board_stop") and pick in active:
            active[pick].stop()
            st.toast(f"Job {pick} ({plain(active[pick].entry.name or 'no name')}) stopped.")
            st.rerun()
    else:
        st.caption("No job of this board is training or waiting.")
    if st.button("Clear the board", icon=":material/delete_sweep:", key="board_clear",
                 help="Its runs leave the board (they keep training, and their folders stay on the Runs page)."):
        CLASS.clear(board, time.time())
        st.rerun()


if is_teacher():
    with st.sidebar:
        teacher_tools()
elif not presenting():
    st.caption("The teacher, with the key the server printed at its start (open the board with ?teacher=KEY), can "
               "stop any job, clear the board and hide names.")
