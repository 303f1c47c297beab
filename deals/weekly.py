"""The weekly momentum review: a 20-minute agenda a manager walks through, read-only.

1. What changed in the 7 days up to `as_of`: deals created, won, lost (with reasons), stage moves, invoices paid.
2. The pipeline by stage: every deal open at `as_of`, with owner, days in its stage and next step (and due date).
3. Stalled deals: open, and no activity (activities, stage changes, review items sent) for
   `settings.stale_deal_days` (REVLOOP_STALE_DEAL_DAYS) days, with owner and next step.
4. Unpaid invoices by age: billing's own cash view (billing/ledger.cash_view), as of the same day.

Each section gives its counts first, then its lists (the longest cut to `limit`, the counts never are).

`as_of` is a day: the review is as it stood at the end of that day (UTC). Which deals were open then and the
stage each was in come from the records and the audit trail (a deal moved since is shown in the stage it had);
owner, value and next step are the deal's current ones.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from billing import ledger
from core.enums import OPEN_STAGES, DealOutcome, InvoiceStatus, ItemStatus
from core.models import Account, Activity, AuditEvent, Deal, Invoice, Product, ReviewItem, SalesAgent
from core.settings import Settings

WEEK = dt.timedelta(days=7)
# Audit events that carry a deal's stage: 'after' is the stage entered, 'before' the stage left.
STAGE_EVENTS = ("deal.created", "deal.stage_changed", "deal.won", "deal.lost")
UNKNOWN_STAGE = "unknown"  # open then, closed since, and no trail says in which stage it was
AGENDA = (  # section, title, minutes: the order a manager walks through
    ("changed", "What changed since last week", 5),
    ("pipeline", "Pipeline by stage", 5),
    ("stalled", "Stalled deals", 6),
    ("invoices", "Unpaid invoices by age", 4),
)


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(Decimal(value).quantize(Decimal("0.01")))


def _total(values: Iterable[Decimal | None]) -> Decimal:
    return sum((v for v in values if v is not None), Decimal("0"))


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


class _Owners:
    """A deal's owner: the person set on it, else (imported deals) its CRM sales agent."""

    def __init__(self, session: Session):
        self.agents = dict(session.execute(select(SalesAgent.id, SalesAgent.name)).all())

    def __call__(self, deal: Deal) -> str | None:
        return deal.owner or self.agents.get(deal.sales_agent_id)


def _chunks(ids: list[int], size: int = 500) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


# --- the deals open at the end of as_of, and the stage each was in ---------------------------------------


def _open_deals(session: Session, until: dt.datetime) -> list[Deal]:
    """Deals that existed before `until` (made, or for imported ones engaged, by then) and were not closed by
    then (imported closed deals without a close date count as closed)."""
    return list(
        session.scalars(
            select(Deal).where(
                or_(Deal.created_at < until, Deal.engaged_at < until.date()),
                or_(Deal.outcome.is_(None), Deal.closed_at >= until),
            )
        )
    )


def _stage_events(session: Session, deal_ids: list[int]) -> dict[int, list[AuditEvent]]:
    events: dict[int, list[AuditEvent]] = defaultdict(list)
    for chunk in _chunks(deal_ids):
        for event in session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.entity_type == "deal",
                AuditEvent.action.in_(STAGE_EVENTS),
                AuditEvent.entity_id.in_([str(i) for i in chunk]),
            )
            .order_by(AuditEvent.at, AuditEvent.id)
        ):
            events[int(event.entity_id)].append(event)
    return events


def _start(deal: Deal) -> dt.datetime:
    """When a deal began: made in revloop, or (imported deals) engaged."""
    return min(_day_start(deal.engaged_at), deal.created_at) if deal.engaged_at is not None else deal.created_at


def _entered(deal: Deal) -> dt.datetime:
    """When a deal entered its current stage, as the records say."""
    return deal.stage_changed_at if deal.stage_changed_at is not None else _start(deal)


def _stages_at(session: Session, deals: list[Deal], until: dt.datetime) -> dict[int, tuple[str, dt.datetime]]:
    """deal id -> (the stage it was in at `until`, since when). A deal not moved since is in its current stage;
    one moved (or closed) since is read back from its audit trail."""
    result = {}
    moved_since = []
    for deal in deals:
        if deal.outcome is None and (deal.stage_changed_at is None or deal.stage_changed_at < until):
            result[deal.id] = (deal.stage, _entered(deal))
        else:
            moved_since.append(deal)
    trail = _stage_events(session, [d.id for d in moved_since]) if moved_since else {}
    for deal in moved_since:
        events = trail.get(deal.id, [])
        earlier = [e for e in events if e.at < until and (e.after or {}).get("stage")]
        later = [e for e in events if e.at >= until and (e.before or {}).get("stage")]
        if earlier:
            result[deal.id] = (earlier[-1].after["stage"], earlier[-1].at)
        elif later:
            result[deal.id] = (later[0].before["stage"], _start(deal))
        else:
            result[deal.id] = (UNKNOWN_STAGE, _start(deal))
    return result


def _last_activity(
    session: Session, deals: list[Deal], stages: dict[int, tuple[str, dt.datetime]], until: dt.datetime
) -> dict[int, dt.datetime]:
    """deal id -> its latest activity before `until`: an activity logged on the deal or its lead, a review item
    of its lead that was carried out (sent, or done), a stage change, or its creation in revloop."""
    by_deal = dict(
        session.execute(
            select(Activity.deal_id, func.max(Activity.occurred_at))
            .where(Activity.deal_id.is_not(None), Activity.occurred_at < until)
            .group_by(Activity.deal_id)
        ).all()
    )
    by_lead = dict(
        session.execute(
            select(Activity.lead_id, func.max(Activity.occurred_at))
            .where(Activity.lead_id.is_not(None), Activity.occurred_at < until)
            .group_by(Activity.lead_id)
        ).all()
    )
    sent = dict(
        session.execute(
            select(ReviewItem.lead_id, func.max(ReviewItem.executed_at))
            .where(
                ReviewItem.lead_id.is_not(None),
                ReviewItem.status.in_((ItemStatus.SENT, ItemStatus.DONE)),
                ReviewItem.executed_at < until,
            )
            .group_by(ReviewItem.lead_id)
        ).all()
    )
    last = {}
    for deal in deals:
        moments = [stages[deal.id][1], by_deal.get(deal.id)]
        if deal.external_source is None:
            moments.append(deal.created_at)
        if deal.lead_id is not None:
            moments += [by_lead.get(deal.lead_id), sent.get(deal.lead_id)]
        last[deal.id] = max(m for m in moments if m is not None)
    return last


def _deal_row(
    deal: Deal, stage: str, since: dt.datetime, last: dt.datetime, as_of: dt.date, product: str | None, owner: _Owners
) -> dict[str, Any]:
    return {
        "id": deal.id,
        "name": deal.name,
        "stage": stage,
        "owner": owner(deal),
        "amount": _money(deal.amount),
        "currency": deal.currency,
        "product": product,
        "days_in_stage": max(0, (as_of - since.date()).days),
        "next_step": deal.next_step,
        "next_step_due": deal.next_step_due,
        "next_step_overdue": deal.next_step_due is not None and deal.next_step_due < as_of,
        "expected_close": deal.expected_close,
        "last_activity_at": last,
        "days_quiet": max(0, (as_of - last.date()).days),
    }


def _by_value(row: dict[str, Any]) -> tuple:
    return (-Decimal(row["amount"] or 0), row["id"])


def _pipeline(rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    by_stage: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_stage[row["stage"]].append(row)
    order = [*OPEN_STAGES, *sorted(s for s in by_stage if s not in OPEN_STAGES)]
    stages = []
    for stage in order:
        listed = sorted(by_stage.get(stage, []), key=_by_value)
        stages.append(
            {
                "stage": stage,
                "deals": len(listed),
                "amount": _money(_total(Decimal(r["amount"]) if r["amount"] else None for r in listed)),
                "oldest_days_in_stage": max((r["days_in_stage"] for r in listed), default=None),
                "items": listed[:limit],
            }
        )
    return {
        "open_deals": len(rows),
        "amount": _money(_total(Decimal(r["amount"]) if r["amount"] else None for r in rows)),
        "without_next_step": sum(1 for r in rows if not r["next_step"]),
        "next_step_overdue": sum(1 for r in rows if r["next_step_overdue"]),
        "stages": stages,
    }


def _stalled(rows: list[dict[str, Any]], after_days: int, limit: int) -> dict[str, Any]:
    quiet = sorted(
        (r for r in rows if r["days_quiet"] >= after_days),
        key=lambda r: (-r["days_quiet"], *_by_value(r)),
    )
    return {
        "after_days": after_days,
        "deals": len(quiet),
        "amount": _money(_total(Decimal(r["amount"]) if r["amount"] else None for r in quiet)),
        "without_next_step": sum(1 for r in quiet if not r["next_step"]),
        "items": quiet[:limit],
    }


# --- what changed in the week ----------------------------------------------------------------------------


def _changes(session: Session, since: dt.datetime, until: dt.datetime, limit: int, owner: _Owners) -> dict[str, Any]:
    def closed(outcome: DealOutcome) -> list[Deal]:
        return list(
            session.scalars(
                select(Deal)
                .where(Deal.outcome == outcome, Deal.closed_at >= since, Deal.closed_at < until)
                .order_by(Deal.closed_at.desc(), Deal.id.desc())
            )
        )

    def change(deal: Deal, at: dt.datetime | None, reason: str | None = None) -> dict[str, Any]:
        return {
            "deal_id": deal.id,
            "name": deal.name,
            "owner": owner(deal),
            "stage": deal.stage,
            "amount": _money(deal.amount),
            "currency": deal.currency,
            "at": at,
            "reason": reason,
        }

    created = list(
        session.scalars(
            select(Deal)
            .where(Deal.created_at >= since, Deal.created_at < until, Deal.external_source.is_(None))
            .order_by(Deal.created_at.desc(), Deal.id.desc())
        )
    )
    imported = (
        session.scalar(
            select(func.count(Deal.id)).where(
                Deal.created_at >= since, Deal.created_at < until, Deal.external_source.is_not(None)
            )
        )
        or 0
    )
    won, lost = closed(DealOutcome.WON), closed(DealOutcome.LOST)
    moves = list(
        session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.entity_type == "deal",
                AuditEvent.action == "deal.stage_changed",
                AuditEvent.at >= since,
                AuditEvent.at < until,
            )
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        )
    )
    moved = {d.id: d for d in session.scalars(select(Deal).where(Deal.id.in_({int(e.entity_id) for e in moves})))}
    paid = list(
        session.scalars(
            select(Invoice)
            .where(
                Invoice.status == InvoiceStatus.PAID,
                Invoice.paid_on >= since.date(),
                Invoice.paid_on < until.date(),
            )
            .order_by(Invoice.paid_on.desc(), Invoice.id.desc())
        )
    )
    accounts = _account_names(session, {i.account_id for i in paid})
    return {
        "since": since,
        "until": until,
        "created": len(created),
        "imported": imported,
        "won": len(won),
        "won_amount": _money(_total(d.amount for d in won)),
        "lost": len(lost),
        "lost_amount": _money(_total(d.amount for d in lost)),
        "stage_moves": len(moves),
        "invoices_paid": len(paid),
        "paid_amount": _money(_total(i.amount for i in paid)),
        "created_deals": [change(d, d.created_at) for d in created[:limit]],
        "won_deals": [change(d, d.closed_at) for d in won[:limit]],
        "lost_deals": [change(d, d.closed_at, d.lost_reason) for d in lost[:limit]],
        "moves": [
            {
                "deal_id": int(e.entity_id),
                "name": moved[int(e.entity_id)].name if int(e.entity_id) in moved else None,
                "owner": owner(moved[int(e.entity_id)]) if int(e.entity_id) in moved else None,
                "from_stage": (e.before or {}).get("stage"),
                "to_stage": (e.after or {}).get("stage"),
                "at": e.at,
                "actor": e.actor,
            }
            for e in moves[:limit]
        ],
        "paid_invoices": [
            {
                "id": i.id,
                "number": i.number,
                "account_id": i.account_id,
                "account": accounts.get(i.account_id),
                "deal_id": i.deal_id,
                "amount": _money(i.amount),
                "currency": i.currency,
                "paid_on": i.paid_on,
            }
            for i in paid[:limit]
        ],
    }


# --- unpaid invoices: billing's cash view ----------------------------------------------------------------


def _account_names(session: Session, ids: set[int]) -> dict[int, str]:
    names: dict[int, str] = {}
    for chunk in _chunks(sorted(ids)):
        names.update(session.execute(select(Account.id, Account.name).where(Account.id.in_(chunk))).all())
    return names


def _bucket(days_past_due: int) -> str:
    return next(name for name, low, high in ledger.BUCKETS if low <= days_past_due <= high)


def _invoices(session: Session, as_of: dt.date, limit: int) -> dict[str, Any]:
    view = ledger.cash_view(session, as_of)
    unpaid = view["unpaid"]
    counts: dict[str, int] = defaultdict(int)
    for row in unpaid:
        counts[_bucket(row["days_past_due"])] += 1
    accounts = _account_names(session, {row["account_id"] for row in unpaid})
    oldest_first = sorted(unpaid, key=lambda r: (-r["days_past_due"], -Decimal(r["balance"]), r["id"]))
    return {
        "unpaid_invoices": len(unpaid),
        "receivable": view["receivable"],
        "overdue": sum(1 for r in unpaid if r["days_past_due"] > 0),
        "disputed": sum(1 for r in unpaid if r["disputed"]),
        "dso_days": view["dso_days"],
        "buckets": [
            {"bucket": name, "invoices": counts.get(name, 0), "amount": view["aging"][name]}
            for name, _, _ in ledger.BUCKETS
        ],
        "items": [
            {
                "id": r["id"],
                "number": r["number"],
                "account_id": r["account_id"],
                "account": accounts.get(r["account_id"]),
                "due_on": r["due_on"],
                "days_past_due": r["days_past_due"],
                "bucket": _bucket(r["days_past_due"]),
                "balance": r["balance"],
                "disputed": r["disputed"],
                "expected_on": r["expected_on"],
            }
            for r in oldest_first[:limit]
        ],
    }


# --- the review ------------------------------------------------------------------------------------------


def _headlines(changed: dict, pipeline: dict, stalled: dict, invoices: dict) -> dict[str, str]:
    over_60 = sum(Decimal(b["amount"]) for b in invoices["buckets"] if b["bucket"] in ("61-90", "90+"))
    return {
        "changed": f"{changed['created']} deal(s) created, {changed['won']} won ({changed['won_amount']}), "
        f"{changed['lost']} lost, {changed['stage_moves']} stage move(s), "
        f"{changed['invoices_paid']} invoice(s) paid ({changed['paid_amount']})",
        "pipeline": f"{pipeline['open_deals']} open deal(s) worth {pipeline['amount']}; "
        f"{pipeline['without_next_step']} without a next step, {pipeline['next_step_overdue']} next step(s) overdue",
        "stalled": f"{stalled['deals']} open deal(s) with no activity for {stalled['after_days']}+ days "
        f"({stalled['amount']})",
        "invoices": f"{invoices['unpaid_invoices']} unpaid invoice(s), {invoices['receivable']} receivable, "
        f"{invoices['overdue']} overdue, {_money(over_60)} over 60 days late",
    }


def weekly_review(session: Session, settings: Settings, as_of: dt.date, *, limit: int = 25) -> dict[str, Any]:
    """The weekly momentum review as it stood at the end of `as_of` (UTC); lists cut to `limit` rows each."""
    until = _day_start(as_of + dt.timedelta(days=1))
    since = until - WEEK
    deals = _open_deals(session, until)
    stages = _stages_at(session, deals, until)
    last = _last_activity(session, deals, stages, until)
    products = dict(session.execute(select(Product.id, Product.name)).all()) if deals else {}
    owner = _Owners(session)
    rows = [_deal_row(d, *stages[d.id], last[d.id], as_of, products.get(d.product_id), owner) for d in deals]
    changed = _changes(session, since, until, limit, owner)
    pipeline = _pipeline(rows, limit)
    stalled = _stalled(rows, settings.stale_deal_days, limit)
    invoices = _invoices(session, as_of, limit)
    headlines = _headlines(changed, pipeline, stalled, invoices)
    return {
        "as_of": as_of,
        "since": since,
        "until": until,
        "minutes": sum(m for _, _, m in AGENDA),
        "agenda": [
            {"section": key, "title": title, "minutes": minutes, "headline": headlines[key]}
            for key, title, minutes in AGENDA
        ],
        "changed": changed,
        "pipeline": pipeline,
        "stalled": stalled,
        "invoices": invoices,
    }
