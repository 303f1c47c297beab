"""One review item: brief, the data the draft used, the editable draft with its diff, decisions
(approve, reject with redraft, undo inside the window), assignment, snooze and the lead's timeline."""

from __future__ import annotations

import datetime as dt
import difflib

import streamlit as st

from core.schemas import ReviewItem
from review.client import ApiError, RevloopClient
from review.ui.common import GRADE_COLOUR, md, relative, show_error, sla_label
from review.ui.deals import make_deal

DECIDERS = ("closer", "manager", "admin")
REDRAFT_TEMPLATES = ["(same template)", "first_touch_fast", "first_touch_nurture", "polite_decline", "call_task"]


def flag_lines(flags: list[str]) -> list[str]:
    """Flags in words: the sentences the screen wrote, then the remaining codes made readable; an injection code
    is dropped when its sentences are there (it says the same thing, for machines)."""
    sentences = [f for f in flags if " " in f]
    codes = [f for f in flags if " " not in f]
    if sentences:
        codes = [c for c in codes if not c.startswith("possible_prompt_injection")]
    return sentences + [c.replace("_", " ").replace(":", ": ").replace(",", ", ") for c in codes]


def show_brief(brief: dict) -> None:
    """The brief is model output (its summary carries the research notes): plain text, or md() in Markdown."""
    grade = brief.get("grade", "?")
    cols = st.columns(3)
    cols[0].metric("Score", md(brief.get("score", "-")))
    cols[1].markdown(f"**Grade** :{GRADE_COLOUR.get(grade, 'gray')}[{md(grade)}]")
    cols[2].markdown(f"**Next action**  \n{md(str(brief.get('next_action', '-')).replace('_', ' '))}")
    st.text(str(brief.get("summary") or ""))
    model = brief.get("model")
    if model:

        def factors(items: list) -> str:
            return ", ".join(
                f"{md(f['field'].removeprefix('custom.'))} = {md(f['value'])} ({f['effect']:+.0%})" for f in items
            )

        st.markdown(
            f"**Model** {model['probability']:.0%} likely to close (model {md(model['version'])}, rubric fit "
            f"{md(brief.get('rubric_score', '-'))})  \n"
            f"For: {factors(model['for']) or 'nothing notable'}  \n"
            f"Against: {factors(model['against']) or 'nothing notable'}"
        )
    elif brief.get("fallback"):
        st.caption(md(brief["fallback"]))
    if brief.get("flags"):
        st.warning("**Flags**\n" + "\n".join(f"- {md(line)}" for line in flag_lines(brief["flags"])))
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


def edit_diff(draft: dict, subject: str, body: str) -> str:
    parts = []
    for name, old, new in (("subject", draft.get("subject", ""), subject), ("body", draft.get("body", ""), body)):
        parts.extend(
            difflib.unified_diff(
                (old + "\n").splitlines(keepends=True),
                (new + "\n").splitlines(keepends=True),
                f"draft/{name}",
                f"final/{name}",
            )
        )
    return "".join(parts)


def _llm_usage(client: RevloopClient, item: ReviewItem) -> None:
    if not (item.brief.get("engine") == "llm" or "llm_unavailable" in item.brief.get("flags", [])):
        return
    runs = client.lead_llm_runs(item.lead_id) if item.lead_id else []
    if runs:
        tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in runs)
        cost = sum(float(r["cost_usd"]) for r in runs)
        failed = [r["error"] for r in runs if r["status"] == "failed"]
        st.caption(
            f"LLM {md(runs[-1]['model'])}: {sum(r['calls'] for r in runs)} call(s), {tokens} tokens, "
            f"\\${cost:.4f}" + (f" — failed: {md(failed[-1])}" if failed else "")
        )


def _assignment(client: RevloopClient, me: dict, item: ReviewItem) -> None:
    try:
        people = client.assignees()
    except ApiError as exc:
        show_error(exc)
        return
    left, right = st.columns(2)
    with left:
        options = ["(team queue)", *people]
        current = item.assignee if item.assignee in people else "(team queue)"
        can_take = me["role"] == "closer" and item.assignee is None and me["name"] in people
        if can_take and st.button("Take it", key=f"take_{item.id}"):
            _act(lambda: client.assign(item.id, me["name"]), f"#{item.id} is yours.")
        if item.assignee not in (None, me["name"]) and st.button(
            "Take over",
            key=f"take_over_{item.id}",
            help="Allowed when its SLA is breached or its assignee cannot "
            "sign in (managers: always); recorded in the audit log",
        ):
            _act(lambda: client.take_over(item.id), f"#{item.id} is yours now (taken over from {md(item.assignee)}).")
        target = st.selectbox("Assign to", options, index=options.index(current), key=f"assignee_{item.id}")
        if st.button("Assign", key=f"assign_{item.id}"):
            _act(
                lambda: client.assign(item.id, None if target == "(team queue)" else target),
                f"#{item.id} assigned to {md(target)}.",
            )
    with right:
        if item.snoozed_until:
            st.caption(f"Snoozed until {item.snoozed_until:%Y-%m-%d %H:%M} UTC")
            if st.button("Wake now", key=f"wake_{item.id}"):
                _act(lambda: client.snooze(item.id, None), f"#{item.id} is back in the queue.")
        tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        day = st.date_input("Snooze until (UTC)", value=tomorrow.date(), key=f"snooze_day_{item.id}")
        at = st.time_input("at", value=dt.time(9, 0), key=f"snooze_time_{item.id}")
        if st.button("Snooze", key=f"snooze_{item.id}"):
            until = dt.datetime.combine(day, at, tzinfo=dt.UTC)
            _act(lambda: client.snooze(item.id, until), f"#{item.id} snoozed until {until:%Y-%m-%d %H:%M} UTC.")


def _act(call, flash: str, prefix: str = "") -> None:
    try:
        call()
    except ApiError as exc:
        show_error(exc, prefix)
        return
    st.session_state["flash"] = flash
    st.rerun()


@st.fragment(run_every=2)
def undo_banner(client: RevloopClient, item_id: int) -> None:
    """Counts down the undo window and offers Undo; reloads the page once the item has moved on."""
    try:
        item = client.review_item(item_id)
    except ApiError as exc:
        show_error(exc)
        return
    if item.status != "approved":  # sent (or cancelled): show its final state and timeline
        st.session_state["follow_item"] = (item.status, item.id)
        st.rerun(scope="app")
    if item.undo_until is None:
        st.info("Sending now…")
        return
    left = item.undo_until - dt.datetime.now(dt.UTC)
    st.warning(f"Approved. Sending in {relative(left)} — you can still undo.")
    if st.button("Undo", key=f"undo_{item.id}", type="primary"):
        try:
            client.undo(item.id)
        except ApiError as exc:
            show_error(exc, "Too late: ")
            return
        st.session_state["flash"] = f"Approval of #{item.id} undone: nothing was sent; the draft is back."
        st.session_state["follow_item"] = ("pending", item.id)
        st.rerun(scope="app")


def _unsent(client: RevloopClient, item: ReviewItem) -> None:
    """An approved email that did not go out, with the facts and what the closer can do about it."""
    result = item.result or {}
    if item.status == "send_failed":
        st.error(
            f"**Not sent** to {md(result.get('to'))} after {md(result.get('attempts', '?'))} attempt(s): "
            f"{md(result.get('reason'))}"
        )
        actions = [("Retry", "Sending again with a fresh retry window.")]
    else:
        st.warning(
            f"**Delivery unknown.** The message {md(result.get('message_id'))} to {md(result.get('to'))} was handed "
            f"to the mail server at {md(result.get('handed_at'))} and the worker stopped before its answer was "
            "recorded. "
            "Check the mail server's log or the sent folder: mark it as sent, or send it again (the customer may "
            "get two copies; the Message-ID lets mail clients merge them)."
        )
        actions = [("Mark as sent", "Recorded as sent; nothing was sent now."), ("Send again", "Sending again.")]
    columns = st.columns(len(actions))
    for column, (label, done) in zip(columns, actions, strict=True):
        if column.button(label, key=f"{label}_{item.id}", type="primary" if label != "Send again" else "secondary"):
            try:
                (client.mark_sent if label == "Mark as sent" else client.retry_send)(item.id)
            except ApiError as exc:
                show_error(exc)
                return
            st.session_state["flash"] = f"#{item.id}: {done}"
            st.rerun()


def _decided(client: RevloopClient, item: ReviewItem) -> None:
    decision = item.decision
    if item.status == "approved":
        undo_banner(client, item.id)
    if decision is not None:
        verb = {"approve": "Approved", "reject": "Rejected"}.get(decision.action, decision.action)
        st.info(
            f"{md(verb)} by {md(decision.actor)} at {decision.decided_at:%Y-%m-%d %H:%M UTC}"
            + (f" — reason: {md(decision.reason)}" if decision.reason else "")
            + (" — a redraft was requested" if decision.redraft else "")
        )
        if decision.edit_diff:
            st.markdown("**Edits made before approval**")
            st.code(decision.edit_diff, language="diff")
    if item.status in ("send_failed", "delivery_unknown"):
        _unsent(client, item)
    elif item.status == "sent" and item.result:
        st.success(f"Sent at {item.executed_at:%H:%M:%S} UTC to {md(item.result.get('to'))}")
    elif item.status == "done":
        st.success(f"Done at {item.executed_at:%H:%M:%S} UTC: {md(item.result)}")
    elif item.result and item.status != "approved":
        st.info(f"{md(item.status.title())}: {md(item.result)}")
    draft = item.draft
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


def _pending(client: RevloopClient, me: dict, item: ReviewItem) -> None:
    draft = item.draft
    if me["role"] not in DECIDERS:
        st.text_area("Body", value=draft.get("body", ""), height=300, disabled=True, key=f"ro_body_{item.id}")
        st.caption("Evaluators can read the queue; closers and managers decide.")
        return
    acknowledged = True
    if item.guard_flags:
        st.error(
            "Grounding guard: the draft says things no record supports:\n"
            + "\n".join(f"- {md(flag)}" for flag in item.guard_flags)
        )
        acknowledged = st.checkbox("I checked these and the draft is right", key=f"ack_{item.id}")
    subject = st.text_input("Subject", value=draft.get("subject", ""), key=f"subject_{item.id}")
    body = st.text_area("Body", value=draft.get("body", ""), height=320, key=f"body_{item.id}")
    diff = edit_diff(draft, subject, body)
    if diff:
        st.markdown("**Your edits** (stored with the approval)")
        st.code(diff, language="diff")
    checked = _unsupported_facts(item.id)
    approve_col, reject_col = st.columns(2)
    label = {"email": "Approve and send", "invoice": "Approve and issue"}.get(item.kind, "Approve")
    if approve_col.button(label, type="primary", key=f"approve_{item.id}"):
        try:
            done = client.approve(
                item.id,
                subject=subject if subject != draft.get("subject") else None,
                body=body if body != draft.get("body") else None,
                acknowledge_flags=bool(item.guard_flags) and acknowledged,
                acknowledge_facts=checked,
            )
        except ApiError as exc:
            facts = exc.details.get("unsupported_facts") if exc.status_code == 409 else None
            if facts and st.session_state.get(f"unsupported_{item.id}") == list(facts):
                # The reviewer was asked already: say which facts still need their tick, not a silent rerun.
                missing = [f for f in facts if f not in checked]
                st.error(f"Not approved: tick each fact once you have checked it ({md('; '.join(missing))}).")
            elif facts:  # the edit says things no record supports: ask for each one, then approve again
                st.session_state[f"unsupported_{item.id}"] = list(facts)
                st.rerun()
            elif exc.status_code == 422 and exc.details.get("field") in ("subject", "body"):
                st.error(
                    f"Not approved: the {md(exc.details['field'])} offers a discount above the cap. {md(exc.message)}"
                )
            else:
                show_error(exc, "Not approved: ")
        else:
            st.session_state.pop(f"unsupported_{item.id}", None)
            st.session_state["flash"] = (
                f"Approved item #{done.id}"
                + (" (edited)" if done.decision and done.decision.edited else "")
                + (
                    f"; it is sent at {done.undo_until:%H:%M:%S} UTC unless you undo it."
                    if done.undo_until
                    else "; it is sent in the background."
                )
            )
            st.session_state["follow_item"] = ("approved", done.id)  # keep Undo in reach
            st.rerun()
    with reject_col:
        reason = st.text_input("Reason for rejecting", key=f"reason_{item.id}")
        redraft = st.checkbox("Ask the agent for a new draft", key=f"redraft_{item.id}")
        template = None
        if redraft:
            choice = st.selectbox("New draft's template", REDRAFT_TEMPLATES, key=f"redraft_template_{item.id}")
            template = None if choice == REDRAFT_TEMPLATES[0] else choice
        if st.button("Reject", key=f"reject_{item.id}"):
            if len(reason.strip()) < 3:
                st.error("A rejection needs a reason (at least 3 characters).")
            else:
                try:
                    client.reject(item.id, reason.strip(), redraft=redraft, template=template)
                except ApiError as exc:
                    show_error(exc, "Not rejected: ")
                else:
                    st.session_state["flash"] = f"Rejected item #{item.id}." + (
                        " A new draft will appear in the queue." if redraft else ""
                    )
                    st.rerun()


def _unsupported_facts(item_id: int) -> list[str]:
    """After the API named facts in the edit that no record supports: one checkbox per fact; the ones the
    reviewer ticks go with the next approval (the decision's audit records them)."""
    facts = st.session_state.get(f"unsupported_{item_id}") or []
    if not facts:
        return []
    st.warning(
        "Your edit says things no record or the approved template supports. Check each one against the "
        "customer's records before you approve:"
    )
    return [
        fact
        for number, fact in enumerate(facts)
        if st.checkbox(f"I checked: {md(fact)}", key=f"fact_{item_id}_{number}_{fact}")
    ]


def _timeline(client: RevloopClient, item_id: int) -> None:
    try:
        entries = client.timeline(item_id)
    except ApiError as exc:
        show_error(exc)
        return
    st.markdown("**Timeline**")
    st.dataframe(
        [
            {
                "when": e["at"][:19].replace("T", " "),
                "what": e["kind"],
                "detail": e["summary"],
                "by": e.get("actor") or "",
                "item": f"#{e['review_item_id']}" if e.get("review_item_id") else "",
            }
            for e in entries
        ],
        hide_index=True,
        width="stretch",
    )


def page(client: RevloopClient, me: dict, item_id: int) -> None:
    try:
        item = client.review_item(item_id)
        opened = st.session_state.setdefault("opened", set())
        if item.status == "pending" and me["role"] in DECIDERS and item_id not in opened:
            client.open_item(item_id)  # starts the review clock (first open only)
            opened.add(item_id)
    except ApiError as exc:
        show_error(exc)
        return
    st.subheader(f"#{item.id} · {item.kind.replace('_', ' ')} · {item.status}")
    sla = sla_label(item.sla_due_at, item.sla_state, item.status)
    sla_text = f":red[**{sla}**]" if item.sla_state == "breached" else sla
    st.markdown(
        f"SLA: {sla_text} · queue {md(item.queue)} · assignee {md(item.assignee or 'team')}"
        + (f" · redraft of #{item.redraft_of}" if item.redraft_of else "")
    )
    if item.status == "pending" and me["role"] in DECIDERS:
        with st.expander("Assign or snooze"):
            _assignment(client, me, item)
    show_brief(item.brief)
    _llm_usage(client, item)
    if item.lead_id is not None:
        make_deal(client, me, item.lead_id)  # a lead without an open deal: product, value, expected close
    if item.draft.get("redraft_reason"):
        st.info(f"Redrafted after a rejection: “{md(item.draft['redraft_reason'])}”")
    st.divider()
    st.markdown(f"**To:** {md(item.draft.get('to') or '(contact record)')}  ·  template {md(item.template)}")
    if item.draft.get("attachments"):
        st.caption("Attached: " + ", ".join(md(a["filename"]) for a in item.draft["attachments"]))
    with st.expander("Data this draft used"):
        used = item.draft.get("facts_used") or {}
        st.dataframe(
            [{"field": k, "value": str(v)} for k, v in used.items() if v not in (None, "")],
            hide_index=True,
            width="stretch",
        )
        st.caption("Recipient, names and company come from CRM records; the lead's own message is never quoted.")
    if item.status == "pending":
        _pending(client, me, item)
    else:
        _decided(client, item)
    _timeline(client, item.id)
