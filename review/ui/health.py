"""Managers and admins: is every integration working (database, mail, work queue, knowledge base, LLM,
webhook senders), since when, and when did it last work. A change also notifies them."""

from __future__ import annotations

import streamlit as st

from review.client import ApiError, RevloopClient
from review.ui import common
from review.ui.common import show_error

STATUS_LABEL = {"ok": "OK", "down": "DOWN", "not_configured": "not configured"}


def page(client: RevloopClient) -> None:
    st.title("Integration health")
    try:
        view = client.integrations_health()
    except ApiError as exc:
        show_error(exc)
        return
    if view["healthy"]:
        st.success("Every integration is working.")
    else:
        down = [i["name"].replace("_", " ") for i in view["integrations"] if not i["healthy"]]
        st.error(f"Down: {', '.join(down)}. Managers were notified when it changed.")
    st.dataframe(
        [
            {
                "integration": i["name"].replace("_", " "),
                "status": STATUS_LABEL.get(i["status"], i["status"]),
                "detail": i["detail"],
                "checked (ms)": i["latency_ms"],
                "last worked": (i["last_success_at"] or "never")[:19].replace("T", " "),
                "since": (i["changed_at"] or "")[:19].replace("T", " "),
            }
            for i in view["integrations"]
        ],
        hide_index=True,
        width="stretch",
    )
    st.caption("Checked now; the worker also checks every REVLOOP_HEALTH_CHECK_MINUTES and alerts on a change.")


if __name__ == "__main__":  # Streamlit runs this file as the page (review/ui/pages.py)
    page(common.client())
