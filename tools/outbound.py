"""Review items with no graph thread behind them (reminders, follow-ups, onboarding, client updates,
invoices): queueing one from the approved template, and executing it once approved (a last check
against the records, then the one side effect, once, and the item's final state)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from core.db import session_scope
from core.models import ReviewItem, utcnow
from core.settings import Settings
from tools import mail, review_queue, templates

# Returns why the action must not happen any more (the records changed since approval), or None.
Check = Callable[[Session, ReviewItem], str | None]
# Performs a non-email action (e.g. issuing an invoice) and returns its result.
Action = Callable[[Session, ReviewItem], dict]


def queue_message(
    session: Session,
    *,
    thread_id: str,
    interrupt_id: str,
    lead_id: int | None,
    contact_id: int,
    to: str,
    kind: str,
    template: str | None,
    slots: dict[str, Any],
    brief: dict[str, Any],
    actor: str,
    extra_draft: dict[str, Any] | None = None,
    sla_hours: float = 24,
    assignee: str | None = None,
) -> ReviewItem:
    """Draft a message from the approved version of `template` (or slots' own subject/body when None) and
    queue it for review, once per interrupt id; the draft records the template version it used."""
    if template is not None:
        parts, version = templates.active(session, template)
        rendered = templates.render_parts(parts, slots)
    else:
        version, rendered = None, {"subject": slots["subject"], "body": slots["body"]}
    return review_queue.queue_for_review(
        session,
        thread_id=thread_id,
        interrupt_id=interrupt_id,
        lead_id=lead_id,
        contact_id=contact_id,
        kind=kind,
        template=template,
        brief=brief,
        draft={
            "kind": kind,
            "template": template,
            "template_version": version,
            "to": to,
            "subject": rendered["subject"],
            "body": rendered["body"],
            "facts_used": {k: str(v) for k, v in slots.items()},
            **(extra_draft or {}),
        },
        queue="main",
        sla_due_at=utcnow() + dt.timedelta(hours=sla_hours),
        assignee=assignee,
        actor=actor,
    )


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
