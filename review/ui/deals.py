"""Deals, for closers and managers: the pipeline list (open only, owner, stage), one deal's detail (stage,
value, owner, next step, proposals with their PDF, milestones) and what a seller does to it: move its stage
(the API checks the stage's entry criteria and says what is missing), edit it, close it won or lost (lost
needs a reason), complete a milestone. Also the "Make a deal" form of the item page (make_deal)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import get_args

import streamlit as st

from core.schemas import DealRead, OpenStage
from review.client import ApiError, RevloopClient
from review.ui import common
from review.ui.common import md, show_error

SELLERS = ("closer", "manager", "admin")
OPEN_STAGES = list(get_args(OpenStage))
ANYONE, ANY_STAGE, NOBODY = "(anyone)", "(any stage)", "(nobody)"
FLASH = "deals_flash"


def _money(amount: str | None, currency: str) -> str:
    return "-" if amount is None else f"{currency} {Decimal(amount):,.2f}"


def _people(client: RevloopClient) -> list[str]:
    try:
        return client.assignees()
    except ApiError as exc:
        show_error(exc)
        return []


def _done(flash: str) -> None:
    st.session_state[FLASH] = flash
    st.rerun()


# --- make a deal (the item page) ------------------------------------------------------------------------


def make_deal(client: RevloopClient, me: dict, lead_id: int) -> None:
    """For a lead without an open deal: product, value and expected close -> POST /v1/leads/{id}/convert.
    Contact and account come from the lead's records; the API names the field it refuses."""
    if me["role"] not in SELLERS:
        return
    try:
        existing = client.deals(open_only=True, lead_id=lead_id, limit=1).items
    except ApiError as exc:
        show_error(exc)
        return
    if existing:
        deal = existing[0]
        st.caption(f"This lead is deal #{deal.id} ({md(deal.stage)}, owner {md(deal.owner or 'nobody')}): see Deals.")
        return
    with st.expander("Make a deal"):
        st.caption(
            "A deal with this lead's contact and account: qualified with a product or a value, else engaging. "
            "Leave the value empty to take the product's price."
        )
        try:
            book = {f"{p.name} ({p.currency} {p.price:,.2f})": p.name for p in client.products()}
        except ApiError as exc:
            show_error(exc)
            return
        choice = st.selectbox("Product (price book)", ["(none yet)", *book], key=f"convert_product_{lead_id}")
        value = st.text_input("Value", placeholder="e.g. 4821.00", key=f"convert_value_{lead_id}")
        expected = st.date_input("Expected close", value=None, key=f"convert_close_{lead_id}")
        if st.button("Make a deal", key=f"convert_{lead_id}"):
            try:
                deal = client.convert_lead(
                    lead_id, product=book.get(choice), value=value.strip() or None, expected_close=expected
                )
            except ApiError as exc:
                show_error(exc, "No deal made: ")
                return
            st.session_state["flash"] = (
                f"Deal #{deal.id} made: {md(deal.name)}, {md(deal.stage)}, {_money(deal.amount, deal.currency)}. "
                "It is on the Deals page."
            )
            st.rerun()


# --- one deal --------------------------------------------------------------------------------------------


def _proposals(client: RevloopClient, deal: DealRead) -> None:
    st.markdown("**Proposals**")
    if not deal.proposals:
        st.caption("None." if deal.outcome else "None yet. Moving the deal to 'proposal' drafts one.")
        return
    for proposal in deal.proposals:
        left, right = st.columns([3, 1])
        left.markdown(
            f"{md(proposal.number)} · {md(proposal.currency)} {Decimal(proposal.total):,.2f}"
            f" ({len(proposal.lines)} line(s), discount {proposal.discount_pct} %) · valid until {proposal.valid_until}"
            + (f" · cover email #{proposal.review_item_id}" if proposal.review_item_id else "")
        )
        try:
            pdf = client.proposal_pdf(deal.id, proposal.number)
        except ApiError as exc:
            right.caption(f"PDF not available: {md(exc.message)}")
            continue
        right.download_button(
            "PDF",
            pdf,
            file_name=f"{proposal.number}.pdf",
            mime="application/pdf",
            key=f"pdf_{deal.id}_{proposal.number}",
        )


def _milestones(client: RevloopClient, deal: DealRead) -> None:
    st.markdown("**Milestones**")
    if not deal.milestones:
        st.caption("None." if deal.outcome else "None yet: milestones come with the signature (closing it as won).")
        return
    st.dataframe(
        [
            {
                "#": m.seq,
                "milestone": m.name,
                "percent": m.percent,
                "amount": _money(m.amount, deal.currency),
                "status": m.status,
                "invoice": m.invoice_id,
            }
            for m in deal.milestones
        ],
        hide_index=True,
        width="stretch",
    )
    planned = [m for m in deal.milestones if m.status == "planned"]
    if not planned:
        return
    names = {m.seq: f"{m.seq}. {m.name}" for m in planned}
    seq = st.selectbox("Milestone", list(names), format_func=names.get, key=f"milestone_{deal.id}")
    if st.button("Complete milestone", key=f"complete_{deal.id}"):
        try:
            done = client.complete_milestone(deal.id, seq)
        except ApiError as exc:
            show_error(exc, "Not completed: ")
            return
        _done(
            f"{md(names[seq])} is complete: its invoice (#{done.invoice_item}) and a client update "
            f"(#{done.update_item}) wait for review."
        )


def _move(client: RevloopClient, deal: DealRead) -> None:
    st.markdown("**Stage**")
    index = OPEN_STAGES.index(deal.stage) if deal.stage in OPEN_STAGES else 0
    stage = st.selectbox("Move to stage", OPEN_STAGES, index=index, key=f"stage_{deal.id}")
    if st.button("Move", key=f"move_{deal.id}"):
        try:
            moved = client.change_stage(deal.id, stage)
        except ApiError as exc:
            show_error(exc, "Not moved: ")
            return
        _done(
            f"Deal #{deal.id} is in {md(moved.stage)}."
            + (" A proposal is being drafted; its cover email will wait for review." if moved.proposal else "")
        )


def _edit(client: RevloopClient, deal: DealRead, people: list[str]) -> None:
    st.markdown("**Edit**")
    owners = [NOBODY, *people, *([deal.owner] if deal.owner and deal.owner not in people else [])]
    owner = st.selectbox("Owner", owners, index=owners.index(deal.owner or NOBODY), key=f"owner_{deal.id}")
    next_step = st.text_input("Next step", value=deal.next_step or "", max_chars=300, key=f"next_{deal.id}")
    next_due = st.date_input("Next step due", value=deal.next_step_due, key=f"next_due_{deal.id}")
    value = st.text_input("Value", value=deal.amount or "", key=f"value_{deal.id}")
    expected = st.date_input("Expected close", value=deal.expected_close, key=f"expected_{deal.id}")
    if not st.button("Save changes", key=f"save_{deal.id}"):
        return
    wanted: dict[str, object] = {
        "owner": None if owner == NOBODY else owner,
        "next_step": next_step.strip() or None,
        "next_step_due": next_due,
        "expected_close": expected,
    }
    current: dict[str, object] = {
        "owner": deal.owner,
        "next_step": deal.next_step,
        "next_step_due": deal.next_step_due,
        "expected_close": deal.expected_close,
    }
    changes = {k: v for k, v in wanted.items() if v != current[k]}
    try:
        amount = Decimal(value.strip()) if value.strip() else None
    except InvalidOperation:
        st.error(f"Not saved:\n- **amount**: {md(repr(value))} is not a number")
        return
    if amount != (Decimal(deal.amount) if deal.amount is not None else None):
        changes["amount"] = value.strip() or None
    if not changes:
        st.info("Nothing changed.")
        return
    try:
        client.update_deal(deal.id, **changes)
    except ApiError as exc:
        show_error(exc, "Not saved: ")
        return
    _done(f"Deal #{deal.id} saved: {', '.join(sorted(changes))}.")


def _close(client: RevloopClient, deal: DealRead) -> None:
    st.markdown("**Close**")
    outcome = st.radio("Outcome", ["won", "lost"], index=None, horizontal=True, key=f"outcome_{deal.id}")
    if outcome == "won":
        st.caption(
            "Won records the client's signature: milestones, the delivery hand-off and a welcome email "
            "(for review) follow."
        )
    reason = st.text_input("Reason (a lost deal needs one)", key=f"lost_reason_{deal.id}")
    if st.button("Close deal", key=f"close_{deal.id}"):
        if outcome is None:
            st.error("Choose won or lost first.")
            return
        try:
            client.close_deal(deal.id, outcome, reason.strip() if outcome == "lost" else None)
        except ApiError as exc:
            show_error(exc, "Not closed: ")
            return
        _done(f"Deal #{deal.id} is {outcome}." + (f" Reason: {md(reason.strip())}" if outcome == "lost" else ""))


def detail(client: RevloopClient, me: dict, deal_id: int, people: list[str]) -> None:
    try:
        deal = client.deal(deal_id)
    except ApiError as exc:
        show_error(exc)
        return
    st.subheader(f"#{deal.id} · {md(deal.name)}")  # a deal's name is its lead's company, as typed
    cols = st.columns(4)
    cols[0].metric("Stage", md(deal.stage))
    cols[1].metric("Value", md(_money(deal.amount, deal.currency)))
    cols[2].metric("Owner", md(deal.owner or "-"))
    cols[3].metric("Expected close", md(deal.expected_close or "-"))
    due = f" (due {deal.next_step_due})" if deal.next_step_due else ""
    since = f" · in this stage since {deal.stage_changed_at:%Y-%m-%d}" if deal.stage_changed_at else ""
    st.markdown(
        f"**Next step:** {md(deal.next_step or 'none set')}{due}  \n"
        f"Product {md(deal.product or '-')} · lead {deal.lead_id or '-'}{since}"
    )
    if deal.outcome == "lost":
        st.warning(f"Lost: {md(deal.lost_reason or 'no reason recorded')}")
    elif deal.outcome == "won":
        st.success("Won." + (f" Kickoff on {deal.project.kickoff_on}." if deal.project else ""))
    _proposals(client, deal)
    _milestones(client, deal)
    if deal.outcome is None and me["role"] in SELLERS:
        st.divider()
        left, middle, right = st.columns(3)
        with left:
            _move(client, deal)
        with middle:
            _edit(client, deal, people)
        with right:
            _close(client, deal)


# --- the pipeline ----------------------------------------------------------------------------------------


def page(client: RevloopClient, me: dict) -> None:
    st.title("Deals")
    if flash := st.session_state.pop(FLASH, None):
        st.success(flash)
    people = _people(client)
    cols = st.columns(3)
    open_only = cols[0].checkbox("Open deals only", value=True, key="deals_open")
    owner = cols[1].selectbox("Owner", [ANYONE, *people], key="deals_owner")
    stage = cols[2].selectbox("Stage", [ANY_STAGE, *OPEN_STAGES, "won", "lost"], key="deals_stage")
    try:
        result = client.deals(
            open_only=open_only,
            owner=None if owner == ANYONE else owner,
            stage=None if stage == ANY_STAGE else stage,
            limit=200,
        )
    except ApiError as exc:
        show_error(exc)
        return
    st.caption(f"{result.total} deal(s) · most recently moved first" + (" · first 200" if result.total > 200 else ""))
    if not result.items:
        st.info("No deals here. A deal is made from a lead: 'Make a deal' on a review item of that lead.")
        return
    today = dt.datetime.now(dt.UTC)
    st.dataframe(
        [
            {
                "id": d.id,
                "deal": d.name,
                "stage": d.stage,
                "value": _money(d.amount, d.currency),
                "owner": d.owner or "",
                "next step": d.next_step or "",
                "due": d.next_step_due,
                "expected close": d.expected_close,
                "days in stage": (today - d.stage_changed_at).days if d.stage_changed_at else None,
                "lost reason": d.lost_reason or "",
            }
            for d in result.items
        ],
        hide_index=True,
        width="stretch",
    )
    # Labels that do not change when the deal does: the widget keeps option labels it was first given.
    labels = {d.id: f"#{d.id} · {d.name}" for d in result.items}
    if st.session_state.get("deal_selected") not in labels:
        st.session_state.pop("deal_selected", None)
    selected = st.selectbox("Open deal", list(labels), format_func=labels.get, key="deal_selected")
    if selected is not None:
        st.divider()
        detail(client, me, selected, people)


if __name__ == "__main__":  # Streamlit runs this file as the page (review/ui/pages.py)
    page(common.client(), st.session_state["me"])
