"""Deals as first-class records: a lead becomes a deal (its contact and account come from the lead's records),
deals are edited, move through stages whose entry criteria are checked, and close as won or lost with a
reason. A closed deal whose lead was captured by revloop is a training row for the outcome model (with the
features the lead had at capture, see scoring/registry.py).

Agents never convert on their own: a reply that asks for a quote or a booked meeting queues a `convert`
review item; a person's approval runs `convert_lead` through the one executor.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import audit
from core.enums import (
    OPEN_STAGES,
    DealOutcome,
    DealStage,
    ItemKind,
    ItemSource,
    LeadStatus,
)
from core.errors import Conflict, InvalidInput, NotFound
from core.models import Contact, Deal, Lead, Product, Proposal, ReviewItem, utcnow
from core.settings import Settings
from core.users import assignable_names
from crm import writeback as crm_writeback
from crm.records import link_lead_to_crm, set_lead_status
from deals import flow
from review import queue as review_queue
from review.execute import Rule

# What must be true of a deal to enter each open stage (checked on every move, forwards or back).
ENTRY_CRITERIA = {
    DealStage.PROSPECTING: "the deal is open",
    DealStage.ENGAGING: "a contact to talk to",
    DealStage.QUALIFIED: "a contact, and a value or a product",
    DealStage.PROPOSAL: "a contact and a product from the price book (a proposal is drafted on entry)",
    DealStage.NEGOTIATION: "a proposal was drafted",
}


def _deal(session: Session, deal_id: int) -> Deal:
    deal = session.get(Deal, deal_id)
    if deal is None:
        raise NotFound(f"deal {deal_id} not found")
    return deal


def _open(deal: Deal) -> None:
    if deal.outcome is not None:
        raise Conflict(f"deal {deal.id} is closed ({deal.outcome})")


def _owner(session: Session, owner: str | None) -> str | None:
    if owner is not None and owner not in assignable_names(session):
        raise InvalidInput(f"owner {owner!r} is not an active closer or manager", details={"field": "owner"})
    return owner


def _product(session: Session, name: str | None) -> Product | None:
    if name is None:
        return None
    product = session.scalar(select(Product).where(Product.name == name))
    if product is None:
        raise InvalidInput(f"product {name!r} is not in the price book", details={"field": "product"})
    return product


def _lead_owner(session: Session, lead_id: int) -> str | None:
    """Who worked the lead: the assignee of its latest review item."""
    return session.scalar(
        select(ReviewItem.assignee)
        .where(ReviewItem.lead_id == lead_id, ReviewItem.assignee.is_not(None))
        .order_by(ReviewItem.id.desc())
        .limit(1)
    )


def _person(session: Session, actor: str) -> str | None:
    """The name of the closer or manager acting ("closer:Robin Lee" -> "Robin Lee"), when they can own deals."""
    name = actor.split(":", 1)[1] if ":" in actor else None
    return name if name in assignable_names(session) else None


def open_deal_of(session: Session, lead_id: int) -> Deal | None:
    return session.scalar(
        select(Deal).where(Deal.lead_id == lead_id, Deal.outcome.is_(None)).order_by(Deal.id.desc()).limit(1)
    )


def list_deals(
    session: Session,
    *,
    stage: str | None = None,
    owner: str | None = None,
    open_only: bool = False,
    lead_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Deal], int]:
    """Deals, most recently moved first."""
    conditions = []
    if stage in (DealStage.WON, DealStage.LOST):  # closed deals: imports keep stage 'closed', the outcome says
        conditions.append(Deal.outcome == stage)
    elif stage:
        conditions.append(Deal.stage == stage)
    if owner:
        conditions.append(Deal.owner == owner)
    if open_only:
        conditions.append(Deal.outcome.is_(None))
    if lead_id is not None:
        conditions.append(Deal.lead_id == lead_id)
    stmt = select(Deal).where(*conditions).order_by(Deal.stage_changed_at.desc().nulls_last(), Deal.id.desc())
    total = session.scalar(select(func.count(Deal.id)).where(*conditions)) or 0
    return list(session.scalars(stmt.limit(limit).offset(offset))), total


def product_name(session: Session, deal: Deal) -> str | None:
    return session.get(Product, deal.product_id).name if deal.product_id else None


def _new_deal(
    session: Session,
    *,
    actor: str,
    title: str,
    account_id: int | None,
    contact_id: int | None,
    lead_id: int | None,
    default_owner: str | None,
    name: str | None,
    product: str | None,
    value: Decimal | None,
    expected_close: dt.date | None,
    owner: str | None,
) -> Deal:
    """Check the terms (price book, value, close date, owner), then add the deal and its audit event. Qualified
    needs a value or a product (its entry criteria); without either the deal starts engaging."""
    chosen = _product(session, product)
    if value is not None and value < 0:
        raise InvalidInput("value must not be negative", details={"field": "value"})
    if expected_close is not None and expected_close < utcnow().date():
        raise InvalidInput("expected_close must not be in the past", details={"field": "expected_close"})
    now = utcnow()
    deal = Deal(
        name=(name or f"{title}{f' - {chosen.name}' if chosen else ''}")[:200],
        account_id=account_id,
        contact_id=contact_id,
        lead_id=lead_id,
        stage=DealStage.QUALIFIED if (value is not None or chosen) else DealStage.ENGAGING,
        amount=value if value is not None else (chosen.price if chosen else None),
        currency=chosen.currency if chosen else "USD",
        expected_close=expected_close,
        product_id=chosen.id if chosen else None,
        owner=_owner(session, owner) if owner is not None else default_owner,
        stage_changed_at=now,
        engaged_at=now.date(),
    )
    session.add(deal)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="deal.created",
        entity_type="deal",
        entity_id=deal.id,
        after={
            "lead_id": lead_id,
            "contact_id": contact_id,
            "stage": deal.stage,
            "amount": str(deal.amount),
            "owner": deal.owner,
        },
    )
    return deal


def convert_lead(
    session: Session,
    lead_id: int,
    *,
    actor: str,
    product: str | None = None,
    value: Decimal | None = None,
    expected_close: dt.date | None = None,
    owner: str | None = None,
    name: str | None = None,
) -> Deal:
    """Make a deal of a lead: contact and account from the lead's records, value from the price book unless
    given. A lead has at most one open deal; converting it again is refused with that deal's id."""
    lead = session.get(Lead, lead_id)
    if lead is None:
        raise NotFound(f"lead {lead_id} not found")
    if lead.email is None:
        raise InvalidInput(
            f"lead {lead_id} has no email address: nobody to make a deal with", details={"field": "lead"}
        )
    existing = open_deal_of(session, lead_id)
    if existing is not None:
        raise Conflict(
            f"lead {lead_id} is already deal {existing.id} ({existing.stage})", details={"deal_id": existing.id}
        )
    if lead.contact_id is None:
        link_lead_to_crm(session, lead, actor=actor)
    person = " ".join(p for p in (lead.first_name, lead.last_name) if p) or lead.email
    deal = _new_deal(
        session,
        actor=actor,
        title=(lead.account.name if lead.account else lead.company) or person,
        account_id=lead.account_id,
        contact_id=lead.contact_id,
        lead_id=lead.id,
        default_owner=_lead_owner(session, lead.id) or _person(session, actor),
        name=name,
        product=product,
        value=value,
        expected_close=expected_close,
        owner=owner,
    )
    # The lead is now worked as a deal: automated follow-ups of the lead stop.
    review_queue.cancel_pending(
        session,
        reason=f"the lead became deal {deal.id}",
        actor=actor,
        lead_id=lead.id,
        sources=(ItemSource.CADENCE, ItemSource.CONVERSION),
    )
    set_lead_status(session, lead.id, LeadStatus.CONVERTED, actor=actor)
    return deal


def create_deal(
    session: Session,
    *,
    contact_id: int,
    actor: str,
    name: str | None = None,
    product: str | None = None,
    value: Decimal | None = None,
    expected_close: dt.date | None = None,
    owner: str | None = None,
) -> Deal:
    """A deal with a contact already on record (an existing customer's new order): no lead behind it, so it is
    never a training row. Contact and account come from the records."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise InvalidInput(f"contact {contact_id} not found", details={"field": "contact_id"})
    return _new_deal(
        session,
        actor=actor,
        title=contact.account.name if contact.account else contact.email,
        account_id=contact.account_id,
        contact_id=contact.id,
        lead_id=None,
        default_owner=_person(session, actor),
        name=name,
        product=product,
        value=value,
        expected_close=expected_close,
        owner=owner,
    )


EDITABLE = ("name", "amount", "expected_close", "owner", "next_step", "next_step_due", "product")


def update_deal(session: Session, deal_id: int, changes: dict[str, Any], *, actor: str) -> Deal:
    """Edit an open deal's name, value, expected close, owner, next step or product."""
    deal = _deal(session, deal_id)
    _open(deal)
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))}", details={"field": sorted(unknown)[0]})
    before, after = {}, {}
    for field, value in changes.items():
        if field == "owner":
            value = _owner(session, value)
        if field == "amount" and value is not None and value < 0:
            raise InvalidInput("amount must not be negative", details={"field": "amount"})
        if field == "product":
            product = _product(session, value)
            before["product_id"], deal.product_id = deal.product_id, product.id if product else None
            after["product_id"] = deal.product_id
            continue
        before[field], after[field] = getattr(deal, field), value
        setattr(deal, field, value)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="deal.updated",
        entity_type="deal",
        entity_id=deal.id,
        before={k: str(v) if v is not None else None for k, v in before.items()},
        after={k: str(v) if v is not None else None for k, v in after.items()},
    )
    return deal


def _unmet(session: Session, deal: Deal, stage: DealStage) -> str | None:
    has_contact = deal.contact_id is not None or (deal.lead is not None and deal.lead.contact_id is not None)
    if stage in (DealStage.ENGAGING, DealStage.QUALIFIED, DealStage.PROPOSAL) and not has_contact:
        return "it has no contact record (convert it from a lead, or link a contact)"
    if stage == DealStage.QUALIFIED and deal.amount is None and deal.product_id is None:
        return "it has neither a value nor a product"
    if stage == DealStage.PROPOSAL and deal.product_id is None:
        return "it has no product from the price book (set one, or request a proposal with lines)"
    if stage == DealStage.NEGOTIATION and not session.scalar(
        select(Proposal.id).where(Proposal.deal_id == deal.id).limit(1)
    ):
        return "no proposal was drafted for it"
    return None


def change_stage(session: Session, settings: Settings, deal_id: int, stage: str, *, actor: str) -> dict[str, Any]:
    """Move an open deal to another open stage once its entry criteria hold; entering 'proposal' drafts one."""
    deal = _deal(session, deal_id)
    _open(deal)
    if stage not in OPEN_STAGES:
        raise InvalidInput(
            f"stage must be one of {', '.join(OPEN_STAGES)}; close a deal as won or lost instead",
            details={"field": "stage"},
        )
    target = DealStage(stage)
    before = deal.stage
    if target == before:
        return {"deal_id": deal.id, "stage": target, "proposal": None}
    unmet = _unmet(session, deal, target)
    if unmet:
        raise Conflict(
            f"deal {deal.id} cannot enter '{target}': {unmet}",
            details={"field": "stage", "needs": ENTRY_CRITERIA[target]},
        )
    deal.stage, deal.stage_changed_at = target, utcnow()
    audit.record(
        session,
        actor=actor,
        action="deal.stage_changed",
        entity_type="deal",
        entity_id=deal.id,
        before={"stage": before},
        after={"stage": target},
    )
    crm_writeback.queue_deal_stage(session, settings, deal)
    requested = flow.request_proposal(session, settings, deal.id, actor=actor) if target == DealStage.PROPOSAL else None
    return {"deal_id": deal.id, "stage": target, "proposal": requested["thread_id"] if requested else None}


def close_deal(
    session: Session,
    settings: Settings,
    deal_id: int,
    outcome: str,
    *,
    actor: str,
    reason: str | None = None,
    signed_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """Won (a signature recorded by a person: the same hand-off as the e-sign webhook) or lost with a reason.
    Either way the deal's lead becomes a training row at the next `revloop scoring train`."""
    deal = _deal(session, deal_id)
    if outcome == DealOutcome.WON:
        return flow.signed(session, settings, deal.id, signed_at=signed_at or utcnow(), actor=actor)
    if outcome != DealOutcome.LOST:
        raise InvalidInput("outcome must be 'won' or 'lost'", details={"field": "outcome"})
    if not (reason or "").strip():
        raise InvalidInput("a lost deal needs a reason", details={"field": "reason"})
    _open(deal)
    before = deal.stage
    now = utcnow()
    deal.outcome, deal.stage, deal.closed_at, deal.stage_changed_at = DealOutcome.LOST, DealStage.LOST, now, now
    crm_writeback.queue_deal_stage(session, settings, deal)
    deal.lost_reason = reason.strip()[:500]
    # Nothing more goes out about a lost deal: its pending drafts are cancelled.
    cancelled = 0
    if deal.lead_id is not None:
        cancelled = review_queue.cancel_pending(
            session, reason=f"deal {deal.id} was lost: {deal.lost_reason}", actor=actor, lead_id=deal.lead_id
        )
    audit.record(
        session,
        actor=actor,
        action="deal.lost",
        entity_type="deal",
        entity_id=deal.id,
        before={"stage": before},
        after={"reason": deal.lost_reason, "cancelled_drafts": cancelled},
    )
    return {"deal_id": deal.id, "outcome": DealOutcome.LOST, "reason": deal.lost_reason, "cancelled_drafts": cancelled}


# Words of a reply that asks to buy: a quote, a price, a proposal, a contract, an order.
BUYING_WORDS = re.compile(
    r"\b(quote|quotation|pricing|price|prices|proposal|contract|order|purchase|buy|invoice us|sign|go ahead)\b",
    re.IGNORECASE,
)


def asks_to_buy(note: str | None) -> bool:
    return bool(note and BUYING_WORDS.search(note))


def propose_conversion(session: Session, settings: Settings, lead: Lead, *, why: str, actor: str) -> ReviewItem | None:
    """Queue a `convert` review item for a lead that showed buying intent (once per lead while pending);
    None when the lead already has an open deal."""
    if open_deal_of(session, lead.id) is not None:
        return None
    company = lead.account.name if lead.account else lead.company or lead.email
    return review_queue.enqueue(
        session,
        review_queue.Draft(
            source=ItemSource.CONVERSION,
            kind=ItemKind.CONVERT,
            thread_id=f"conversion-{lead.id}",
            dedupe_key=f"conversion-{lead.id}-{utcnow():%Y%m%d%H%M%S%f}",
            supersede_key=f"lead:{lead.id}:conversion",
            lead_id=lead.id,
            contact_id=lead.contact_id,
            subject=f"Make {company} a deal",
            body=f"{why} Approve to create a qualified deal for {company} from the lead's records.",
            brief={**(lead.brief or {}), "summary": f"{company}: {why}", "next_action": "convert_to_deal"},
            assignee=_lead_owner(session, lead.id),
            sla_due_at=utcnow() + dt.timedelta(hours=4),
        ),
        actor=actor,
    )


def _convert_action(settings: Settings, session: Session, item: ReviewItem) -> dict[str, Any]:
    decision = item.decision
    actor = decision.actor if decision is not None else "agent:deals"
    existing = open_deal_of(session, item.lead_id)
    deal = existing or convert_lead(session, item.lead_id, actor=actor)
    return {"deal_id": deal.id, "summary": f"Lead {item.lead_id} is deal {deal.id}"}


# A confirmed conversion makes the deal (once: an open deal of the lead is reused).
CONVERSION_EXECUTION = Rule(actor="agent:deals", action=_convert_action)
