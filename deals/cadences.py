"""Follow-up cadences. After a first touch is sent, the daily scan drafts the sequence's steps for the
lead's next action into the review queue, each once; events stop or change the sequence.

- reply: the lead goes to its closer with the full context (a hand-off task), automation stops
- meeting_booked: automation stops
- unsubscribed: automation stops, the contact is marked do-not-email and every pending email to the lead is
  cancelled at once, whatever queued it
- bounced: the same (the address does not work)
- proposal_opened: a timely "questions about the proposal?" follow-up is drafted; refused for a lead with no
  proposal
One pending follow-up per lead: a newer step (or the proposal follow-up) supersedes the pending older one.
A deal with no activity for REVLOOP_STALE_DEAL_DAYS gets a reactivation draft (once per month; a new one
supersedes last month's if it is still pending).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core import audit
from core.db import insert_once, session_scope
from core.enums import MESSAGE_KINDS, PHONE_KINDS, ItemKind, ItemSource, ItemStatus, LeadEventType
from core.errors import InvalidInput, NotFound
from core.models import Activity, CadenceTouch, Deal, Lead, LeadEvent, Proposal, ReviewItem, utcnow
from core.settings import Settings
from deals import pipeline
from review import channels
from review import queue as review_queue
from review.execute import Rule

# next action -> (day after the first touch, template); the last step is the break-up note
SEQUENCES: dict[str, list[tuple[int, str]]] = {
    "call_now": [(2, "follow_up_light"), (5, "follow_up_value"), (10, "follow_up_direct"), (15, "break_up")],
    "fast_cadence": [(2, "follow_up_light"), (5, "follow_up_value"), (10, "follow_up_direct"), (15, "break_up")],
    "nurture": [(7, "follow_up_light"), (21, "follow_up_value"), (45, "break_up")],
    "polite_decline": [],
}
# The WhatsApp template a follow-up uses outside the 24-hour window, when REVLOOP_WHATSAPP_TEMPLATES lists it (one
# body parameter: the first name); without it a WhatsApp cadence stops when the window closes.
WHATSAPP_TEMPLATE = "follow_up"
EVENT_TYPES = tuple(LeadEventType)
STOPPING = {LeadEventType.REPLY, LeadEventType.MEETING_BOOKED, LeadEventType.UNSUBSCRIBED, LeadEventType.BOUNCED}
OPTED_OUT = (LeadEventType.UNSUBSCRIBED, LeadEventType.BOUNCED)
OPT_OUT_REASONS = {
    LeadEventType.UNSUBSCRIBED: "the lead unsubscribed: no email may be sent to them",
    LeadEventType.BOUNCED: "the lead's address bounced: email to it cannot be delivered",
}


def _first_touch(session: Session, lead_id: int) -> ReviewItem | None:
    return session.scalar(
        select(ReviewItem)
        .where(
            ReviewItem.lead_id == lead_id,
            ReviewItem.status == ItemStatus.SENT,
            ReviewItem.kind.in_(MESSAGE_KINDS),
            ReviewItem.source != ItemSource.CADENCE,
        )
        .order_by(ReviewItem.executed_at)
        .limit(1)
    )


def _slots(
    session: Session, settings: Settings, lead: Lead, first: ReviewItem | None, today: dt.date, **extra: Any
) -> dict[str, Any]:
    used = dict((first.draft.get("facts_used") if first else None) or {})
    contact = lead.contact
    history = session.scalars(
        select(ReviewItem.draft)
        .where(ReviewItem.lead_id == lead.id, ReviewItem.status == ItemStatus.SENT)
        .order_by(ReviewItem.id)
    ).all()
    slots = {
        **{k: used.get(k, "") for k in ("first_name", "full_name", "company", "title", "industry", "phone", "topics")},
        # Unknown stays empty: the templates read naturally without ("Hello,"), never "Hi there" (issue 17).
        "first_name": used.get("first_name") or (contact.first_name if contact else None) or "",
        "full_name": used.get("full_name") or lead.email,
        "company": used.get("company") or lead.company or "",
        "our_company": settings.company_name,
        "sender_name": settings.sender_name,
        "unsubscribe_url": settings.unsubscribe_url,
        "last_subject": (first.draft.get("subject") if first else "") or "our last note",
        "days_since_first_touch": (today - first.executed_at.date()).days if first and first.executed_at else 0,
        "history": "; ".join(f"'{d.get('subject', '')}'" for d in history) or "nothing yet",
        "days_quiet": 0,
        "note": "",
    }
    slots.update(extra)
    return slots


def _events(session: Session, lead_id: int) -> str:
    events = session.execute(
        select(LeadEvent.type, LeadEvent.occurred_at)
        .where(LeadEvent.lead_id == lead_id)
        .order_by(LeadEvent.occurred_at)
    ).all()
    return ", ".join(f"{t.replace('_', ' ')} on {at:%d %b}" for t, at in events) or "no reply, no other event"


def _draft(
    session: Session,
    settings: Settings,
    lead: Lead,
    step: str,
    template: str,
    *,
    kind: ItemKind = ItemKind.EMAIL,
    assignee: str | None = None,
    sla_hours: int = 24,
    today: dt.date | None = None,
    supersede: tuple[str, str] | None = None,
    refs: dict[str, Any] | None = None,
    **extra: Any,
) -> ReviewItem | None:
    """Queue one step once; None when it was drafted before. `supersede` (key, label): this draft replaces
    the pending one with the same key (one pending follow-up per lead)."""
    touch, created = insert_once(
        session,
        CadenceTouch(lead_id=lead.id, step=step),
        select(CadenceTouch).where(CadenceTouch.lead_id == lead.id, CadenceTouch.step == step),
    )
    if not created:
        return None
    first = _first_touch(session, lead.id)
    slots = _slots(session, settings, lead, first, today or utcnow().date(), **extra)
    item = review_queue.queue_drafted(
        session,
        actor="agent:cadence",
        source=ItemSource.CADENCE,
        thread_id=f"cadence-{lead.id}",
        dedupe_key=f"cadence-{lead.id}-{step}",
        supersede_key=supersede[0] if supersede else None,
        supersede_label=supersede[1] if supersede else None,
        lead_id=lead.id,
        contact_id=lead.contact_id,
        to=(lead.contact.phone_e164 if lead.contact else None)
        if kind in PHONE_KINDS
        else (lead.contact.email if lead.contact else lead.email),
        kind=kind,
        template=template,
        slots=slots,
        brief={
            **(lead.brief or {}),
            "summary": f"Follow-up '{step}' for {slots['full_name']}"
            + (f" ({slots['company']})" if slots["company"] else "")
            + f". Sent so far: {slots['history']}. What they did: {_events(session, lead.id)}.",
            "next_action": "follow_up" if kind in MESSAGE_KINDS else "personal_reply",
        },
        refs={"step": step, **(refs or {})},
        sla_hours=sla_hours,
        assignee=assignee,
    )
    touch.review_item_id = item.id
    return item


def scan(settings: Settings, today: dt.date | None = None) -> dict[str, int]:
    """Draft every follow-up step that is due, once; and reactivation drafts for stale deals."""
    today = today or utcnow().date()
    counts = {"drafted": 0, "reactivations": 0}
    with session_scope(settings, readonly=True) as session:  # then one short unit of work per lead
        lead_ids = session.scalars(
            select(ReviewItem.lead_id)
            .where(ReviewItem.status == ItemStatus.SENT, ReviewItem.lead_id.is_not(None))
            .group_by(ReviewItem.lead_id)
        ).all()
    for lead_id in lead_ids:
        with session_scope(settings) as session:
            lead = session.get(Lead, lead_id)
            first = _first_touch(session, lead_id)
            if lead.cadence_stopped_at is not None or first is None:
                continue
            text = None
            if first.kind in PHONE_KINDS:  # the first touch was a text: follow up on that channel while allowed
                # The WhatsApp template's one parameter is the first name: with none on record it is not used
                # (never "Hi there"), so outside the 24-hour window the follow-up stops.
                name = (lead.contact.first_name if lead.contact else None) or ""
                wa_template = WHATSAPP_TEMPLATE if name.strip() else None
                text = channels.text_step(
                    session, settings, lead.contact, first.kind, wa_template=wa_template, params=(name,)
                )
                if text is None:
                    continue
            elif not lead.consent_email or (lead.contact is not None and lead.contact.do_not_email):
                continue
            sequence = SEQUENCES.get((lead.brief or {}).get("next_action", ""), [])
            days = (today - first.executed_at.date()).days
            due = [(day, template) for day, template in sequence if day <= days]
            if due:
                day, template = due[-1]  # only the latest due step: a missed earlier one is not sent late
                step = "break-up" if template == "break_up" else f"day-{day}"
                label = "the break-up note" if template == "break_up" else f"the day-{day} follow-up"
                if text is not None:
                    template = "text_follow_up"
                if _draft(
                    session,
                    settings,
                    lead,
                    step,
                    template,
                    kind=ItemKind(text[0]) if text else ItemKind.EMAIL,
                    refs=text[1] if text else None,
                    today=today,
                    supersede=(_follow_up(lead), label),
                ):
                    counts["drafted"] += 1
    counts["reactivations"] = reactivate_stale_deals(settings, today)
    return counts


def reactivate_stale_deals(settings: Settings, today: dt.date) -> int:
    cutoff = dt.datetime.combine(today, dt.time(), tzinfo=dt.UTC) - dt.timedelta(days=settings.stale_deal_days)
    drafted = 0
    with session_scope(settings, readonly=True) as session:  # then one short unit of work per deal
        last_activity = (
            select(Activity.lead_id, func.max(Activity.occurred_at).label("at")).group_by(Activity.lead_id).subquery()
        )
        rows = session.execute(
            select(Deal.id, Deal.lead_id, last_activity.c.at, Deal.updated_at)
            .outerjoin(last_activity, last_activity.c.lead_id == Deal.lead_id)
            .where(Deal.outcome.is_(None), Deal.lead_id.is_not(None))
        ).all()
    for deal_id, lead_id, last_at, updated in rows:
        quiet_since = max(t for t in (last_at, updated) if t is not None)
        if quiet_since > cutoff:
            continue
        with session_scope(settings) as session:
            lead = session.get(Lead, lead_id)
            if lead.cadence_stopped_at is not None and lead.cadence_stop_reason in OPTED_OUT:
                continue
            if lead.contact is not None and lead.contact.do_not_email:
                continue
            step = f"reactivate-{deal_id}-{today:%Y-%m}"
            quiet = (today - quiet_since.date()).days
            supersede = (f"deal:{deal_id}:reactivation", f"the {today:%B %Y} reactivation note")
            if _draft(
                session, settings, lead, step, "reactivation", today=today, supersede=supersede, days_quiet=quiet
            ):
                drafted += 1
    return drafted


def _follow_up(lead: Lead) -> str:
    """The supersede key of a lead's follow-ups: one pending at a time, the newest wins."""
    return f"lead:{lead.id}:follow_up"


def _stop(session: Session, lead: Lead, reason: str, actor: str) -> int:
    if lead.cadence_stopped_at is None:
        lead.cadence_stopped_at, lead.cadence_stop_reason = utcnow(), reason
    return review_queue.cancel_pending(
        session,
        reason=f"cadence stopped: {reason}",
        actor=actor,
        lead_id=lead.id,
        sources=(ItemSource.CADENCE,),
        kinds=MESSAGE_KINDS,
    )


def _opt_out(session: Session, lead: Lead, type: str, actor: str) -> int:
    """Consent withdrawn (or the address is dead): record it, and cancel now every pending email to the lead
    or its contact, whatever queued it (first touch, follow-ups, proposal cover, onboarding, reminders). The
    send-time consent check stays as the second line of defence for items already approved."""
    lead.consent_email = False
    to_them = [ReviewItem.lead_id == lead.id]
    if lead.contact is not None:
        lead.contact.do_not_email = True
        to_them.append(ReviewItem.contact_id == lead.contact.id)
    pending = session.scalars(
        select(ReviewItem.id).where(
            or_(*to_them), ReviewItem.status == ItemStatus.PENDING, ReviewItem.kind == ItemKind.EMAIL
        )
    ).all()
    return review_queue.cancel_pending(
        session, reason=OPT_OUT_REASONS[type], actor=actor, item_ids=list(pending), kinds=(ItemKind.EMAIL,)
    )


def _has_proposal(session: Session, lead_id: int) -> bool:
    return (
        session.scalar(
            select(Proposal.id).join(Deal, Deal.id == Proposal.deal_id).where(Deal.lead_id == lead_id).limit(1)
        )
        is not None
    )


def record_event(
    session: Session,
    settings: Settings,
    lead_id: int,
    *,
    type: str,
    note: str | None = None,
    occurred_at: dt.datetime | None = None,
    external_id: str | None = None,
    actor: str,
) -> dict[str, Any]:
    if type not in EVENT_TYPES:
        raise InvalidInput(f"type must be one of {', '.join(EVENT_TYPES)}", details={"field": "type"})
    lead = session.get(Lead, lead_id)
    if lead is None:
        raise NotFound(f"lead {lead_id} not found")
    if type == LeadEventType.PROPOSAL_OPENED and not _has_proposal(session, lead_id):
        # Nothing to follow up on: most likely the sender named the wrong lead. Say so instead of drafting
        # "questions about the proposal?" to someone who never got one.
        raise InvalidInput(
            f"lead {lead_id} has no proposal, so it cannot have opened one: check the lead id of this "
            "proposal_opened event",
            details={"field": "type"},
        )
    event = LeadEvent(
        lead_id=lead_id, type=type, note=note, occurred_at=occurred_at or utcnow(), external_id=external_id
    )
    if external_id is None:
        session.add(event)
        session.flush()
    else:  # a re-delivery, or the same event delivered twice at once, counts once
        _, created = insert_once(session, event, select(LeadEvent).where(LeadEvent.external_id == external_id))
        if not created:
            return {
                "lead_id": lead_id,
                "type": type,
                "duplicate": True,
                "cancelled_drafts": 0,
                "handoff_item": None,
                "conversion_item": None,
            }
    cancelled, handoff = 0, None
    if type in OPTED_OUT:
        cancelled += _opt_out(session, lead, type, actor)
    if type in STOPPING:
        cancelled += _stop(session, lead, type, actor)
    if type == LeadEventType.REPLY:
        owner = session.scalar(
            select(ReviewItem.assignee).where(ReviewItem.lead_id == lead_id, ReviewItem.assignee.is_not(None)).limit(1)
        )
        item = _draft(
            session,
            settings,
            lead,
            f"reply-{utcnow():%Y%m%d%H%M%S%f}",
            "reply_handoff",
            kind=ItemKind.CALL_TASK,
            assignee=owner,
            sla_hours=2,
            note=(note or "")[:500],
        )
        handoff = item.id if item else None
    if type == LeadEventType.PROPOSAL_OPENED and lead.cadence_stopped_at is None:
        item = _draft(
            session,
            settings,
            lead,
            "proposal-opened",
            "proposal_follow_up",
            sla_hours=4,
            supersede=(_follow_up(lead), "the proposal follow-up"),
        )
        handoff = item.id if item else None
    conversion = None
    if type == LeadEventType.MEETING_BOOKED or (type == LeadEventType.REPLY and pipeline.asks_to_buy(note)):
        # Buying intent: an agent proposes making the lead a deal; a person confirms it in the queue.
        why = "Meeting booked." if type == LeadEventType.MEETING_BOOKED else "Replied asking about buying."
        proposed = pipeline.propose_conversion(session, settings, lead, why=why, actor="agent:deals")
        conversion = proposed.id if proposed else None
    audit.record(
        session,
        actor=actor,
        action=f"lead.event.{type}",
        entity_type="lead",
        entity_id=lead_id,
        after={"note": note, "cancelled_drafts": cancelled},
    )
    return {
        "lead_id": lead_id,
        "type": type,
        "duplicate": False,
        "cancelled_drafts": cancelled,
        "handoff_item": handoff,
        "conversion_item": conversion,
    }


def _cadence_running(session: Session, item: ReviewItem) -> str | None:
    lead = session.get(Lead, item.lead_id)
    if item.kind in MESSAGE_KINDS and lead.cadence_stopped_at is not None:
        return f"cadence stopped: {lead.cadence_stop_reason}"
    return None


# Follow-ups go out only while the cadence runs (a reply after approval stops the send).
EXECUTION = Rule(actor="agent:cadence", check=_cadence_running)
