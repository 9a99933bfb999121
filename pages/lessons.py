"""Lessons: a tour of the tutorial, each step a link that sets the dashboard up for it."""

import streamlit as st

from core.board import board_title
from core.data import default_dataset
from core.device import available_devices
from core.lessons import lessons
from ui.app import require_app
from ui.common import data_dir, share_url
from ui.url_state import controls_from_link, to_link

require_app()  # first: a page run without dashboard.py is run again through it

st.title("Lessons: the tutorial, step by step")
dataset, why = default_dataset(data_dir())
if why:
    st.info(why)
tour = lessons(dataset, gpu=available_devices() != ["cpu"])
titles = [lesson.title for lesson in tour]


def lesson_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= len(tour):
        raise ValueError(f"the lessons are numbered 1 to {len(tour)}")
    return int(text)


controls_from_link("lessons", {"lesson": ("lesson", lesson_number)})  # ?lesson=4 opens the fourth
st.session_state.setdefault("lesson", 1)
number = st.selectbox("Lesson", range(1, len(tour) + 1), key="lesson", format_func=lambda n: titles[n - 1],
                      persist_state="session")
to_link("lessons", {"lesson": str(number)}, ["lesson"])  # the lesson is in the URL: a class can be sent to it
lesson = tour[number - 1]

st.header(lesson.title)
# the question beside the text and the links, so the class has it in view at 1280x720 while they work
text, question = st.columns([3, 2], gap="large")
with question:
    st.info(f"**Question:** {lesson.question}", icon=":material/help:")
    st.markdown(f"**Look at** {lesson.look_at}")
with text:
    st.markdown(lesson.text)
    st.subheader("Set it up")
    base, why_not = share_url()
    for link in lesson.links:
        st.page_link(f"pages/{link.page}.py", label=link.label, icon=":material/arrow_forward:",
                     query_params=link.query() or None)
        st.caption(f"or share: {base}/{link.url()}")
    if why_not and lesson.links:
        st.caption(why_not)
    boards = list(dict.fromkeys(link.board() for link in lesson.links if link.board()))
    for board in boards:  # where the class's runs of this lesson gather: the teacher's screen
        what = f": {board_title(board, titles)}" if len(boards) > 1 else ""
        st.page_link("pages/board.py", label=f"The class's runs on the board{what}",
                     icon=":material/leaderboard:", query_params={"board": board})


def go(step: int) -> None:
    st.session_state.lesson = min(len(tour), max(1, st.session_state.lesson + step))


back, forward, _ = st.columns([1, 1, 4])
back.button("◀ Previous", on_click=go, args=(-1,), disabled=number == 1, width="stretch")
forward.button("Next ▶", on_click=go, args=(1,), disabled=number == len(tour), width="stretch",
               type="primary")
