"""Admin: people, roles, activation and password resets."""

from __future__ import annotations

import streamlit as st

from review.client import ApiError, RevloopClient
from review.ui import common
from review.ui.common import md, show_error

ROLES = ["closer", "manager", "evaluator", "admin"]


def page(client: RevloopClient, me: dict) -> None:
    st.title("Users")
    if flash := st.session_state.pop("users_flash", None):
        st.success(flash)
    try:
        users = client.users()
    except ApiError as exc:
        show_error(exc)
        return
    st.dataframe(
        [
            {
                "email": u["email"],
                "name": u["name"],
                "role": u["role"],
                "active": u["active"],
                "last sign-in": (u["last_login_at"] or "never")[:16].replace("T", " "),
            }
            for u in users
        ],
        hide_index=True,
        width="stretch",
    )
    st.subheader("Add a user")
    # The form keeps what was typed when the API refuses it (the message is shown once, under the form); a
    # created user clears it.
    with st.form("new_user"):
        cols = st.columns(4)
        email = cols[0].text_input("Email", key="new_user_email")
        name = cols[1].text_input("Name (queue name)", key="new_user_name")
        role = cols[2].selectbox("Role", ROLES, key="new_user_role")
        password = cols[3].text_input("Initial password", type="password", key="new_user_password")
        submitted = st.form_submit_button("Create user")
    if submitted:
        try:
            user = client.create_user(email.strip(), role, password, name.strip() or None)
        except ApiError as exc:
            show_error(exc, "Not created: ")
        else:
            st.session_state["users_flash"] = f"Created {md(user['role'])} {md(user['name'])} ({md(user['email'])})."
            for key in ("new_user_email", "new_user_name", "new_user_password"):
                del st.session_state[key]
            st.rerun()
    st.subheader("Change a user")
    by_email = {u["email"]: u for u in users}
    email = st.selectbox("User", list(by_email), key="edit_user")
    if email is None:
        return
    user = by_email[email]
    cols = st.columns(3)
    role = cols[0].selectbox("Role", ROLES, index=ROLES.index(user["role"]), key=f"role_{user['id']}")
    active = cols[1].checkbox("Active", value=user["active"], key=f"active_{user['id']}")
    password = cols[2].text_input("New password (optional)", type="password", key=f"password_{user['id']}")
    if st.button("Save changes", key=f"save_user_{user['id']}"):
        changes = {}
        if role != user["role"]:
            changes["role"] = role
        if active != user["active"]:
            changes["active"] = active
        if password:
            changes["password"] = password
        if not changes:
            st.info("Nothing changed.")
            return
        try:
            client.update_user(user["id"], **changes)
        except ApiError as exc:
            show_error(exc, "Not saved: ")
        else:
            st.session_state["users_flash"] = f"Saved {md(email)}: {', '.join(changes)} (signed out everywhere)."
            st.rerun()


if __name__ == "__main__":  # Streamlit runs this file as the page (review/ui/pages.py)
    page(common.client(), st.session_state["me"])
