"""Manager dashboard: speed to lead, SLA, funnel, stage aging, reviewers, template edit rates."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from review.client import ApiError, RevloopClient
from review.ui import common
from review.ui.common import show_error


def _pct(value: float | None) -> str:
    # pandas turns a null rate into NaN inside a DataFrame column: both read as "no rate" ("nan%" before)
    return "—" if value is None or value != value else f"{value:.0%}"


def page(client: RevloopClient) -> None:
    st.title("KPIs")
    days = st.selectbox("Window", [7, 30, 90, 365], index=1, format_func=lambda d: f"last {d} days", key="kpi_days")
    try:
        k = client.kpis(days)
    except ApiError as exc:
        show_error(exc)
        return
    cols = st.columns(4)
    minutes = k["median_minutes_to_first_touch"]
    cols[0].metric(
        "Median time to first touch",
        "—" if minutes is None else f"{minutes:.1f} min",
        help=f"{k['leads_touched']} lead(s) touched; goal under 5 min",
    )
    cols[1].metric(
        "Next action inside SLA", _pct(k["next_action_within_sla"]), help=f"{k['sla_items_judged']} item(s) judged"
    )
    review = k["median_review_seconds"]
    cols[2].metric(
        "Median review time", "—" if review is None else f"{review:.0f} s", help="First open to decision; goal 120 s"
    )
    cols[3].metric("Leads captured", k["leads_captured"])

    st.subheader("Conversion by stage")
    funnel = pd.DataFrame(k["funnel"])
    st.bar_chart(funnel, x="stage", y="count", sort=False)
    st.dataframe(
        funnel.assign(conversion=[_pct(v) for v in funnel["conversion_from_previous"]]).drop(
            columns="conversion_from_previous"
        ),
        hide_index=True,
        width="stretch",
    )

    st.subheader("Stage aging (open deals)")
    if k["stage_aging"]:
        aging = pd.DataFrame(k["stage_aging"])
        st.bar_chart(aging, x="stage", y="median_days", sort=False)
        st.dataframe(aging.astype(object).where(aging.notna(), "—"), hide_index=True, width="stretch")
    else:
        st.caption("No open deals.")

    st.subheader("Reviews per closer")
    if k["reviewers"]:
        reviewers = pd.DataFrame(k["reviewers"])
        st.bar_chart(reviewers, x="reviewer", y="reviews")
        st.dataframe(reviewers, hide_index=True, width="stretch")
    else:
        st.caption("No decisions in this window.")

    st.subheader("Drafts by template: approved as written, edited, rejected")
    if k["templates"]:
        templates = pd.DataFrame(k["templates"])
        long = templates.melt(
            id_vars="template", value_vars=["approval_rate", "edit_rate", "reject_rate"], var_name="outcome"
        )
        st.bar_chart(long, x="template", y="value", color="outcome")
        st.dataframe(templates, hide_index=True, width="stretch")
        worst = templates.iloc[0]
        st.caption(
            f"Most edited or rejected: `{worst['template']}` ({_pct(worst['edit_rate'])} edited, "
            f"{_pct(worst['reject_rate'])} rejected)."
        )
    else:
        st.caption("No decisions in this window.")


if __name__ == "__main__":  # Streamlit runs this file as the page (review/ui/pages.py)
    page(common.client())
