"""Phone numbers (E.164) and per-channel consent (SMS, WhatsApp) of contacts.

Consent is one row per contact and channel with where it came from and when. It only narrows once withdrawn:
a STOP or UNSUBSCRIBE reply opts the contact out of that channel forever, and nothing grants it again (a later
"START", a form, an import); every change writes an audit event.
"""

from __future__ import annotations

import phonenumbers
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.db import insert_once
from core.enums import ConsentStatus
from core.errors import InvalidInput
from core.models import ChannelConsent, Contact, utcnow

CHANNELS = ("sms", "whatsapp")
# Replies that withdraw consent (the carriers' and Twilio's standard opt-out keywords), compared case-insensitively
# on the whole trimmed message.
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "OPT-OUT", "REVOKE"})


def normalise_phone(raw: str | None, region: str = "US", *, field: str = "phone") -> str:
    """E.164 ("+14155550100") of a number, or InvalidInput naming the field. WhatsApp sends numbers without the
    plus ("14155550100"): a number of digits only that is not valid in `region` is read as international."""
    text = (raw or "").strip()
    if not text:
        raise InvalidInput(f"{field} is empty: a phone number is required", details={"field": field})
    candidates = [text]
    if text.isdigit():
        candidates.append("+" + text)
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    raise InvalidInput(f"{field} is not a valid phone number: {text[:40]!r}", details={"field": field})


def try_normalise_phone(raw: str | None, region: str = "US") -> str | None:
    """E.164 of a typed-in number, or None when it is not one (forms carry all sorts of text)."""
    try:
        return normalise_phone(raw, region)
    except InvalidInput:
        return None


def is_opt_out(text: str | None) -> bool:
    return (text or "").strip().strip(".!").upper() in OPT_OUT_WORDS


def consent_of(session: Session, contact_id: int, channel: str) -> ChannelConsent | None:
    return session.scalar(
        select(ChannelConsent).where(ChannelConsent.contact_id == contact_id, ChannelConsent.channel == channel)
    )


def may_message(session: Session, contact: Contact | None, channel: str) -> str | None:
    """Why `contact` may not get a message on `channel` (None: it may): no number, no consent, opted out."""
    if contact is None:
        return "there is no contact record to send to"
    if not contact.phone_e164:
        return f"contact {contact.id} has no phone number on record"
    consent = consent_of(session, contact.id, channel)
    if consent is None:
        return f"contact {contact.id} has not consented to {channel} messages"
    if consent.status == ConsentStatus.OPTED_OUT:
        return f"contact {contact.id} opted out of {channel} ({consent.source}, {consent.recorded_at:%d %b %Y})"
    return None


def record_consent(session: Session, contact: Contact, channel: str, *, granted: bool, source: str, actor: str) -> bool:
    """Record consent on a channel; True when something changed. An opt-out is final: a later grant is ignored
    (and audited as refused, so nobody wonders why a 'START' did nothing)."""
    if channel not in CHANNELS:
        raise InvalidInput(f"channel must be one of {', '.join(CHANNELS)}", details={"field": "channel"})
    status = ConsentStatus.GRANTED if granted else ConsentStatus.OPTED_OUT
    row, created = insert_once(
        session,
        ChannelConsent(contact_id=contact.id, channel=channel, status=status, source=source[:200]),
        select(ChannelConsent).where(ChannelConsent.contact_id == contact.id, ChannelConsent.channel == channel),
    )
    before = None if created else row.status
    if not created:
        if row.status == status:
            return False
        if row.status == ConsentStatus.OPTED_OUT:
            audit.record(
                session,
                actor=actor,
                action="contact.consent_regrant_refused",
                entity_type="contact",
                entity_id=contact.id,
                before={"channel": channel, "status": row.status, "source": row.source},
                after={"channel": channel, "asked": status, "source": source},
            )
            return False
        row.status, row.source, row.recorded_at = status, source[:200], utcnow()
    audit.record(
        session,
        actor=actor,
        action="contact.consent_granted" if granted else "contact.opted_out",
        entity_type="contact",
        entity_id=contact.id,
        before={"channel": channel, "status": before} if before else None,
        after={"channel": channel, "status": status, "source": source},
    )
    session.flush()
    return True
