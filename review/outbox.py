"""Outbound mail through an outbox: one row per approved review item, delivered at most once.

Transports: `.eml` files in a folder (default) or SMTP (REVLOOP_SMTP_URL). The Message-ID is derived
from the review item, so even a retry after a crash between the SMTP hand-off and the database
commit carries the same id and receivers can discard the copy.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import select

from core.db import session_scope
from core.enums import OutboxStatus
from core.errors import ConfigError
from core.models import Contact, OutboxMessage, utcnow
from core.settings import Settings
from review import documents
from review.queue import NotApproved, RecipientOptedOut, approved_action


def build_message(settings: Settings, row: OutboxMessage, attachments: list[tuple[str, bytes]] = ()) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = row.to_addr
    msg["Subject"] = row.subject
    msg["Message-ID"] = row.message_id
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["List-Unsubscribe"] = f"<{settings.unsubscribe_url}>"
    msg["X-Revloop-Review-Item"] = str(row.review_item_id)
    msg.set_content(row.body)
    for filename, data in attachments:
        msg.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    return msg


def _attachments(settings: Settings, session, item) -> list[tuple[str, bytes]]:
    """Documents the approved item carries (a proposal's PDF, an invoice's), read from their records."""
    return documents.attachments(session, item.draft.get("attachments") or [], seller=settings.company_name)


def _deliver_file(settings: Settings, row: OutboxMessage, msg: EmailMessage) -> str:
    folder = settings.resolved_outbox_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{row.idempotency_key}.eml"
    if path.exists():  # written by an earlier attempt whose commit was lost
        return str(path)
    tmp = path.with_suffix(".eml.tmp")
    tmp.write_bytes(bytes(msg))
    os.replace(tmp, path)
    return str(path)


def _deliver_smtp(settings: Settings, msg: EmailMessage) -> str:
    url = urlsplit(settings.smtp_url or "")
    if url.scheme not in ("smtp", "smtps") or not url.hostname:
        raise ConfigError(f"REVLOOP_SMTP_URL must look like smtp://host:port, got {settings.smtp_url!r}")
    query = {k: v[-1].lower() for k, v in parse_qs(url.query).items()}
    port = url.port or (465 if url.scheme == "smtps" else 25)
    if url.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(url.hostname, port, timeout=30, context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(url.hostname, port, timeout=30)
    with client:
        if query.get("starttls") in ("1", "true", "yes"):
            client.starttls(context=ssl.create_default_context())
        if url.username:
            client.login(unquote(url.username), unquote(url.password or ""))
        client.send_message(msg)
    return f"smtp://{url.hostname}:{port}"


def send_approved_email(settings: Settings, review_item_id: int) -> OutboxMessage:
    """Send the approved email of a review item exactly once; the recipient is the contact record's."""
    key = f"review-item-{review_item_id}"
    with session_scope(settings) as session:
        item, decision = approved_action(session, review_item_id)
        row = session.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == key))
        if row is None:
            contact = session.get(Contact, item.contact_id) if item.contact_id else None
            if contact is None:
                raise NotApproved(f"review item {review_item_id} has no contact record to send to")
            if contact.do_not_email:
                raise RecipientOptedOut(
                    f"contact {contact.id} opted out of email; review item {review_item_id} not sent"
                )
            row = OutboxMessage(
                idempotency_key=key,
                review_item_id=item.id,
                message_id=f"<{key}@revloop>",
                to_addr=contact.email,
                subject=decision.final_subject or "",
                body=decision.final_body or "",
                transport="smtp" if settings.smtp_url else "file",
            )
            session.add(row)
            session.flush()
        if row.status == OutboxStatus.SENT:
            return row
        row.status = "sending"
        row.attempts += 1
        attachments = _attachments(settings, session, item)
    try:
        msg = build_message(settings, row, attachments)
        location = _deliver_smtp(settings, msg) if row.transport == "smtp" else _deliver_file(settings, row, msg)
    except Exception as exc:
        with session_scope(settings) as session:
            failed = session.get(OutboxMessage, row.id)
            failed.status = "failed"
            failed.last_error = f"{type(exc).__name__}: {exc}"
        raise
    with session_scope(settings) as session:
        sent = session.get(OutboxMessage, row.id)
        sent.status, sent.location, sent.sent_at, sent.last_error = "sent", location, utcnow(), None
        return sent


def outbox_files(settings: Settings) -> list[Path]:
    folder = settings.resolved_outbox_dir
    return sorted(folder.glob("*.eml")) if folder.exists() else []
