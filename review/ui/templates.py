"""Managers: message templates. Edit, check merge fields, preview with sample data, save a version,
approve it; new drafts use the latest approved version."""

from __future__ import annotations

import streamlit as st

from review.client import ApiError, RevloopClient
from review.ui import common
from review.ui.common import md, show_error


def page(client: RevloopClient) -> None:
    st.title("Templates")
    if flash := st.session_state.pop("templates_flash", None):
        st.success(flash)
    try:
        catalogue = {t["key"]: t for t in client.templates()}
    except ApiError as exc:
        show_error(exc)
        return
    key = st.selectbox("Template", list(catalogue), key="template_key")
    current = catalogue[key]
    st.caption(
        f"In use: **{md(current['in_use'])}** · merge fields: {md(', '.join(current['fields']))}"
        + (f" · required: {md(', '.join(current['required']))}" if current["required"] else "")
    )
    subject = st.text_input("Subject", value=current["subject"], key=f"template_subject_{key}")
    body = st.text_area("Body", value=current["body"], height=300, key=f"template_body_{key}")
    cols = st.columns(2)
    if cols[0].button("Check and preview", key="template_preview"):
        try:
            result = client.preview_template(key, subject, body)
        except ApiError as exc:
            show_error(exc)
            return
        if result["valid"]:
            st.success("Valid. Preview with sample data:")
            st.text(f"Subject: {result['subject']}\n\n{result['body']}")
        else:
            st.error("Not valid:\n" + "\n".join(f"- {md(e)}" for e in result["errors"]))
    if cols[1].button("Save as a new version", key="template_save"):
        try:
            saved = client.save_template(key, subject, body)
        except ApiError as exc:
            show_error(exc, "Not saved: ")
        else:
            st.session_state["templates_flash"] = f"Saved {key} v{saved['version']} as a draft; approve it to use it."
            st.rerun()
    versions = current["versions"]
    if versions:
        st.subheader("Versions")
        st.dataframe(
            [
                {
                    "version": v["version"],
                    "status": v["status"],
                    "by": v["created_by"],
                    "approved by": v["approved_by"] or "",
                    "subject": v["subject"],
                }
                for v in versions
            ],
            hide_index=True,
            width="stretch",
        )
        drafts = [v for v in versions if v["status"] == "draft"]
        if drafts:
            choice = st.selectbox("Draft to approve", [f"v{v['version']}" for v in drafts], key="template_draft")
            chosen = next(v for v in drafts if f"v{v['version']}" == choice)
            if st.button(f"Approve {choice}", type="primary", key="template_approve"):
                try:
                    client.approve_template(chosen["id"])
                except ApiError as exc:
                    show_error(exc, "Not approved: ")
                else:
                    st.session_state["templates_flash"] = f"{key} {choice} approved: new drafts use it."
                    st.rerun()


if __name__ == "__main__":  # Streamlit runs this file as the page (review/ui/pages.py)
    page(common.client())
