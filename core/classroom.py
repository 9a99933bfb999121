"""A class on one server: students' names, who may control what, challenges, and the queue's wait estimate.

    clean_name(" Ada  ")                 # "Ada"; ClassError (a student's words) when it cannot be a name
    parse_challenge("accuracy:0.8,epochs_max:1")   # Challenge(accuracy=0.8, epochs_max=1)
    challenge.result(epochs)             # "passed" / "not yet" / "" while the run may still reach it
    Entry(name, owner, board, challenge) # what a job carries of its student (core/jobs.py)

Nobody logs in. A browser is known by an owner token, a random cookie the server gives it (ui/classroom.py's
OwnerCookie): the jobs and runs it starts carry a digest of it, and Pause, Stop, Delete and the run's title are
its own (and the teacher's). A URL copied from an address bar names a job to follow, never its owner. The teacher
is whoever opens a page with `?teacher=KEY`, the key the server was started with (CNN_DASHBOARD_TEACHER_KEY) or
printed at its start.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable

from core.env import log

MAX_NAME = 40
OWNER_COOKIE = "cnn_dashboard_owner"
_OWNER = re.compile(r"[A-Za-z0-9_-]{22,64}")


class ClassError(ValueError):
    """A value a student or a link gave that cannot be used, in the words to show them."""


# -- names -----------------------------------------------------------------------------------------------------

def clean_name(text: Any) -> str:
    """A student's name as the board shows it: plain text, spaces collapsed, at most MAX_NAME characters. "" is no
    name. Control characters go; HTML stays text (every page shows names escaped)."""
    text = "" if text is None else str(text)
    if len(text) > 4 * MAX_NAME:  # a pasted essay: not read any further
        raise ClassError(f"a name is at most {MAX_NAME} characters (that one has {len(text):,})")
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C")
    text = " ".join(text.split())
    if len(text) > MAX_NAME:
        raise ClassError(f"a name is at most {MAX_NAME} characters (that one has {len(text)})")
    return text


# -- owners and the teacher ------------------------------------------------------------------------------------

def new_owner() -> str:
    return secrets.token_urlsafe(24)


def valid_owner(text: Any) -> bool:
    return isinstance(text, str) and _OWNER.fullmatch(text) is not None


def owner_digest(owner: str | None) -> str:
    """What a job or a run folder keeps of its owner: a digest, so that a run's files (zipped and shared, say)
    never carry the token that controls its browser's jobs."""
    if not owner:
        return ""
    return hashlib.sha256(f"cnn-dashboard-owner:{owner}".encode()).hexdigest()[:32]


_teacher_key: str | None = None


def teacher_key() -> str:
    """The server's teacher key: CNN_DASHBOARD_TEACHER_KEY (8 or more characters), else one made at start."""
    global _teacher_key
    if _teacher_key is None:
        given = os.environ.get("CNN_DASHBOARD_TEACHER_KEY", "").strip()
        if given and len(given) >= 8:
            _teacher_key = given
        else:
            if given:
                log("CNN_DASHBOARD_TEACHER_KEY is shorter than 8 characters, so it was not used; a key was made")
            _teacher_key = secrets.token_urlsafe(9)
    return _teacher_key


def is_teacher_key(text: Any) -> bool:
    return isinstance(text, str) and 0 < len(text) <= 200 and secrets.compare_digest(text.encode(),
                                                                                      teacher_key().encode())


def announce_teacher_key(address: str = "http://localhost:8501") -> None:
    """Said once, on the server's terminal, when it starts: the only place a made key is ever shown."""
    made = "" if os.environ.get("CNN_DASHBOARD_TEACHER_KEY", "").strip() == teacher_key() else " (made for this run)"
    log(f"teacher key{made}: {teacher_key()} - open {address}/board?teacher={teacher_key()} on the teacher's "
        "computer to stop any job, clear the board and hide names (never share this link)")


# -- challenges ------------------------------------------------------------------------------------------------

GOALS = {  # goal: (its words, its kind, lowest, highest)
    "accuracy": ("test accuracy", float, 0.1, 1.0),
    "epochs_max": ("epochs at most", int, 1, 30),
    "seconds_max": ("training seconds at most", float, 1.0, 3600.0),
}


@dataclass(frozen=True)
class Challenge:
    """Reach `accuracy` on the test set within `epochs_max` epochs and `seconds_max` seconds of training."""

    accuracy: float
    epochs_max: int | None = None
    seconds_max: float | None = None

    def text(self) -> str:
        """e.g. 'reach 80% test accuracy within 1 epoch'."""
        limits = []
        if self.epochs_max:
            limits.append(f"{self.epochs_max} epoch{'s' if self.epochs_max != 1 else ''}")
        if self.seconds_max:
            limits.append(f"{self.seconds_max:g} seconds of training")
        return f"reach {self.accuracy:.0%} test accuracy" + (f" within {' and '.join(limits)}" if limits else "")

    def query(self) -> str:
        parts = [f"accuracy:{self.accuracy:g}"]
        if self.epochs_max:
            parts.append(f"epochs_max:{self.epochs_max}")
        if self.seconds_max:
            parts.append(f"seconds_max:{self.seconds_max:g}")
        return ",".join(parts)

    def reached(self, epochs: Iterable[dict]) -> dict | None:
        """The first epoch that met the goal within the limits, or None."""
        for epoch in epochs:
            if self.epochs_max and epoch.get("epoch", 0) > self.epochs_max:
                return None
            if self.seconds_max and epoch.get("seconds", math.inf) > self.seconds_max:
                return None
            accuracy = epoch.get("test_accuracy")
            if isinstance(accuracy, (int, float)) and accuracy >= self.accuracy:
                return epoch
        return None

    def result(self, epochs: list[dict], ended: bool) -> str:
        """"passed", "not yet" (it ended without, or can no longer), or "" while the run may still reach it."""
        if self.reached(epochs):
            return "passed"
        past = bool(epochs) and ((self.epochs_max and epochs[-1].get("epoch", 0) >= self.epochs_max)
                                 or (self.seconds_max and epochs[-1].get("seconds", 0) >= self.seconds_max))
        return "not yet" if ended or past else ""


def parse_challenge(text: str) -> Challenge:
    """`accuracy:0.80,epochs_max:1` -> a Challenge; ClassError saying what is wrong with it otherwise."""
    text = str(text).strip()
    if len(text) > 200:
        raise ClassError("it is too long to be a challenge")
    goals: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition(":")
        name = name.strip()
        if not sep or name not in GOALS:
            raise ClassError(f"{part[:40]!r} is not a goal (goals: {', '.join(f'{g}:N' for g in GOALS)})")
        words, kind, low, high = GOALS[name]
        try:
            number = kind(value.strip())
        except ValueError:
            raise ClassError(f"{name} takes a number, not {value.strip()[:20]!r}") from None
        if name == "accuracy" and 10 <= number <= 100:  # a percentage
            raise ClassError(f"accuracy is a fraction: 0.8 for 80% (not {value.strip()})")
        if not math.isfinite(number) or not low <= number <= high:
            raise ClassError(f"{name} ({words}) must be from {low:g} to {high:g}")
        goals[name] = number
    if "accuracy" not in goals:
        raise ClassError("a challenge needs an accuracy goal, e.g. accuracy:0.8")
    return Challenge(**goals)


@dataclass(frozen=True)
class Entry:
    """Who started a job and for what: the board's side of a job (core/jobs.py keeps one with each job)."""

    name: str = ""  # the student's name, "" for none (the teacher's runs need none)
    owner: str = ""  # owner_digest of the browser that started it
    board: str = ""  # the lesson or challenge it was started from: "challenge:accuracy:0.8,epochs_max:1", "lesson:3"
    challenge: Challenge | None = None

    def meta(self) -> dict:
        """What the run's meta.json keeps of it."""
        meta = {"name": self.name, "owner": self.owner, "board": self.board}
        if self.challenge:
            meta["challenge"] = self.challenge.query()
        return {k: v for k, v in meta.items() if v}


def board_of(lesson: int | None, challenge: Challenge | None) -> str:
    """The board a run started from a link belongs on: its challenge's, else its lesson's, else the open board."""
    if challenge:
        return f"challenge:{challenge.query()}"
    return f"lesson:{lesson}" if lesson else ""


# -- waiting ------------------------------------------------------------------------------------------------------

def estimated_wait(place: int, slots: int, time_left: list[float], durations: list[float]) -> float | None:
    """Seconds until the job at `place` in the queue (1 = next) starts: the running jobs end after their own
    time-left figures, and each job ahead then takes as long as the runs' usual duration. None when nothing
    running has a time-left figure yet."""
    if not time_left or place < 1:
        return None
    usual = sorted(durations)[len(durations) // 2] if durations else max(time_left)
    free = sorted(time_left) + [0.0] * max(0, slots - len(time_left))
    free = free[:slots] if len(free) >= slots else free
    for _ in range(place - 1):  # the jobs ahead, each on the slot that frees first
        free.sort()
        free[0] += usual
    return min(free)
