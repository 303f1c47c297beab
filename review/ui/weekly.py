"""Managers: the weekly momentum review, a 20-minute agenda walked top to bottom. Each section shows its
counts first, then its lists: what changed in the week, the pipeline by stage, stalled deals, unpaid invoices
by age (GET /v1/reviews/weekly)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import streamlit as st

from core.schemas import WeeklyDeal, WeeklyReview
from review.client import ApiError, RevloopClient
from review.ui import common
from review.ui.common import show_error


def _money(amount: str | None) -> str:
    return "-" if amount is None else f"{Decimal(amount):,.2f}"


def _table(rows: list[dict], empty: str) -> None:
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
    else:
        st.caption(empty)


def _deals(rows: list[WeeklyDeal], *, quiet: bool = False) -> list[dict]:
    return [
        {
            "id": d.id,
            "deal": d.name,
            **({"stage": d.stage} if quiet else {}),
            "owner": d.owner or "(nobody)",
            "value": _money(d.amount),
            "days in stage": d.days_in_stage,
            **({"days quiet": d.days_quiet} if quiet else {}),
            "next step": d.next_step or "(none)",
            "due": d.next_step_due,
            "overdue": "yes" if d.next_step_overdue else "",
        }
        for d in rows
    ]


def _heading(review: WeeklyReview, section: str) -> None:
    n, item = next((n, a) for n, a in enumerate(review.agenda, start=1) if a.section == section)
    st.subheader(f"{n}. {item.title} · {item.minutes} min")


def _changed(review: WeeklyReview) -> None:
    changed = review.changed
    _heading(review, "changed")
    cols = st.columns(5)
    cols[0].metric("Deals created", changed.created, help=f"{changed.imported} imported apart")
    cols[1].metric("Won", changed.won, help=f"value {_money(changed.won_amount)}")
    cols[2].metric("Lost", changed.lost, help=f"value {_money(changed.lost_amount)}")
    cols[3].metric("Stage moves", changed.stage_moves)
    cols[4].metric("Invoices paid", changed.invoices_paid, help=f"amount {_money(changed.paid_amount)}")
    st.markdown("**Won**")
    _table(
        [{"id": d.deal_id, "deal": d.name, "owner": d.owner, "value": _money(d.amount)} for d in changed.won_deals],
        "No deal won this week.",
    )
    st.markdown("**Lost, and why**")
    _table(
        [
            {"id": d.deal_id, "deal": d.name, "owner": d.owner, "value": _money(d.amount), "reason": d.reason}
            for d in changed.lost_deals
        ],
        "No deal lost this week.",
    )
    st.markdown("**Stage moves**")
    _table(
        [
            {
                "id": m.deal_id,
                "deal": m.name,
                "owner": m.owner,
                "from": m.from_stage,
                "to": m.to_stage,
                "when": f"{m.at:%a %d %b %H:%M}",
                "by": m.actor,
            }
            for m in changed.moves
        ],
        "No stage moves this week.",
    )
    st.markdown("**New deals**")
    _table(
        [
            {"id": d.deal_id, "deal": d.name, "owner": d.owner, "stage now": d.stage, "value": _money(d.amount)}
            for d in changed.created_deals
        ],
        "No deal made this week.",
    )
    st.markdown("**Invoices paid**")
    _table(
        [
            {"invoice": i.number, "customer": i.account, "amount": _money(i.amount), "paid on": i.paid_on}
            for i in changed.paid_invoices
        ],
        "No invoice paid this week.",
    )


def _pipeline(review: WeeklyReview) -> None:
    pipeline = review.pipeline
    _heading(review, "pipeline")
    cols = st.columns(4)
    cols[0].metric("Open deals", pipeline.open_deals)
    cols[1].metric("Open value", _money(pipeline.amount))
    cols[2].metric("Without a next step", pipeline.without_next_step)
    cols[3].metric("Next step overdue", pipeline.next_step_overdue)
    st.dataframe(
        [
            {
                "stage": s.stage,
                "deals": s.deals,
                "value": _money(s.amount),
                "oldest (days in stage)": s.oldest_days_in_stage,
            }
            for s in pipeline.stages
        ],
        hide_index=True,
        width="stretch",
    )
    for stage in pipeline.stages:
        if not stage.deals:
            continue
        more = f" (largest {len(stage.items)} shown)" if stage.deals > len(stage.items) else ""
        st.markdown(f"**{stage.stage}** · {stage.deals} deal(s) · {_money(stage.amount)}{more}")
        _table(_deals(stage.items), "")


def _stalled(review: WeeklyReview) -> None:
    stalled = review.stalled
    _heading(review, "stalled")
    st.caption(
        f"Open deals with no activity (a logged activity, a message sent, a stage change) for "
        f"{stalled.after_days} days or more."
    )
    cols = st.columns(3)
    cols[0].metric("Stalled deals", stalled.deals)
    cols[1].metric("Their value", _money(stalled.amount))
    cols[2].metric("Without a next step", stalled.without_next_step)
    _table(_deals(stalled.items, quiet=True), "Nothing has stalled.")


def _invoices(review: WeeklyReview) -> None:
    invoices = review.invoices
    _heading(review, "invoices")
    cols = st.columns(4)
    cols[0].metric("Unpaid invoices", invoices.unpaid_invoices)
    cols[1].metric("Receivable", _money(invoices.receivable))
    cols[2].metric("Overdue", invoices.overdue)
    cols[3].metric("DSO", "-" if invoices.dso_days is None else f"{invoices.dso_days:.1f} days")
    st.dataframe(
        [{"days past due": b.bucket, "invoices": b.invoices, "amount": _money(b.amount)} for b in invoices.buckets],
        hide_index=True,
        width="stretch",
    )
    _table(
        [
            {
                "invoice": i.number,
                "customer": i.account,
                "due": i.due_on,
                "days past due": i.days_past_due,
                "balance": _money(i.balance),
                "disputed": "yes" if i.disputed else "",
                "expected": i.expected_on,
            }
            for i in invoices.items
        ],
        "Nothing is owed.",
    )


def page(client: RevloopClient) -> None:
    st.title("Weekly review")
    today = dt.datetime.now(dt.UTC).date()
    as_of = st.date_input("As of", value=today, min_value=dt.date(2000, 1, 1), key="weekly_as_of")
    try:
        review = client.weekly_review(as_of)
    except ApiError as exc:
        show_error(exc)
        return
    last_day = review.until - dt.timedelta(days=1)
    st.caption(
        f"The week {review.since:%a %d %b} to {last_day:%a %d %b %Y} (UTC) · about {review.minutes} minutes · "
        "owners and next steps as they are now"
    )
    st.markdown(
        "\n".join(f"{n}. **{a.title}** ({a.minutes} min): {a.headline}" for n, a in enumerate(review.agenda, start=1))
    )
    sections = {"changed": _changed, "pipeline": _pipeline, "stalled": _stalled, "invoices": _invoices}
    for item in review.agenda:
        st.divider()
        sections[item.section](review)


if __name__ == "__main__":  # Streamlit runs this file as the page (review/ui/pages.py)
    page(common.client())
