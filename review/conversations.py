"""A contact's conversation across channels (email, SMS, WhatsApp), newest first: what we sent (the outbox, with
its delivery status) and what they wrote (inbound texts; email replies recorded as lead events)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from core.enums import LeadEventType
from core.errors import NotFound
from core.models import ChannelMessage, Contact, Lead, LeadEvent, OutboxMessage, ReviewItem
from crm.consent import CHANNELS, consent_of

TEXT_EVENT_PREFIXES = ("sms:", "whatsapp:")  # replies by text are in channel_messages already


def thread(session: Session, contact_id: int, limit: int = 100) -> dict[str, Any]:
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id} not found")
    entries: list[dict[str, Any]] = []
    sent = session.execute(
        select(OutboxMessage, ReviewItem.id)
        .join(ReviewItem, ReviewItem.id == OutboxMessage.review_item_id)
        .where(ReviewItem.contact_id == contact_id)
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
    ).all()
    for row, item_id in sent:
        entries.append(
            {
                "at": row.sent_at or row.handed_at or row.created_at,
                "channel": row.channel,
                "direction": "out",
                "address": row.to_addr,
                "subject": row.subject or None,
                "text": row.body,
                "status": row.delivery_status if row.delivery_status and row.status == "sent" else row.status,
                "review_item_id": item_id,
            }
        )
    received = session.scalars(
        select(ChannelMessage)
        .where(ChannelMessage.contact_id == contact_id)
        .order_by(ChannelMessage.received_at.desc())
        .limit(limit)
    ).all()
    for msg in received:
        entries.append(
            {
                "at": msg.received_at,
                "channel": msg.channel,
                "direction": "in",
                "address": msg.from_number,
                "subject": None,
                "text": msg.body,
                "status": "received",
                "review_item_id": None,
            }
        )
    replies = session.scalars(
        select(LeadEvent)
        .join(Lead, Lead.id == LeadEvent.lead_id)
        .where(
            Lead.contact_id == contact_id,
            LeadEvent.type == LeadEventType.REPLY,
            or_(
                LeadEvent.external_id.is_(None),
                and_(*[~LeadEvent.external_id.startswith(p) for p in TEXT_EVENT_PREFIXES]),
            ),
        )
        .order_by(LeadEvent.occurred_at.desc())
        .limit(limit)
    ).all()
    for event in replies:
        entries.append(
            {
                "at": event.occurred_at,
                "channel": "email",
                "direction": "in",
                "address": contact.email,
                "subject": None,
                "text": event.note or "",
                "status": "received",
                "review_item_id": None,
            }
        )
    entries.sort(key=lambda e: e["at"], reverse=True)
    return {
        "contact_id": contact.id,
        "email": contact.email,
        "phone": contact.phone_e164,
        "consent": {c: (row.status if (row := consent_of(session, contact.id, c)) else None) for c in CHANNELS},
        "messages": entries[:limit],
    }

