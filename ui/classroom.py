"""This browser in a class: who it is (its owner token), whether it is the teacher's, and what it may control.

    owner_id()          # the digest every job and run this browser starts carries (core/classroom.py)
    read_teacher_key()  # dashboard.py, first on every page: ?teacher=KEY makes this session the teacher's
    is_teacher()
    may_control(job)    # Pause, Stop: the browser that started the job, or the teacher
    may_change(meta)    # a run's Delete, title and note: the browser that started it, or the teacher

The owner token is a cookie the server gives every browser on its first request (OwnerCookie, below); a
reload sends it again, so ownership outlives a reload, and a URL copied to another browser carries none of it.
"""

from __future__ import annotations

import secrets

import streamlit as st
from starlette.requests import Request

from core.classroom import OWNER_COOKIE, is_teacher_key, new_owner, owner_digest, valid_owner

TEACHER_PARAM = "teacher"


def owner_id() -> str:
    """This browser's owner digest: from its cookie, else (cookies refused, or a test) one for this session."""
    if "_owner" not in st.session_state:
        cookie = (st.context.cookies or {}).get(OWNER_COOKIE)
        st.session_state["_owner"] = owner_digest(cookie if valid_owner(cookie) else new_owner())
    return st.session_state["_owner"]


def read_teacher_key() -> None:
    """`?teacher=KEY` in the URL: the right key makes this session the teacher's; a wrong one gives no powers and
    says so in one line, with no hint of the key. The key then leaves the URL at once, so no link copied from the
    address bar carries it."""
    if TEACHER_PARAM not in st.query_params:
        return
    given = st.query_params.get(TEACHER_PARAM, "")
    del st.query_params[TEACHER_PARAM]
    if is_teacher_key(given):
        st.session_state["_teacher"] = True
        st.toast("Teacher: you can stop any job, clear the board and hide names.", icon=":material/school:")
    else:
        st.session_state["_teacher"] = False
        st.session_state["_teacher_refused"] = True


def teacher_notice() -> None:
    """The wrong key's one line, on the page it was given to."""
    if st.session_state.pop("_teacher_refused", False):
        st.warning("That teacher key is not right: this browser has no teacher powers.")


def is_teacher() -> bool:
    return bool(st.session_state.get("_teacher"))


def may_control(job) -> bool:
    return job is not None and (is_teacher() or job.owned_by(owner_id()))


def may_change(meta: dict) -> bool:
    """A run started by nobody in particular (on the command line, or before names) is everyone's, as it was."""
    owner = meta.get("owner", "")
    return is_teacher() or not owner or secrets.compare_digest(str(owner), owner_id())


class OwnerCookie:
    """ASGI middleware of the app's server: a browser that has no owner token gets one, as a cookie, on its first
    request (the page itself), so the websocket it opens next already carries it (st.context.cookies). HttpOnly:
    no script on the page reads it; SameSite=Lax: no other site's page sends it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or valid_owner(Request(scope).cookies.get(OWNER_COOKIE)):
            await self.app(scope, receive, send)
            return
        cookie = f"{OWNER_COOKIE}={new_owner()}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly".encode()

        async def with_cookie(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, with_cookie)
