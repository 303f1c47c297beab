"""The SLA watch: no review item sits past its deadline with nobody told.

Every REVLOOP_SLA_WATCH_SECONDS the worker runs one pass (a durable job, scheduled like the integration checks):
- an item that is due soon (less than REVLOOP_SLA_DUE_SOON_MINUTES left, as the queue's `due_soon` says) warns its
  assignee once (sla_at_risk);
- a breached item is escalated once: it goes back to the team queue (assignee None), `escalated_from` keeps who
  had it and `escalated_at` when, the change is audited (review_item.escalated), and the previous assignee and
  the managers are told (sla_breached). Any closer may then take it (review/policy.py: an unassigned item).

Snoozed items wait: a person chose to come back to them later; the watch sees them again when the snooze ends.
Each pass reads only the due-soon window and the breached items not yet escalated (indexed, bounded by
BATCH), never the whole queue, and each change is a compare-and-set, so two workers never warn or escalate twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from core import audit, jobs
from core.db import session_scope
from core.enums import ItemStatus, JobKind, NotificationKind, Role
from core.models import ReviewItem, utcnow
from core.notifications import notify
from core.settings import Settings

log = logging.getLogger("revloop.sla")

ACTOR = "system:sla_watch"
BATCH = 200  # items per kind and pass; a backlog drains over the next passes


@dataclass
class WatchResult:
    warned: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)


def _awake(now: dt.datetime):
    return or_(ReviewItem.snoozed_until.is_(None), ReviewItem.snoozed_until <= now)


def _label(item: ReviewItem) -> str:
    company = str((item.draft or {}).get("facts_used", {}).get("company") or "").strip()
    grade = f"grade {item.grade} " if item.grade else ""
    return f"{grade}{item.kind.replace('_', ' ')} #{item.id}" + (f" · {company}" if company else "")


def warn_due_soon(session: Session, settings: Settings, now: dt.datetime) -> list[int]:
    """Tell each assignee once about their items with less than sla_due_soon_minutes left."""
    soon = now + dt.timedelta(minutes=settings.sla_due_soon_minutes)
    candidates = session.scalars(
        select(ReviewItem)
        .where(
            ReviewItem.status == ItemStatus.PENDING,
            ReviewItem.sla_due_at > now,
            ReviewItem.sla_due_at <= soon,
            ReviewItem.sla_warned_at.is_(None),
            ReviewItem.assignee.is_not(None),
            _awake(now),
        )
        .order_by(ReviewItem.sla_due_at, ReviewItem.id)
        .limit(BATCH)
    ).all()
    warned = []
    for item in candidates:
        won = session.execute(
            update(ReviewItem)
            .where(
                ReviewItem.id == item.id, ReviewItem.status == ItemStatus.PENDING, ReviewItem.sla_warned_at.is_(None)
            )
            .values(sla_warned_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            continue  # decided, or another worker warned first
        left = max(1, round((item.sla_due_at - now).total_seconds() / 60))
        audit.record(
            session,
            actor=ACTOR,
            action="review_item.sla_warned",
            entity_type="review_item",
            entity_id=item.id,
            after={"assignee": item.assignee, "sla_due_at": item.sla_due_at.isoformat(), "minutes_left": left},
        )
        notify(
            session,
            NotificationKind.SLA_AT_RISK,
            f"SLA in {left} min: {_label(item)}",
            body=f"Decide it before {item.sla_due_at:%H:%M} UTC, or it goes back to the team queue.",
            severity="warning",
            roles=(),
            names=[item.assignee],
            entity=("review_item", item.id),
            dedupe_key=f"sla_at_risk:{item.id}",
        )
        warned.append(item.id)
    return warned


def escalate_breached(session: Session, now: dt.datetime) -> list[int]:
    """Move each breached, not yet escalated item to the team queue, once, and tell who had it and the managers."""
    candidates = session.scalars(
        select(ReviewItem)
        .where(
            ReviewItem.status == ItemStatus.PENDING,
            ReviewItem.escalated_at.is_(None),
            ReviewItem.sla_due_at <= now,
            _awake(now),
        )
        .order_by(ReviewItem.sla_due_at, ReviewItem.id)
        .limit(BATCH)
    ).all()
    escalated = []
    for item in candidates:
        had = item.assignee
        won = session.execute(
            update(ReviewItem)
            .where(
                ReviewItem.id == item.id,
                ReviewItem.status == ItemStatus.PENDING,
                ReviewItem.escalated_at.is_(None),
                ReviewItem.assignee.is_(None) if had is None else ReviewItem.assignee == had,
            )
            .values(assignee=None, escalated_from=had, escalated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            continue  # decided, reassigned or escalated by another worker meanwhile: next pass looks again
        late = max(0, round((now - item.sla_due_at).total_seconds() / 60))
        audit.record(
            session,
            actor=ACTOR,
            action="review_item.escalated",
            entity_type="review_item",
            entity_id=item.id,
            before={"assignee": had},
            after={
                "assignee": None,
                "escalated_from": had,
                "sla_due_at": item.sla_due_at.isoformat(),
                "minutes_late": late,
            },
        )
        where = f"was with {had}" if had else "was unassigned"
        notify(
            session,
            NotificationKind.SLA_BREACHED,
            f"SLA breached: {_label(item)} is back in the team queue",
            body=f"Due {item.sla_due_at:%Y-%m-%d %H:%M} UTC ({late} min ago); it {where}. Any closer can take it.",
            severity="critical",
            roles=(Role.MANAGER,),
            names=[had],
            entity=("review_item", item.id),
            dedupe_key=f"sla_breached:{item.id}",
        )
        escalated.append(item.id)
    return escalated


def watch(settings: Settings, now: dt.datetime | None = None) -> WatchResult:
    """One pass: warn what is due soon, escalate what breached. Safe to run again at once (nothing repeats)."""
    now = now or utcnow()
    result = WatchResult()
    with session_scope(settings) as session:
        result.escalated = escalate_breached(session, now)
        result.warned = warn_due_soon(session, settings, now)
    if result.warned or result.escalated:
        log.info("sla watch: %d warned, %d escalated", len(result.warned), len(result.escalated))
    return result


def schedule(settings: Settings, at: dt.datetime | None = None) -> None:
    """Queue the next pass (once per interval slot, whatever restarts or how many workers schedule it)."""
    with session_scope(settings) as session:
        jobs.enqueue_next_slot(session, JobKind.SLA_WATCH, dt.timedelta(seconds=settings.sla_watch_seconds), now=at)


def run_scheduled(settings: Settings, payload: dict[str, Any]) -> None:
    watch(settings)
    schedule(settings)
