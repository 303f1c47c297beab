"""Approved actions written back to the external CRM (REVLOOP_CRM_BACKEND hubspot or pipedrive), exactly once.

What is written back: a sent email, logged as an email engagement (HubSpot) / a done `email` activity (Pipedrive)
on the contact; a deal's stage change (a person moving it, closing it won or lost). The action's own transaction
records a `crm_writebacks` row with a unique key and queues one job; the job makes the call and records the remote
id. A retry never duplicates: 429 waits its Retry-After; after a 5xx or a lost answer to a create, the next attempt
first asks the CRM whether the email is already logged on the contact (same subject and time) and records that id.
A refusal that a retry cannot fix (401, a contact the CRM does not have) is recorded failed or skipped with its
reason, shown by integration health.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import jobs
from core.db import insert_once, session_scope
from core.enums import JobKind
from core.models import Contact, CrmLink, CrmWriteback, Deal, ReviewItem, utcnow
from core.settings import Settings
from crm.connectors import REMOTE_BACKENDS, backend
from crm.connectors.base import CrmError


def _remote_id(session: Session, source: str, object_type: str, local_id: int | None) -> str | None:
    if local_id is None:
        return None
    return session.scalar(
        select(CrmLink.remote_id).where(
            CrmLink.source == source, CrmLink.object_type == object_type, CrmLink.local_id == local_id
        )
    )


def _queue(session: Session, source: str, key: str, action: str, payload: dict[str, Any]) -> CrmWriteback:
    row, created = insert_once(
        session,
        CrmWriteback(key=key, source=source, action=action, payload=payload, status="pending", attempts=0),
        select(CrmWriteback).where(CrmWriteback.key == key),
    )
    if created:
        jobs.enqueue(session, JobKind.CRM_WRITEBACK, {"writeback_id": row.id}, dedupe_key=f"crm.writeback:{key}")
    return row


def queue_sent_email(
    session: Session,
    settings: Settings,
    item: ReviewItem,
    *,
    subject: str,
    body: str,
    sent_at: dt.datetime,
    to: str | None = None,
) -> CrmWriteback | None:
    """Log an approved, sent email on the contact in the configured CRM (called where the item becomes sent)."""
    source = settings.crm_backend
    if source not in REMOTE_BACKENDS:
        return None
    contact = session.get(Contact, item.contact_id) if item.contact_id else None
    payload = {
        "review_item_id": item.id,
        "contact_remote_id": _remote_id(session, source, "contact", item.contact_id),
        "email": contact.email if contact else to,
        "subject": subject,
        "body": body,
        "sent_at": sent_at.astimezone(dt.UTC).isoformat(),
    }
    return _queue(session, source, f"{source}:email:review_item:{item.id}", "log_email", payload)


def queue_deal_stage(session: Session, settings: Settings, deal: Deal) -> CrmWriteback | None:
    """Write a deal's new stage (or won/lost) to its twin in the configured CRM; deals the CRM does not have are
    left alone (revloop does not create deals there)."""
    source = settings.crm_backend
    if source not in REMOTE_BACKENDS:
        return None
    remote_id = _remote_id(session, source, "deal", deal.id)
    if remote_id is None:
        return None
    stage = deal.outcome or deal.stage
    changed = (deal.stage_changed_at or utcnow()).astimezone(dt.UTC).isoformat()
    payload = {"deal_id": deal.id, "deal_remote_id": remote_id, "stage": str(stage), "changed_at": changed}
    return _queue(session, source, f"{source}:stage:deal:{deal.id}:{stage}:{changed}", "deal_stage", payload)


def run(settings: Settings, payload: dict[str, Any]) -> None:
    """The crm.writeback job: one call to the CRM, its remote id recorded; a second run does nothing."""
    with session_scope(settings) as session:
        row = session.get(CrmWriteback, int(payload["writeback_id"]))
        if row is None or row.status != "pending":
            return
        row.attempts += 1  # committed before the call: a later attempt knows this one may have landed
        attempt, source, action, data = row.attempts, row.source, row.action, dict(row.payload)
    remote = backend(settings, source)
    try:
        if action == "log_email":
            remote_id = _log_email(remote, data, checked=attempt > 1)
        else:
            remote_id = remote.set_deal_stage(data["deal_remote_id"], data["stage"])
    except _Skip as exc:
        _record(settings, row.id, "skipped", error=str(exc))
        return
    except CrmError as exc:
        if exc.retryable and attempt < settings.job_max_attempts:
            _record(settings, row.id, "pending", error=exc.message)
            raise jobs.RetryLater(exc.message, delay_seconds=min(2**attempt, 300)) from exc
        _record(settings, row.id, "failed", error=exc.message)  # a person acts (health shows it), then re-queues
        return
    _record(settings, row.id, "done", remote_id=remote_id)


class _Skip(Exception):
    """Nothing to write to: the CRM has no such contact."""


def _log_email(remote: Any, data: dict[str, Any], *, checked: bool) -> str:
    contact_id = data.get("contact_remote_id")
    if not contact_id and data.get("email"):
        found = remote.find_contact(data["email"])
        contact_id = str(found["remote_id"]) if found.get("found") else None
    if not contact_id:
        raise _Skip(f"the CRM has no contact for {data.get('email') or 'this item'}")
    sent_at = dt.datetime.fromisoformat(data["sent_at"])
    if checked:  # an earlier attempt may have created it before failing: look before creating again
        existing = remote.find_logged_email(contact_id, data["subject"], sent_at)
        if existing:
            return existing
    return remote.log_email(contact_id, subject=data["subject"], body=data["body"], sent_at=sent_at)


def _record(
    settings: Settings, writeback_id: int, status: str, *, remote_id: str | None = None, error: str | None = None
) -> None:
    with session_scope(settings) as session:
        row = session.get(CrmWriteback, writeback_id)
        row.status, row.last_error = status, error
        if remote_id is not None:
            row.remote_id = remote_id
        if status in ("done", "failed", "skipped"):
            row.done_at = utcnow()
