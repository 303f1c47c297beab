"""Review decisions: record who decided what (with the edit diff), once, and resume the thread."""

from __future__ import annotations

import difflib

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from agents.kinds import REVIEW_RESUME
from core import audit, jobs
from core.errors import Conflict, InvalidInput, NotFound
from core.models import Decision, ReviewItem, utcnow
from tools.crm import set_lead_status

PAST_TENSE = {"approve": "approved", "reject": "rejected"}
STATUSES = ("pending", "approved", "rejected", "sent", "done", "cancelled", "failed")


def list_items(
    session: Session, *, status: str | None, limit: int, offset: int, queue: str | None = None
) -> tuple[list[ReviewItem], int]:
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", details={"status": status})
    stmt = select(ReviewItem).options(selectinload(ReviewItem.decision))
    count = select(func.count(ReviewItem.id))
    if status:
        stmt, count = stmt.where(ReviewItem.status == status), count.where(ReviewItem.status == status)
    if queue:
        stmt, count = stmt.where(ReviewItem.queue == queue), count.where(ReviewItem.queue == queue)
    # Most urgent first: the nearest first-touch deadline, then the oldest.
    order = (ReviewItem.sla_due_at.is_(None), ReviewItem.sla_due_at, ReviewItem.created_at, ReviewItem.id)
    items = session.scalars(stmt.order_by(*order).limit(limit).offset(offset)).all()
    return list(items), session.scalar(count) or 0


def get_item(session: Session, item_id: int) -> ReviewItem:
    item = session.get(ReviewItem, item_id, options=[selectinload(ReviewItem.decision)])
    if item is None:
        raise NotFound(f"review item {item_id} not found")
    return item


def _edit_diff(old: str, new: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"draft/{name}", f"final/{name}"
        )
    )


def _claim(session: Session, item: ReviewItem, new_status: str) -> None:
    """Compare-and-set pending -> new_status; exactly one of any number of racing decisions wins."""
    won = session.execute(
        update(ReviewItem)
        .where(ReviewItem.id == item.id, ReviewItem.status == "pending")
        .values(status=new_status, decided_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        session.refresh(item)
        raise Conflict(f"review item {item.id} is already {item.status}; a decision was recorded before this one")
    session.refresh(item)


def _record(session: Session, item: ReviewItem, decision: Decision, before_status: str) -> ReviewItem:
    try:
        with session.begin_nested():
            session.add(decision)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"review item {item.id} already has a decision") from exc
    audit.record(
        session,
        actor=decision.actor,
        action=f"review_item.{PAST_TENSE[decision.action]}",
        entity_type="review_item",
        entity_id=item.id,
        before={"status": before_status},
        after={"status": item.status, "edited": decision.edited, "reason": decision.reason, "decision_id": decision.id},
    )
    jobs.enqueue(session, REVIEW_RESUME, {"review_item_id": item.id}, dedupe_key=f"{REVIEW_RESUME}:{item.id}")
    session.refresh(item)
    return item


def approve(
    session: Session,
    item_id: int,
    *,
    actor: str,
    subject: str | None = None,
    body: str | None = None,
    acknowledge_flags: bool = False,
) -> ReviewItem:
    item = get_item(session, item_id)
    if item.status != "pending":
        raise Conflict(f"review item {item_id} is already {item.status}; nothing was changed")
    if item.guard_flags and not acknowledge_flags:
        raise Conflict(
            f"review item {item_id} has grounding flags ({'; '.join(item.guard_flags)}): check the draft, "
            "then approve with acknowledge_flags=true",
            details={"guard_flags": item.guard_flags},
        )
    draft_subject, draft_body = item.draft.get("subject", ""), item.draft.get("body", "")
    final_subject = subject if subject is not None else draft_subject
    final_body = body if body is not None else draft_body
    diff = _edit_diff(draft_subject + "\n", final_subject + "\n", "subject") + _edit_diff(
        draft_body, final_body, "body"
    )
    _claim(session, item, "approved")
    decision = Decision(
        review_item_id=item.id,
        action="approve",
        actor=actor,
        final_subject=final_subject,
        final_body=final_body,
        edited=bool(diff),
        edit_diff=diff or None,
    )
    return _record(session, item, decision, "pending")


def reject(session: Session, item_id: int, *, actor: str, reason: str) -> ReviewItem:
    item = get_item(session, item_id)
    if item.status != "pending":
        raise Conflict(f"review item {item_id} is already {item.status}; nothing was changed")
    _claim(session, item, "rejected")
    if item.lead_id is not None:
        set_lead_status(session, item.lead_id, "draft_rejected", actor=actor)
    decision = Decision(review_item_id=item.id, action="reject", actor=actor, reason=reason)
    return _record(session, item, decision, "pending")
