"""Sign-in with email and password; the session token expires (the API decides when)."""

from __future__ import annotations

import streamlit as st

from review.client import ApiError, login
from review.ui import session_cookie
from review.ui.common import api_url, md


def page() -> None:
    st.title("revloop review")
    if notice := st.session_state.pop("login_notice", None):
        st.warning(notice)
    st.caption("Sign in with the email and password your admin gave you (`revloop users create`).")
    with st.form("login"):
        email = st.text_input("Email", key="login_email")
        password = st.text_input("Password", type="password", key="login_password")
        with st.expander("Server"):
            url = st.text_input("API URL", value=st.session_state.get("api_url", api_url()), key="login_api_url")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    if not email.strip() or not password:
        st.error("Enter your email and password.")
        return
    try:
        browser = st.context.ip_address  # None on localhost (and outside a real browser session)
        result = login(url, email.strip(), password, client_ip=browser if isinstance(browser, str) else None)
    except ApiError as exc:
        st.error(f"Sign-in failed: {md(exc.message)}")
        return
    st.session_state.update(api_url=url, token=result.token, me=result.user.model_dump())
    if url == api_url():  # a reload restores against the app's own API only, never a URL typed here
        session_cookie.remember(result.token, result.expires_at)
    st.session_state.pop("login_password", None)
    st.rerun()
