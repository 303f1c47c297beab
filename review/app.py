"""revloop review app: queues, item pages, KPIs, ICP, users and audit. Run with `revloop review-app`.

A client of the HTTP API only: every read and decision goes through the API with the signed-in
user's session token, and the API enforces every permission.
"""

from __future__ import annotations

import contextlib

import streamlit as st

from review.client import ApiError
from review.ui import login, pages
from review.ui.common import client, show_error, sign_out


def signed_out() -> None:
    # Every page's URL is registered (hidden) so that /kpis, say, shows the sign-in form and then KPIs.
    st.navigation(pages.signed_out(login.page), position="hidden")
    login.page()


def signed_in() -> None:
    me = st.session_state["me"]
    page = st.navigation(pages.signed_in(me["role"]))  # a page the role lacks falls back to the queue
    with st.sidebar:
        st.write(f"Signed in as **{me['name']}** ({me['role']})")
        with contextlib.suppress(ApiError):  # a badge, not a reason to fail the page
            unread = client().notifications(unread=True, limit=1)["unread"]
            if unread:
                st.error(f"{unread} unread notification(s): see Notifications", icon=":material/notifications:")
        if st.button("Sign out", key="logout"):
            with contextlib.suppress(ApiError):  # the session may be gone already; local sign-out is what matters
                client().logout()
            sign_out()
            st.rerun()
        st.button("Refresh", key="refresh")
    try:
        page.run()
    except ApiError as exc:
        show_error(exc)


def main() -> None:
    st.set_page_config(page_title="revloop review", layout="wide")
    if "token" not in st.session_state:
        signed_out()
    else:
        signed_in()


main()
