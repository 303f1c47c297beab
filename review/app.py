"""revloop review app: queues, item pages, KPIs, ICP, users and audit. Run with `revloop review-app`.

A client of the HTTP API only: every read and decision goes through the API with the signed-in
user's session token, and the API enforces every permission.
"""

from __future__ import annotations

import contextlib

import streamlit as st

from review.client import ApiError
from review.ui import login, pages, session_cookie
from review.ui.common import client, md, show_error, sign_out

# Less empty space above the title, so an item's brief fits the first screen at 1440x900.
COMPACT = "<style>[data-testid='stMainBlockContainer'] {padding-top: 2.5rem;}</style>"


def signed_out() -> None:
    # Every page's URL is registered (hidden) so that /kpis, say, shows the sign-in form and then KPIs.
    st.navigation(pages.signed_out(login.page), position="hidden")
    login.page()


def signed_in() -> None:
    me = st.session_state["me"]
    page = st.navigation(pages.signed_in(me["role"]))  # a page the role lacks falls back to its landing page
    with st.sidebar:
        st.markdown(f"Signed in as **{md(me['name'])}** ({md(me['role'])})")
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


def _favicon():
    """A favicon drawn here: without one, Streamlit points the browser at fonts.gstatic.com for the page's
    Material icon, and the app would make a request to a host other than its own on every page."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    ImageDraw.Draw(image).rounded_rectangle((2, 2, 29, 29), radius=7, fill=(255, 75, 75, 255))
    return image


def main() -> None:
    st.set_page_config(page_title="revloop review", page_icon=_favicon(), layout="wide")
    session_cookie.restore()  # a reload (or a deep link) in a browser that is signed in stays signed in
    session_cookie.sync()
    st.html(COMPACT, width="content")
    if "token" not in st.session_state:
        signed_out()
    else:
        signed_in()


main()
