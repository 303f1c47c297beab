"""One review item, as the inbox's right-hand side: who has it and its SLA, the decision bar (Approve, Edit,
Reject, each with its keyboard shortcut), the brief (score, grade, next action, why, flags in words), the lead's
own words (fenced, untrusted) beside the draft, Respond (an instruction the agent redrafts with), the account's
open invoices, deals and recent messages, assignment, snooze and the lead's timeline.

A decision tells the queue which item was decided (``advance_from``); the queue opens the next one. Nothing here
decides anything itself: every action is one API call through review/client.py.
"""

from __future__ import annotations

import datetime as dt
import difflib

import streamlit as st

from core.schemas import ReviewItem
from review.client import ApiError, RevloopClient
from review.ui.common import GRADE_COLOUR, SESSION_ENDED, error_text, md, relative, show_error, sign_out, sla_label
from review.ui.deals import make_deal

DECIDERS = ("closer", "manager", "admin")
REDRAFT_TEMPLATES = ["(same template)", "first_touch_fast", "first_touch_nurture", "polite_decline", "call_task"]
# Streamlit reserves C and R (copy, rerun): Reject is X.
SHORTCUTS = {"approve": "A", "edit": "E", "reject": "X"}


def flag_lines(flags: list[str]) -> list[str]:
    """Flags in words: the sentences the screen wrote, then the remaining codes made readable; an injection code
    is dropped when its sentences are there (it says the same thing, for machines)."""
    sentences = [f for f in flags if " " in f]
    codes = [f for f in flags if " " not in f]
    if sentences:
        codes = [c for c in codes if not c.startswith("possible_prompt_injection")]
    return sentences + [c.replace("_", " ").replace(":", ": ").replace(",", ", ") for c in codes]


def _words(flag: object) -> str:
    return str(getattr(flag, "words", None) or (flag.get("words") if isinstance(flag, dict) else flag))


def _code(flag: object) -> str:
    return str(getattr(flag, "code", None) or (flag.get("code") if isinstance(flag, dict) else ""))


def item_flags(item: ReviewItem) -> list[str]:
    """The brief's flags in words: the API's own wording (flags_in_words) when it gives one, else flag_lines.
    The grounding guard's flags are left to the guard's own box."""
    words = getattr(item, "flags_in_words", None)
    if not words:
        return flag_lines(item.brief.get("flags") or [])
    lines = [_words(f) for f in words if _code(f) not in set(item.guard_flags)]
    # A sentence in the brief's flags that the API's list does not carry is still shown: no flag goes unseen.
    return lines + [f for f in item.brief.get("flags") or [] if " " in f and f not in lines]


def guard_lines(item: ReviewItem) -> list[str]:
    words = {_code(f): _words(f) for f in getattr(item, "flags_in_words", None) or []}
    return [words.get(flag, flag) for flag in item.guard_flags]


def needs_acknowledgement(item: ReviewItem) -> bool:
    """An item the API refuses to approve without acknowledge_flags: grounding-guard or injection flags."""
    asked = getattr(item, "requires_acknowledgement", None)
    if asked is not None:
        return bool(asked) or bool(item.guard_flags)
    return bool(item.guard_flags) or any(
        str(f).startswith("possible_prompt_injection") for f in item.brief.get("flags") or []
    )


def show_brief(brief: dict, flags: list[str] | None = None) -> None:
    """The brief is model output (its summary carries the research notes): plain text, or md() in Markdown.
    Score, grade, next action, why and the flags in words come first; the rubric evidence is one click away."""
    grade = brief.get("grade", "?")
    st.markdown(
        f"**Score {md(brief.get('score', '-'))}** · grade :{GRADE_COLOUR.get(grade, 'gray')}[**{md(grade)}**] · "
        f"next action **{md(str(brief.get('next_action', '-')).replace('_', ' '))}**"
    )
    flags = flag_lines(brief.get("flags") or []) if flags is None else flags
    if flags:
        st.warning("**Flags**\n" + "\n".join(f"- {md(line)}" for line in flags))
    reasons = brief.get("exception_reasons") or []
    if reasons:  # why a person decides this one, in words
        st.warning("**Exception queue**\n" + "\n".join(f"- {md(reason)}" for reason in reasons))
    st.caption("Why (the agent's summary: model output, shown as text)")
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


def show_evidence(brief: dict) -> None:
    """Below the decision: why the score is what it is, criterion by criterion."""
    if brief.get("fallback") and not brief.get("model"):
        st.caption(md(brief["fallback"]))
    factors = brief.get("factors") or []
    if factors:
        with st.expander(f"Why grade {brief.get('grade', '?')}: one line per factor"):
            st.text("\n".join(str(line) for line in factors))
    criteria = brief.get("criteria") or []
    if criteria:
        with st.expander(f"Rubric evidence ({sum(1 for c in criteria if c['met'])} of {len(criteria)} met)"):
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
        known = all(r["prompt_tokens"] is not None and r["cost_usd"] is not None for r in runs)
        total = sum(r["prompt_tokens"] + r["completion_tokens"] for r in runs) if known else None
        tokens = f"{total} tokens" if known else "tokens unknown"
        cost = f"\\${sum(float(r['cost_usd']) for r in runs):.4f}" if known else "cost unknown"
        failed = [r["error"] for r in runs if r["status"] in ("failed", "over_budget")]
        st.caption(
            f"LLM {md(runs[-1]['model'])}: {sum(r['calls'] for r in runs)} call(s), {tokens}, {cost}"
            + (f" — failed: {md(failed[-1])}" if failed else "")
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
            _act(
                lambda: client.snooze(item.id, until),
                f"#{item.id} snoozed until {until:%Y-%m-%d %H:%M} UTC.",
                advance=item.id,
            )


def _act(call, flash: str, prefix: str = "", *, advance: int | None = None) -> None:
    """One API call; on success a flash and a rerun. `advance`: the item left the list (snoozed): open the next."""
    try:
        call()
    except ApiError as exc:
        show_error(exc, prefix)
        return
    st.session_state["flash"] = flash
    if advance is not None:
        st.session_state["advance_from"] = advance
    st.rerun()


@st.fragment(run_every=2)
def undo_banner(client: RevloopClient, item_id: int) -> None:
    """An approved item opened on its own: counts down the undo window and offers Undo; reloads once it moved on."""
    try:
        item = client.review_item(item_id)
    except ApiError as exc:
        show_error(exc)
        return
    if item.status != "approved":  # sent (or cancelled): show its final state and timeline
        st.rerun(scope="app")
    if item.undo_until is None:
        st.info("Sending now…")
        return
    left = item.undo_until - dt.datetime.now(dt.UTC)
    st.warning(f"Approved. Sending in {relative(left)} — you can still undo.")
    if st.button("Undo", key=f"undo_item_{item.id}", type="primary"):
        try:
            client.undo(item.id)
        except ApiError as exc:
            show_error(exc, "Too late: ")
            return
        edited = bool(item.decision and item.decision.edited)
        st.session_state["flash"] = f"Approval of #{item.id} undone: nothing was sent; " + (
            "the draft is back with your edit." if edited else "the draft is back."
        )
        st.rerun(scope="app")


def _unsent(client: RevloopClient, item: ReviewItem) -> None:
    """An approved email that did not go out, with the facts and what the closer can do about it."""
    result = item.result or {}
    if item.status == "send_failed" and item.kind == "invoice":  # the billing provider refused to issue it
        st.error(f"**Not issued:** {md(result.get('reason'))}. Fix the cause, then Retry.")
        actions = [("Retry", "Issuing it again.")]
    elif item.status == "send_failed":
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


def _start(kind: str, item_id: int) -> None:
    st.session_state[f"{kind}_{item_id}_open"] = True


def _decision_bar(client: RevloopClient, item: ReviewItem) -> None:
    """Approve / Edit / Reject with their shortcuts, under the acknowledgement a flagged item needs."""
    editing = st.session_state.get(f"edit_{item.id}_open", False)
    if item.guard_flags:
        st.error(
            "Grounding guard: the draft says things no record supports:\n"
            + "\n".join(f"- {md(line)}" for line in guard_lines(item))
        )
    if needs_acknowledgement(item):
        st.checkbox(
            "I read the flags and checked the draft: approve it anyway",
            key=f"ack_{item.id}",
            help="Required: the API refuses to approve a flagged item without it.",
        )
    approve_col, edit_col, reject_col = st.columns(3)
    labels = {"email": "Approve and send", "invoice": "Approve and issue", "payment_request": "Approve and prompt"}
    label = labels.get(item.kind, "Approve")
    approve_col.button(
        label,
        type="primary",
        key=f"approve_{item.id}",
        # While editing, no one-key approve: letters typed after focus left the text box (a click during a
        # rerun) would otherwise approve the unedited draft; the edit is approved by a click.
        shortcut=None if editing else SHORTCUTS["approve"],
        on_click=_on_approve,
        args=(client, item),
        width="stretch",
    )
    edit_col.button(
        "Edit draft",
        key=f"edit_{item.id}",
        shortcut=SHORTCUTS["edit"],
        on_click=_start,
        args=("edit", item.id),
        disabled=editing,
        width="stretch",
    )
    reject_col.button(
        "Reject",
        key=f"start_reject_{item.id}",
        shortcut=SHORTCUTS["reject"],
        on_click=_start,
        args=("reject", item.id),
        width="stretch",
    )


def _draft(item: ReviewItem, editing: bool) -> tuple[str, str]:
    """The draft as it will go out: read-only until Edit (E); the subject and body the approval sends."""
    draft = item.draft
    st.markdown(f"**To:** {md(draft.get('to') or '(contact record)')}  ·  template {md(item.template)}")
    if draft.get("channel") in TEXT_CHANNELS:
        segments = f" · {draft.get('segments')} SMS segment(s), {draft.get('encoding')}" if item.kind == "sms" else ""
        st.caption(
            f"{TEXT_CHANNELS[draft['channel']]} to the contact record's number · {draft.get('characters')} characters"
            + segments
        )
    if draft.get("attachments"):
        st.caption("Attached: " + ", ".join(md(a["filename"]) for a in draft["attachments"]))
    if not editing:
        st.markdown(f"**Subject:** {md(draft.get('subject', ''))}")
        st.code(draft.get("body", ""), language=None, wrap_lines=True)
        return draft.get("subject", ""), draft.get("body", "")
    subject = st.text_input("Subject", value=draft.get("subject", ""), key=f"subject_{item.id}")
    body = st.text_area("Body", value=draft.get("body", ""), height=260, key=f"body_{item.id}")
    diff = edit_diff(draft, subject, body)
    if diff:
        st.markdown("**Your edits** (stored with the approval)")
        st.code(diff, language="diff")
    return subject, body


# Approve and Reject act in their button's callback, before the rerun the click starts, so the next item is drawn
# by that one run (a decision -> next item costs one script run, not two). A refusal is kept for the item's
# message slot under the buttons.
MESSAGE = "item_message"


def _refused(item: ReviewItem, text: str) -> None:
    st.session_state[MESSAGE] = (item.id, text)


def _on_approve(client: RevloopClient, item: ReviewItem) -> None:
    state, draft = st.session_state, item.draft
    editing = state.get(f"edit_{item.id}_open", False)
    subject = state.get(f"subject_{item.id}", draft.get("subject", "")) if editing else draft.get("subject", "")
    body = state.get(f"body_{item.id}", draft.get("body", "")) if editing else draft.get("body", "")
    asked = state.get(f"unsupported_{item.id}") or []
    checked = [fact for number, fact in enumerate(asked) if state.get(f"fact_{item.id}_{number}_{fact}")]
    try:
        done = client.approve(
            item.id,
            subject=subject if subject != draft.get("subject") else None,
            body=body if body != draft.get("body") else None,
            acknowledge_flags=needs_acknowledgement(item) and bool(state.get(f"ack_{item.id}")),
            acknowledge_facts=checked,
        )
    except ApiError as exc:
        facts = exc.details.get("unsupported_facts") if exc.status_code == 409 else None
        if exc.status_code == 401:
            sign_out(SESSION_ENDED)
        elif facts and asked == list(facts):
            # The reviewer was asked already: say which facts still need their tick, not a silent rerun.
            missing = [f for f in facts if f not in checked]
            _refused(item, f"Not approved: tick each fact once you have checked it ({md('; '.join(missing))}).")
        elif facts:  # the edit says things no record supports: ask for each one, then approve again
            state[f"unsupported_{item.id}"] = list(facts)
        elif exc.status_code == 422 and exc.details.get("field") in ("subject", "body"):
            field = md(exc.details["field"])
            _refused(item, f"Not approved: the {field} offers a discount above the cap. {md(exc.message)}")
        else:
            _refused(item, error_text(exc, "Not approved: "))
        return
    state.pop(f"unsupported_{item.id}", None)
    edited = " (edited)" if done.decision and done.decision.edited else ""
    if done.undo_until:
        state["last_approved"] = done.id  # the queue's Undo banner says when it is sent, with Undo (U)
        state["flash"] = (
            f"Approved item #{done.id}{edited}; it is sent at {done.undo_until:%H:%M:%S} UTC unless you undo it."
        )
    else:
        state["flash"] = f"Approved item #{done.id}{edited}; it is sent in the background."
    state["advance_from"] = item.id


def _reject_form(client: RevloopClient, item: ReviewItem) -> None:
    """Reason (Enter submits), a redraft by default, its template; the rejected item leaves the list."""
    with st.form(f"reject_form_{item.id}", border=True):
        st.text_input("Reason for rejecting", key=f"reason_{item.id}", placeholder="e.g. too pushy")
        left, right = st.columns(2)
        left.checkbox("Ask the agent for a new draft", value=True, key=f"redraft_{item.id}")
        right.selectbox("New draft's template", REDRAFT_TEMPLATES, key=f"redraft_template_{item.id}")
        st.form_submit_button("Reject", key=f"reject_{item.id}", on_click=_on_reject, args=(client, item))


def _on_reject(client: RevloopClient, item: ReviewItem) -> None:
    state = st.session_state
    reason = (state.get(f"reason_{item.id}") or "").strip()
    redraft = bool(state.get(f"redraft_{item.id}"))
    choice = state.get(f"redraft_template_{item.id}", REDRAFT_TEMPLATES[0])
    if len(reason) < 3:
        _refused(item, "A rejection needs a reason (at least 3 characters).")
        return
    template = None if choice == REDRAFT_TEMPLATES[0] or not redraft else choice
    try:
        client.reject(item.id, reason, redraft=redraft, template=template)
    except ApiError as exc:
        if exc.status_code == 401:
            sign_out(SESSION_ENDED)
        else:
            _refused(item, error_text(exc, "Not rejected: "))
        return
    state["flash"] = f"Rejected item #{item.id}." + (" A new draft will appear in the queue." if redraft else "")
    state["advance_from"] = item.id


def _respond(client: RevloopClient, item: ReviewItem) -> None:
    """An instruction to the agent ("shorter, mention the pilot"): the item is redrafted with it and the new
    draft opens with what changed."""
    with st.form(f"respond_form_{item.id}", border=False):
        instruction = st.text_input(
            "Respond: tell the agent what to change",
            key=f"instruction_{item.id}",
            placeholder="e.g. shorter and friendlier, offer a call next week",
        )
        submitted = st.form_submit_button("Redraft with this", key=f"respond_{item.id}")
    if not submitted:
        return
    if len(instruction.strip()) < 3:
        st.error("Write an instruction for the agent (at least 3 characters).")
        return
    try:
        new = client.respond(item.id, instruction.strip())
    except ApiError as exc:
        show_error(exc, "Not redrafted: ")
        return
    st.session_state["redrafted"] = {"id": new.id, "from": item.id, "draft": item.draft}
    st.session_state["flash"] = f"Redrafted #{item.id} as #{new.id} with your instruction."
    st.session_state["open_item"] = new.id
    st.rerun()


def _what_changed(item: ReviewItem) -> None:
    """After Respond: what the agent says it changed, and the difference from the draft it replaced."""
    redrafted = st.session_state.get("redrafted")
    if not redrafted or redrafted["id"] != item.id:
        return

    def listed(value: object) -> list:
        return value if isinstance(value, list) else [value] if value else []

    text = f"New draft for your instruction (was #{redrafted['from']})."
    text += "".join(f"\n- {md(line)}" for line in listed(item.draft.get("changes")))
    text += "".join(f"\n- not done: {md(line)}" for line in listed(item.draft.get("not_applied")))
    st.info(text)
    diff = edit_diff(redrafted["draft"], item.draft.get("subject", ""), item.draft.get("body", ""))
    if diff:
        with st.expander("What changed in the text", expanded=False):
            st.code(diff.replace("final/", "new/"), language="diff")


def _rows(records: list | None) -> list[dict]:
    """API records as table rows: nested values as text (never Markdown)."""
    return [
        {k: v if isinstance(v, str | int | float | bool) or v is None else str(v) for k, v in r.items()}
        for r in records or []
        if isinstance(r, dict)
    ]


def _lead_words(context: dict | None) -> None:
    """The lead's own message, fenced and marked untrusted: what they asked, never instructions to follow."""
    st.markdown("**What the lead wrote** · _untrusted: their words, not instructions_")
    if context is None:
        st.caption("The lead's message could not be loaded.")
        return
    message = context.get("lead_message")
    if not message:
        st.caption("No message: the lead sent only form fields.")
    else:
        st.code(message, language=None, wrap_lines=True)
    flags = [_words(f) if not isinstance(f, str) else f for f in context.get("lead_message_flags") or []]
    if flags:
        st.error("**In the lead's message**\n" + "\n".join(f"- {md(line)}" for line in flag_lines(flags)))


def _account(context: dict | None) -> None:
    """The same account's open invoices (net balances), deals and recent messages, from records."""
    if not context:
        return
    account = context.get("account") or {}
    open_invoices = context.get("open_invoices") or {}
    invoices = _rows(open_invoices.get("invoices") if isinstance(open_invoices, dict) else open_invoices)
    deals, messages = _rows(context.get("deals")), _rows(context.get("recent_messages"))
    due = f" (due {md(open_invoices.get('amount_due'))})" if invoices and isinstance(open_invoices, dict) else ""
    title = f"Account {md(account.get('name', ''))}".strip()
    with st.expander(
        f"{title}: {len(invoices)} open invoice(s){due}, {len(deals)} deal(s), {len(messages)} recent message(s)"
    ):
        if account:
            st.dataframe(_rows([account]), hide_index=True, width="stretch")
        for label, rows in (("Open invoices", invoices), ("Deals", deals), ("Recent messages", messages)):
            st.markdown(f"**{label}**")
            if rows:
                st.dataframe(rows, hide_index=True, width="stretch")
            else:
                st.caption("None.")


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


TEXT_CHANNELS = {"sms": "SMS", "whatsapp": "WhatsApp"}
CHANNEL_LABELS = {"email": "Email", **TEXT_CHANNELS}


def _conversation(client: RevloopClient, contact_id: int | None) -> None:
    """The contact's messages across email, SMS and WhatsApp, newest first, with delivery status."""
    if contact_id is None:
        return
    try:
        thread = client.conversation(contact_id)
    except ApiError as exc:
        show_error(exc)
        return
    messages = thread["messages"]
    consent = ", ".join(f"{CHANNEL_LABELS[c]} {s.replace('_', ' ')}" for c, s in thread["consent"].items() if s)
    with st.expander(f"Conversation ({len(messages)} messages)" + (f" · {consent}" if consent else ""), expanded=False):
        if not messages:
            st.caption("No messages yet.")
            return
        st.dataframe(
            [
                {
                    "when": m["at"][:19].replace("T", " "),
                    "channel": CHANNEL_LABELS.get(m["channel"], m["channel"]),
                    "": "→ sent" if m["direction"] == "out" else "← received",
                    "text": (f"{m['subject']}: " if m.get("subject") else "") + m["text"][:300],
                    "status": m["status"],
                }
                for m in messages
            ],
            hide_index=True,
            width="stretch",
        )


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
    deciding = item.status == "pending" and me["role"] in DECIDERS
    sla = sla_label(item.sla_due_at, item.sla_state, item.status)
    sla_text = f":red[**{sla}**]" if item.sla_state == "breached" else sla
    st.subheader(f"#{item.id} · {item.kind.replace('_', ' ')} · {item.status}")
    st.markdown(
        f"SLA: {sla_text} · queue {md(item.queue)} · assignee {md(item.assignee or 'team')}"
        + (f" · redraft of #{item.redraft_of}" if item.redraft_of else "")
    )
    if deciding:  # the decision first: with its shortcuts it is one key away, and the brief follows on screen
        _decision_bar(client, item)
        if st.session_state.get(f"reject_{item.id}_open"):
            _reject_form(client, item)
        message = st.session_state.pop(MESSAGE, None)
        if message and message[0] == item.id:
            st.error(message[1])
    if escalated_from := getattr(item, "escalated_from", None):
        st.warning(f"Escalated to the team queue when its SLA was breached: {md(escalated_from)} had it.")
    if item.draft.get("redraft_reason"):
        st.info(f"Redrafted after a rejection: “{md(item.draft['redraft_reason'])}”")
    _what_changed(item)
    show_brief(item.brief, item_flags(item))
    try:
        context = client.review_item_context(item.id)
    except ApiError as exc:
        if exc.status_code == 401:
            show_error(exc)
        context = None
    words, draft = st.columns(2)
    with words:
        _lead_words(context)
    with draft:
        if deciding:
            _draft(item, editing=st.session_state.get(f"edit_{item.id}_open", False))
            _unsupported_facts(item.id)
        elif item.status == "pending":
            _draft(item, editing=False)
            st.caption("Evaluators can read the queue; closers and managers decide.")
        else:
            _decided(client, item)
    if deciding:
        _respond(client, item)
    _account(context)
    show_evidence(item.brief)
    _llm_usage(client, item)
    if deciding:
        with st.expander("Assign or snooze"):
            _assignment(client, me, item)
    if item.lead_id is not None:
        make_deal(client, me, item.lead_id)  # a lead without an open deal: product, value, expected close
    with st.expander("Data this draft used"):
        used = item.draft.get("facts_used") or {}
        st.dataframe(
            [{"field": k, "value": str(v)} for k, v in used.items() if v not in (None, "")],
            hide_index=True,
            width="stretch",
        )
        st.caption("Recipient, names and company come from CRM records; the lead's message is shown beside it.")
    _conversation(client, item.contact_id)
    _timeline(client, item.id)
