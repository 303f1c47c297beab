"""The one executor of approved review items, whatever queued them (the lead and proposal graphs call it
from their execute nodes; the worker calls it for items of the daily scans and the deal flow).

Each run re-reads the approval record, asks the item's domain whether the action still stands (a paid
invoice is not chased), performs the one side effect once (the outbox is keyed by the item), and records
the final state and the activity. A re-run after a crash finds the outbox row or the final state and
repeats nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from core.db import session_scope
from core.enums import MESSAGE_KINDS, NEEDS_ATTENTION_STATES, ItemKind, ItemStatus, NotificationKind
from core.models import ReviewItem
from core.notifications import notify
from core.settings import Settings
from crm import writeback as crm_writeback
from review import channels, outbox
from review.queue import RecipientOptedOut, approved_action, log_activity, mark_executed

# Returns why the action must not happen any more (the records changed since approval), or None.
Check = Callable[[Session, ReviewItem], str | None]
# Performs a record change (e.g. issuing an invoice) in the same transaction as the final state.
Action = Callable[[Settings, Session, ReviewItem], dict[str, Any]]


@dataclass(frozen=True)
class Rule:
    """How one source's approved items are executed: who acts, the last check, a record action."""

    actor: str
    check: Check | None = None
    action: Action | None = None


@dataclass(frozen=True)
class Outcome:
    status: ItemStatus
    result: dict[str, Any]


def execute_approved(settings: Settings, review_item_id: int, rule: Rule) -> Outcome:
    with session_scope(settings) as session:
        item, _ = approved_action(session, review_item_id)
        if item.status != ItemStatus.APPROVED:
            return Outcome(ItemStatus(item.status), dict(item.result or {}))  # executed before
        reason = rule.check(session, item) if rule.check else None
        if reason:
            result = {"reason": reason}
            mark_executed(session, item, status=ItemStatus.CANCELLED, result=result, actor=rule.actor)
            return Outcome(ItemStatus.CANCELLED, result)
        if item.kind == ItemKind.INVOICE or rule.action is not None:
            if rule.action is None:
                raise LookupError(f"review item {item.id} ({item.source}) has no action to execute")
            result = rule.action(settings, session, item)
            if item.status != ItemStatus.APPROVED:  # the action ended it itself (a provider's refusal: failed)
                return Outcome(ItemStatus(item.status), result)
            log_activity(session, item, kind=item.kind, summary=result.get("summary", item.kind))
            mark_executed(session, item, status=ItemStatus.DONE, result=result, actor=rule.actor)
            return Outcome(ItemStatus.DONE, result)
        kind = item.kind
    if kind in MESSAGE_KINDS:
        try:
            if kind == ItemKind.EMAIL:
                sent = outbox.send_approved_email(settings, review_item_id)
            else:  # SMS or WhatsApp: to the contact record's number, consent and window re-checked
                sent = channels.send_approved_message(settings, review_item_id)
        except RecipientOptedOut as exc:
            return _finish_unsent(settings, review_item_id, ItemStatus.CANCELLED, {"reason": exc.message}, rule)
        except outbox.SendFailed as exc:
            result = {
                "reason": exc.reason,
                "outbox_id": exc.row.id,
                "to": exc.row.to_addr,
                "attempts": exc.row.attempts,
            }
            return _finish_unsent(settings, review_item_id, ItemStatus.SEND_FAILED, result, rule)
        except outbox.DeliveryUnknown as exc:
            row = exc.row
            result = {
                "reason": "the worker stopped after handing the message to the mail server (or SMS/WhatsApp "
                "provider) and before its answer was recorded: it may have been delivered",
                "outbox_id": row.id,
                "to": row.to_addr,
                "message_id": row.message_id,
                "handed_at": row.handed_at.isoformat() if row.handed_at else None,
                "transport": row.transport,
            }
            return _finish_unsent(settings, review_item_id, ItemStatus.DELIVERY_UNKNOWN, result, rule)
        status = ItemStatus.SENT
        result = {"outbox_id": sent.id, "to": sent.to_addr, "transport": sent.transport}
        sent_email = (sent.subject, sent.body, sent.sent_at or sent.created_at, sent.to_addr)
        if kind == ItemKind.EMAIL:
            activity = ("email_sent", f"Sent '{sent.subject}' to {sent.to_addr}")
        else:
            result.update(channel=sent.channel, provider_message_id=sent.provider_message_id)
            label = "SMS" if kind == ItemKind.SMS else "WhatsApp message"
            activity = (f"{kind}_sent", f"Sent {label} to {sent.to_addr}: {sent.body[:80]}")
    else:  # a call task: the person does it; the item records that it was handed over
        status, result = ItemStatus.DONE, {"task": kind}
    with session_scope(settings) as session:
        item, decision = approved_action(session, review_item_id)
        if kind not in MESSAGE_KINDS:
            activity = (kind, decision.final_subject or item.draft.get("subject") or kind.replace("_", " "))
        if mark_executed(
            session, item, status=status, result=result, actor=rule.actor, also_from=NEEDS_ATTENTION_STATES
        ):
            log_activity(session, item, kind=activity[0], summary=activity[1])
            if kind == ItemKind.EMAIL:  # the external CRM logs it too, once (REVLOOP_CRM_BACKEND)
                subject, body, sent_at, to = sent_email
                crm_writeback.queue_sent_email(
                    session, settings, item, subject=subject, body=body, sent_at=sent_at, to=to
                )
    return Outcome(status, result)


ATTENTION_TITLES = {
    ItemStatus.SEND_FAILED: "Send failed: {subject}",
    ItemStatus.DELIVERY_UNKNOWN: "Delivery unknown: {subject}",
}


def _finish_unsent(
    settings: Settings, review_item_id: int, status: ItemStatus, result: dict[str, Any], rule: Rule
) -> Outcome:
    """Record why an approved email did not go out; a person is told when it needs one (Retry / mark as sent)."""
    with session_scope(settings) as session:
        item, decision = approved_action(session, review_item_id)
        if mark_executed(session, item, status=status, result=result, actor=rule.actor) and status in ATTENTION_TITLES:
            subject = decision.final_subject or item.draft.get("subject") or f"review item {item.id}"
            notify(
                session,
                NotificationKind(status.value),
                ATTENTION_TITLES[status].format(subject=subject),
                body=f"To {result.get('to')}: {result['reason']}",
                severity="critical",
                names=[item.assignee],
                entity=("review_item", item.id),
            )
    return Outcome(status, result)
