"""The dataset a class's lessons run on: the Lessons page's choice (the Board page follows it).

Shapes always; CIFAR-10 where it is here or can be downloaded (first where it can: the Train page's default);
every image folder this server's runs trained on, and the one on the Train page now; every own dataset that can
train (core/datasets.py).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.data import DatasetError, default_dataset, folder_classes
from core.datasets import list_own
from core.runs import list_runs
from ui.common import data_dir, runs_root
from ui.train_form import chosen_settings

ANOTHER_FOLDER = "another-folder"  # the choice that asks for a folder's path


def trained_folders() -> list[str]:
    """The image folders (folder:PATH) this server's runs trained on, newest first, that are still there; and the
    Train page's folder."""
    found = [r.config.dataset for r in list_runs(runs_root()) if r.config and r.config.dataset.startswith("folder:")]
    chosen = chosen_settings()  # the Train page's, as it hands them to other pages
    if chosen["dataset"] == "folder" and chosen["folder"].strip():
        found.insert(0, f"folder:{chosen['folder'].strip()}")
    return [name for name in dict.fromkeys(found) if Path(name[len("folder:"):]).expanduser().is_dir()]


def ready_own() -> list[str]:
    """The own datasets (own:NAME) that can train: each class has its pictures."""
    return [f"own:{d.name}" for d in list_own(data_dir()) if d.ready]


def lesson_dataset_choices() -> tuple[list[str], str]:
    """The datasets a teacher can run the lessons on, the default first; and why CIFAR-10 is missing, or ""."""
    default, why = default_dataset(data_dir())
    return list(dict.fromkeys([default, "shapes", *trained_folders(), *ready_own()])), why


def parse_lesson_dataset(text: str) -> str:
    """A link's dataset= for the Lessons page: shapes, cifar10 (where it can be had) or folder:PATH of a folder
    that can be an image dataset; ValueError, with the reason, otherwise."""
    if text.startswith("folder:"):
        try:
            folder_classes(text[len("folder:"):])
        except DatasetError as exc:
            raise ValueError(str(exc).rstrip(".")) from None
        return text
    choices, _ = lesson_dataset_choices()
    if text not in choices:
        raise ValueError(f"choose {', '.join(c for c in choices if not c.startswith('folder:'))} or folder:PATH")
    return text


def lesson_dataset() -> str:
    """The dataset the lessons' links use now: the Lessons page's choice in this session, else the default."""
    chosen = st.session_state.get("lessons_dataset")
    if chosen == ANOTHER_FOLDER:
        path = (st.session_state.get("lessons_folder") or "").strip()
        chosen = f"folder:{path}" if path else None
    return chosen or default_dataset(data_dir())[0]
