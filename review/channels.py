"""SMS and WhatsApp beside email: the text's length and segments, which channel a step may use, the adapters
(a built-in message file per message, or the provider: a Twilio-compatible REST API, the WhatsApp Business
Cloud API) and the at-most-once send of an approved item.

The recipient is always the contact record's E.164 number, re-read at send time; consent (an opt-out is
forever), WhatsApp's 24-hour customer-service window and the contact's quiet hours are checked again right
before the hand-off. The outbox row is keyed by the review item, marked 'sending' before the request and stores
the provider's message id after it: a retry after a crash never sends a second copy blindly (the item becomes
delivery_unknown, as for SMTP). Status callbacks update the row by the provider's message id.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from typing import Any

import httpx
import phonenumbers
from phonenumbers import timezone as phone_timezone
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db import session_scope
from core.enums import ItemKind, NotificationKind, OutboxStatus
from core.errors import ConfigError
from core.files import write_private
from core.models import ChannelMessage, Contact, OutboxMessage, ReviewItem, utcnow
from core.notifications import notify
from core.settings import Settings
from crm.consent import may_message
from review.outbox import DeliveryUnknown, SendDeferred, claim_for_sending, fail_attempt
from review.queue import NotApproved, RecipientOptedOut, approved_action

WHATSAPP_WINDOW = dt.timedelta(hours=24)


def approved_templates(settings: Settings) -> dict[str, str]:
    """WhatsApp templates Meta approved for this business, {name: language}, from REVLOOP_WHATSAPP_TEMPLATES."""
    out = {}
    for part in settings.whatsapp_templates.split(","):
        name, _, language = part.strip().partition(":")
        if name:
            out[name.strip()] = (language or "en").strip()
    return out


def last_inbound(session: Session, contact_id: int, channel: str) -> dt.datetime | None:
    return session.scalar(
        select(func.max(ChannelMessage.received_at)).where(
            ChannelMessage.contact_id == contact_id, ChannelMessage.channel == channel
        )
    )


def whatsapp_window_open(session: Session, contact_id: int, now: dt.datetime | None = None) -> bool:
    """True inside WhatsApp's customer-service window: 24 hours from the contact's last message to us."""
    last = last_inbound(session, contact_id, "whatsapp")
    return last is not None and (now or utcnow()) - last < WHATSAPP_WINDOW


def contact_zone(contact: Contact) -> zoneinfo.ZoneInfo:
    """The contact's time zone: the record's, else the number's when its country has one zone, else UTC."""
    if contact.time_zone:
        try:
            return zoneinfo.ZoneInfo(contact.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    if contact.phone_e164:
        zones = [z for z in phone_timezone.time_zones_for_number(phonenumbers.parse(contact.phone_e164)) if "/" in z]
        if len(zones) == 1:
            return zoneinfo.ZoneInfo(zones[0])
    return zoneinfo.ZoneInfo("UTC")


def quiet_until(settings: Settings, contact: Contact, now: dt.datetime | None = None) -> dt.datetime | None:
    """When the contact's quiet hours end, if they are in them now (local time); None outside them."""
    if not settings.channel_quiet_hours:
        return None
    now = now or utcnow()
    start_text, end_text = settings.channel_quiet_hours.split("-")
    start, end = dt.time.fromisoformat(start_text), dt.time.fromisoformat(end_text)
    local = now.astimezone(contact_zone(contact))
    t = local.time()
    inside = (start <= t or t < end) if start > end else (start <= t < end)
    if not inside or start == end:
        return None
    end_at = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if end_at <= local:
        end_at += dt.timedelta(days=1)
    return end_at.astimezone(dt.UTC)


def choose_channel(session: Session, contact: Contact | None, allowed: tuple[str, ...] = ("email", "sms", "whatsapp")):
    """The channel a step uses for this contact: its preferred one when allowed and consented, else the first of
    `allowed` it may get (email needs an address and no opt-out). None when none is allowed."""
    if contact is None:
        return None

    def ok(channel: str) -> bool:
        if channel == "email":
            return bool(contact.email) and not contact.do_not_email
        return may_message(session, contact, channel) is None

    order = [contact.preferred_channel, *allowed] if contact.preferred_channel in allowed else list(allowed)
    return next((c for c in order if ok(c)), None)


TEXTS = ("sms", "whatsapp")


def text_step(
    session: Session,
    settings: Settings,
    contact: Contact | None,
    wanted: str,
    *,
    wa_template: str | None = None,
    params: tuple[Any, ...] = (),
) -> tuple[str, dict[str, Any]] | None:
    """The text channel a scan step asking for `wanted` ('sms', 'whatsapp' or 'preferred': the contact's preferred
    one) uses for this contact, with the refs its draft carries; None: no text is allowed (the step uses email).
    Consent and the number come from the record; outside WhatsApp's 24-hour window only the approved template
    `wa_template` may go, with `params` (values from records) as its body parameters."""
    if contact is None:
        return None
    order = [contact.preferred_channel] if wanted == "preferred" else [wanted]
    for channel in (c for c in order if c in TEXTS):
        if may_message(session, contact, channel) is not None:
            continue
        if channel == "whatsapp" and not whatsapp_window_open(session, contact.id):
            approved = approved_templates(settings)
            if wa_template not in approved:
                continue
            template = {"name": wa_template, "language": approved[wa_template], "params": [str(p) for p in params]}
            return channel, {"wa_template": template}
        return channel, {}
    return None


# --- adapters --------------------------------------------------------------------------------------------------


class ProviderError(Exception):
    """A provider's refusal or failure; `permanent` ones (4xx other than 429, bad config) are not retried."""

    def __init__(self, message: str, *, permanent: bool):
        super().__init__(message)
        self.message, self.permanent = message, permanent


def transport_of(settings: Settings, channel: str) -> str:
    if channel == "sms":
        return "twilio" if settings.twilio_account_sid else "file"
    return "cloud_api" if settings.whatsapp_access_token else "file"


def _file_path(settings: Settings, row: OutboxMessage):
    return settings.resolved_outbox_dir / f"{row.idempotency_key}.{row.channel}.json"


def _deliver_file(settings: Settings, row: OutboxMessage, payload: dict[str, Any]) -> tuple[str, str]:
    path = _file_path(settings, row)
    if not path.exists():
        write_private(path, json.dumps(payload, indent=2, ensure_ascii=False).encode())
    return str(path), f"file-{row.idempotency_key}"


def _http_error(provider: str, response: httpx.Response) -> ProviderError:
    try:
        data = response.json()
    except ValueError:
        data = {}
    error = data.get("error") if isinstance(data.get("error"), dict) else data
    detail = error.get("message") or response.text[:200]
    code = error.get("code")
    permanent = 400 <= response.status_code < 500 and response.status_code != 429
    return ProviderError(
        f"{provider} answered {response.status_code}{f' (code {code})' if code else ''}: {detail}", permanent=permanent
    )


def status_callback_url(settings: Settings) -> str | None:
    return f"{settings.public_url.rstrip('/')}/v1/webhooks/sms" if settings.public_url else None


def _send_twilio(settings: Settings, row: OutboxMessage) -> tuple[str, str]:
    """POST {base}/2010-04-01/Accounts/{SID}/Messages.json, form-encoded, basic auth; 201 with the message sid."""
    if not settings.twilio_auth_token:
        raise ConfigError("REVLOOP_TWILIO_AUTH_TOKEN is not set (REVLOOP_TWILIO_ACCOUNT_SID is)")
    if not (settings.sms_from or settings.twilio_messaging_service_sid):
        raise ConfigError("set REVLOOP_SMS_FROM (the sending number) or REVLOOP_TWILIO_MESSAGING_SERVICE_SID")
    form = {"To": row.to_addr, "Body": row.body}
    if settings.twilio_messaging_service_sid:
        form["MessagingServiceSid"] = settings.twilio_messaging_service_sid
    else:
        form["From"] = settings.sms_from
    if callback := status_callback_url(settings):
        form["StatusCallback"] = callback
    url = f"{settings.twilio_api_url.rstrip('/')}/2010-04-01/Accounts/{settings.twilio_account_sid}/Messages.json"
    response = httpx.post(
        url,
        data=form,
        auth=(settings.twilio_account_sid, settings.twilio_auth_token),
        timeout=settings.channel_timeout_seconds,
    )
    if response.status_code >= 300:
        raise _http_error("the SMS provider", response)
    sid = response.json().get("sid")
    if not sid:
        raise ProviderError("the SMS provider's answer has no message sid", permanent=False)
    return url, sid


def whatsapp_payload(row: OutboxMessage, template: dict[str, Any] | None) -> dict[str, Any]:
    """The Cloud API message: free text, or an approved template with its body parameters (from records)."""
    base = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": row.to_addr.lstrip("+")}
    if template:
        components = []
        if template.get("params"):
            params = [{"type": "text", "text": str(p)} for p in template["params"]]
            components.append({"type": "body", "parameters": params})
        body = {"name": template["name"], "language": {"code": template["language"]}, "components": components}
        return {**base, "type": "template", "template": body}
    return {**base, "type": "text", "text": {"preview_url": False, "body": row.body}}


def _send_whatsapp(settings: Settings, row: OutboxMessage, payload: dict[str, Any]) -> tuple[str, str]:
    """POST {base}/{phone_number_id}/messages with a bearer token; the answer carries messages[0].id (wamid)."""
    if not settings.whatsapp_phone_number_id:
        raise ConfigError("REVLOOP_WHATSAPP_PHONE_NUMBER_ID is not set (REVLOOP_WHATSAPP_ACCESS_TOKEN is)")
    url = f"{settings.whatsapp_api_url.rstrip('/')}/{settings.whatsapp_phone_number_id}/messages"
    response = httpx.post(
        url,
        json=payload,
        headers={"Authorization": f"Bearer {settings.whatsapp_access_token}"},
        timeout=settings.channel_timeout_seconds,
    )
    if response.status_code >= 300:
        raise _http_error("the WhatsApp Cloud API", response)
    messages = response.json().get("messages") or []
    if not messages or not messages[0].get("id"):
        raise ProviderError("the WhatsApp Cloud API's answer has no message id", permanent=False)
    return url, messages[0]["id"]


def describe(exc: BaseException) -> str:
    if isinstance(exc, ProviderError):
        return exc.message
    if isinstance(exc, ConfigError):
        return exc.message
    if isinstance(exc, httpx.TimeoutException):
        return "the provider did not answer in time"
    if isinstance(exc, httpx.ConnectError):
        return f"the provider could not be reached ({exc})"
    return f"{type(exc).__name__}: {exc}"


def _permanent(exc: BaseException) -> bool:
    return isinstance(exc, ConfigError) or (isinstance(exc, ProviderError) and exc.permanent)


# --- the send of an approved item ----------------------------------------------------------------------------


def check_sendable(session: Session, settings: Settings, item, contact: Contact | None, channel: str) -> str | None:
    """Why the approved message must not go out (consent, number, WhatsApp window, template); None: it may."""
    reason = may_message(session, contact, channel)
    if reason:
        return reason
    template = item.draft.get("wa_template")
    if channel == "whatsapp":
        if template:
            if approved_templates(settings).get(template.get("name")) != template.get("language"):
                return f"WhatsApp template {template.get('name')!r} is not an approved template of this business"
        elif not whatsapp_window_open(session, contact.id):
            return (
                "outside WhatsApp's 24-hour window (the contact's last message is older): only an approved "
                "template message may be sent"
            )
    return None


def send_approved_message(settings: Settings, review_item_id: int) -> OutboxMessage:
    """Send the approved SMS or WhatsApp message of a review item at most once, to the contact record's number.

    Raises RecipientOptedOut (consent, window or template no longer allow it: cancelled, not retried),
    SendDeferred (quiet hours, a transient failure), SendFailed (for good) or DeliveryUnknown."""
    key = f"review-item-{review_item_id}"
    now = utcnow()
    with session_scope(settings) as session:
        item, decision = approved_action(session, review_item_id)
        channel = "sms" if item.kind == ItemKind.SMS else "whatsapp"
        row = session.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == key))
        if row is not None and row.status == OutboxStatus.SENT:
            return row
        contact = session.get(Contact, item.contact_id) if item.contact_id else None
        if contact is None:
            raise NotApproved(f"review item {review_item_id} has no contact record to send to")
        if row is None or row.status in (OutboxStatus.PENDING, OutboxStatus.FAILED):
            reason = check_sendable(session, settings, item, contact, channel)
            if reason:
                raise RecipientOptedOut(f"{reason}; review item {review_item_id} not sent")
            until = quiet_until(settings, contact, now)
            if until is not None:
                raise SendDeferred(
                    f"quiet hours of contact {contact.id} until {until:%H:%M} UTC", (until - now).total_seconds()
                )
        if row is None:
            row = OutboxMessage(
                idempotency_key=key,
                review_item_id=item.id,
                message_id=key,
                to_addr=contact.phone_e164,
                subject="",
                body=decision.final_body or "",
                transport=transport_of(settings, channel),
                channel=channel,
                retry_window_started_at=now,
            )
            session.add(row)
            session.flush()
        if row.status in (OutboxStatus.SENDING, OutboxStatus.DELIVERY_UNKNOWN):
            if row.transport == "file" and _file_path(settings, row).exists():
                row.status, row.location, row.sent_at = OutboxStatus.SENT, str(_file_path(settings, row)), row.handed_at
                row.provider_message_id = row.provider_message_id or f"file-{key}"
                return row
            row.status = OutboxStatus.DELIVERY_UNKNOWN
            unknown = True
        else:
            unknown = False
            claim_for_sending(settings, session, row, now)
        template = item.draft.get("wa_template") if channel == "whatsapp" else None
    if unknown:
        raise DeliveryUnknown(row)
    try:
        if channel == "whatsapp":
            payload = whatsapp_payload(row, template)
            if row.transport == "file":
                location, message_id = _deliver_file(settings, row, payload)
            else:
                location, message_id = _send_whatsapp(settings, row, payload)
        elif row.transport == "file":
            location, message_id = _deliver_file(settings, row, {"to": row.to_addr, "body": row.body})
        else:
            location, message_id = _send_twilio(settings, row)
    except Exception as exc:
        fail_attempt(settings, row.id, describe(exc), permanent=_permanent(exc), cause=exc)
    with session_scope(settings) as session:
        sent = session.get(OutboxMessage, row.id)
        sent.status, sent.location, sent.sent_at, sent.last_error = OutboxStatus.SENT, location, utcnow(), None
        sent.provider_message_id, sent.delivery_status, sent.delivery_updated_at = message_id, "accepted", utcnow()
        return sent


# Delivery statuses only move forward; failed/undelivered are final.
STATUS_RANK = {"accepted": 0, "queued": 1, "sending": 2, "sent": 3, "delivered": 4, "read": 5}
FINAL_STATUSES = ("failed", "undelivered")


def record_status(
    session: Session,
    channel: str,
    provider_message_id: str,
    status: str,
    *,
    error: str | None = None,
    settings: Settings | None = None,
) -> OutboxMessage | None:
    """A provider's delivery/read callback: the row's status moves forward (a late 'sent' after 'read' is kept
    out); None when no message of ours has that id. A failed or undelivered message is final: the item's assignee
    and the operators are told, with the provider's reason."""
    row = session.scalar(
        select(OutboxMessage).where(
            OutboxMessage.provider_message_id == provider_message_id, OutboxMessage.channel == channel
        )
    )
    if row is None:
        return None
    status = status.lower()[:20]
    current = row.delivery_status
    if current in FINAL_STATUSES:
        return row
    if status in FINAL_STATUSES or STATUS_RANK.get(status, -1) > STATUS_RANK.get(current or "", -1):
        row.delivery_status, row.delivery_updated_at = status, utcnow()
    if status in FINAL_STATUSES:
        row.last_error = (error or f"the provider reported the message {status}")[:2000]
        item = session.get(ReviewItem, row.review_item_id)
        label = "SMS" if channel == "sms" else "WhatsApp message"
        notify(
            session,
            NotificationKind.SEND_FAILED,
            f"Not delivered: {label} to {row.to_addr}",
            body=f"Review item #{row.review_item_id}: {row.last_error}",
            severity="critical",
            names=[item.assignee if item else None],
            entity=("review_item", row.review_item_id),
            dedupe_key=f"undelivered:{row.id}",
            settings=settings,
        )
    return row
