"""A class on one server: names, challenges, fair turns, the board's rows and its CSV, ownership of jobs and runs."""

import csv
import io
import json
from pathlib import Path

import pytest

from core.board import board_csv, board_rows
from core.classroom import ClassError, Entry, board_of, clean_name, estimated_wait, owner_digest, parse_challenge
from core.config import TrainConfig
from core.links import parse_link
from core.runs.folder import read_meta
from tests.conftest import cfg, wait_for

# -- names ---------------------------------------------------------------------------------------------------------


def test_a_name_is_plain_text_trimmed_and_at_most_40_characters():
    assert clean_name("  Ada \n  Lovelace ") == "Ada Lovelace"
    assert clean_name("<script>alert(1)</script>") == "<script>alert(1)</script>"  # kept as text: shown escaped
    assert clean_name("a\x00b\u202ec") == "abc"  # control and direction characters go
    assert clean_name("") == "" and clean_name(None) == ""
    assert clean_name("x" * 40) == "x" * 40
    for too_long in ("x" * 41, "x" * 10_000):
        with pytest.raises(ClassError, match="at most 40 characters"):
            clean_name(too_long)


def test_a_link_with_a_bad_name_or_challenge_drops_it_with_one_line_each():
    link = parse_link({"lr": "0.01", "name": "x" * 10_000, "challenge": "accuracy:0.8,fly:1", "lesson": "3"})
    assert link.values == {"lr": 0.01} and link.school == {"lesson": 3}
    assert len(link.problems) == 2
    assert link.problems[0].startswith("name=xxx") and "at most 40" in link.problems[0]
    assert len(link.problems[0]) < 200  # the 10 kB are not repeated back
    assert "fly:1" in link.problems[1] and "is not a goal" in link.problems[1]


# -- challenges --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, why", [
    ("accuracy:80", "fraction"), ("accuracy:1.5", "from 0.1 to 1"), ("accuracy:0", "from 0.1 to 1"),
    ("accuracy:nan", "from 0.1 to 1"), ("epochs_max:1", "needs an accuracy"), ("accuracy:0.5,epochs_max:0", "1 to 30"),
    ("accuracy:0.5,epochs_max:1000", "1 to 30"), ("accuracy:0.5,seconds_max:-3", "from 1 to 3600"),
    ("accuracy:high", "takes a number"), ("speed:9", "not a goal"), ("accuracy", "not a goal"),
    ("x" * 300, "too long")])
def test_absurd_or_unknown_goals_are_refused_saying_why(text, why):
    with pytest.raises(ClassError, match=why):
        parse_challenge(text)


def test_a_challenge_is_passed_by_the_first_epoch_that_meets_it_within_its_limits():
    goal = parse_challenge("accuracy:0.80,epochs_max:1")
    assert goal.text() == "reach 80% test accuracy within 1 epoch" and parse_challenge(goal.query()) == goal
    first, second = {"epoch": 1, "test_accuracy": 0.7, "seconds": 5}, {"epoch": 2, "test_accuracy": 0.9, "seconds": 9}
    assert goal.result([], ended=False) == ""  # it may still
    assert goal.result([first], ended=False) == "not yet"  # its one epoch is over
    assert goal.result([first, second], ended=True) == "not yet"  # too late
    assert goal.result([{**first, "test_accuracy": 0.81}], ended=True) == "passed"
    quick = parse_challenge("accuracy:0.8,seconds_max:6")
    assert quick.result([first, second], ended=True) == "not yet" and quick.reached([second]) is None
    assert parse_challenge("accuracy:0.8").reached([first, second]) == second


# -- the board's rows and CSV --------------------------------------------------------------------------------------

class Snap:
    """What board_rows reads of a job's snapshot."""

    def __init__(self, id, lr, status, accuracy=None, seconds=None, created=0.0):
        self.id, self.status, self.created = id, status, created
        self.config = TrainConfig(dataset="shapes", lr=lr)
        self.epochs = [] if accuracy is None else [{"epoch": 1, "test_accuracy": accuracy, "seconds": seconds}]
        self.end = {"train_seconds": seconds} if status == "finished" else {}
        self.losses = []
        self.active = status in ("waiting", "running")
        self.start = {"total_steps": 10} if status == "running" else {}
        self.fraction_done = 0.5
        self.last_loss = {}


def test_the_board_ranks_by_accuracy_and_a_challenge_board_puts_passes_first_fastest_first():
    goal = parse_challenge("accuracy:0.5")
    entries = [(Snap(1, 0.001, "finished", 0.62, 30.0, 1), Entry("Ada", challenge=goal)),
               (Snap(2, 0.01, "finished", 0.55, 10.0, 2), Entry("=cmd|' /C calc'!A0", challenge=goal)),
               (Snap(3, 0.1, "finished", 0.30, 5.0, 3), Entry("<b>Alan</b>", challenge=goal)),
               (Snap(4, 1.0, "waiting", created=4), Entry("Grace", challenge=goal)),
               (Snap(5, 0.01, "running", 0.45, 3.0, 5), Entry("", challenge=goal))]
    rows = board_rows(entries)
    assert [r["name"] for r in rows] == ["=cmd|' /C calc'!A0", "Ada", "(no name)", "<b>Alan</b>", "Grace"]
    assert [r["result"] for r in rows] == ["passed", "passed", "", "not yet", ""]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, None]
    assert rows[0]["settings"] == {"lr": "lr 0.01"}  # the knob that differs, in words
    plain = board_rows([(snap, Entry(e.name)) for snap, e in entries])
    assert [r["name"] for r in plain][:3] == ["Ada", "=cmd|' /C calc'!A0", "(no name)"]  # by accuracy alone
    assert {r["name"] for r in board_rows(entries, hide_names=True)} == {"student"}
    table = list(csv.DictReader(io.StringIO(board_csv(rows))))
    assert len(table) == 5 and table[1] == {"rank": "2", "name": "Ada", "settings": "lr 0.001", "status": "finished",
                                            "test_accuracy": "0.6200", "train_seconds": "30.0", "challenge": "passed"}
    assert table[0]["name"].startswith("'=")  # a spreadsheet reads it as text, not as a formula
    assert board_of(3, None) == "lesson:3" and board_of(3, goal) == "challenge:accuracy:0.5"
    assert board_of(None, None) == ""


def test_the_wait_counts_the_running_jobs_time_left_then_a_usual_run_for_each_job_ahead():
    assert estimated_wait(1, 1, [30.0], []) == 30.0
    assert estimated_wait(3, 1, [30.0], [20.0, 20.0, 40.0]) == 30.0 + 2 * 20.0
    assert estimated_wait(2, 2, [10.0, 50.0], [40.0]) == 50.0  # the job ahead takes the slot free at 10 s
    assert estimated_wait(1, 2, [10.0], []) == 0.0  # a free slot
    assert estimated_wait(1, 1, [], []) is None


# -- fair turns and owners in the job manager ----------------------------------------------------------------------

def test_one_waiting_job_per_student_first_come_first_served(manager, shapes_dir):
    ada, grace = owner_digest("a" * 32), owner_digest("g" * 32)
    running = manager.start(cfg(shapes_dir, epochs=100, batch_size=4), Entry("Teacher", owner_digest("t" * 32)))
    first = manager.start(cfg(shapes_dir, lr=0.01), Entry("Ada", ada))
    second = manager.start(cfg(shapes_dir, lr=0.02), Entry("Grace", grace))
    clicks = [manager.start(cfg(shapes_dir, lr=0.05, seed=i), Entry("Ada", ada)) for i in range(100)]
    assert all(job is first for job in clicks)  # 100 clicks: one job, with the last click's settings
    assert first.config.lr == 0.05 and first.config.seed == 99
    waiting = [j for j in manager.jobs() if j.status == "waiting"]
    assert waiting == [first, second] and manager.place(first) == 1 and manager.place(second) == 2  # Ada kept her place
    assert len(manager.jobs()) == 3
    wait_for(lambda: len(running.snapshot().losses) >= 4)
    wait_for(lambda: manager.wait_seconds(second) is not None)
    assert manager.wait_seconds(second) > manager.wait_seconds(first) > 0
    assert running.owned_by(owner_digest("t" * 32)) and not running.owned_by(ada) and not running.owned_by("")
    running.stop()
    wait_for(lambda: first.status == "finished" and second.status == "finished")
    assert first.started < second.started
    meta = read_meta(Path(first.run_dir))
    assert meta["name"] == "Ada" and meta["owner"] == ada and "a" * 32 not in json.dumps(meta)
