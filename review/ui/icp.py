"""The ICP rubric page (managers edit and publish, evaluators backtest) and the outcome models."""

from __future__ import annotations

import streamlit as st

from review.client import ApiError, RevloopClient
from review.ui import common
from review.ui.common import md, show_error

GRADES = ["A", "B", "C", "D"]
BACKTEST_SOURCES = ["all", "maven", "x-education"]

FLASH = "icp_flash"


def show_backtest(result: dict) -> None:
    import pandas as pd

    draft, published = result["draft"], result["published"]
    st.subheader(
        f"Backtest on {result['closed_deals']} closed deals"
        + (f" ({md(result['source'])})" if result.get("source") else "")
    )
    cols = st.columns(4)
    auc = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    cols[0].metric(
        f"AUC {md(draft['version'])}",
        auc(draft["auc"]),
        None if draft["auc"] is None or published["auc"] is None else f"{draft['auc'] - published['auc']:+.3f}",
    )
    cols[1].metric(f"AUC {md(published['version'])} (published)", auc(published["auc"]))
    cols[2].metric("Base win rate", f"{result['base_win_rate']:.1%}")
    cols[3].metric("Open leads changing grade", f"{result['open_leads_changing_grade']} / {result['open_leads']}")
    rows = []
    for grade in GRADES:
        for label, side in ((f"draft {draft['version']}", draft), (f"published {published['version']}", published)):
            g = side["grades"][grade]
            rows.append(
                {
                    "grade": grade,
                    "rubric": label,
                    "deals": g["n"],
                    "won": g["won"],
                    "win rate": g["win_rate"],
                    "lift": g["lift"],
                }
            )
    table = pd.DataFrame(rows)
    st.bar_chart(table.fillna({"win rate": 0}), x="grade", y="win rate", color="rubric", stack=False)
    st.dataframe(table, hide_index=True, width="stretch")
    if result["grade_changes"]:
        st.caption("Open leads changing grade: " + ", ".join(f"{k}: {v}" for k, v in result["grade_changes"].items()))


def page(client: RevloopClient, role: str) -> None:
    st.title("ICP rubric")
    if flash := st.session_state.pop(FLASH, None):  # after publish or promote: the page below is the new state
        st.success(flash)
    try:
        active = client.active_rubric()
    except ApiError as exc:
        show_error(exc)
        return
    st.caption(
        f"Leads are scored with **{md(active['version'])}** "
        f"({'published' if active['origin'] == 'published' else 'rubric file, nothing published yet'})."
    )
    content = st.text_area("Rubric (YAML)", value=active["content"], height=420, key="icp_content")
    source = st.selectbox("Backtest against closed deals from", BACKTEST_SOURCES, key="icp_source")
    cols = st.columns(4)
    if cols[0].button("Validate", key="icp_validate"):
        result = client.validate_rubric(content)
        if result["valid"]:
            st.success(f"Valid: version {md(result['version'])}")
        else:
            st.error(f"{len(result['errors'])} error(s):\n" + "\n".join(f"- {md(e)}" for e in result["errors"]))
    if cols[1].button("Backtest", key="icp_run_backtest"):
        try:
            st.session_state["icp_backtest"] = client.backtest_rubric(content, None if source == "all" else source)
        except ApiError as exc:
            st.session_state.pop("icp_backtest", None)
            show_error(exc)
    if role in ("manager", "admin"):
        if cols[2].button("Save draft", key="icp_save"):
            try:
                st.session_state["icp_draft"] = client.save_rubric(content)
            except ApiError as exc:
                show_error(exc)
        draft = st.session_state.get("icp_draft")
        if (
            draft
            and draft["status"] == "draft"
            and cols[3].button(f"Publish {md(draft['version'])}", type="primary", key="icp_publish")
        ):
            try:
                published = client.publish_rubric(draft["id"])
            except ApiError as exc:
                show_error(exc)
            else:
                st.session_state["icp_draft"] = published
                st.session_state[FLASH] = f"Published {md(published['version'])}; new leads are scored with it."
                st.rerun()
        elif draft:
            st.info(f"Saved {md(draft['version'])} ({md(draft['status'])}).")
    if backtest := st.session_state.get("icp_backtest"):
        show_backtest(backtest)
    models_section(client, role)


def models_section(client: RevloopClient, role: str) -> None:
    st.divider()
    st.subheader("Outcome models")
    try:
        models = client.scoring_models()
    except ApiError as exc:
        show_error(exc)
        return
    if not models:
        st.info(
            "No model yet: import closed deals and run `revloop scoring train`. Until then the rubric scores alone."
        )
        return
    st.dataframe(
        [
            {
                "version": m["version"],
                "status": m["status"],
                "algorithm": m["algorithm"],
                "AUC": m["auc"],
                "Brier": m["brier"],
                "ECE": m["calibration_error"],
                "won/lost": f"{m['n_won']}/{m['n_lost']}",
                # Rows from deals closed in revloop (its own outcomes) versus imported history.
                "from revloop": (m["report"].get("rows_by_origin") or {}).get("revloop"),
                "imported": (m["report"].get("rows_by_origin") or {}).get("imported"),
                "trained": m["trained_at"][:16].replace("T", " "),
            }
            for m in models
        ],
        hide_index=True,
        width="stretch",
    )
    model_charts(client, models)
    challengers = [m["version"] for m in models if m["status"] == "challenger"]
    if role in ("manager", "admin") and challengers:
        version = st.selectbox("Challenger", challengers, key="promote_version")
        if st.button(f"Promote {md(version)} to champion", key="promote"):
            try:
                client.promote_model(version)
            except ApiError as exc:
                show_error(exc)
            else:
                st.session_state[FLASH] = f"Promoted {md(version)}: it is now the champion and scores new leads."
                st.rerun()


def model_charts(client: RevloopClient, models: list[dict]) -> None:
    """Calibration (predicted vs observed win rate) and lift by decile of one model, on its held-out split."""
    import pandas as pd

    versions = [m["version"] for m in models]
    champion = next((m["version"] for m in models if m["status"] == "champion"), versions[0])
    version = st.selectbox("Charts for model", versions, index=versions.index(champion), key="charts_version")
    try:
        charts = client.model_charts(version)
    except ApiError as exc:
        show_error(exc)
        return
    st.caption(
        f"Held-out {md(str((charts.get('split') or {}).get('kind', '')))} split: {charts['n']} deals, "
        f"base win rate {charts['base_rate']:.1%}; AUC {charts['auc']:.3f}, Brier {charts['brier']:.3f}, "
        f"ECE {charts['ece']:.3f}."
    )
    left, right = st.columns(2)
    with left:
        st.markdown("**Calibration**: observed win rate per predicted-probability bin (the diagonal is perfect)")
        reliability = pd.DataFrame(charts["reliability"])
        reliability["perfect"] = reliability["predicted"]
        st.line_chart(reliability, x="predicted", y=["observed", "perfect"])
    with right:
        st.markdown("**Lift by decile**: win rate of each tenth of deals, ranked by the model, over the base rate")
        st.bar_chart(pd.DataFrame(charts["lift"]), x="decile", y="lift")
    st.dataframe(pd.DataFrame(charts["lift"]), hide_index=True, width="stretch")


if __name__ == "__main__":  # Streamlit runs this file as the page (review/ui/pages.py)
    page(common.client(), st.session_state["me"]["role"])
