"""Sending notifications beyond the app: email to our own user, and the team webhook (Slack-compatible JSON).

core.notifications decides who hears what on which channel and queues one job per delivery (in the same
transaction as the notification); this module is that job. Exactly once per notification and channel: the
delivery row is marked 'sending' (committed) before the hand-off, so a worker killed after it leaves a row
that is never sent twice (a file that exists counts as sent; otherwise it is recorded delivery_unknown).

Email goes to the address in the users table (never a lead's), through the same transport as customer mail
(SMTP, else .eml files under the outbox's notifications/ folder); it is internal, so it needs no review item,
but each one is audited. During the user's quiet hours it waits (held) and goes when they end.

The webhook body is {"text": ..., "blocks": [...]} (what Slack's incoming webhooks take) and, with
REVLOOP_NOTIFY_WEBHOOK_SECRET, it is signed like our inbound webhooks (core.webhooks): X-Revloop-Timestamp and
X-Revloop-Signature: sha256=HMAC(secret, "<timestamp>.<body>"). A timeout, a refused connection, a 429 or a
5xx is retried with backoff (REVLOOP_NOTIFY_MAX_ATTEMPTS); any other 4xx is permanent and recorded failed.
"""

from __future__ import annotations

import json
import logging
import random
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import update

from core import audit
from core.db import session_scope
from core.enums import DeliveryStatus, NotificationChannel
from core.jobs import RetryLater
from core.models import Notification, NotificationDelivery, QuietHours, User, utcnow
from core.notifications import deep_link, quiet_until
from core.settings import Settings
from core.webhooks import signed_headers
from review.outbox import deliver_message, describe_failure, is_permanent

log = logging.getLogger("revloop.notifications")

KIND_LABELS = {
    "new_a_lead": "New A lead",
    "sla_at_risk": "SLA about to breach",
    "sla_breached": "SLA breached",
    "send_failed": "Send failed",
    "delivery_unknown": "Delivery unknown",
    "integration_down": "Integration down",
    "integration_recovered": "Integration recovered",
    "taken_over": "Item taken over",
}
FINISHED = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED, DeliveryStatus.DELIVERY_UNKNOWN)


class WebhookRefused(Exception):
    """The webhook answered; `permanent` for a 4xx other than 429 (retrying would get the same answer)."""

    def __init__(self, status: int, text: str):
        super().__init__(f"the webhook answered {status}: {text[:200]}")
        self.permanent = 400 <= status < 500 and status != 429


def _label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind.replace("_", " "))


def _slack_escape(text: str) -> str:
    """Slack reads <...> as links and mentions: text from records must not become either."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_payload(delivery: NotificationDelivery) -> dict[str, Any]:
    """The title says what happened (producers write it whole); the kind's label and the link go underneath."""
    title, body = _slack_escape(delivery.subject), _slack_escape(delivery.body or "")[:2900]
    link = f"<{delivery.link}|Open in revloop>" if delivery.link else ""
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"}}]
    if body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body}})
    footer = _label(delivery.kind) + (f" · {link}" if link else "")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    return {"text": title + (f" {link}" if link else ""), "blocks": blocks}


def email_message(settings: Settings, delivery: NotificationDelivery) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = delivery.to_addr
    msg["Subject"] = "[revloop] " + " ".join(delivery.subject.split())  # one line, whatever the title held
    msg["Message-ID"] = f"<notification-{delivery.id}@revloop>"
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["X-Revloop-Notification"] = delivery.kind
    text = f"{_label(delivery.kind)}: {delivery.subject}"
    if delivery.body:
        text += f"\n\n{delivery.body}"
    if delivery.link:
        text += f"\n\nOpen it: {delivery.link}"
    msg.set_content(text + "\n\n(Choose what you are told, and when, on the Notifications page.)\n")
    return msg


def _email_file(settings: Settings, delivery: NotificationDelivery):
    # Beside, not among, the customer .eml files: outbox_files() lists only those.
    return settings.resolved_outbox_dir / "notifications" / f"notification-{delivery.id}.eml"


def _audit(session, row: NotificationDelivery) -> None:
    audit.record(
        session,
        actor="system",
        action=f"notification.{row.channel}_{row.status}",
        entity_type="notification_delivery",
        entity_id=row.id,
        after={
            "kind": row.kind,
            "notification_id": row.notification_id,
            "to": row.to_addr if row.channel == NotificationChannel.EMAIL else row.location,
            "attempts": row.attempts,
            "error": row.last_error,
        },
    )


def _finish(settings: Settings, delivery_id: int, status: DeliveryStatus, **values: Any) -> None:
    with session_scope(settings) as session:
        row = session.get(NotificationDelivery, delivery_id)
        row.status = status
        for name, value in values.items():
            setattr(row, name, value)
        if status in (DeliveryStatus.SENT, DeliveryStatus.FAILED):
            _audit(session, row)


def _claim(settings: Settings, delivery_id: int) -> NotificationDelivery | None:
    """Check the delivery is still owed and mark it 'sending'; None when there is nothing to send now."""
    now = utcnow()
    with session_scope(settings) as session:
        row = session.get(NotificationDelivery, delivery_id)
        if row is None or row.status in FINISHED:
            return None
        if row.status == DeliveryStatus.SENDING:  # an attempt crashed after the hand-off
            if (
                row.channel == NotificationChannel.EMAIL
                and not settings.smtp_url
                and _email_file(settings, row).exists()
            ):
                row.status, row.sent_at = DeliveryStatus.SENT, now
            else:
                row.status, row.last_error = DeliveryStatus.DELIVERY_UNKNOWN, "an attempt stopped after the hand-off"
                _audit(session, row)
            return None
        if row.channel == NotificationChannel.EMAIL:
            user = session.get(User, row.user_id) if row.user_id else None
            if user is None or not user.active:
                row.status, row.last_error = DeliveryStatus.SKIPPED, "the user is no longer active"
                return None
            hold = quiet_until(session.get(QuietHours, user.id), now)
            if hold is not None:
                row.status, row.hold_until = DeliveryStatus.HELD, hold
                session.flush()
                held_for = (hold - now).total_seconds()
            else:
                held_for = None
                row.to_addr = user.email  # the users table's address, read when it goes
        else:
            held_for = None
            if not settings.notify_webhook_url:
                row.status, row.last_error = DeliveryStatus.SKIPPED, "REVLOOP_NOTIFY_WEBHOOK_URL is not set"
                return None
            row.location = urlsplit(settings.notify_webhook_url).hostname
        if held_for is None:
            if row.link is None and row.notification_id:
                note = session.get(Notification, row.notification_id)
                row.link = deep_link(settings, note.entity_type, note.entity_id) if note else None
            claimed = session.execute(
                update(NotificationDelivery)
                .where(NotificationDelivery.id == row.id, NotificationDelivery.status == row.status)
                .values(status=DeliveryStatus.SENDING, attempts=NotificationDelivery.attempts + 1)
                .execution_options(synchronize_session=False)
            ).rowcount
            session.flush()
            if claimed != 1:
                return None
            session.refresh(row)
            session.expunge(row)
    if held_for is not None:  # quiet hours (perhaps set after it was queued): the job comes back when they end
        raise RetryLater(f"notification delivery {delivery_id} held for quiet hours", held_for)
    return row


def _post_webhook(settings: Settings, delivery: NotificationDelivery) -> str:
    body = json.dumps(webhook_payload(delivery), separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    if settings.notify_webhook_secret:
        headers.update(signed_headers(settings.notify_webhook_secret, body))
    response = httpx.post(
        settings.notify_webhook_url, content=body, headers=headers, timeout=settings.notify_webhook_timeout_seconds
    )
    if response.status_code >= 400:
        raise WebhookRefused(response.status_code, response.text)
    return f"{urlsplit(settings.notify_webhook_url).hostname} answered {response.status_code}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, WebhookRefused):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return "the webhook did not answer in time"
    if isinstance(exc, httpx.TransportError):
        return f"the webhook could not be reached ({type(exc).__name__}: {exc})"
    return describe_failure(exc)


def _permanent(exc: BaseException) -> bool:
    if isinstance(exc, WebhookRefused):
        return exc.permanent
    if isinstance(exc, httpx.HTTPError):
        return False
    return is_permanent(exc)


def deliver(settings: Settings, delivery_id: int) -> None:
    """The notification.deliver job: send one delivery once; transient failures come back with backoff."""
    delivery = _claim(settings, delivery_id)
    if delivery is None:
        return
    try:
        if delivery.channel == NotificationChannel.EMAIL:
            location = deliver_message(settings, email_message(settings, delivery), _email_file(settings, delivery))
        else:
            location = _post_webhook(settings, delivery)
    except Exception as exc:
        error = _describe(exc)[:2000]
        if _permanent(exc) or delivery.attempts >= settings.notify_max_attempts:
            log.warning("notification delivery %s failed for good: %s", delivery_id, error)
            _finish(settings, delivery_id, DeliveryStatus.FAILED, last_error=error)
            return
        _finish(settings, delivery_id, DeliveryStatus.PENDING, last_error=error)
        # doubling, jittered (half to full), capped like customer mail's retries
        ceiling = min(
            settings.send_retry_max_seconds, settings.notify_retry_base_seconds * 2 ** max(0, delivery.attempts - 1)
        )
        raise RetryLater(
            f"notification delivery {delivery_id} attempt {delivery.attempts} failed: {error}",
            random.uniform(ceiling / 2, ceiling),
        ) from exc
    _finish(settings, delivery_id, DeliveryStatus.SENT, location=location[:500], sent_at=utcnow(), last_error=None)
