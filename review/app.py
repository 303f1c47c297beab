"""revloop review app: the closer's queue. Run with `revloop review-app`.

A client of the HTTP API only: every read and decision goes through the API with the user's token.
"""

from __future__ import annotations

import os

import streamlit as st

from review.client import ApiError, RevloopClient

GRADE_COLOUR = {"A": "green", "B": "blue", "C": "orange", "D": "gray"}
STATUS_FILTERS = ["pending", "approved", "sent", "done", "rejected", "all"]


def _api_url() -> str:
    host = os.environ.get("REVLOOP_API_HOST", "127.0.0.1")
    port = os.environ.get("REVLOOP_API_PORT", "8000")
    return os.environ.get("REVLOOP_API_URL", f"http://{host}:{port}")


def _client() -> RevloopClient:
    return RevloopClient(st.session_state["api_url"], st.session_state["token"])


def login() -> None:
    st.title("revloop review")
    st.caption("Sign in with your API token (`revloop tokens create --role closer --name YOU`).")
    with st.form("login"):
        api_url = st.text_input("API URL", value=st.session_state.get("api_url", _api_url()), key="login_api_url")
        token = st.text_input("Token", type="password", key="login_token")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        if not token.strip():
            st.error("Enter a token.")
            return
        try:
            me = RevloopClient(api_url, token.strip()).me()
        except ApiError as exc:
            st.error(f"Sign-in failed: {exc.message}")
            return
        st.session_state.update(api_url=api_url, token=token.strip(), me=me.model_dump())
        st.rerun()


def show_brief(brief: dict) -> None:
    grade = brief.get("grade", "?")
    cols = st.columns(3)
    cols[0].metric("Score", brief.get("score", "-"))
    cols[1].markdown(f"**Grade** :{GRADE_COLOUR.get(grade, 'gray')}[{grade}]")
    cols[2].markdown(f"**Next action**  \n{str(brief.get('next_action', '-')).replace('_', ' ')}")
    st.write(brief.get("summary", ""))
    model = brief.get("model")
    if model:

        def factors(items: list) -> str:
            return ", ".join(f"{f['field'].removeprefix('custom.')} = {f['value']} ({f['effect']:+.0%})" for f in items)

        st.markdown(
            f"**Model** {model['probability']:.0%} likely to close (model {model['version']}, rubric fit "
            f"{brief.get('rubric_score', '-')})  \n"
            f"For: {factors(model['for']) or 'nothing notable'}  \n"
            f"Against: {factors(model['against']) or 'nothing notable'}"
        )
    elif brief.get("fallback"):
        st.caption(brief["fallback"])
    if brief.get("flags"):
        st.warning("Flags: " + ", ".join(brief["flags"]))
    criteria = brief.get("criteria") or []
    if criteria:
        st.dataframe(
            [
                {"criterion": c["label"], "met": "yes" if c["met"] else "no", "evidence": c["evidence"]}
                for c in criteria
            ],
            hide_index=True,
            width="stretch",
        )


def show_item(client: RevloopClient, item_id: int) -> None:
    try:
        item = client.review_item(item_id)
    except ApiError as exc:
        st.error(exc.message)
        return
    st.subheader(f"#{item.id} · {item.kind.replace('_', ' ')} · {item.status}")
    due = f" · first touch due {item.sla_due_at:%Y-%m-%d %H:%M} UTC" if item.sla_due_at else ""
    st.caption(f"queue {item.queue} · assignee {item.assignee or 'team'}{due}")
    show_brief(item.brief)
    if item.brief.get("engine") == "llm" or "llm_unavailable" in item.brief.get("flags", []):
        runs = client.lead_llm_runs(item.lead_id) if item.lead_id else []
        if runs:
            tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in runs)
            cost = sum(float(r["cost_usd"]) for r in runs)
            failed = [r["error"] for r in runs if r["status"] == "failed"]
            st.caption(
                f"LLM {runs[-1]['model']}: {sum(r['calls'] for r in runs)} call(s), {tokens} tokens, "
                f"${cost:.4f}" + (f" — failed: {failed[-1]}" if failed else "")
            )
    st.divider()
    draft = item.draft
    st.markdown(f"**To:** {draft.get('to') or '(contact record)'}  ·  template `{item.template}`")
    if item.status != "pending":
        decision = item.decision
        if decision is not None:
            verb = {"approve": "Approved", "reject": "Rejected"}.get(decision.action, decision.action)
            st.info(
                f"{verb} by {decision.actor} at {decision.decided_at:%Y-%m-%d %H:%M UTC}"
                + (f" — reason: {decision.reason}" if decision.reason else "")
            )
            if decision.edit_diff:
                st.code(decision.edit_diff, language="diff")
        if item.result:
            st.success(f"Result: {item.result}")
        st.text_input(
            "Subject",
            value=(decision.final_subject if decision else None) or draft.get("subject", ""),
            disabled=True,
            key=f"ro_subject_{item.id}",
        )
        st.text_area(
            "Body",
            value=(decision.final_body if decision else None) or draft.get("body", ""),
            height=300,
            disabled=True,
            key=f"ro_body_{item.id}",
        )
        return
    acknowledged = True
    if item.guard_flags:
        st.error(
            "Grounding guard: the draft says things no record supports:\n"
            + "\n".join(f"- {flag}" for flag in item.guard_flags)
        )
        acknowledged = st.checkbox("I checked these and the draft is right", key=f"ack_{item.id}")
    subject = st.text_input("Subject", value=draft.get("subject", ""), key=f"subject_{item.id}")
    body = st.text_area("Body", value=draft.get("body", ""), height=320, key=f"body_{item.id}")
    approve_col, reject_col = st.columns(2)
    if approve_col.button(
        "Approve and send" if item.kind == "email" else "Approve", type="primary", key=f"approve_{item.id}"
    ):
        try:
            done = client.approve(
                item.id,
                subject=subject if subject != draft.get("subject") else None,
                body=body if body != draft.get("body") else None,
                acknowledge_flags=bool(item.guard_flags) and acknowledged,
            )
        except ApiError as exc:
            st.error(f"Not approved: {exc.message}")
        else:
            st.session_state["flash"] = (
                f"Approved item #{done.id}"
                + (" (edited)" if done.decision and done.decision.edited else "")
                + "; it is sent in the background."
            )
            st.rerun()
    reason = reject_col.text_input("Reason for rejecting", key=f"reason_{item.id}")
    if reject_col.button("Reject", key=f"reject_{item.id}"):
        if len(reason.strip()) < 3:
            st.error("A rejection needs a reason (at least 3 characters).")
        else:
            try:
                client.reject(item.id, reason.strip())
            except ApiError as exc:
                st.error(f"Not rejected: {exc.message}")
            else:
                st.session_state["flash"] = f"Rejected item #{item.id}."
                st.rerun()


GRADES = ["A", "B", "C", "D"]
BACKTEST_SOURCES = ["all", "maven", "x-education"]


def show_backtest(result: dict) -> None:
    import pandas as pd

    draft, published = result["draft"], result["published"]
    st.subheader(
        f"Backtest on {result['closed_deals']} closed deals"
        + (f" ({result['source']})" if result.get("source") else "")
    )
    cols = st.columns(4)
    auc = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    cols[0].metric(
        f"AUC {draft['version']}",
        auc(draft["auc"]),
        None if draft["auc"] is None or published["auc"] is None else f"{draft['auc'] - published['auc']:+.3f}",
    )
    cols[1].metric(f"AUC {published['version']} (published)", auc(published["auc"]))
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


def icp_page(client: RevloopClient, role: str) -> None:
    st.title("ICP rubric")
    try:
        active = client.active_rubric()
    except ApiError as exc:
        st.error(exc.message)
        return
    st.caption(
        f"Leads are scored with **{active['version']}** "
        f"({'published' if active['origin'] == 'published' else 'rubric file, nothing published yet'})."
    )
    content = st.text_area("Rubric (YAML)", value=active["content"], height=420, key="icp_content")
    source = st.selectbox("Backtest against closed deals from", BACKTEST_SOURCES, key="icp_source")
    cols = st.columns(4)
    if cols[0].button("Validate", key="icp_validate"):
        result = client.validate_rubric(content)
        if result["valid"]:
            st.success(f"Valid: version {result['version']}")
        else:
            st.error(f"{len(result['errors'])} error(s):\n" + "\n".join(f"- {e}" for e in result["errors"]))
    if cols[1].button("Backtest", key="icp_run_backtest"):
        try:
            st.session_state["icp_backtest"] = client.backtest_rubric(content, None if source == "all" else source)
        except ApiError as exc:
            st.session_state.pop("icp_backtest", None)
            st.error(exc.message)
    if role in ("manager", "admin"):
        if cols[2].button("Save draft", key="icp_save"):
            try:
                st.session_state["icp_draft"] = client.save_rubric(content)
            except ApiError as exc:
                st.error(exc.message)
        draft = st.session_state.get("icp_draft")
        if (
            draft
            and draft["status"] == "draft"
            and cols[3].button(f"Publish {draft['version']}", type="primary", key="icp_publish")
        ):
            try:
                published = client.publish_rubric(draft["id"])
            except ApiError as exc:
                st.error(exc.message)
            else:
                st.session_state["icp_draft"] = published
                st.success(f"Published {published['version']}; new leads are scored with it.")
        elif draft:
            st.info(f"Saved {draft['version']} ({draft['status']}).")
    if backtest := st.session_state.get("icp_backtest"):
        show_backtest(backtest)
    models_section(client, role)


def models_section(client: RevloopClient, role: str) -> None:
    st.divider()
    st.subheader("Outcome models")
    try:
        models = client.scoring_models()
    except ApiError as exc:
        st.error(exc.message)
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
                "trained": m["trained_at"][:16].replace("T", " "),
            }
            for m in models
        ],
        hide_index=True,
        width="stretch",
    )
    challengers = [m["version"] for m in models if m["status"] == "challenger"]
    if role in ("manager", "admin") and challengers:
        version = st.selectbox("Challenger", challengers, key="promote_version")
        if st.button(f"Promote {version} to champion", key="promote"):
            try:
                client.promote_model(version)
            except ApiError as exc:
                st.error(exc.message)
            else:
                st.success(f"{version} is now the champion.")
                st.rerun()


def queue() -> None:
    me = st.session_state["me"]
    client = _client()
    pages = ["Review queue"] + (["ICP rubric"] if me["role"] in ("manager", "evaluator", "admin") else [])
    with st.sidebar:
        st.write(f"Signed in as **{me['name']}** ({me['role']})")
        if st.button("Sign out", key="logout"):
            for key in ("token", "me", "selected", "icp_backtest", "icp_draft"):
                st.session_state.pop(key, None)
            st.rerun()
        page = st.radio("Page", pages, key="page") if len(pages) > 1 else pages[0]
        if page == "Review queue":
            status = st.selectbox("Status", STATUS_FILTERS, key="status_filter")
            queue_name = st.selectbox("Queue", ["all", "main", "exception"], key="queue_filter")
        st.button("Refresh", key="refresh")
    if page == "ICP rubric":
        icp_page(client, me["role"])
        return
    st.title("Review queue")
    if flash := st.session_state.pop("flash", None):
        st.success(flash)
    try:
        page = client.review_items(
            None if status == "all" else status, limit=200, queue=None if queue_name == "all" else queue_name
        )
    except ApiError as exc:
        st.error(exc.message)
        return
    st.caption(f"{page.total} item(s) {'' if status == 'all' else status}")
    if not page.items:
        st.info("Nothing here. New leads appear as soon as the worker has drafted them.")
        return
    labels = {
        i.id: f"#{i.id} · {i.brief.get('grade', '?')} {i.brief.get('score', '')} · {i.draft.get('to') or ''} · "
        f"{i.draft.get('subject', '')[:60]}"
        for i in page.items
    }
    st.dataframe(
        [
            {
                "id": i.id,
                "queue": i.queue,
                "due": i.sla_due_at.strftime("%H:%M") if i.sla_due_at else "",
                "flags": len(i.guard_flags),
                "grade": i.brief.get("grade"),
                "score": i.brief.get("score"),
                "kind": i.kind,
                "to": i.draft.get("to"),
                "subject": i.draft.get("subject"),
                "status": i.status,
                "created": i.created_at.strftime("%Y-%m-%d %H:%M"),
            }
            for i in page.items
        ],
        hide_index=True,
        width="stretch",
    )
    ids = list(labels)
    if st.session_state.get("selected") not in ids:  # decided items leave the pending list
        st.session_state.pop("selected", None)
    selected = st.selectbox("Open item", ids, format_func=labels.get, key="selected")
    if selected is not None:
        show_item(client, selected)


def main() -> None:
    st.set_page_config(page_title="revloop review", layout="wide")
    if "token" not in st.session_state:
        login()
    else:
        queue()


main()
