"""Lessons: a tour of the tutorial, each step a link that sets the dashboard up for it, on the dataset the teacher
chooses (Shapes, CIFAR-10 where it can be had, or an image folder)."""

import streamlit as st

from core.board import board_title
from core.data import DatasetError, dataset_label, folder_classes
from core.datasets import OwnError, get_own
from core.device import available_devices
from core.lessons import lessons
from ui.app import require_app
from ui.common import data_dir, held, plain, share_url
from ui.lesson_data import ANOTHER_FOLDER, lesson_dataset_choices, parse_lesson_dataset
from ui.url_state import controls_from_link, to_link

require_app()  # first: a page run without dashboard.py is run again through it

st.title("Lessons: the tutorial, step by step")
choices, why = lesson_dataset_choices()
if why:
    st.info(why)
LESSONS = len(lessons("shapes"))


def lesson_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= LESSONS:
        raise ValueError(f"the lessons are numbered 1 to {LESSONS}")
    return int(text)


# ?lesson=4 opens the fourth; &dataset=shapes (or folder:PATH) is the class's dataset
controls_from_link("lessons", {"lesson": ("lesson", lesson_number),
                               "dataset": ("lessons_dataset", parse_lesson_dataset)})
kept = st.session_state.get("lessons_dataset") or ""
if kept not in choices and kept != ANOTHER_FOLDER and not kept.startswith("folder:"):  # new, or gone
    st.session_state.lessons_dataset = choices[0]
options = [*dict.fromkeys([*choices, st.session_state.lessons_dataset]), ANOTHER_FOLDER]
st.session_state.setdefault("lesson", 1)
pick, number_col = st.columns([2, 3])
dataset = pick.selectbox("The class's dataset", options, key="lessons_dataset", persist_state="session",
                         **held("lessons_dataset", options),
                         format_func=lambda d: "Another image folder…" if d == ANOTHER_FOLDER else dataset_label(d),
                         help="Every lesson's links train on it, and the lessons' words describe it.")
classes = 10
if dataset == ANOTHER_FOLDER:
    path = pick.text_input("Folder path", key="lessons_folder", persist_state="session", **held("lessons_folder"),
                           placeholder="/data/my-pictures (train/ and test/, a folder per class in each)")
    if not path.strip():
        st.info("Enter the path of a folder on this machine with train/ and test/ sub-folders, one sub-folder per "
                "class in each; the lessons' links will train on it.")
        st.stop()
    dataset = f"folder:{path.strip()}"
if dataset.startswith("own:"):
    try:
        classes = len(get_own(data_dir(), dataset[len("own:"):]).classes)
    except OwnError as exc:  # deleted a moment ago
        st.error(f"The lessons cannot use that dataset: {plain(str(exc))}")
        st.stop()
if dataset.startswith("folder:"):
    try:
        classes = len(folder_classes(dataset[len("folder:"):]))
    except DatasetError as exc:
        st.error(f"The lessons cannot use that folder: {plain(str(exc))}")
        st.stop()
tour = lessons(dataset, gpu=available_devices() != ["cpu"], classes=classes)
titles = [lesson.title for lesson in tour]
number = number_col.selectbox("Lesson", range(1, len(tour) + 1), key="lesson", format_func=lambda n: titles[n - 1],
                              persist_state="session", **held("lesson", list(range(1, len(tour) + 1))))
# the lesson and its dataset (where not the default) are in the URL: a class can be sent to it
to_link("lessons", {"lesson": str(number), "dataset": dataset if dataset != choices[0] else ""}, ["lesson", "dataset"])
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
