"""Manager KPIs over a window of days: speed to lead, SLA compliance, funnel, stage aging, reviewer
throughput and review time, and how often each template's drafts are approved, edited or rejected.

No number is NaN: a rate over nothing is null (the app shows "—"). Imported history counts by its own dates: a lead
imported from a file with a capture date is in the window by that date; one imported without (its captured_at is the
import's time, recorded on the import's audit event) is left out of the window's funnel and speed to lead and
counted in imported_leads_left_out. Stage aging is measured from when a deal entered its stage (stage_changed_at,
or engaged_at for a deal still engaging); an open deal with neither (seeded or imported without dates) has no age."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import and_, func, not_, select
from sqlalchemy.orm import Session

from core.enums import OPEN_STAGES, DealOutcome, DealStage, DecisionAction, ItemStatus
from core.models import AuditEvent, Deal, Decision, Lead, ReviewItem, utcnow


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _days(value: float) -> float:
    return round(value, 1)  # median and max alike, so the max is never shown below the median


def import_times(session: Session) -> list[dt.datetime]:
    """The capture times lead imports gave rows that had no date of their own (one per import)."""
    times = []
    for after in session.scalars(select(AuditEvent.after).where(AuditEvent.action == "import.leads")).all():
        stamp = (after or {}).get("imported_at")
        if stamp:
            times.append(dt.datetime.fromisoformat(stamp))
    return times


def stage_entered(deal_stage: str, changed: dt.datetime | None, engaged: dt.date | None) -> dt.datetime | None:
    """When an open deal entered its stage, if a record says so: its last stage change, else (still engaging) the
    day it was engaged. Never its created_at: an imported or seeded deal is created long after it entered."""
    if changed is not None:
        return changed
    if engaged is not None and deal_stage == DealStage.ENGAGING:
        return dt.datetime.combine(engaged, dt.time(), tzinfo=dt.UTC)
    return None


def compute(session: Session, *, days: int = 30, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    since = now - dt.timedelta(days=days)
    # Leads captured in the window by a date of their own: live captures, and imports that carried one.
    undated = [t for t in import_times(session) if t >= since]
    undated_import = and_(Lead.external_source.is_not(None), Lead.captured_at.in_(undated)) if undated else None
    in_window = [Lead.captured_at >= since] + ([not_(undated_import)] if undated_import is not None else [])
    left_out = (
        session.scalar(select(func.count(Lead.id)).where(Lead.captured_at >= since, undated_import)) or 0
        if undated_import is not None
        else 0
    )

    # Speed to lead: capture -> first executed outbound touch, for leads captured in the window.
    first_touch = (
        select(ReviewItem.lead_id, func.min(ReviewItem.executed_at).label("at"))
        .where(ReviewItem.status.in_((ItemStatus.SENT, ItemStatus.DONE)), ReviewItem.lead_id.is_not(None))
        .group_by(ReviewItem.lead_id)
        .subquery()
    )
    touched = session.execute(
        select(Lead.captured_at, first_touch.c.at).join(first_touch, first_touch.c.lead_id == Lead.id).where(*in_window)
    ).all()
    minutes_to_touch = [(at - captured).total_seconds() / 60 for captured, at in touched if at >= captured]
    leads_in_window = session.scalar(select(func.count(Lead.id)).where(*in_window)) or 0

    # SLA: items whose deadline fell in the window and were decided by then (pending and not yet due: unknown).
    due_items = session.execute(
        select(ReviewItem.status, ReviewItem.decided_at, ReviewItem.sla_due_at).where(
            ReviewItem.sla_due_at.is_not(None), ReviewItem.sla_due_at >= since
        )
    ).all()
    judged = [(s, d, due) for s, d, due in due_items if d is not None or due <= now]
    inside = sum(1 for _, decided, due in judged if decided is not None and decided <= due)

    # Funnel of leads captured in the window.
    window_leads = select(Lead.id).where(*in_window)
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

    # Stage aging of open deals: days since the stage was entered, for the deals whose records say when.
    aging: dict[str, list[float]] = defaultdict(list)
    open_deals: Counter = Counter()
    for stage, changed, engaged in session.execute(
        select(Deal.stage, Deal.stage_changed_at, Deal.engaged_at).where(Deal.outcome.is_(None))
    ).all():
        open_deals[stage] += 1
        entered = stage_entered(stage, changed, engaged)
        if entered is not None:
            aging[stage].append(max(0.0, (now - entered).total_seconds() / 86400))
    order = {s: i for i, s in enumerate(OPEN_STAGES)}
    stage_aging = [
        {
            "stage": stage,
            "open_deals": count,
            "dated_deals": len(aging[stage]),
            "median_days": _days(statistics.median(aging[stage])) if aging[stage] else None,
            "max_days": _days(max(aging[stage])) if aging[stage] else None,
        }
        for stage, count in sorted(open_deals.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))
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
        "imported_leads_left_out": left_out,
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
