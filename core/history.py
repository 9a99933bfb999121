"""What a training job or a speed sweep has reported so far: one type for a live job and a run folder.

The worker's events (core/loop.py's training loop, core/speed.py's measurements) go into a History one at a
time, as they come: the job's follower thread adds each event once, and a run folder's metrics.jsonl is read
through the same `add`. The Train page, Results, the sidebar and the live view all read a History; none of them
filters an event list again.

An event that a page cannot draw (a damaged line of a run folder: a loss that is not a number, an
epoch whose per-class lists do not match the classes) is counted in `damaged`, not kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _counts(value: object, n: int | None) -> bool:
    return (isinstance(value, list) and (n is None or len(value) == n)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value))


def valid_loss(event: dict) -> bool:
    return _number(event.get("running_loss")) and _number(event.get("images_seen"))


def valid_epoch(event: dict, classes: int | None) -> bool:
    """An epoch event a page can draw: its accuracy a fraction, its per-class lists and confusion matrix
    of one entry per class (runs written before some of these existed lack them: that is allowed)."""
    if not isinstance(event.get("epoch"), int) or not _number(event.get("test_accuracy")):
        return False
    if not 0 <= event["test_accuracy"] <= 1:
        return False
    for name in ("per_class_correct", "per_class_total"):
        if name in event and not _counts(event[name], classes):
            return False
    if "confusion" in event:
        rows = event["confusion"]
        square = isinstance(rows, list) and all(_counts(r, len(rows)) for r in rows)
        if not square or (classes is not None and len(rows) != classes):
            return False
    return True


@dataclass
class History:
    """The events of one job or run, each handled once as it is added."""

    start: dict = field(default_factory=dict)  # the training's start event: device, classes, total steps
    losses: list[dict] = field(default_factory=list)  # running-loss points
    epochs: list[dict] = field(default_factory=list)  # epoch-end evaluations
    rows: list[dict] = field(default_factory=list)  # a speed sweep's measurements
    end: dict = field(default_factory=dict)
    progress: dict = field(default_factory=dict)  # the dataset's preparation, before training starts
    paused: bool = False  # the worker has reported a pause and no resume since
    damaged: int = 0  # loss or epoch events left out because a page could not draw them
    count: int = 0  # events added: changes whenever anything does

    @classmethod
    def of(cls, events) -> "History":
        history = cls()
        for event in events:
            history.add(event)
        return history

    def add(self, event: dict) -> None:
        self.count += 1
        kind = event.get("type")
        if kind == "loss":
            self._keep(self.losses, event, valid_loss(event))
        elif kind == "epoch":
            self._keep(self.epochs, event, valid_epoch(event, self.num_classes))
        elif kind == "speed_row":
            self.rows.append(event)
        elif kind == "start":
            self.start = event
        elif kind == "end":
            self.end = event
        elif kind == "progress":
            self.progress = event
        elif kind in ("paused", "resumed"):
            self.paused = kind == "paused"

    def _keep(self, kept: list[dict], event: dict, valid: bool) -> None:
        if valid:
            kept.append(event)
        else:
            self.damaged += 1

    def copy(self) -> "History":
        """A copy that later events do not change (the events themselves are never changed)."""
        return replace(self, losses=list(self.losses), epochs=list(self.epochs), rows=list(self.rows))

    @property
    def num_classes(self) -> int | None:
        classes = self.start.get("classes")
        return len(classes) if isinstance(classes, list) and classes else None

    @property
    def last_loss(self) -> dict:
        return self.losses[-1] if self.losses else {}

    @property
    def fraction_done(self) -> float:
        total = self.start.get("total_steps") or 0
        done = len(self.rows) if self.rows else self.last_loss.get("step", 0)
        return min(1.0, done / total) if isinstance(total, int) and total > 0 else 0.0
