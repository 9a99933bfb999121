"""The app's pages and navigation, shared by the entry script and the pages' guard.

Streamlit still knows an older way to build a multipage app: every script in a `pages/` folder beside the
entry script becomes a page of an automatic menu. That way is switched off only once a script run calls
`st.navigation`, so on the first loads after the server starts (several at once on a busy machine) it
can run a page script directly: the sidebar then shows the automatic list (dashboard, data, home, ...)
and none of the app's own sidebar. Each page starts with `require_app()`, which notices that and reruns
the load through dashboard.py.
"""

from __future__ import annotations

import sys
import threading
import traceback
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
_entry = threading.local()  # set while dashboard.py runs a page, in the script run's own thread


def app_pages() -> list:
    return [
        # Material icons: they ship with Streamlit; emoji were empty boxes where no emoji font is installed
        st.Page(ROOT / "pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page(ROOT / "pages/lessons.py", title="Lessons", icon=":material/school:"),
        st.Page(ROOT / "pages/train.py", title="Train", icon=":material/fitness_center:"),
        st.Page(ROOT / "pages/step.py", title="Step", icon=":material/biotech:"),
        st.Page(ROOT / "pages/board.py", title="Board", icon=":material/leaderboard:"),
        st.Page(ROOT / "pages/results.py", title="Results", icon=":material/target:"),
        st.Page(ROOT / "pages/runs.py", title="Runs", icon=":material/folder_open:"),
        st.Page(ROOT / "pages/network.py", title="Network", icon=":material/hub:"),
        st.Page(ROOT / "pages/data.py", title="Data", icon=":material/image:"),
        st.Page(ROOT / "pages/own.py", title="Own pictures", icon=":material/add_photo_alternate:"),
        st.Page(ROOT / "pages/speed.py", title="Speed", icon=":material/speed:"),
    ]


def run_page(page) -> None:
    """Run the chosen page as dashboard.py's own (see require_app). Whatever goes wrong in it, the browser
    shows one short line, never a traceback with the server's paths; the server's log has the details."""
    _entry.on = True
    # a page's URL is read as a link only when the page is entered (a new session, a link from another
    # page): on a rerun the browser can still send the URL the last-but-one run wrote, and reading that
    # would move a slider back while it is being dragged
    st.session_state["_entered"] = st.session_state.get("_page") != page.url_path
    st.session_state["_page"] = page.url_path
    try:
        page.run()
    except Exception as exc:  # noqa: BLE001 - st.rerun and st.stop are not Exceptions and pass through
        print(f"cnn-dashboard: the {page.title} page failed:\n{traceback.format_exc()}", file=sys.stderr,
              flush=True)
        st.error(f"This page could not be drawn ({type(exc).__name__}). The server's log has the details; "
                 "another run, or a reload, may work.")
    finally:
        _entry.on = False


def entered() -> bool:
    """Whether this run is the first of a visit to the page (see run_page); a page run on its own: yes."""
    return st.session_state.get("_entered", True)


def require_app() -> None:
    """Called first by every page: a page run without dashboard.py is run again through it (once a session:
    a page run on its own by a test, say, then goes on as it is)."""
    if getattr(_entry, "on", False) or st.session_state.get("_app_rerun"):
        return
    st.session_state["_app_rerun"] = True
    st.navigation(app_pages(), position="hidden")  # switches Streamlit's automatic pages/ menu off
    st.rerun()
