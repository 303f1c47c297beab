"""revloop review app: queues, item pages, KPIs, ICP, users and audit. Run with `revloop review-app`.

A client of the HTTP API only: every read and decision goes through the API with the signed-in
user's session token, and the API enforces every permission.
"""

from __future__ import annotations

import contextlib

import streamlit as st

from review.client import ApiError
from review.ui import audit, cash, evals, icp, kpis, login, queue, templates, users
from review.ui.common import client, show_error, sign_out

PAGES_BY_ROLE = {
    "closer": ["Review queue"],
    "manager": ["Review queue", "KPIs", "Cash", "Templates", "ICP rubric", "Evals"],
    "evaluator": ["Review queue", "Evals", "ICP rubric"],
    "admin": ["Review queue", "KPIs", "Cash", "Templates", "ICP rubric", "Evals", "Users", "Audit"],
}


def signed_in() -> None:
    me = st.session_state["me"]
    api = client()
    pages = PAGES_BY_ROLE.get(me["role"], ["Review queue"])
    with st.sidebar:
        st.write(f"Signed in as **{me['name']}** ({me['role']})")
        if st.button("Sign out", key="logout"):
            with contextlib.suppress(ApiError):  # the session may be gone already; local sign-out is what matters
                api.logout()
            sign_out()
            st.rerun()
        page = st.radio("Page", pages, key="page") if len(pages) > 1 else pages[0]
        st.button("Refresh", key="refresh")
    try:
        if page == "Review queue":
            queue.page(api, me)
        elif page == "KPIs":
            kpis.page(api)
        elif page == "ICP rubric":
            icp.page(api, me["role"])
        elif page == "Cash":
            cash.page(api)
        elif page == "Templates":
            templates.page(api)
        elif page == "Evals":
            evals.page(api)
        elif page == "Users":
            users.page(api, me)
        elif page == "Audit":
            audit.page(api)
    except ApiError as exc:
        show_error(exc)


def main() -> None:
    st.set_page_config(page_title="revloop review", layout="wide")
    if "token" not in st.session_state:
        login.page()
    else:
        signed_in()


main()
