"""Evaluators: eval runs, their trend per suite, one run's failures and report, and a diff of two runs."""

from __future__ import annotations

import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from review.client import ApiError, RevloopClient
from review.ui import common
from review.ui.common import md, show_error

SUITES = ["all", "scoring", "semantic", "routing", "drafting", "safety", "collections"]
MAIN_METRIC = {
    "scoring": "model_auc",
    "semantic": "auc",
    "routing": "accuracy",
    "drafting": "pass_rate",
    "safety": "safe_rate",
    "collections": "accuracy",
}


def page(client: RevloopClient) -> None:
    st.title("Evals")
    suite = st.selectbox("Suite", SUITES, key="eval_suite")
    try:
        runs = client.eval_runs(None if suite == "all" else suite)
    except ApiError as exc:
        show_error(exc)
        return
    if not runs:
        st.info("No eval runs yet. Run `revloop eval run all` (CI runs the offline suites on every build).")
        return
    table = pd.DataFrame(
        [
            {
                "run": r["run_id"],
                "suite": r["suite"],
                "engine": r["engine"],
                "result": "passed" if r["passed"] else "FAILED",
                "main metric": r["metrics"].get(MAIN_METRIC.get(r["suite"], ""), None),
                "revision": r["meta"].get("code_revision"),
                "at": r["created_at"][:19].replace("T", " "),
            }
            for r in runs
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch")
    st.subheader("Trend")
    trend = table.dropna(subset=["main metric"]).iloc[::-1]
    if not trend.empty:
        st.line_chart(trend, x="at", y="main metric", color="suite")

    ids = [r["run_id"] for r in runs]
    st.subheader("One run")
    run_id = st.selectbox("Run", ids, key="eval_run")
    try:
        run = client.eval_run(run_id)
    except ApiError as exc:
        show_error(exc)
        return
    if run["failures"]:
        st.error(
            "Thresholds not met: "
            + "; ".join(
                md(f"{f['metric']} = {f['actual']} (needs {f['op']} {f['threshold']})") for f in run["failures"]
            )
        )
    else:
        st.success(f"{md(run['suite'])}: every threshold met")
    st.dataframe(
        [{"metric": k, "value": v} for k, v in run["metrics"].items()],
        hide_index=True,
        width="stretch",
    )
    st.caption(", ".join(md(f"{k}: {v}") for k, v in run["meta"].items() if v is not None))
    failing = [c for c in run["cases"] if not c["passed"]]
    st.markdown(f"**Failing cases: {len(failing)}** of {len(run['cases'])}")
    if failing:
        st.dataframe(failing, hide_index=True, width="stretch")
    if st.checkbox("Show the HTML report", key="eval_show_report"):
        try:
            components.html(client.eval_report(run_id), height=900, scrolling=True)
        except ApiError as exc:
            show_error(exc)

    st.subheader("Compare two runs")
    same_suite = [r["run_id"] for r in runs if r["suite"] == run["suite"]]
    if len(same_suite) < 2:
        st.caption("Compare needs two runs of the same suite.")
        return
    cols = st.columns(2)
    a = cols[0].selectbox("Baseline (A)", same_suite, index=1, key="eval_a")
    b = cols[1].selectbox("Candidate (B)", same_suite, index=0, key="eval_b")
    try:
        diff = client.eval_compare(a, b)
    except ApiError as exc:
        show_error(exc)
        return
    if diff["regressions"]:
        st.error("Regressions: " + "; ".join(md(f"{r['metric']}: {r['a']} -> {r['b']}") for r in diff["regressions"]))
    else:
        st.success("No regression past the suite's limits.")
    st.dataframe(
        [{"metric": k, "A": m["a"], "B": m["b"], "delta": m["delta"]} for k, m in diff["metrics"].items()],
        hide_index=True,
        width="stretch",
    )
    if diff["changed_cases"]:
        st.markdown("**Cases whose verdict changed**")
        st.dataframe(diff["changed_cases"], hide_index=True, width="stretch")


if __name__ == "__main__":  # Streamlit runs this file as the page (review/ui/pages.py)
    page(common.client())
