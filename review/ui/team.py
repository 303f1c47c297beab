"""Managers: the sales team, and the service types routing sends to each agent first."""

from __future__ import annotations

import streamlit as st

from review.client import ApiError, RevloopClient
from review.ui import common
from review.ui.common import md, show_error


def page(client: RevloopClient) -> None:
    st.title("Sales team")
    st.caption(
        "Routing gives a lead to the agent whose services include the lead's service type (its `service` field), "
        "then to one in the lead's region, then to anyone with room in their queue."
    )
    if flash := st.session_state.pop("team_flash", None):
        st.success(flash)
    try:
        agents = client.sales_agents()
    except ApiError as exc:
        show_error(exc)
        return
    if not agents:
        st.info("No sales agents yet: `revloop import crm ...` (or `revloop demo seed`) adds them.")
        return
    st.dataframe(
        [
            {
                "name": a["name"],
                "office": a["regional_office"] or "",
                "manager": a["manager"] or "",
                "open deals": a["open_deals"],
                "services": ", ".join(a["services"]),
            }
            for a in agents
        ],
        hide_index=True,
        width="stretch",
    )
    st.subheader("Services of an agent")
    by_name = {a["name"]: a for a in agents}
    name = st.selectbox("Agent", list(by_name), key="team_agent")
    if name is None:
        return
    agent = by_name[name]
    known = sorted({s for a in agents for s in a["services"]})
    services = st.multiselect(
        "Service types (pick or type a new one)",
        known,
        default=agent["services"],
        accept_new_options=True,
        key=f"team_services_{agent['id']}",
    )
    if st.button("Save services", key=f"team_save_{agent['id']}"):
        try:
            saved = client.set_sales_agent_services(agent["id"], services)
        except ApiError as exc:
            show_error(exc, "Not saved: ")
        else:
            services = ", ".join(saved["services"]) or "no services"
            st.session_state["team_flash"] = f"Saved {md(saved['name'])}: {md(services)}."
            st.rerun()


if __name__ == "__main__":  # Streamlit runs this file as the page (review/ui/pages.py)
    page(common.client())
