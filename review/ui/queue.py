"""The inbox: the queue on the left, the open item on the right (my / team / exception views, filters, priority
order, SLA countdown, bulk approval).

One item is open at a time and it is named in one place, ``st.session_state["selected"]`` (the "Open item" box),
which the table's row click, Previous / Next, a decision and the URL's ``?item=<id>`` all set, so the box, the
table's ▶ marker, the URL and the detail always name the same item. A decision never touches the filters: the item
leaves the list and the next one in the list's order opens by itself.
"""

from __future__ import annotations

import datetime as dt
import functools

import streamlit as st

from review.client import ApiError, RevloopClient
from review.ui import common
from review.ui import item as item_page
from review.ui.common import md, relative, show_error, sla_label

VIEWS = {"My queue": "my", "Team queue": "team", "Exception queue": "exception", "Everything": None}
VIEW_PARAMS = {value or "all": label for label, value in VIEWS.items()}  # ?view=my|team|exception|all
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
NEXT_KEY, PREVIOUS_KEY = "N", "P"


def _filters(client: RevloopClient) -> dict:
    view_param = st.query_params.get("view")
    if "view" not in st.session_state and view_param in VIEW_PARAMS:  # a reload or a link keeps the view
        st.session_state["view"] = VIEW_PARAMS[view_param]
    top = st.columns([4, 2, 1], vertical_alignment="bottom")
    view_label = top[0].radio("Queue", list(VIEWS), horizontal=True, key="view")
    status = top[1].selectbox("Status", STATUSES, key="status_filter")
    with top[2].popover("Filters", width="stretch"):
        kind = st.selectbox("Kind", KINDS, key="kind_filter")
        grade = st.selectbox("Grade", GRADES, key="grade_filter")
        sla = st.selectbox("SLA", list(SLA_STATES), key="sla_filter")
        try:
            people = client.assignees()
        except ApiError as exc:
            show_error(exc)
            people = []
        assignee = st.selectbox("Assignee", ["anyone", "unassigned", *people], key="assignee_filter")
        snoozed = st.checkbox("Snoozed only", key="snoozed_filter")
    st.query_params["view"] = VIEWS[view_label] or "all"
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


def next_after(decided: int, before: list[int], now: list[int]) -> int | None:
    """The item to open after `decided` left the list: the next one after it in the order the closer saw,
    still in the list; else the one before it; else the top of the list."""
    if decided in before:
        at = before.index(decided)
        for candidate in [*before[at + 1 :], *reversed(before[:at])]:
            if candidate in now:
                return candidate
    return now[0] if now else None


def _resolve_selection(ids: list[int]) -> int | None:
    """Which item is open on this run (see the module docstring); runs before the "Open item" box is drawn."""
    state = st.session_state
    wanted = state.get("selected")
    if (decided := state.pop("advance_from", None)) is not None:
        wanted = next_after(decided, state.get("queue_ids", []), ids)
        state.pop("pinned", None)
    if (asked := state.pop("open_item", None)) is not None:  # a redraft, an undo, a notification: open that one
        wanted = state["pinned"] = asked
    param = st.query_params.get("item")
    if param and param != state.get("item_param"):  # a deep link or a reload: the URL names the item
        state["item_param"] = param
        if param.isdigit():
            wanted = state["pinned"] = int(param)
    if wanted is None or (wanted not in ids and wanted != state.get("pinned")):  # none yet, or decided elsewhere
        wanted = ids[0] if ids else None
    state["selected"] = wanted
    state["queue_ids"] = ids
    if wanted is None:
        st.query_params.pop("item", None)
        state.pop("item_param", None)
    else:
        st.query_params["item"] = state["item_param"] = str(wanted)
    return wanted


def _step(offset: int) -> None:
    ids, current = st.session_state.get("queue_ids", []), st.session_state.get("selected")
    if not ids:
        return
    at = ids.index(current) if current in ids else -1 if offset > 0 else len(ids)
    st.session_state["selected"] = ids[max(0, min(len(ids) - 1, at + offset))]


def _row_clicked(table_key: str) -> None:
    rows = st.session_state[table_key].selection.rows
    ids = st.session_state.get("queue_ids", [])
    if rows and rows[0] < len(ids):
        st.session_state["selected"] = ids[rows[0]]


@st.fragment(run_every=2)
def undo_banner(client: RevloopClient) -> None:
    """The last approval, counting down, with Undo (U) while nothing is sent; the closer is on the next item."""
    item_id = st.session_state.get("last_approved")
    if item_id is None:
        return
    if final := st.session_state.get("last_approved_final"):  # shown until the closer's next action
        st.success(final)
        return
    try:
        item = client.review_item(item_id)
    except ApiError as exc:
        show_error(exc)
        return
    if item.status == "approved" and item.undo_until is None:
        st.info(f"Sending #{item.id} now…")
        return
    if item.status != "approved":
        to = (item.result or {}).get("to")
        final = f"#{item.id} sent to {md(to)}." if item.status == "sent" and to else f"#{item.id} is {item.status}."
        st.session_state["last_approved_final"] = final
        st.success(final)
        return
    left = item.undo_until - dt.datetime.now(dt.UTC)
    text, button = st.columns([4, 1])
    text.warning(f"Approved #{item.id}. Sending in {relative(left)} — you can still undo.")
    if button.button("Undo", key=f"undo_{item.id}", type="primary", shortcut="U"):
        try:
            restored = client.undo(item.id)
        except ApiError as exc:
            show_error(exc, "Too late: ")
            return
        edited = bool(item.decision and item.decision.edited)
        st.session_state.pop("last_approved", None)
        st.session_state["flash"] = f"Approval of #{item.id} undone: nothing was sent; " + (
            "the draft is back with your edit." if edited else "the draft is back."
        )
        st.session_state["open_item"] = restored.id
        st.rerun(scope="app")


def _table(items: list, selected: int | None) -> None:
    key = f"queue_table_{selected}"  # a new table per open item: a stale row highlight never names another item
    st.dataframe(
        [
            {
                "item": f"▶ #{i.id}" if i.id == selected else f"#{i.id}",
                "grade": i.grade,
                "score": i.brief.get("score"),
                "SLA": sla_label(i.sla_due_at, i.sla_state, i.status),
                "subject": i.draft.get("subject"),
                "assignee": i.assignee or "team",
                "kind": i.kind,
                "flags": len(i.guard_flags) + len(i.brief.get("flags") or []),
                "queue": i.queue,
                "status": i.status,
            }
            for i in items
        ],
        hide_index=True,
        width="stretch",
        height=min(38 + 35 * len(items), 560),
        key=key,
        on_select=functools.partial(_row_clicked, key),
        selection_mode="single-row",
    )


def page(client: RevloopClient, me: dict) -> None:
    st.title("Review queue")
    if flash := st.session_state.pop("flash", None):
        st.success(flash)
    if follow := st.session_state.pop("follow_item", None):  # (status, id): a link that names an item's state
        st.session_state["status_filter"], st.session_state["open_item"] = follow
    filters = _filters(client)
    view_label = filters.pop("view_label")
    try:
        result = client.review_items(limit=200, **filters)
    except ApiError as exc:
        show_error(exc)
        return
    ids = [i.id for i in result.items]
    selected = _resolve_selection(ids)
    if st.session_state.pop("last_approved_final", None):  # its outcome was shown: the closer has moved on
        st.session_state.pop("last_approved", None)
    if st.session_state.get("last_approved") is not None:
        undo_banner(client)
    listing, detail = st.columns([2, 3], gap="medium")
    with listing:
        st.caption(f"{result.total} item(s) {filters['status'] or ''} · {view_label} · most urgent first")
        if result.items:
            _table(result.items, selected)
        else:
            st.info(
                "Nothing here. New leads appear as soon as the worker has drafted them."
                if filters["view"] != "my"
                else "Nothing assigned to you. Take items from the team queue."
            )
        if result.items and me["role"] in DECIDERS and filters["status"] == "pending":
            _bulk_approve(client, result.items)
    if selected is None:
        return
    with detail:
        labels = {
            i.id: f"#{i.id} · {i.grade or '?'} {i.brief.get('score', '')} · "
            f"{sla_label(i.sla_due_at, i.sla_state, i.status)} · {i.draft.get('subject', '')[:60]}"
            for i in result.items
        }
        options = ids if selected in ids else [selected, *ids]
        box, previous, following = st.columns([4, 1, 1], vertical_alignment="bottom")
        box.selectbox(
            "Open item", options, format_func=lambda i: labels.get(i, f"#{i} (not in this list)"), key="selected"
        )
        at = ids.index(selected) if selected in ids else None
        previous.button(
            "Prev",
            key="previous_item",
            shortcut=PREVIOUS_KEY,
            on_click=_step,
            args=(-1,),
            disabled=at == 0 or not ids,
            width="stretch",
        )
        following.button(
            "Next",
            key="next_item",
            shortcut=NEXT_KEY,
            on_click=_step,
            args=(1,),
            disabled=at == len(ids) - 1 or not ids,
            width="stretch",
        )
        item_page.page(client, me, selected)


if __name__ == "__main__":  # Streamlit runs this file as the page (review/ui/pages.py)
    page(common.client(), st.session_state["me"])
