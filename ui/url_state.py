"""A page's controls in its URL: the one way every page keeps them there, so that a page is a link to share.

Two calls around a page's controls:

    query = from_link("train", NAMES)      # before the controls: the URL's values when they are new, else None
    ...draw the controls (each with persist_state="session", so its value outlives a visit to another page)...
    to_link("train", {name: text}, NAMES)  # after them: the controls' values in the URL

Why not Streamlit's own `bind="query-params"` for every control: a page reads its URL as a link only when the page
is entered (a new session, a link followed, the URL edited by hand). On a rerun (a slider dragged, say) the browser
can still send the URL the last-but-one run wrote, and a bound widget would take that stale value and jump back
while it is dragged (`ui.app.entered` says more; tests/test_pages.py's link tests and the browser tests' slider
drags depend on it). Links also carry what no single widget holds: a lesson's locks, a run compared by its folder
name (not the label a list shows), values refused with a line each. So `bind="query-params"` serves only the
controls whose URL value is their own value and nothing more: the presentation switch and the Step page's tabs.

What one page chooses is its own: a page never reads another page's widget keys. The settings chosen on the Train
page reach the Network, Speed and Lessons pages through `ui.train_form.chosen_settings()`; the Lessons page's
dataset reaches the Board through `ui.lesson_data.lesson_dataset()`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import streamlit as st

from core.links import APP_PARAMS
from ui.app import entered
from ui.common import plain

Query = dict[str, "str | list[str]"]


def _seen(page: str) -> str:
    return f"_url_{page}"


def from_link(page: str, names: Iterable[str], lists: Iterable[str] = ()) -> Query | None:
    """The page's own parameters in the URL ({name: text}, or {name: [texts]} for the names in `lists`) when the
    page should read them: a new session (then possibly {}), or the page entered with parameters other than the
    ones it wrote itself. None otherwise: a rerun, the page's own URL, or the page opened from the menu, when the
    session's values stay as they are."""
    lists = set(lists)
    query = {n: (st.query_params.get_all(n) if n in lists else st.query_params.get(n)) for n in names
             if n in st.query_params}
    new_session = _seen(page) not in st.session_state
    if not new_session and (not entered() or not query or query == st.session_state[_seen(page)]):
        return None
    st.session_state[_seen(page)] = query
    return query


def to_link(page: str, query: Query, names: Iterable[str]) -> None:
    """Write the page's parameters (`names`) as `query` has them: a name missing from it, or empty, leaves the
    URL. Other parameters (the job's token, the presentation switch) stay as they are."""
    kept: Query = {}
    for name in names:
        value = query.get(name)
        if value in (None, "", []):
            if name in st.query_params:
                del st.query_params[name]
            continue
        kept[name] = value
        now = st.query_params.get_all(name) if isinstance(value, list) else st.query_params.get(name)
        if now != value:
            st.query_params[name] = value
    st.session_state[_seen(page)] = kept


def strangers(known: Iterable[str]) -> list[str]:
    """The URL's parameters that are no page's own nor the app's (the job's token, presentation mode)."""
    allowed = {*known, *APP_PARAMS}
    return [name for name in st.query_params if name not in allowed]


def drop(names: Iterable[str]) -> None:
    """Take parameters out of the URL (the ones a page said it could not use)."""
    for name in names:
        if name in st.query_params:
            del st.query_params[name]


def controls_from_link(page: str, controls: dict[str, tuple[str, Callable[[str], Any]]]) -> None:
    """For pages whose parameters are each one control's value ({param: (control's key, parse)}): set the controls
    from the URL when it is a link to read; a value `parse` refuses (ValueError) is dropped with one line."""
    query = from_link(page, controls)
    for param, text in (query or {}).items():
        session_key, parse = controls[param]
        try:
            st.session_state[session_key] = parse(text)
        except ValueError as exc:
            st.warning(f"From the link: {plain(f'{param}={text} was ignored: {exc}.')}")
