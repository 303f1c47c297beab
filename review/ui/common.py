"""Shared pieces of the review app: the signed-in client, API error handling, time formatting."""

from __future__ import annotations

import datetime as dt
import os

import streamlit as st

from review.client import ApiError, RevloopClient

GRADE_COLOUR = {"A": "green", "B": "blue", "C": "orange", "D": "gray"}
SESSION_KEYS = ("token", "me", "selected", "icp_backtest", "icp_draft", "opened", "bulk_confirm")


def api_url() -> str:
    host = os.environ.get("REVLOOP_API_HOST", "127.0.0.1")
    port = os.environ.get("REVLOOP_API_PORT", "8000")
    return os.environ.get("REVLOOP_API_URL", f"http://{host}:{port}")


def client() -> RevloopClient:
    return RevloopClient(st.session_state["api_url"], st.session_state["token"])


def sign_out(message: str | None = None) -> None:
    for key in SESSION_KEYS:
        st.session_state.pop(key, None)
    if message:
        st.session_state["login_notice"] = message


def show_error(exc: ApiError, prefix: str = "") -> None:
    """An API error for the user; an expired session sends them back to sign in."""
    if exc.status_code == 401:
        sign_out("Your session expired or was ended. Sign in again.")
        st.rerun()
    text = f"{prefix}{exc.message}"
    if exc.fields:
        text += "\n" + "\n".join(f"- **{field}**: {msg}" for field, msg in exc.fields.items())
    st.error(text)


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
