"""Admin: the audit trail, filtered by actor, item and time."""

from __future__ import annotations

import datetime as dt

import streamlit as st

from review.client import ApiError, RevloopClient
from review.ui import common
from review.ui.common import show_error

ENTITY_TYPES = ["any", "review_item", "lead", "user", "api_token", "icp_rubric", "scoring_model"]


def readable(value: object) -> str:
    """An audit record's before/after as people read it: "status: pending → ..." pairs, not a Python dict."""
    if value is None or value == {}:
        return ""
    if isinstance(value, dict):
        return "; ".join(f"{key.replace('_', ' ')}: {readable(v) or '—'}" for key, v in value.items())
    if isinstance(value, list):
        return ", ".join(readable(v) for v in value)
    return str(value)


def page(client: RevloopClient) -> None:
    st.title("Audit")
    cols = st.columns(4)
    actor = cols[0].text_input("Actor (exact, e.g. closer:Casey Jordan)", key="audit_actor")
    action = cols[1].text_input("Action starts with (e.g. review_item.)", key="audit_action")
    entity_type = cols[2].selectbox("Entity", ENTITY_TYPES, key="audit_entity_type")
    entity_id = cols[3].text_input("Entity id (e.g. an item number)", key="audit_entity_id")
    today = dt.datetime.now(dt.UTC).date()
    window = st.date_input("Between (UTC days)", value=(today - dt.timedelta(days=7), today), key="audit_window")
    since = until = None
    if isinstance(window, tuple | list) and len(window) == 2:
        since = dt.datetime.combine(window[0], dt.time(), tzinfo=dt.UTC)
        until = dt.datetime.combine(window[1] + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    try:
        page_ = client.audit_events(
            actor=actor.strip(),
            action=action.strip(),
            entity_type=None if entity_type == "any" else entity_type,
            entity_id=entity_id.strip(),
            since=since,
            until=until,
            limit=500,
        )
    except ApiError as exc:
        show_error(exc)
        return
    st.caption(f"{page_['total']} event(s); newest first (up to 500 shown)")
    st.dataframe(
        [
            {
                "at": e["at"][:19].replace("T", " "),
                "actor": e["actor"],
                "action": e["action"],
                "entity": f"{e['entity_type']} {e['entity_id']}",
                "before": readable(e["before"]),
                "after": readable(e["after"]),
            }
            for e in page_["items"]
        ],
        hide_index=True,
        width="stretch",
    )


if __name__ == "__main__":  # Streamlit runs this file as the page (review/ui/pages.py)
    page(common.client())
