"""The queue: my / team / exception views, filters, priority order, SLA countdown, bulk approval."""

from __future__ import annotations

import streamlit as st

from review.client import ApiError, RevloopClient
from review.ui import common
from review.ui import item as item_page
from review.ui.common import md, show_error, sla_label

VIEWS = {"My queue": "my", "Team queue": "team", "Exception queue": "exception", "Everything": None}
STATUSES = [
    "pending",
    "approved",
    "send_failed",
    "delivery_unknown",
    "sent",
    "done",
    "rejected",
    "cancelled",
    "failed",
    "all",
]
KINDS = ["any", "email", "call_task"]
GRADES = ["any", "A", "B", "C", "D"]
SLA_STATES = {"any": None, "breached": "breached", "due soon": "due_soon", "on track": "on_track", "no SLA": "none"}
DECIDERS = ("closer", "manager", "admin")


def _filters(client: RevloopClient, me: dict) -> dict:
    view_label = st.radio("Queue", list(VIEWS), horizontal=True, key="view")
    cols = st.columns(6)
    status = cols[0].selectbox("Status", STATUSES, key="status_filter")
    kind = cols[1].selectbox("Kind", KINDS, key="kind_filter")
    grade = cols[2].selectbox("Grade", GRADES, key="grade_filter")
    sla = cols[3].selectbox("SLA", list(SLA_STATES), key="sla_filter")
    try:
        people = client.assignees()
    except ApiError as exc:
        show_error(exc)
        people = []
    assignee = cols[4].selectbox("Assignee", ["anyone", "unassigned", *people], key="assignee_filter")
    snoozed = cols[5].checkbox("Snoozed only", key="snoozed_filter")
    return {
        "view_label": view_label,
        "status": None if status == "all" else status,
        "view": VIEWS[view_label],
        "kind": None if kind == "any" else kind,
        "grade": None if grade == "any" else grade,
        "sla": SLA_STATES[sla],
        "assignee": None if assignee == "anyone" else assignee,
        "snoozed": snoozed,
    }


def _bulk_approve(client: RevloopClient, items: list) -> None:
    candidates = {i.id: i for i in items if i.low_risk}
    if not candidates:
        return
    with st.expander(f"Bulk approve ({len(candidates)} low-risk item(s): no flags, main queue, grade A-C)"):
        chosen = st.multiselect(
            "Select drafts to approve as written",
            list(candidates),
            format_func=lambda i: f"#{i} · {candidates[i].grade} · {candidates[i].draft.get('subject', '')[:60]}",
            key="bulk_ids",
        )
        if chosen and st.button(f"Approve {len(chosen)} selected", key="bulk_start"):
            st.session_state["bulk_confirm"] = list(chosen)
        pending = st.session_state.get("bulk_confirm")
        if pending:
            st.warning(
                f"Approve and send {len(pending)} draft(s) exactly as written: "
                + ", ".join(f"#{i}" for i in pending)
                + "? Each can still be undone during the undo window."
            )
            yes, no = st.columns(2)
            if yes.button("Yes, approve them", type="primary", key="bulk_confirm_yes"):
                st.session_state.pop("bulk_confirm", None)
                try:
                    result = client.bulk_approve(pending)
                except ApiError as exc:
                    show_error(exc, "Not approved: ")
                    return
                skipped = result["skipped"]
                st.session_state["flash"] = f"Approved {len(result['approved'])} item(s)" + (
                    "; skipped " + "; ".join(f"#{k}: {md(v)}" for k, v in skipped.items()) if skipped else ""
                )
                st.session_state.pop("bulk_ids", None)
                st.rerun()
            if no.button("Cancel", key="bulk_confirm_no"):
                st.session_state.pop("bulk_confirm", None)
                st.rerun()


def page(client: RevloopClient, me: dict) -> None:
    st.title("Review queue")
    if flash := st.session_state.pop("flash", None):
        st.success(flash)
    if follow := st.session_state.pop("follow_item", None):  # set by a decision: show that item next
        st.session_state["status_filter"], st.session_state["selected"] = follow
    filters = _filters(client, me)
    view_label = filters.pop("view_label")
    try:
        result = client.review_items(limit=200, **filters)
    except ApiError as exc:
        show_error(exc)
        return
    st.caption(f"{result.total} item(s) {filters['status'] or ''} · {view_label} · most urgent first")
    if not result.items:
        st.info(
            "Nothing here. New leads appear as soon as the worker has drafted them."
            if filters["view"] != "my"
            else "Nothing assigned to you. Take items from the team queue."
        )
        return
    st.dataframe(
        [
            {
                "id": i.id,
                "grade": i.grade,
                "score": i.brief.get("score"),
                "SLA": sla_label(i.sla_due_at, i.sla_state, i.status),
                "assignee": i.assignee or "team",
                "kind": i.kind,
                "to": i.draft.get("to"),
                "subject": i.draft.get("subject"),
                "flags": len(i.guard_flags),
                "queue": i.queue,
                "status": i.status,
            }
            for i in result.items
        ],
        hide_index=True,
        width="stretch",
    )
    if me["role"] in DECIDERS and filters["status"] == "pending":
        _bulk_approve(client, result.items)
    labels = {
        i.id: f"#{i.id} · {i.grade or '?'} {i.brief.get('score', '')} · "
        f"{sla_label(i.sla_due_at, i.sla_state, i.status)} · {i.draft.get('subject', '')[:60]}"
        for i in result.items
    }
    ids = list(labels)
    if st.session_state.get("selected") not in ids:  # decided items leave the pending list
        st.session_state.pop("selected", None)
    selected = st.selectbox("Open item", ids, format_func=labels.get, key="selected")
    if selected is not None:
        st.divider()
        item_page.page(client, me, selected)


if __name__ == "__main__":  # Streamlit runs this file as the page (review/ui/pages.py)
    page(common.client(), st.session_state["me"])
