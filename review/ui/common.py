"""Shared pieces of the review app: the signed-in client, API error handling, time formatting, and md() for
showing untrusted text inside Markdown."""

from __future__ import annotations

import datetime as dt
import os
import re

import streamlit as st

from review.client import ApiError, RevloopClient

GRADE_COLOUR = {"A": "green", "B": "blue", "C": "orange", "D": "gray"}
SESSION_KEYS = (
    "token",
    "me",
    "selected",
    "icp_backtest",
    "icp_draft",
    "opened",
    "bulk_confirm",
    "last_approved",
    "last_approved_final",
    "queue_ids",
    "pinned",
    "redrafted",
    "api_client",
)


def api_url() -> str:
    host = os.environ.get("REVLOOP_API_HOST", "127.0.0.1")
    port = os.environ.get("REVLOOP_API_PORT", "8000")
    return os.environ.get("REVLOOP_API_URL", f"http://{host}:{port}")


def client() -> RevloopClient:
    """The signed-in user's client, one per browser session: building an HTTP client loads the TLS trust store
    (about 0.15 s here), which every rerun would otherwise pay."""
    key = (st.session_state["api_url"], st.session_state["token"])
    cached = st.session_state.get("api_client")
    if cached is None or cached[0] != key:
        cached = st.session_state["api_client"] = (key, RevloopClient(*key))
    return cached[1]


def sign_out(message: str | None = None) -> None:
    """Forget the session here and in the browser's cookie (session_cookie): this connection never restores
    that token again, even though its cookies are the ones it was opened with."""
    if token := st.session_state.get("token"):
        st.session_state["cookie_refused"] = token
    st.session_state["cookie_op"] = "clear"
    for key in SESSION_KEYS:
        st.session_state.pop(key, None)
    if message:
        st.session_state["login_notice"] = message


# Lead text and model output (summaries, research notes, evidence, flags, drafts, reasons, names, server replies)
# are untrusted: in the app they are shown with st.text / st.code / disabled inputs / dataframes, or, where a
# Markdown element mixes our labels with them (st.markdown, st.caption, st.info/warning/error/success, st.metric,
# widget labels), through md(), so that `![x](http://...)`, `[x](...)`, `<img ...>`, autolinks, :color[...]
# directives and $math$ are shown as the characters they are and the browser fetches nothing. Streamlit turns
# bare URLs into links after escapes are read (a backslash does not stop it), so "://" and "www." get an
# invisible WORD JOINER instead; email addresses stay mailto links (their text is their target).
_MD_ANYWHERE = re.compile(r"[\\`*\[\]<>|~$&]")  # inline syntax, HTML, entities
_MD_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")  # emphasis; snake_case stays readable
_MD_SHORTCODE = re.compile(r":(?=[\w/+-]+:)")  # :emoji: and :material/icon: shortcodes
_MD_AUTOLINK = re.compile(r"(?i)(?<=:)(?=//)|(?<=\bwww)(?=\.)")  # http://... and www.... links
WORD_JOINER = "\u2060"
_MD_LINE_START = re.compile(r"^( {0,3})(#{1,6}(?=\s|$)|[-+=](?=\s|$)|[-=]+\s*$|\d{1,9}(?=[.)](?:\s|$)))", re.M)


def md(value: object) -> str:
    """`value` as literal text inside Markdown: every character that Markdown (or Streamlit's extensions) would
    read as syntax is backslash-escaped, URLs are not made links, and line breaks are kept. Use it for every
    untrusted value in a Markdown element; words, numbers, names, emails and snake_case look unchanged."""
    text = _MD_ANYWHERE.sub(r"\\\g<0>", str(value))
    text = _MD_UNDERSCORE.sub(r"\\_", text)
    text = _MD_SHORTCODE.sub(r"\\:", text)
    text = _MD_AUTOLINK.sub(WORD_JOINER, text)
    text = _MD_LINE_START.sub(_escape_line_start, text)
    return text.replace("\r\n", "\n").replace("\n", "  \n")


def _escape_line_start(match: re.Match[str]) -> str:
    indent, mark = match.group(1), match.group(2)
    if mark[0].isdigit():  # "1. " / "1) " would start a numbered list: escape the dot or parenthesis
        return f"{indent}{mark}\\"
    return f"{indent}\\{mark}"


def show_error(exc: ApiError, prefix: str = "") -> None:
    """An API error for the user (its message and fields can quote what was typed or drafted: shown literally);
    an expired session sends them back to sign in."""
    if exc.status_code == 401:
        sign_out(SESSION_ENDED)
        st.rerun()
    st.error(error_text(exc, prefix))


SESSION_ENDED = "Your session expired or was ended. Sign in again."


def error_text(exc: ApiError, prefix: str = "") -> str:
    """An API error's message and fields as Markdown, every quoted value shown literally."""
    text = f"{prefix}{md(exc.message)}"
    if exc.fields:
        text += "\n" + "\n".join(f"- **{md(field)}**: {md(msg)}" for field, msg in exc.fields.items())
    return text


def relative(delta: dt.timedelta) -> str:
    seconds = int(abs(delta.total_seconds()))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{seconds // 60} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} d"


def sla_label(
    sla_due_at: dt.datetime | None, state: str, status: str = "pending", now: dt.datetime | None = None
) -> str:
    """'12 min left', 'due soon: 3 min left', 'BREACHED 5 min ago'; decided items: 'met' or 'missed'."""
    if sla_due_at is None:
        return "no SLA"
    if status != "pending":
        return "missed" if state == "breached" else "met"
    left = sla_due_at - (now or dt.datetime.now(dt.UTC))
    if state == "breached":
        return f"BREACHED {relative(left)} ago"
    if state == "due_soon":
        return f"due soon: {relative(left)} left"
    return f"{relative(left)} left"
