"""Inbound SMS and WhatsApp messages: capture from any channel.

- A provider message id is recorded once (a re-delivery changes nothing).
- STOP / UNSUBSCRIBE (and the carriers' other opt-out words) opt the sender out of that channel forever, cancel
  every pending draft to them on it, and are audited; nothing else happens.
- From a number no contact has: a lead (the number in E.164, no email), its contact, consent on that channel
  recorded with the message as its source; the lead graph is queued as for a form lead.
- From a known contact (matched by E.164 number, whichever way the number first arrived: a form, an import, an
  earlier message): a reply event on their latest lead, which stops the cadence and hands off to the closer.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.db import insert_once
from core.enums import ItemKind, ItemStatus, LeadEventType
from core.errors import InvalidInput
from core.models import ChannelMessage, Contact, Lead, ReviewItem, utcnow
from core.settings import Settings
from crm.capture import lead_priority, queue_lead_run
from crm.consent import is_opt_out, normalise_phone, record_consent
from deals.cadences import record_event
from review import queue as review_queue
from review.channels import record_status
from scoring.features import capture_snapshot


@dataclass(frozen=True)
class InboundMessage:
    channel: str  # sms | whatsapp
    provider_message_id: str
    from_number: str  # as the provider sent it; normalised to E.164 here
    body: str
    profile_name: str | None = None  # WhatsApp's profile name: the sender's own text, untrusted
    received_at: dt.datetime | None = None


def _received_at(sent_at: dt.datetime | None) -> dt.datetime:
    """When the customer wrote: the provider's time for a late (re-)delivery, which WhatsApp's 24-hour window runs
    from; else now (the provider's whole seconds would order a message before our reply in the same second)."""
    now = utcnow()
    return sent_at if sent_at is not None and now - sent_at > dt.timedelta(seconds=5) else now


def contact_by_phone(session: Session, phone: str) -> Contact | None:
    return session.scalar(select(Contact).where(Contact.phone_e164 == phone).order_by(Contact.id).limit(1))


def _opt_out(session: Session, contact: Contact, msg: InboundMessage, actor: str) -> int:
    record_consent(
        session,
        contact,
        msg.channel,
        granted=False,
        source=f"{msg.channel} reply {msg.body.strip()[:20]!r} ({msg.provider_message_id})",
        actor=actor,
    )
    kind = ItemKind.SMS if msg.channel == "sms" else ItemKind.WHATSAPP
    pending = session.scalars(
        select(ReviewItem.id).where(
            ReviewItem.contact_id == contact.id, ReviewItem.kind == kind, ReviewItem.status == ItemStatus.PENDING
        )
    ).all()
    return review_queue.cancel_pending(
        session,
        reason=f"the contact replied {msg.body.strip()[:20]!r}: opted out of {msg.channel} for good",
        actor=actor,
        item_ids=list(pending),
        kinds=(kind,),
    )


def _new_lead(session: Session, settings: Settings, msg: InboundMessage, phone: str, contact: Contact | None, actor):
    name = (msg.profile_name or "").strip()[:100] or None
    first, _, last = (name or "").partition(" ")
    lead = Lead(
        email=None,
        # One lead per number, however many first messages arrive at once (on either channel).
        idempotency_key=f"phone:{phone}",
        first_name=first or None,
        last_name=last or None,
        phone=phone,
        message=msg.body,
        source=msg.channel,
        consent_email=False,  # no address; and a message is no consent to email
        consent_call=False,
        custom={},
        capture_features=capture_snapshot(
            source=msg.channel,
            consent_email=False,
            consent_call=False,
            free_mail=None,
            phone=phone,
            company=None,
            title=None,
            custom={},
        ),
    )
    lead, created = insert_once(session, lead, select(Lead).where(Lead.idempotency_key == f"phone:{phone}"))
    if not created:
        return lead, False
    if contact is None:
        contact, _ = insert_once(
            session,
            Contact(email=None, first_name=lead.first_name, last_name=lead.last_name, phone=phone, phone_e164=phone),
            select(Contact).where(Contact.phone_e164 == phone).order_by(Contact.id).limit(1),
        )
        audit.record(
            session,
            actor=actor,
            action="contact.created",
            entity_type="contact",
            entity_id=contact.id,
            after={"phone": phone, "channel": msg.channel},
        )
    lead.contact_id, lead.account_id = contact.id, contact.account_id
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="lead.created",
        entity_type="lead",
        entity_id=lead.id,
        after={"phone": phone, "source": msg.channel, "provider_message_id": msg.provider_message_id},
    )
    queue_lead_run(session, lead.id, priority=lead_priority(session, settings, lead, None))
    return lead, True


def receive(session: Session, settings: Settings, msg: InboundMessage, *, actor: str) -> dict[str, Any]:
    """Record one inbound message and act on it; what happened, for the webhook's answer and the benchmark."""
    phone = normalise_phone(msg.from_number, settings.default_phone_region, field="from")
    row, created = insert_once(
        session,
        ChannelMessage(
            channel=msg.channel,
            provider_message_id=msg.provider_message_id,
            from_number=phone,
            body=msg.body,
            received_at=_received_at(msg.received_at),
        ),
        select(ChannelMessage).where(
            ChannelMessage.channel == msg.channel, ChannelMessage.provider_message_id == msg.provider_message_id
        ),
    )
    if not created:
        return {"outcome": "duplicate", "lead_id": row.lead_id, "contact_id": row.contact_id}
    contact = contact_by_phone(session, phone)
    if is_opt_out(msg.body):
        if contact is None:  # never heard of them: keep the opt-out, so no later lead can message them
            contact = Contact(email=None, phone=phone, phone_e164=phone)
            session.add(contact)
            session.flush()
        row.contact_id = contact.id
        cancelled = _opt_out(session, contact, msg, actor)
        return {"outcome": "opted_out", "contact_id": contact.id, "cancelled_drafts": cancelled}
    source = f"inbound {msg.channel} message {msg.provider_message_id}"
    if contact is not None:
        # Writing to us is consent to an answer on that channel; after a STOP it is not (the refusal is audited).
        record_consent(session, contact, msg.channel, granted=True, source=source, actor=actor)
        latest = session.scalar(
            select(Lead).where(Lead.contact_id == contact.id).order_by(Lead.captured_at.desc(), Lead.id.desc())
        )
        if latest is not None:
            row.contact_id, row.lead_id = contact.id, latest.id
            event = record_event(
                session,
                settings,
                latest.id,
                type=LeadEventType.REPLY,
                note=msg.body[:2000],
                external_id=f"{msg.channel}:{msg.provider_message_id}",
                actor=actor,
            )
            return {"outcome": "reply", "lead_id": latest.id, "contact_id": contact.id, **event}
    lead, new = _new_lead(session, settings, msg, phone, contact, actor)
    row.contact_id, row.lead_id = lead.contact_id, lead.id
    if new:
        record_consent(
            session, session.get(Contact, lead.contact_id), msg.channel, granted=True, source=source, actor=actor
        )
    return {"outcome": "lead" if new else "duplicate_lead", "lead_id": lead.id, "contact_id": lead.contact_id}


def _text_of(message: dict[str, Any]) -> str:
    """A WhatsApp message's text: text.body, a quick-reply button's or a list reply's title, else its type."""
    kind = message.get("type")
    if kind == "text":
        return str((message.get("text") or {}).get("body") or "")
    if kind == "button":
        return str((message.get("button") or {}).get("text") or "")
    if kind == "interactive":
        reply = message.get("interactive") or {}
        return str((reply.get("button_reply") or reply.get("list_reply") or {}).get("title") or "")
    return f"[{kind or 'unknown'} message]"


def _at(timestamp: Any) -> dt.datetime | None:
    text = str(timestamp or "")
    return dt.datetime.fromtimestamp(int(text), dt.UTC) if text.isascii() and text.isdigit() else None


def receive_whatsapp(session: Session, settings: Settings, payload: dict[str, Any]) -> dict[str, Any]:
    """A Cloud API webhook notification (entry[].changes[].value): its messages are captured, its statuses
    (sent, delivered, read, failed) update our outbound messages."""
    if payload.get("object") not in (None, "whatsapp_business_account"):
        raise InvalidInput("object must be 'whatsapp_business_account'", details={"field": "object"})
    counts: dict[str, int] = {"messages": 0, "statuses": 0, "unknown_statuses": 0}
    outcomes: list[dict[str, Any]] = []
    for entry in payload.get("entry") or []:
        for change in entry.get("changes") or []:
            value = change.get("value") or {}
            names = {c.get("wa_id"): (c.get("profile") or {}).get("name") for c in value.get("contacts") or []}
            for message in value.get("messages") or []:
                if not message.get("id") or not message.get("from"):
                    raise InvalidInput("each message needs 'id' and 'from'", details={"field": "messages"})
                msg = InboundMessage(
                    channel="whatsapp",
                    provider_message_id=str(message["id"]),
                    from_number=str(message["from"]),
                    body=_text_of(message),
                    profile_name=names.get(message["from"]),
                    received_at=_at(message.get("timestamp")),
                )
                outcomes.append(receive(session, settings, msg, actor="webhook:whatsapp"))
                counts["messages"] += 1
            for status in value.get("statuses") or []:
                errors = status.get("errors") or [{}]
                error = errors[0].get("message") or errors[0].get("title") if isinstance(errors[0], dict) else None
                found = record_status(
                    session,
                    "whatsapp",
                    str(status.get("id") or ""),
                    str(status.get("status") or ""),
                    error=f"WhatsApp: {error} (code {errors[0].get('code')})" if error else None,
                    settings=settings,
                )
                counts["statuses" if found else "unknown_statuses"] += 1
    return {**counts, "outcomes": outcomes}


def receive_sms(session: Session, settings: Settings, params: dict[str, str]) -> dict[str, Any]:
    """A Twilio-compatible webhook: an inbound SMS (From, Body, MessageSid), or a StatusCallback (MessageSid,
    MessageStatus) for one of ours."""
    sid = params.get("MessageSid") or params.get("SmsSid") or params.get("SmsMessageSid")
    if not sid:
        raise InvalidInput("MessageSid is required", details={"field": "MessageSid"})
    if "Body" not in params and params.get("MessageStatus"):
        code = params.get("ErrorCode")
        error = f"the SMS provider reported error {code}: {params.get('ErrorMessage') or 'see its error code list'}"
        found = record_status(
            session, "sms", sid, params["MessageStatus"], error=error if code else None, settings=settings
        )
        return {"messages": 0, "statuses": int(found is not None), "unknown_statuses": int(found is None)}
    if not params.get("From"):
        raise InvalidInput("From is required", details={"field": "From"})
    msg = InboundMessage(
        channel="sms", provider_message_id=sid, from_number=params["From"], body=params.get("Body", "")
    )
    outcome = receive(session, settings, msg, actor="webhook:sms")
    return {"messages": 1, "statuses": 0, "unknown_statuses": 0, "outcomes": [outcome]}
