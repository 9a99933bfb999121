"""The class on the pages (AppTest): the name beside Train and in the URL, a challenge link, the board's state,
the teacher's key. The real-browser walk of a class is tests/test_browser_class.py."""

import pytest
from streamlit.testing.v1 import AppTest

from core.board import CLASS
from core.classroom import Entry, owner_digest, parse_challenge
from tests.conftest import ROOT, TEACHER_KEY, cfg, wait_for
from tests.test_pages import page

CHALLENGE_LINK = {"dataset": "shapes", "epochs": "1", "batch_size": "64", "lr": "0.05",
                  "challenge": "accuracy:0.3,epochs_max:1", "lesson": "11"}


def train_button(at: AppTest):
    return next(b for b in at.button if b.label == "Train")


def linked(params: dict) -> AppTest:
    at = page("train")
    for name, value in params.items():
        at.query_params[name] = value
    return at.run()


def test_a_student_from_a_challenge_link_is_asked_for_a_name_once_and_the_run_carries_it(app_env):
    at = linked(CHALLENGE_LINK)
    assert any("reach 30% test accuracy within 1 epoch" in i.value for i in at.info)  # the goal, shown
    train_button(at).click().run()
    assert app_env.jobs() == [] and any("What is your name?" in w.value for w in at.warning)
    at.text_input(key="student_name").input("  Ada  <i>L</i> ").run()
    assert at.query_params["name"] in ("Ada <i>L</i>", ["Ada <i>L</i>"])  # a reload keeps it
    share = next(c.value for c in at.code if "/train?" in c.value)
    assert "name=" not in share and "challenge=accuracy:0.3,epochs_max:1" in share and "lesson=11" in share
    train_button(at).click().run()
    (job,) = app_env.jobs()
    assert job.entry.name == "Ada <i>L</i>" and job.entry.challenge == parse_challenge("accuracy:0.3,epochs_max:1")
    assert job.entry.board == "challenge:accuracy:0.3,epochs_max:1" and job.entry.owner == at.session_state["_owner"]
    wait_for(lambda: job.status == "finished")
    at.run()
    assert any("Challenge passed" in s.value for s in at.success), [s.value for s in at.success]


def test_a_name_too_long_in_a_link_is_refused_in_one_line_and_many_clicks_are_one_job(app_env):
    at = linked({"dataset": "shapes", "epochs": "50", "batch_size": "4", "name": "x" * 10_000})
    lines = [w.value for w in at.warning if "name=" in w.value]
    assert len(lines) == 1 and "at most 40 characters" in lines[0] and len(lines[0]) < 300
    assert "name" not in at.query_params
    at.text_input(key="student_name").input("Grace").run()
    for _ in range(20):  # a student who keeps clicking
        train_button(at).click().run()
    assert len(app_env.jobs()) == 1
    app_env.jobs()[0].stop()


def test_a_browser_following_someone_elses_job_starts_its_own_without_touching_theirs(app_env):
    ada = linked({"dataset": "shapes", "epochs": "50", "batch_size": "4"})
    train_button(ada).click().run()
    (theirs,) = app_env.jobs()
    wait_for(lambda: theirs.status == "running")
    other = page("train")
    other.query_params["job"] = theirs.token
    other.run()
    assert not any(b.label in ("Pause", "Stop") for b in other.button)
    assert any("Following" in c.value for c in other.caption)
    train_button(other).click().run()  # no "stop your last job?": it is not theirs to stop
    assert theirs.status == "running" and len(app_env.jobs()) == 2
    assert not any("Stop it and train" in b.label for b in other.button)
    for job in app_env.jobs():
        job.stop()


def test_the_teacher_key_gives_the_board_its_tools_and_leaves_the_url(app_env):
    goal = parse_challenge("accuracy:0.3")
    job = app_env.start(cfg(app_env_data(), epochs=50, batch_size=4),
                        Entry("Ada", owner_digest("a" * 32), "challenge:accuracy:0.3", goal))
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    at.query_params["teacher"] = "wrong-key"
    at.run()
    at.switch_page("pages/board.py").run()
    assert not at.exception and not any(b.label == "Stop it" for b in at.button)
    teacher = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    teacher.query_params["teacher"] = TEACHER_KEY
    teacher.run()
    assert "teacher" not in teacher.query_params and teacher.session_state["_teacher"] is True
    teacher.switch_page("pages/board.py").run()
    assert not teacher.exception
    teacher.toggle(key="board_hide").set_value(True).run()
    assert CLASS.hide_names
    next(b for b in teacher.button if b.label == "Stop it").click().run()
    wait_for(lambda: job.status == "stopped")
    next(b for b in teacher.button if b.label == "Clear the board").click().run()
    assert not CLASS.shows("challenge:accuracy:0.3", job.created)
    CLASS.set_hide_names(False)
    CLASS.cleared.clear()


def app_env_data() -> str:
    import os

    return os.environ["CNN_DASHBOARD_DATA"]


@pytest.fixture(autouse=True)
def teacher_key(monkeypatch):
    import core.classroom

    monkeypatch.setenv("CNN_DASHBOARD_TEACHER_KEY", TEACHER_KEY)
    monkeypatch.setattr(core.classroom, "_teacher_key", None)


def test_the_boards_live_state_ranks_the_runs_and_plots_accuracy_against_the_knob_that_differs(app_env):
    from ui.board_live import STATES, board_state, boards

    goal = parse_challenge("accuracy:0.3")
    board = "challenge:accuracy:0.3"
    jobs = [app_env.start(cfg(app_env_data(), lr=lr), Entry(name, owner_digest(name * 32), board, goal))
            for name, lr in (("Ada", 0.05), ("Alan", 0.0001))]
    waiting = app_env.start(cfg(app_env_data(), lr=0.01, epochs=50),
                            Entry("Grace", owner_digest("g" * 32), board, goal))
    wait_for(lambda: all(j.status == "finished" for j in jobs))
    state = board_state(board, "accuracy")
    assert [r["name"] for r in state["rows"]] == ["Ada", "Alan", "Grace"] and state["rows"][0]["result"] == "passed"
    assert state["counts"] == {"runs": 3, "training": 1, "waiting": 0, "finished": 2, "passed": 1, "challenge": True} \
        or state["counts"]["waiting"] == 1  # Grace's job may not have left the queue yet
    (trace,) = state["figure"]["data"]
    assert sorted(trace["x"]) == [0.0001, 0.05] and set(trace["text"]) == {"Ada", "Alan"}
    assert state["knob"] == "lr" and state["figure"]["layout"]["xaxis"]["type"] == "log"
    loss = board_state(board, "loss")
    assert {t["name"] for t in loss["figure"]["data"]} >= {"Ada", "Alan"}
    assert all(len(t["x"]) <= 201 for t in loss["figure"]["data"])
    assert boards()[0] == board
    first = STATES.of(board, "accuracy")
    assert STATES.of(board, "accuracy") is first  # made once per change, whoever asks
    waiting.stop()
    wait_for(lambda: STATES.of(board, "accuracy") is not first)
