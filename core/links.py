"""Lesson links: the Train page's settings as URL query parameters, read back with the same checks.

    /train?dataset=shapes&lr=0.01&momentum=0.5&batch_size=16&conv_width=12&epochs=1&lock=lr,momentum
    /train?dataset=own&own=fruit            an own dataset (core/datasets.py); dataset=folder&folder=PATH likewise

`parse_link` turns a query into settings the page can show, one line per value it cannot take, and the
names the link locks; `link_query` is the reverse. Values are checked by TrainConfig itself, so a link
can hold nothing the CLI would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from core.classroom import ClassError, clean_name, parse_challenge
from core.config import DATASETS, PRESETS, SETTINGS, ConfigError, TrainConfig, preset_values
from core.datasets import OwnError, check_name

DATASET_CHOICES = (*DATASETS, "folder", "own")  # folder: with folder=PATH; own: with own=NAME (core/datasets.py)
PRESET_CHOICES = (*PRESETS, "custom")
# every setting a link can hold, in the order the Train page shows them
LINK_SETTINGS = ("dataset", "folder", "own", "preset", "epochs", "optimizer", "lr", "momentum", "batch_size",
                 "conv_width", "conv2_width", "schedule", "nesterov", "augment", "train_images", "device", "nproc",
                 "seed")
# what a preset sets (core/config.py's PRESETS): moving one of these by hand makes the settings Custom
PRESET_KNOBS = ("epochs", "optimizer", "lr", "momentum", "batch_size", "conv_width", "conv2_width", "schedule",
                "nesterov")
LOCK = "lock"  # a lesson's locked controls: lock=lr,momentum
# a class's: the student's name, the lesson the link belongs to, its challenge (core/classroom.py)
CLASS_PARAMS = ("name", "lesson", "challenge")
# the app's own parameters, on every page: the job's token, presentation mode, the teacher's key (read first)
APP_PARAMS = ("job", "present", "teacher")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclass
class Link:
    values: dict[str, Any] = field(default_factory=dict)  # only the settings the link gave and that can be used
    problems: list[str] = field(default_factory=list)  # one line for each value that was dropped
    locked: set[str] = field(default_factory=set)
    school: dict[str, Any] = field(default_factory=dict)  # name, lesson (a number), challenge (a Challenge)


def _one(query: Mapping[str, Any], name: str) -> str:
    value = query[name]
    if isinstance(value, (list, tuple)):  # a repeated parameter: the last one counts, as in a browser form
        value = value[-1] if value else ""
    return str(value).strip()


def _parse(name: str, text: str) -> Any:
    """One parameter's text -> its value; ConfigError (a student's words) when it cannot be used. The choices,
    the kind of value and its bounds are TrainConfig's (core/config.py), as on the command line."""
    if name == "folder":
        if not text:
            raise ConfigError("it is empty")
        return text
    if name == "own":
        try:
            return check_name(text)
        except OwnError as exc:
            raise ConfigError(str(exc)) from None
    choices = {"dataset": DATASET_CHOICES, "preset": PRESET_CHOICES}.get(name) or SETTINGS[name].metadata["choices"]
    if choices:
        if text not in choices:
            raise ConfigError(f"choose one of {', '.join(choices)}")
        return text
    kind = str(SETTINGS[name].type)
    if kind == "bool":
        if text.lower() not in _TRUE + _FALSE:
            raise ConfigError("use true or false")
        return text.lower() in _TRUE
    try:
        value = int(text) if kind.startswith("int") else float(text)
    except ValueError:
        raise ConfigError("it is not a number") from None
    TrainConfig(**{name: value})  # the same bounds as everywhere else
    return value


def parse_link(query: Mapping[str, Any]) -> Link:
    """The settings, problems and locks of a page URL's query parameters (unknown names are reported too)."""
    link = Link()
    for name in query:
        if name in LINK_SETTINGS or name in CLASS_PARAMS:
            text = _one(query, name)
            try:
                if name in LINK_SETTINGS:
                    link.values[name] = _parse(name, text)
                else:
                    link.school[name] = _class_value(name, text)
            except (ConfigError, ClassError) as exc:  # said in one line, however long the value was
                link.problems.append(f"{name}={text[:60]}{'...' if len(text) > 60 else ''} was ignored: {exc}.")
        elif name != LOCK and name not in APP_PARAMS:
            link.problems.append(f"{name} is not a setting of this page and was ignored.")
    if LOCK in query:
        names = [n.strip() for n in _one(query, LOCK).split(",") if n.strip()]
        if "all" in names:
            link.locked = set(LINK_SETTINGS)
        else:
            link.locked = {n for n in names if n in LINK_SETTINGS}
            unknown = [n for n in names if n not in LINK_SETTINGS]
            if unknown:
                link.problems.append(f"lock={','.join(unknown)} was ignored: lock takes "
                                     f"{', '.join(LINK_SETTINGS)} or all.")
    return link


def _class_value(name: str, text: str) -> Any:
    if name == "name":
        return clean_name(text)
    if name == "challenge":
        return parse_challenge(text)
    if not text.isdigit() or not 1 <= int(text) <= 99:
        raise ClassError("a lesson is a number from 1 to 99")
    return int(text)


def class_query(school: Mapping[str, Any], name: bool = True) -> dict[str, str]:
    """The class's parameters of a link: its lesson and challenge, and (name=True: the page's own URL, never a
    link to share) the student's name."""
    query = {}
    if school.get("name") and name:
        query["name"] = school["name"]
    if school.get("lesson"):
        query["lesson"] = str(school["lesson"])
    if school.get("challenge"):
        query["challenge"] = school["challenge"].query()
    return query


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def link_query(values: Mapping[str, Any], locked: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """Query parameters for these settings (LINK_SETTINGS order; `folder` only with dataset=folder, `own` with
    dataset=own) and locks."""
    query = {name: _text(values[name]) for name in LINK_SETTINGS
             if name in values and (name not in ("folder", "own") or values.get("dataset") == name)
             and (name, values[name]) not in (("nproc", 1), ("train_images", 0), ("seed", 0), ("augment", False))}
    if locked:
        query[LOCK] = "all" if set(LINK_SETTINGS) <= set(locked) else ",".join(n for n in LINK_SETTINGS if n in locked)
    return query


def nearest_preset(values: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The preset these knob values (PRESET_KNOBS) are closest to, and the knobs they set otherwise ({name: value})."""
    def differing(name: str) -> dict[str, Any]:
        knobs = preset_values(name)
        return {k: values.get(k) for k in PRESET_KNOBS if values.get(k) != knobs[k]}

    best = min(PRESETS, key=lambda name: len(differing(name)))
    return best, differing(best)


def link_dataset(values: Mapping[str, Any]) -> str:
    """The config's dataset of a link's values: shapes, folder:PATH (dataset=folder&folder=PATH) or own:NAME."""
    kind = values.get("dataset")
    if kind in ("folder", "own"):
        return f"{kind}:{(values.get(kind) or '').strip()}"
    return kind


def dataset_values(dataset: str) -> dict[str, str]:
    """A config's dataset in a link's terms: {"dataset": "shapes"}, {"dataset": "folder", "folder": PATH} or
    {"dataset": "own", "own": NAME}; the reverse of link_dataset."""
    kind, _, rest = dataset.partition(":")
    if kind in ("folder", "own") and rest:
        return {"dataset": kind, kind: rest}
    return {"dataset": dataset}
