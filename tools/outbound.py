"""Executing an approved review item that has no graph thread behind it (reminders, follow-ups,
proposals, onboarding, client updates, invoices): a last check against the records, then the one
side effect, once, and the item's final state."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from core.db import session_scope
from core.models import ReviewItem
from core.settings import Settings
from tools import mail, review_queue

# Returns why the action must not happen any more (the records changed since approval), or None.
Check = Callable[[Session, ReviewItem], str | None]
# Performs a non-email action (e.g. issuing an invoice) and returns its result.
Action = Callable[[Session, ReviewItem], dict]


def execute_approved(
    settings: Settings, review_item_id: int, *, actor: str, check: Check | None = None, action: Action | None = None
) -> str:
    with session_scope(settings) as session:
        item, _ = review_queue.approved_action(session, review_item_id)
        if item.status != "approved":
            return item.status  # executed before
        reason = check(session, item) if check else None
        if reason:
            review_queue.mark_executed(session, item, status="cancelled", result={"reason": reason}, actor=actor)
            return "cancelled"
        if action is not None:  # a record change, done in the same transaction as the final state
            result = action(session, item)
            review_queue.log_activity(session, item, kind=item.kind, summary=result.get("summary", item.kind))
            review_queue.mark_executed(session, item, status="done", result=result, actor=actor)
            return "done"
        kind = item.kind
    if kind == "email":
        try:
            sent = mail.send_approved_email(settings, review_item_id)
        except review_queue.RecipientOptedOut as exc:
            with session_scope(settings) as session:
                item, _ = review_queue.approved_action(session, review_item_id)
                review_queue.mark_executed(
                    session, item, status="cancelled", result={"reason": exc.message}, actor=actor
                )
            return "cancelled"
        status, result = "sent", {"outbox_id": sent.id, "to": sent.to_addr}
        activity = ("email_sent", f"Sent '{sent.subject}' to {sent.to_addr}")
    else:
        status, result, activity = "done", {"task": kind}, (kind, f"{kind.replace('_', ' ')} done")
    with session_scope(settings) as session:
        item, _ = review_queue.approved_action(session, review_item_id)
        review_queue.log_activity(session, item, kind=activity[0], summary=activity[1])
        review_queue.mark_executed(session, item, status=status, result=result, actor=actor)
    return status
