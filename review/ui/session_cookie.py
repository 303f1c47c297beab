"""A reload keeps the session: the API session token is kept in a browser cookie and read back on a new page load.

The cookie is SameSite=Strict (Secure over https), expires when the API session does, and is cleared on sign-out
or when the API refuses the token; the API stays the authority (a restored token is checked with GET /v1/me before
it is used). Streamlit cannot set response headers, so the cookie is written by a two-line script and is not
HttpOnly: the app never renders lead or model text as HTML (common.md), which is what keeps scripts out.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import streamlit as st

from review.client import ApiError, RevloopClient
from review.ui.common import api_url

COOKIE = "revloop_session"
_TOKEN = re.compile(r"^[A-Za-z0-9_\-.~]{8,512}$")  # what a session token looks like: nothing that could break out


def restore() -> bool:
    """Sign in from the cookie when this browser session has no token yet; True when it did."""
    state = st.session_state
    if "token" in state:
        return False
    token = st.context.cookies.get(COOKIE)  # not a str outside a real browser session (AppTest)
    if not isinstance(token, str) or not _TOKEN.match(token) or token == state.get("cookie_refused"):
        return False
    url = api_url()
    try:
        me = RevloopClient(url, token).me()
    except ApiError as exc:
        state["cookie_refused"] = token  # the cookies of this connection stay as they were: never try it again
        if exc.status_code == 401:
            state["cookie_op"] = "clear"
        return False
    state.update(api_url=url, token=token, me=me.model_dump())
    return True


def remember(token: str, expires_at: dt.datetime) -> None:
    st.session_state["cookie_op"] = ("set", token, expires_at)


def sync() -> None:
    """Write what remember() or common.sign_out() asked for, once."""
    op = st.session_state.pop("cookie_op", None)
    if op is None:
        return
    if op == "clear":
        value, expires = "", "Thu, 01 Jan 1970 00:00:00 GMT"
    else:
        _, token, expires_at = op
        if not _TOKEN.match(token):
            return
        value, expires = token, expires_at.astimezone(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    cookie = json.dumps(f"{COOKIE}={value}; Path=/; Expires={expires}; SameSite=Strict")
    st.html(
        "<script>document.cookie = " + cookie + " + (location.protocol === 'https:' ? '; Secure' : '');</script>",
        unsafe_allow_javascript=True,
    )
