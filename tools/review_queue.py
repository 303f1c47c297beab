"""The review queue as seen by agents: queue a drafted action, and read back its approval record."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import audit
from core.db import insert_once
from core.errors import Conflict
from core.models import Activity, Decision, ReviewItem, utcnow
from tools.crm import set_lead_status
from tools.registry import tool


class NotApproved(Conflict):
    """Raised when an execute step finds no approval record for its review item."""


class RecipientOptedOut(Conflict):
    """The contact withdrew consent after the draft was approved: the action is cancelled, not retried."""


@tool(scope="queue_review")
def queue_for_review(
    session: Session,
    *,
    thread_id: str,
    interrupt_id: str,
    lead_id: int | None,
    contact_id: int | None,
    kind: str,
    template: str | None,
    brief: dict[str, Any],
    draft: dict[str, Any],
    queue: str = "main",
    sla_due_at: dt.datetime | None = None,
    assignee: str | None = None,
    guard_flags: list[str] | None = None,
    redraft_of: int | None = None,
    actor: str = "agent:lead",
) -> ReviewItem:
    """Create the review item for a graph interrupt, once (keyed by the interrupt id)."""
    item, created = insert_once(
        session,
        ReviewItem(
            thread_id=thread_id,
            interrupt_id=interrupt_id,
            lead_id=lead_id,
            contact_id=contact_id,
            kind=kind,
            template=template,
            brief=brief,
            draft=draft,
            queue=queue,
            sla_due_at=sla_due_at,
            assignee=assignee,
            guard_flags=list(guard_flags or []),
            grade=(str(brief.get("grade") or "")[:1] or None),
            redraft_of=redraft_of,
        ),
        select(ReviewItem).where(ReviewItem.interrupt_id == interrupt_id),
    )
    if not created:
        return item
    audit.record(
        session,
        actor=actor,
        action="review_item.created",
        entity_type="review_item",
        entity_id=item.id,
        after={"kind": kind, "status": item.status, "lead_id": lead_id},
    )
    if lead_id is not None:
        set_lead_status(session, lead_id, "in_review", actor=actor)
    return item


def approved_action(session: Session, review_item_id: int) -> tuple[ReviewItem, Decision]:
    """The item and its approve decision, read from the database (never from graph state)."""
    item = session.get(ReviewItem, review_item_id)
    decision = session.scalar(select(Decision).where(Decision.review_item_id == review_item_id))
    if (
        item is None
        or decision is None
        or decision.action != "approve"
        or item.status not in ("approved", "sent", "done")
    ):
        raise NotApproved(f"review item {review_item_id} has no approval record; nothing is executed")
    return item, decision


def mark_executed(
    session: Session, item: ReviewItem, *, status: str, result: dict[str, Any], actor: str = "agent:lead"
) -> bool:
    """Move an approved item to its final state once; False if it was already there."""
    done = session.execute(
        update(ReviewItem)
        .where(ReviewItem.id == item.id, ReviewItem.status == "approved")
        .values(status=status, executed_at=utcnow(), result=result)
    ).rowcount
    if not done:
        return False
    session.refresh(item)
    audit.record(
        session,
        actor=actor,
        action=f"review_item.{status}",
        entity_type="review_item",
        entity_id=item.id,
        before={"status": "approved"},
        after={"status": status, **result},
    )
    if item.lead_id is not None and status in ("sent", "done"):
        set_lead_status(session, item.lead_id, "contacted", actor=actor)
    return True


@tool(scope="write_crm", side_effect=True)
def log_activity(session: Session, item: ReviewItem, *, kind: str, summary: str) -> Activity:
    """Record an activity for an executed review item, once per item."""
    existing = session.scalar(select(Activity).where(Activity.review_item_id == item.id))
    if existing is not None:
        return existing
    activity = Activity(
        kind=kind, summary=summary, lead_id=item.lead_id, contact_id=item.contact_id, review_item_id=item.id
    )
    session.add(activity)
    session.flush()
    return activity
