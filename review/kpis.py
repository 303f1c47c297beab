"""Manager KPIs over a window of days: speed to lead, SLA compliance, funnel, stage aging, reviewer
throughput and review time, and how often each template's drafts are approved, edited or rejected."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.enums import OPEN_STAGES, DealOutcome, DecisionAction, ItemStatus
from core.models import Deal, Decision, Lead, ReviewItem, utcnow


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def compute(session: Session, *, days: int = 30, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    since = now - dt.timedelta(days=days)

    # Speed to lead: capture -> first executed outbound touch, for leads captured in the window.
    first_touch = (
        select(ReviewItem.lead_id, func.min(ReviewItem.executed_at).label("at"))
        .where(ReviewItem.status.in_((ItemStatus.SENT, ItemStatus.DONE)), ReviewItem.lead_id.is_not(None))
        .group_by(ReviewItem.lead_id)
        .subquery()
    )
    touched = session.execute(
        select(Lead.captured_at, first_touch.c.at)
        .join(first_touch, first_touch.c.lead_id == Lead.id)
        .where(Lead.captured_at >= since)
    ).all()
    minutes_to_touch = [(at - captured).total_seconds() / 60 for captured, at in touched if at >= captured]
    leads_in_window = session.scalar(select(func.count(Lead.id)).where(Lead.captured_at >= since)) or 0

    # SLA: items whose deadline fell in the window and were decided by then (pending and not yet due: unknown).
    due_items = session.execute(
        select(ReviewItem.status, ReviewItem.decided_at, ReviewItem.sla_due_at).where(
            ReviewItem.sla_due_at.is_not(None), ReviewItem.sla_due_at >= since
        )
    ).all()
    judged = [(s, d, due) for s, d, due in due_items if d is not None or due <= now]
    inside = sum(1 for _, decided, due in judged if decided is not None and decided <= due)

    # Funnel of leads captured in the window.
    window_leads = select(Lead.id).where(Lead.captured_at >= since)
    contacted = (
        session.scalar(select(func.count()).select_from(first_touch).where(first_touch.c.lead_id.in_(window_leads)))
        or 0
    )
    deals = session.execute(select(Deal.lead_id, Deal.outcome).where(Deal.lead_id.in_(window_leads))).all()
    opportunity = {lead_id for lead_id, _ in deals}
    won = {lead_id for lead_id, outcome in deals if outcome == DealOutcome.WON}
    funnel_counts = [
        ("captured", leads_in_window),
        ("contacted", contacted),
        ("opportunity", len(opportunity)),
        ("won", len(won)),
    ]
    funnel = [
        {
            "stage": name,
            "count": count,
            "conversion_from_previous": _share(count, funnel_counts[i - 1][1]) if i else None,
        }
        for i, (name, count) in enumerate(funnel_counts)
    ]

    # Stage aging of open deals: days since the stage was entered.
    aging: dict[str, list[float]] = defaultdict(list)
    for stage, changed, engaged, created in session.execute(
        select(Deal.stage, Deal.stage_changed_at, Deal.engaged_at, Deal.created_at).where(Deal.outcome.is_(None))
    ).all():
        entered = changed or (
            dt.datetime.combine(engaged, dt.time(), tzinfo=dt.UTC) if engaged is not None else created
        )
        aging[stage].append(max(0.0, (now - entered).total_seconds() / 86400))
    order = {s: i for i, s in enumerate(OPEN_STAGES)}
    stage_aging = [
        {"stage": stage, "open_deals": len(ages), "median_days": _median(ages), "max_days": round(max(ages), 1)}
        for stage, ages in sorted(aging.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))
    ]

    # Reviewers: decisions in the window, and review time from first open to decision.
    decisions = session.execute(
        select(
            Decision.actor,
            Decision.action,
            Decision.edited,
            Decision.decided_at,
            ReviewItem.first_opened_at,
            ReviewItem.template,
        )
        .join(ReviewItem, ReviewItem.id == Decision.review_item_id)
        .where(Decision.decided_at >= since)
    ).all()
    per_reviewer: dict[str, list[float]] = defaultdict(list)
    reviews = Counter()
    for actor, _, _, decided, opened, _ in decisions:
        reviews[actor] += 1
        if opened is not None and decided >= opened:
            per_reviewer[actor].append((decided - opened).total_seconds())
    reviewers = [
        {
            "reviewer": actor,
            "reviews": count,
            "median_review_seconds": _median(per_reviewer[actor]),
        }
        for actor, count in reviews.most_common()
    ]
    all_review_seconds = [s for values in per_reviewer.values() for s in values]

    # Templates: where drafts need most editing.
    per_template: dict[str, Counter] = defaultdict(Counter)
    for _, action, edited, _, _, template in decisions:
        c = per_template[template or "(none)"]
        c["n"] += 1
        c["approved"] += action == DecisionAction.APPROVE
        c["edited"] += action == DecisionAction.APPROVE and bool(edited)
        c["rejected"] += action == DecisionAction.REJECT
    templates = sorted(
        (
            {
                "template": name,
                "decisions": c["n"],
                "approval_rate": _share(c["approved"] - c["edited"], c["n"]),
                "edit_rate": _share(c["edited"], c["n"]),
                "reject_rate": _share(c["rejected"], c["n"]),
            }
            for name, c in per_template.items()
        ),
        key=lambda row: -(row["edit_rate"] or 0) - (row["reject_rate"] or 0),
    )
    # Proposal turnaround: proposal requested (the deal entered the proposal stage) -> proposal email sent.
    from core.models import Proposal

    turnaround = [
        (sent - entered).total_seconds() / 3600
        for entered, sent in session.execute(
            select(Proposal.created_at, ReviewItem.executed_at)
            .join(ReviewItem, ReviewItem.id == Proposal.review_item_id)
            .where(ReviewItem.status == ItemStatus.SENT, ReviewItem.executed_at >= since)
        ).all()
        if entered is not None and sent is not None and sent >= entered
    ]
    return {
        "median_proposal_turnaround_hours": _median(turnaround),
        "proposals_sent": len(turnaround),
        "window_days": days,
        "since": since,
        "generated_at": now,
        "leads_captured": leads_in_window,
        "median_minutes_to_first_touch": _median(minutes_to_touch),
        "leads_touched": len(minutes_to_touch),
        "next_action_within_sla": _share(inside, len(judged)),
        "sla_items_judged": len(judged),
        "funnel": funnel,
        "stage_aging": stage_aging,
        "reviewers": reviewers,
        "median_review_seconds": _median(all_review_seconds),
        "templates": templates,
    }
