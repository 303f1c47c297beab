"""What a person does with an approved email that did not go out: Retry a send that failed (or send again
one whose delivery is unknown), or mark as sent one the provider did deliver. Each is audited; a Retry
queues the one executor again, and the outbox still sends the message at most once."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core import audit, jobs
from core.enums import ItemStatus, JobKind, OutboxStatus
from core.errors import Conflict
from core.models import AuditEvent, Decision, OutboxMessage, ReviewItem, utcnow
from review import policy
from review.decisions import get_item
from review.policy import Who
from review.queue import log_activity, mark_executed

RETRYABLE = (ItemStatus.SEND_FAILED, ItemStatus.DELIVERY_UNKNOWN)


def _load(session: Session, item_id: int) -> tuple[ReviewItem, Decision | None, OutboxMessage | None]:
    item = get_item(session, item_id)
    row = session.scalar(select(OutboxMessage).where(OutboxMessage.review_item_id == item.id))
    return item, item.decision, row


def retry_send(session: Session, item_id: int, *, who: Who) -> ReviewItem:
    """send_failed -> approved (Retry) or delivery_unknown -> approved (send again), and queue the send."""
    item, decision, row = _load(session, item_id)
    if item.status not in RETRYABLE:
        raise Conflict(f"review item {item_id} is {item.status}: only a failed or unknown send can be retried")
    policy.check_may_recover(item, who)
    actor = who.actor
    before = {"status": item.status, **(item.result or {})}
    moved = session.execute(
        update(ReviewItem)
        .where(ReviewItem.id == item.id, ReviewItem.status == item.status)
        .values(status=ItemStatus.APPROVED, executed_at=None, result=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        raise Conflict(f"review item {item_id} changed meanwhile; reload it")
    if row is not None and row.status != OutboxStatus.SENT:
        # A fresh retry window; the row (and its Message-ID) stays, so a late success still counts once.
        row.status, row.retry_window_started_at = OutboxStatus.PENDING, utcnow()
    retries = session.scalar(
        select(func.count()).where(
            AuditEvent.entity_type == "review_item",
            AuditEvent.entity_id == str(item.id),
            AuditEvent.action == "review_item.send_retried",
        )
    )
    audit.record(
        session,
        actor=actor,
        action="review_item.send_retried",
        entity_type="review_item",
        entity_id=item.id,
        before=before,
        after={"status": ItemStatus.APPROVED},
    )
    jobs.enqueue(
        session,
        JobKind.REVIEW_EXECUTE,
        {"review_item_id": item.id},
        dedupe_key=f"{JobKind.REVIEW_EXECUTE}:{item.id}:{retries + 1}",
    )
    session.expire(item)
    return item


def mark_sent(session: Session, item_id: int, *, who: Who) -> ReviewItem:
    """delivery_unknown -> sent: the closer confirmed (e.g. in the mailbox's sent folder) that it went out."""
    item, decision, row = _load(session, item_id)
    if item.status != ItemStatus.DELIVERY_UNKNOWN or row is None:
        raise Conflict(f"review item {item_id} is {item.status}: only a send whose delivery is unknown can be marked")
    policy.check_may_recover(item, who)
    actor = who.actor
    row.status, row.sent_at, row.last_error = OutboxStatus.SENT, row.handed_at or utcnow(), None
    row.location = row.location or f"confirmed by {actor}"
    result = {"outbox_id": row.id, "to": row.to_addr, "transport": row.transport, "confirmed_by": actor}
    if not mark_executed(
        session, item, status=ItemStatus.SENT, result=result, actor=actor, also_from=(ItemStatus.DELIVERY_UNKNOWN,)
    ):
        raise Conflict(f"review item {item_id} changed meanwhile; reload it")
    log_activity(session, item, kind="email_sent", summary=f"Sent '{row.subject}' to {row.to_addr} (confirmed)")
    return item
