"""Outbound mail through an outbox: one row per approved review item, delivered at most once.

Transports: `.eml` files in a folder (default) or SMTP (REVLOOP_SMTP_URL). The Message-ID is derived
from the review item. What happens when the process dies:
- before the hand-off: the row is 'pending' or 'failed'; the next attempt sends it.
- during it (marked 'sending', SMTP answer not recorded): the message may have gone out, so it is never
  resent blindly; the item becomes delivery_unknown and a person decides (mark as sent / send again).
  A file transport checks whether the file exists.
- after it: the row is 'sent'; a re-run finds it and sends nothing.
Transient failures are retried with backoff for REVLOOP_SEND_RETRY_HOURS; then, or at once for a
permanent refusal, the item becomes send_failed.
"""

from __future__ import annotations

import datetime as dt
import random
import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.db import session_scope
from core.enums import OutboxStatus
from core.errors import ConfigError
from core.files import write_private
from core.jobs import RetryLater
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
    path = settings.resolved_outbox_dir / f"{row.idempotency_key}.eml"
    if path.exists():  # written by an earlier attempt whose commit was lost
        return str(path)
    return str(write_private(path, bytes(msg)))  # atomic, 0600: a message is customer data


def smtp_server(settings: Settings) -> tuple[str, int]:
    """REVLOOP_SMTP_URL's host and port (465 for smtps, else 25 when none is given)."""
    url = urlsplit(settings.smtp_url or "")
    if url.scheme not in ("smtp", "smtps") or not url.hostname:
        raise ConfigError(f"REVLOOP_SMTP_URL must look like smtp://host:port, got {settings.smtp_url!r}")
    return url.hostname, url.port or (465 if url.scheme == "smtps" else 25)


@contextmanager
def smtp_session(settings: Settings, *, timeout: float = 30) -> Iterator[smtplib.SMTP]:
    """A connection to REVLOOP_SMTP_URL as sending uses it: TLS (smtps, or ?starttls=true) and the login when the
    URL has a user. The health check opens the same one, so bad credentials show there before a send fails."""
    url = urlsplit(settings.smtp_url or "")
    host, port = smtp_server(settings)
    query = {k: v[-1].lower() for k, v in parse_qs(url.query).items()}
    if url.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(host, port, timeout=timeout)
    with client:
        if query.get("starttls") in ("1", "true", "yes"):
            client.starttls(context=ssl.create_default_context())
        if url.username:
            client.login(unquote(url.username), unquote(url.password or ""))
        yield client


def _deliver_smtp(settings: Settings, msg: EmailMessage) -> str:
    with smtp_session(settings) as client:
        client.send_message(msg)
    host, port = smtp_server(settings)
    return f"smtp://{host}:{port}"


def deliver_message(settings: Settings, msg: EmailMessage, file_path: Path) -> str:
    """Hand a message to the configured transport (SMTP, else a .eml file at `file_path`); where it went.
    For mail that needs no review item, such as notifications to our own users."""
    if settings.smtp_url:
        return _deliver_smtp(settings, msg)
    if file_path.exists():  # written by an earlier attempt whose commit was lost
        return str(file_path)
    return str(write_private(file_path, bytes(msg)))


class SendDeferred(RetryLater):
    """A transient failure (server down, timeout, 4xx reply): the job retries after `delay_seconds`."""


class SendFailed(Exception):
    """The send failed for good: a permanent refusal, or transient failures for the whole retry window."""

    def __init__(self, reason: str, row: OutboxMessage):
        super().__init__(reason)
        self.reason, self.row = reason, row


class DeliveryUnknown(Exception):
    """An earlier attempt handed the message to the provider and crashed before recording the answer."""

    def __init__(self, row: OutboxMessage):
        super().__init__(f"delivery of {row.message_id} is unknown: handed to {row.transport} at {row.handed_at}")
        self.row = row


def _smtp_code(exc: BaseException) -> int | None:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return min(codes) if codes else None
    return getattr(exc, "smtp_code", None)


def describe_failure(exc: BaseException) -> str:
    """What went wrong, in words a closer can act on (the technical detail stays in the outbox row)."""
    code = _smtp_code(exc)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = "; ".join(f"{addr}: {c} {m.decode(errors='replace')}" for addr, (c, m) in exc.recipients.items())
        return f"the mail server refused the recipient ({replies})"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"the mail server refused our credentials ({code}): check REVLOOP_SMTP_URL"
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"the mail server answered {code} {reply}"
    if isinstance(exc, ConnectionRefusedError):
        return "the mail server refused the connection (is it running, and is REVLOOP_SMTP_URL right?)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "the mail server did not answer in time"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "the mail server closed the connection"
    if isinstance(exc, OSError):
        return f"the mail server could not be reached ({exc.strerror or exc})"
    if isinstance(exc, ConfigError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def is_permanent(exc: BaseException) -> bool:
    """A 5xx SMTP reply (550 recipient rejected, 535 bad credentials, 554 refused) or a configuration error
    will fail the same way however often it is retried; a refused connection, a timeout or a 4xx will not."""
    if isinstance(exc, ConfigError):
        return True
    code = _smtp_code(exc)
    return code is not None and 500 <= int(code) < 600


def retry_delay(settings: Settings, attempts: int) -> float:
    """Exponential backoff with jitter (half to full of the doubled delay), capped."""
    ceiling = min(settings.send_retry_max_seconds, settings.send_retry_base_seconds * 2 ** max(0, attempts - 1))
    return random.uniform(ceiling / 2, ceiling)


def _already_written(settings: Settings, row: OutboxMessage) -> str | None:
    path = settings.resolved_outbox_dir / f"{row.idempotency_key}.eml"
    return str(path) if path.exists() else None


def _record_sent(row: OutboxMessage, location: str, at: dt.datetime | None = None) -> None:
    row.status, row.location, row.sent_at, row.last_error = OutboxStatus.SENT, location, at or utcnow(), None


def send_approved_email(settings: Settings, review_item_id: int) -> OutboxMessage:
    """Send the approved email of a review item at most once; the recipient is the contact record's.

    Before the hand-off the row is marked 'sending' (committed); a row found 'sending' later means a crash
    after the hand-off may have delivered it: a file that exists was delivered, an SMTP hand-off is unknown
    and raises DeliveryUnknown instead of sending a second copy. Failures raise SendDeferred (retry later)
    or SendFailed (for good)."""
    key = f"review-item-{review_item_id}"
    now = utcnow()
    with session_scope(settings) as session:
        item, decision = approved_action(session, review_item_id)
        row = session.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == key))
        if row is None:
            contact = session.get(Contact, item.contact_id) if item.contact_id else None
            if contact is None:
                raise NotApproved(f"review item {review_item_id} has no contact record to send to")
            if not contact.email:  # known by phone number only (wrote on SMS or WhatsApp)
                raise RecipientOptedOut(f"contact {contact.id} has no email address; item {review_item_id} not sent")
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
                retry_window_started_at=now,
            )
            session.add(row)
            session.flush()
        if row.status == OutboxStatus.SENT:
            return row
        unknown = None
        if row.status in (OutboxStatus.SENDING, OutboxStatus.DELIVERY_UNKNOWN):
            written = _already_written(settings, row) if row.transport == "file" else None
            if written:  # the file was written; only its commit was lost
                _record_sent(row, written, row.handed_at)
                return row
            if row.transport != "file":  # an SMTP server may have accepted it: never resend blindly
                row.status = unknown = OutboxStatus.DELIVERY_UNKNOWN
        if unknown is None:
            claim_for_sending(settings, session, row, now)
            attachments = _attachments(settings, session, item)
    if unknown is not None:
        raise DeliveryUnknown(row)
    try:
        msg = build_message(settings, row, attachments)
        location = _deliver_smtp(settings, msg) if row.transport == "smtp" else _deliver_file(settings, row, msg)
    except Exception as exc:
        fail_attempt(settings, row.id, describe_failure(exc), permanent=is_permanent(exc), cause=exc)
    with session_scope(settings) as session:
        sent = session.get(OutboxMessage, row.id)
        _record_sent(sent, location)
        return sent


def fail_attempt(settings: Settings, row_id: int, error: str, *, permanent: bool, cause: BaseException) -> NoReturn:
    """Record a failed hand-off (mail, SMS, WhatsApp) and raise what follows: SendFailed for a permanent refusal or
    when the retry window is over, else SendDeferred with the backoff."""
    error = error[:2000]
    with session_scope(settings) as session:
        failed = session.get(OutboxMessage, row_id)
        failed.status, failed.last_error = OutboxStatus.FAILED, error
        window_end = (failed.retry_window_started_at or failed.created_at) + dt.timedelta(
            hours=settings.send_retry_hours
        )
        attempts = failed.attempts
    left = (window_end - utcnow()).total_seconds()
    if permanent:
        raise SendFailed(error[:1].upper() + error[1:], failed) from cause
    if left <= 0:
        raise SendFailed(
            f"Still failing after {settings.send_retry_hours:g} h of retries ({attempts} attempts): {error}",
            failed,
        ) from cause
    raise SendDeferred(
        f"send attempt {attempts} failed: {error}", min(retry_delay(settings, attempts), left)
    ) from cause


def outbox_files(settings: Settings) -> list[Path]:
    folder = settings.resolved_outbox_dir
    return sorted(folder.glob("*.eml")) if folder.exists() else []


def claim_for_sending(settings: Settings, session: Session, row: OutboxMessage, now: dt.datetime) -> None:
    """Move the row to `sending` (one more attempt) only if nobody changed it since it was read: a second worker
    racing for the same message gets SendDeferred instead of handing it over twice."""
    claimed = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row.id, OutboxMessage.status == row.status)
        .values(status=OutboxStatus.SENDING, attempts=OutboxMessage.attempts + 1, handed_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        raise SendDeferred(f"outbox row {row.id} is being sent by another worker", settings.send_retry_base_seconds)
    session.refresh(row)
