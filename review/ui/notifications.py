"""Everyone: my notifications (sends that failed, deliveries in doubt, integrations down or back), newest
first, each linked to its item; mark one or all read."""

from __future__ import annotations

import streamlit as st

from review.client import ApiError, RevloopClient
from review.ui import common, pages
from review.ui.common import md, show_error

KIND_LABEL = {
    "send_failed": "Send failed",
    "delivery_unknown": "Delivery unknown",
    "integration_down": "Integration down",
    "integration_recovered": "Integration recovered",
    "taken_over": "Item taken over",
}
SEVERITY_ICON = {"critical": ":material/error:", "warning": ":material/warning:", "info": ":material/info:"}


def page(client: RevloopClient) -> None:
    st.title("Notifications")
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
            label = md(KIND_LABEL.get(note["kind"], note["kind"]))
            st.markdown(f"{SEVERITY_ICON.get(note['severity'], '')} **{label}**")
            # Plain text, never Markdown: a title quotes an email subject, a body a server's reply.
            st.text(note["title"])
            st.text(note["body"])
            cols = st.columns([3, 1, 1])
            cols[0].caption(f"{note['created_at'][:16].replace('T', ' ')} UTC")
            if note["entity_type"] == "review_item" and cols[1].button(
                f"Open item #{note['entity_id']}", key=f"open_{note['id']}"
            ):
                if note["read_at"] is None:
                    client.read_notification(note["id"])
                # The queue shows the item in the state it was reported in (send_failed / delivery_unknown).
                status = note["kind"] if note["kind"] in ("send_failed", "delivery_unknown") else "all"
                st.session_state["follow_item"] = (status, int(note["entity_id"]))
                st.session_state["view"] = "Everything"  # the item may be someone else's or the team's
                st.switch_page(pages.PAGES[0].page())
            if note["read_at"] is None and cols[2].button("Mark read", key=f"read_{note['id']}"):
                client.read_notification(note["id"])
                st.rerun()


if __name__ == "__main__":  # Streamlit runs this file as the page (review/ui/pages.py)
    page(common.client())
