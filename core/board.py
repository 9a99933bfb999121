"""The class board's data: one row per job of a lesson or a challenge, ranked; its CSV; what the teacher set.

    board_rows([(snapshot, entry), ...])   # who, settings that differ, status, accuracy, seconds, passed or not
    board_csv(rows)                        # the same as a spreadsheet
    CLASS                                  # names hidden, boards cleared (the teacher's, in the server's memory)

The Board page draws it (pages/board.py), live through ui/board_live.py. Who may do what, names and challenges
are core/classroom.py's.
"""

from __future__ import annotations

from core.classroom import ClassError, parse_challenge
from core.runs.names import KNOB_TEXT, knob_text

BOARD_STATUS = {"waiting": "waiting", "starting": "training", "running": "training", "paused": "paused",
                "finished": "finished", "stopped": "stopped", "diverged": "diverged", "failed": "failed",
                "interrupted": "interrupted"}


def run_seconds(snap) -> float | None:
    """The training seconds a job has taken so far (its end's, else its last loss point's)."""
    seconds = snap.end.get("train_seconds") if snap.end else None
    if seconds is None and snap.losses:
        seconds = snap.last_loss.get("train_seconds")
    return float(seconds) if isinstance(seconds, (int, float)) else None


def board_rows(entries: list, hide_names: bool = False) -> list[dict]:
    """One row per job, best first: (job's Snapshot, its Entry) pairs -> plain data the board draws and the CSV
    holds. Ranked by test accuracy; on a challenge's board the runs that passed come first, the one that reached
    the goal in the fewest training seconds first (runs without an accuracy yet last, newest first)."""
    differ = differing_knobs([snap.config for snap, _ in entries])
    rows = []
    for (snap, entry), changed in zip(entries, differ):
        accuracy = snap.epochs[-1].get("test_accuracy") if snap.epochs else None
        challenge = entry.challenge
        reached = challenge.reached(snap.epochs) if challenge else None
        rows.append({
            "id": snap.id,
            "name": ("student" if hide_names else entry.name) or "(no name)",
            "settings": changed,
            "status": BOARD_STATUS.get(snap.status, snap.status),
            "progress": snap.fraction_done if snap.active and snap.start else None,
            "accuracy": accuracy,
            "seconds": run_seconds(snap),
            "result": challenge.result(snap.epochs, not snap.active) if challenge else "",
            "goal_seconds": reached.get("seconds") if reached else None,
            "created": snap.created,
        })
    rows.sort(key=lambda r: (r["goal_seconds"] is None, r["goal_seconds"] or 0, r["accuracy"] is None,
                             -(r["accuracy"] or 0), -r["created"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank if row["accuracy"] is not None else None
    return rows


BOARD_KNOBS = ("lr", "momentum", "batch_size", "epochs", "optimizer", "conv_width", "conv2_width", "schedule",
               "nesterov", "train_images", "seed", "nproc")


def differing_knobs(configs: list) -> list[dict[str, str]]:
    """For each config, the knobs in which the configs on one board differ, as words ("lr 0.01"); where they all
    train alike, the learning rate (the knob lessons vary most)."""
    varied = [k for k in BOARD_KNOBS if len({getattr(c, k) for c in configs}) > 1] or ["lr"]
    return [{k: knob_text(k, getattr(c, k)) if k in KNOB_TEXT else f"{k} {getattr(c, k)}" for k in varied}
            for c in configs]


def board_csv(rows: list[dict]) -> str:
    """The board as a spreadsheet: rank, name, settings, status, accuracy, seconds, challenge result."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["rank", "name", "settings", "status", "test_accuracy", "train_seconds", "challenge"])
    for row in rows:
        writer.writerow([row["rank"] or "", _cell(row["name"]), _cell(settings_text(row["settings"])), row["status"],
                         "" if row["accuracy"] is None else f"{row['accuracy']:.4f}",
                         "" if row["seconds"] is None else f"{row['seconds']:.1f}", row["result"]])
    return out.getvalue()


def _cell(text: str) -> str:
    """A spreadsheet cell that a spreadsheet program cannot take for a formula (a name such as '=HYPERLINK(...)')."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def settings_text(settings: dict) -> str:
    return ", ".join(settings.values())


class ClassState:
    """What the teacher set for the whole server: names hidden on every board, boards cleared (runs started before
    the clearing are left off; they train on and keep their folders)."""

    def __init__(self):
        self.hide_names = False
        self.cleared: dict[str, float] = {}
        self.changes = 0  # a board's live state is made anew when this changes

    def clear(self, board: str, when: float) -> None:
        self.cleared[board] = when
        self.changes += 1

    def set_hide_names(self, hide: bool) -> None:
        if hide != self.hide_names:
            self.hide_names = hide
            self.changes += 1

    def shows(self, board: str, created: float) -> bool:
        return created > self.cleared.get(board, 0.0)


CLASS = ClassState()


def board_title(board: str, lesson_titles: list[str]) -> str:
    """A board's name for people: 'Challenge: reach 80% test accuracy within 1 epoch', '3. Train it...', ..."""
    kind, _, rest = board.partition(":")
    if kind == "challenge":
        try:
            return f"Challenge: {parse_challenge(rest).text()}"
        except ClassError:
            return "Challenge"
    if kind == "lesson" and rest.isdigit() and 1 <= int(rest) <= len(lesson_titles):
        return f"Lesson {lesson_titles[int(rest) - 1]}"
    return "Runs without a lesson"
