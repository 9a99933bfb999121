"""What every page needs: the app's address and folders, text from outside shown as text, presentation mode.

This session's training job and its status line: ui/job_status.py. The runs on disk, as pages load them:
ui/run_files.py. A page's URL: ui/url_state.py.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import streamlit as st

from core.jobs import env_path, get_manager


def app_url() -> str:
    """The app's address as the browser reached it, without a page's path or the query: links start here."""
    from ui.app import app_pages

    base = (st.context.url or "").split("?")[0].rstrip("/")
    for name in (page.url_path for page in app_pages()):
        if name and base.endswith("/" + name):
            return base[: -len(name) - 1]
    return base


LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")


def share_url() -> tuple[str, str]:
    """The app's address for others to open, and "" or a line on why they cannot.

    The teacher's own browser often reaches the server as 127.0.0.1: a server listening on every interface
    (--server.address 0.0.0.0) is shared under this machine's network address instead."""
    base = app_url()
    parts = urlsplit(base)
    if (parts.hostname or "") not in LOOPBACK:
        return base, ""
    listening = str(st.get_option("server.address") or "")
    if listening in LOOPBACK:
        return base, ("This server listens on this computer only: other computers cannot open these links. Start "
                      "it with --server.address 0.0.0.0 (README: Starting a class).")
    ip = network_address()
    if ip is None:
        return base, "This computer has no network address that others could reach."
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{ip}{port}", parts.path, "", "")).rstrip("/"), ""


def network_address() -> str | None:
    """This machine's address on its network (a UDP socket's own end: nothing is sent), or None."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.254.254.254", 1))
            ip = probe.getsockname()[0]
    except OSError:
        try:
            ip = socket.gethostbyname(socket.gethostname())
        except OSError:
            return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def runs_root() -> str:
    return get_manager().runs_root


def data_dir() -> str:
    return env_path("CNN_DASHBOARD_DATA", "data")


_MARKDOWN = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()#+-.!|<>~$"})


def plain(text: str) -> str:
    """Text from outside (a link's values, a file's name) as Streamlit markdown shows it: as text, never a link,
    an image or formatting: every punctuation mark markdown reads is escaped, and a zero-width space breaks what
    it would take for a bare address."""
    text = str(text)
    for literal in ("://", "www.", "@"):  # markdown makes a bare address a link even with its marks escaped
        text = text.replace(literal, literal[0] + "\u200b" + literal[1:])
    return text.translate(_MARKDOWN)


PRESENT = "present"  # the presentation switch's key, and its URL parameter
STATIC_UI = Path(__file__).resolve().parent / "static"
APP_CSS, PRESENTATION_CSS = ((STATIC_UI / name).read_text() for name in ("app.css", "presentation.css"))  # once


def presentation_switch() -> None:
    """The sidebar's presentation switch: larger text and charts, no terminal commands (kept in the URL)."""
    with st.sidebar:
        st.toggle("Presentation mode", key=PRESENT, bind="query-params",
                  help="Larger text and charts for a projector; hides the terminal commands.")
    css = APP_CSS + (PRESENTATION_CSS if presenting() else "")
    st.html(f"<style>{css}</style>")


def presenting() -> bool:
    return bool(st.session_state.get(PRESENT, False))


def held(session_key: str, options: list | None = None, default=None, many: bool = False) -> dict:
    """A keyed control's value in this session, as the control's own default too (`index` where it takes
    `options`): the kwargs to give it. The browser can mount a control afresh (a click while a run is still drawn):
    it then shows, and sends back, the control's default. Without this the Step page's settings jumped to every
    control's first option or minimum, and trained that (tests/test_browser_step.py met it in about one run of
    three). `default`: the control's value before the session has one; `many`: a multiselect's."""
    value = st.session_state.get(session_key, default)
    if value is None:
        return {}
    if many:  # a multiselect: its chosen options, as its default
        return dict(default=[v for v in value if options is None or v in options])
    if options is None:
        return dict(value=value)
    return dict(index=list(options).index(value)) if value in options else {}
