"""Everyone: my notifications (new A leads, SLAs about to breach or breached, sends that failed, deliveries in
doubt, integrations down or back), newest first, each linked to its item; mark one or all read. Below them,
what I am told and how (in-app, email per kind; quiet hours) and, for managers, what the team webhook posts."""

from __future__ import annotations

import datetime as dt
from zoneinfo import available_timezones

import streamlit as st

from review.client import ApiError, RevloopClient
from review.ui import common, pages
from review.ui.common import md, show_error

KIND_LABEL = {
    "new_a_lead": "New A lead for you",
    "sla_at_risk": "SLA about to breach",
    "sla_breached": "SLA breached",
    "send_failed": "Send failed",
    "delivery_unknown": "Delivery unknown",
    "integration_down": "Integration down",
    "integration_recovered": "Integration recovered",
    "taken_over": "Item taken over",
}
SEVERITY_ICON = {"critical": ":material/error:", "warning": ":material/warning:", "info": ":material/info:"}
# The queue filter a notification's item is shown under: the state it was reported in.
ITEM_STATUS = {
    "send_failed": "send_failed",
    "delivery_unknown": "delivery_unknown",
    "new_a_lead": "pending",
    "sla_at_risk": "pending",
}


def _label(kind: str) -> str:
    return KIND_LABEL.get(kind, kind.replace("_", " "))


def _inbox(client: RevloopClient) -> None:
    only_unread = st.toggle("Unread only", value=True, key="notifications_unread")
    try:
        view = client.notifications(unread=only_unread)
    except ApiError as exc:
        show_error(exc)
        return
    st.caption(f"{view['unread']} unread")
    if view["unread"] and st.button("Mark all read", key="notifications_read_all"):
        client.read_all_notifications()
        st.rerun()
    if not view["items"]:
        st.info("Nothing to see: no notifications." if not only_unread else "All caught up.")
    for note in view["items"]:
        with st.container(border=True):
            st.markdown(f"{SEVERITY_ICON.get(note['severity'], '')} **{md(_label(note['kind']))}**")
            # Plain text, never Markdown: a title quotes an email subject or a company, a body a server's reply.
            st.text(note["title"])
            if note["body"]:
                st.text(note["body"])
            cols = st.columns([3, 1, 1])
            cols[0].caption(f"{note['created_at'][:16].replace('T', ' ')} UTC")
            if note["entity_type"] == "review_item" and cols[1].button(
                f"Open item #{note['entity_id']}", key=f"open_{note['id']}"
            ):
                if note["read_at"] is None:
                    client.read_notification(note["id"])
                status = ITEM_STATUS.get(note["kind"], "all")
                st.session_state["follow_item"] = (status, int(note["entity_id"]))
                st.session_state["view"] = "Everything"  # the item may be someone else's or the team's
                st.switch_page(pages.PAGES[0].page())
            if note["read_at"] is None and cols[2].button("Mark read", key=f"read_{note['id']}"):
                client.read_notification(note["id"])
                st.rerun()


def _refused(exc: ApiError) -> None:
    """One message naming each refused field (not the summary and the list of the same thing)."""
    if exc.status_code == 401 or not exc.fields:
        show_error(exc, "Not saved: ")
        return
    reasons = "; ".join(f"{field}: {why.removeprefix('Value error, ')}" for field, why in exc.fields.items())
    st.error(f"Not saved: {md(reasons)}")


def _hhmm(value: str) -> dt.time:
    return dt.time(int(value[:2]), int(value[3:]))


@st.cache_data
def _zones() -> list[str]:
    return sorted(z for z in available_timezones() if "/" in z or z == "UTC")


def _preferences(client: RevloopClient) -> None:
    try:
        prefs = client.notification_preferences()
    except ApiError as exc:
        show_error(exc)
        return
    st.caption(f"Email goes to {md(prefs['email'])} (your user record). The team webhook is set by managers.")
    required = set(prefs["required_in_app"])
    with st.form("notification_preferences", clear_on_submit=False, border=True):
        head = st.columns([3, 1, 1])
        head[0].markdown("**Tell me about**")
        head[1].markdown("**In the app**")
        head[2].markdown("**By email**")
        chosen: dict[str, dict[str, bool]] = {}
        for kind, channels in prefs["channels"].items():
            row = st.columns([3, 1, 1])
            row[0].write(_label(kind))
            in_app = row[1].checkbox(
                "in app",
                value=channels["in_app"],
                key=f"pref_{kind}_in_app",
                disabled=kind in required,
                help="Always shown: someone must act on it" if kind in required else None,
                label_visibility="collapsed",
            )
            email = row[2].checkbox(
                "email", value=channels["email"], key=f"pref_{kind}_email", label_visibility="collapsed"
            )
            chosen[kind] = {"email": email} if kind in required else {"in_app": in_app, "email": email}
        st.markdown("**Quiet hours**: email waits until they end; the app still shows everything.")
        quiet = prefs["quiet_hours"]
        use_quiet = st.toggle("Hold email during quiet hours", value=quiet is not None, key="pref_quiet_on")
        cols = st.columns(3)
        start = cols[0].time_input("From", value=_hhmm(quiet["start"]) if quiet else dt.time(20, 0), key="pref_qs")
        end = cols[1].time_input("Until", value=_hhmm(quiet["end"]) if quiet else dt.time(8, 0), key="pref_qe")
        zones = _zones()
        current = quiet["timezone"] if quiet else "UTC"
        zone = cols[2].selectbox(
            "Time zone", zones, index=zones.index(current) if current in zones else 0, key="pref_qz"
        )
        if st.form_submit_button("Save preferences", type="primary"):
            body: dict = {"channels": chosen}
            body["quiet_hours"] = (
                {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "timezone": zone}
                if use_quiet
                else None
            )
            try:
                client.update_notification_preferences(body)
            except ApiError as exc:
                _refused(exc)
            else:
                st.success("Saved.")


def _team(client: RevloopClient) -> None:
    try:
        team = client.team_channels()
    except ApiError as exc:
        show_error(exc)
        return
    if not team["webhook_configured"]:
        st.info("No team webhook: set REVLOOP_NOTIFY_WEBHOOK_URL (and REVLOOP_NOTIFY_WEBHOOK_SECRET to sign posts).")
    elif not team["webhook_signed"]:
        st.warning("Posts to the team webhook are not signed: set REVLOOP_NOTIFY_WEBHOOK_SECRET.")
    with st.form("team_channels", clear_on_submit=False, border=True):
        st.markdown("**Post to the team webhook** (one post per event, Slack-compatible)")
        chosen = {kind: st.checkbox(_label(kind), value=on, key=f"team_{kind}") for kind, on in team["webhook"].items()}
        if st.form_submit_button("Save team channel"):
            try:
                client.update_team_channels(chosen)
            except ApiError as exc:
                _refused(exc)
            else:
                st.success("Saved.")


def page(client: RevloopClient, role: str = "") -> None:
    st.title("Notifications")
    names = ["Inbox", "My preferences"] + (["Team webhook"] if role in ("manager", "admin") else [])
    tabs = st.tabs(names)
    with tabs[0]:
        _inbox(client)
    with tabs[1]:
        _preferences(client)
    if len(tabs) > 2:
        with tabs[2]:
            _team(client)


if __name__ == "__main__":  # Streamlit runs this file as the page (review/ui/pages.py)
    page(common.client(), st.session_state["me"]["role"])
