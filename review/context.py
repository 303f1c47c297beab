"""Context to decide a review item: the lead's own words (untrusted), the flags in plain words, and the records of the
same contact and account (open invoices, deals, recent messages). Read-only; everything comes from records."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import false, or_, select
from sqlalchemy.orm import Session

from billing.ledger import balance
from core import schemas
from core.enums import InvoiceStatus, ItemStatus, OutboxStatus
from core.models import Account, Contact, Deal, Invoice, Lead, LeadEvent, OutboxMessage, ReviewItem, utcnow
from review.injection import FLAG as INJECTION_FLAG
from review.injection import injection_signals, lead_text, warning

RECENT_MESSAGES = 10

# The brief's flag codes (agents/lead/nodes.py) as a closer reads them. Codes with an argument ("disqualified:x")
# are matched on the part before the colon.
FLAG_WORDS: dict[str, str] = {
    "missing_company": "The lead gave no company name: the company is a guess from the email domain, if any.",
    "missing_title": "The lead gave no job title: we do not know whether they can buy.",
    "free_mail_domain": "The lead wrote from a free mail address (Gmail, Outlook ...): the company is unconfirmed.",
    "disposable_email": "The lead used a throwaway email address: the enquiry may not be real.",
    "account_matched_by_name": "Account matched by company name only (personal email address, or no company domain "
    "confirms it): check before trusting its history.",
    "low_confidence": "Less than 60 % of the rubric could be checked: the score rests on little data.",
    "existing_customer": "This company has bought from us before: write as to an existing customer.",
    "open_deal": "There is already an open deal with this company: check with its owner before writing.",
    "disqualified": "The lead fails an ICP rule ({arg}): the rubric says we should not pursue it.",
    "rubric_only": "Scored by the written rubric alone: no trained outcome model applies to this lead (yet).",
    "model_out_of_domain": "This lead is unlike the deals the outcome model learned from (another industry, source "
    "or country, or too few of its fields): its probability is not used and the written rubric alone scores it.",
    "conflicting_signals": "The written ICP and past outcomes disagree about this lead: use your own judgement.",
    "tool_calls_refused": "The research agent asked for tools it may not use ({arg}); they were refused.",
    "tool_calls_failed": "A research look-up could not answer ({arg}: its system was down or too slow): the brief "
    "lacks what it would have found, such as a similar won case or the account's history.",
    "llm_unavailable": "The language model was unavailable: the deterministic engine scored and drafted this.",
    "llm_over_budget": "The language model ran out of its time budget for this lead: the deterministic engine "
    "finished it.",
    "llm_output_withheld": "The language model stated facts no record supports in: {arg}. That part was left out.",
}


def injection_codes(item: ReviewItem) -> list[str]:
    """The injection screen's codes for the item's lead (from the brief), empty when it found nothing."""
    brief = item.brief or {}
    codes = list(brief.get("injection") or [])
    for flag in brief.get("flags") or []:
        if flag.startswith(INJECTION_FLAG + ":"):
            codes += [c for c in flag.split(":", 1)[1].split(",") if c]
    return list(dict.fromkeys(codes))


def _injection_words(codes: list[str]) -> list[schemas.FlagInWords]:
    return [schemas.FlagInWords(code=f"{INJECTION_FLAG}:{code}", words=warning(code)) for code in codes]


def _code_words(code: str) -> str:
    name, _, arg = code.partition(":")
    template = FLAG_WORDS.get(name)
    if template is not None:
        return template.format(arg=arg.replace(",", ", ") or "not named")
    return code.replace("_", " ").replace(":", ": ").replace(",", ", ").capitalize() + "."


def _guard_words(flag: str) -> str:
    # "ungrounded number '20%'" -> the claim and what to do about it
    kind, _, said = flag.removeprefix("ungrounded ").partition(" ")
    return (
        f"The draft states a {kind} ({said}) that no record or approved template supports: check it before approving."
        if flag.startswith("ungrounded ")
        else flag
    )


def flags_in_words(item: ReviewItem) -> list[schemas.FlagInWords]:
    """Every flag of the item in plain words: the injection screen's findings first, then the brief's other
    flags, then the grounding guard's. The screen's own sentences in the brief are not repeated."""
    out = _injection_words(injection_codes(item))
    for flag in (item.brief or {}).get("flags") or []:
        if flag.startswith(INJECTION_FLAG) or " " in flag:  # the code (done above) or one of its sentences
            continue
        out.append(schemas.FlagInWords(code=flag, words=_code_words(flag)))
    out += [schemas.FlagInWords(code=flag, words=_guard_words(flag)) for flag in item.guard_flags or []]
    return out


def requires_acknowledgement(item: ReviewItem) -> bool:
    """Approving needs an explicit acknowledgement: guard flags on the draft, or a lead text the screen flagged."""
    return bool(item.guard_flags) or bool(injection_codes(item))


def acknowledgement_flags(item: ReviewItem) -> list[schemas.FlagInWords]:
    """The flags an acknowledgement covers (what a 409 lists and the audit records)."""
    return _injection_words(injection_codes(item)) + [
        schemas.FlagInWords(code=flag, words=_guard_words(flag)) for flag in item.guard_flags or []
    ]


def _invoice_status(invoice: Invoice, today: dt.date) -> str:
    if invoice.disputed:
        return "disputed"
    if invoice.payment_pending:
        return "payment_pending"
    return "overdue" if invoice.due_on < today else InvoiceStatus.ISSUED.value


def _open_invoices(session: Session, account_id: int | None, today: dt.date) -> schemas.ContextInvoices:
    rows: list[schemas.ContextInvoice] = []
    per_currency: dict[str, Decimal] = {}
    if account_id is not None:
        invoices = session.scalars(
            select(Invoice)
            .where(Invoice.account_id == account_id, Invoice.status == InvoiceStatus.ISSUED)
            .order_by(Invoice.due_on, Invoice.id)
        ).all()
        for invoice in invoices:
            due = balance(session, invoice)
            if due <= 0:
                continue
            per_currency[invoice.currency] = per_currency.get(invoice.currency, Decimal("0")) + due
            rows.append(
                schemas.ContextInvoice(
                    id=invoice.id,
                    number=invoice.number,
                    currency=invoice.currency,
                    amount=str(invoice.amount),
                    amount_due=str(due),
                    issued_on=invoice.issued_on,
                    due_on=invoice.due_on,
                    days_overdue=max(0, (today - invoice.due_on).days),
                    status=_invoice_status(invoice, today),
                )
            )
    first = rows[0].currency if rows else None
    return schemas.ContextInvoices(
        count=len(rows),
        amount_due=f"{first} {per_currency[first]}" if first else "0",
        per_currency={c: str(v) for c, v in per_currency.items()},
        invoices=rows,
    )


def _deals(session: Session, account_id: int | None, contact_id: int | None, lead_id: int | None) -> list:
    who = [
        c
        for c in (
            Deal.account_id == account_id if account_id is not None else None,
            Deal.contact_id == contact_id if contact_id is not None else None,
            Deal.lead_id == lead_id if lead_id is not None else None,
        )
        if c is not None
    ]
    if not who:
        return []
    deals = session.scalars(select(Deal).where(or_(*who)).order_by(Deal.updated_at.desc(), Deal.id.desc())).all()
    return [
        schemas.ContextDeal(
            id=d.id,
            name=d.name,
            stage=d.stage,
            outcome=d.outcome,
            value=f"{d.currency} {d.amount}" if d.amount is not None else None,
            owner=d.owner,
            updated_at=d.stage_changed_at or d.updated_at,
        )
        for d in deals[:20]
    ]


def _recent_messages(
    session: Session, account_id: int | None, contact_id: int | None, lead_ids: list[int]
) -> list[schemas.ContextMessage]:
    contact_ids = [contact_id] if contact_id is not None else []
    if account_id is not None:
        contact_ids += session.scalars(select(Contact.id).where(Contact.account_id == account_id)).all()
        lead_ids = lead_ids + list(session.scalars(select(Lead.id).where(Lead.account_id == account_id)).all())
    contact_ids, lead_ids = list(dict.fromkeys(contact_ids)), list(dict.fromkeys(lead_ids))
    out: list[schemas.ContextMessage] = []
    if contact_ids or lead_ids:
        items = or_(
            ReviewItem.contact_id.in_(contact_ids) if contact_ids else false(),
            ReviewItem.lead_id.in_(lead_ids) if lead_ids else false(),
        )
        sent = session.execute(
            select(OutboxMessage, ReviewItem.kind)
            .join(ReviewItem, ReviewItem.id == OutboxMessage.review_item_id)
            .where(items)
            .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
            .limit(RECENT_MESSAGES)
        ).all()
        out += [
            schemas.ContextMessage(
                channel="email",
                direction="outbound",
                subject=m.subject,
                sent_at=m.sent_at or m.handed_at or m.created_at,
                status=m.status if m.status != OutboxStatus.SENT else "sent",
                review_item_id=m.review_item_id,
            )
            for m, _ in sent
        ]
        # Call tasks done are outbound touches too (no outbox row).
        calls = session.scalars(
            select(ReviewItem)
            .where(items, ReviewItem.kind == "call_task", ReviewItem.status == ItemStatus.DONE)
            .order_by(ReviewItem.executed_at.desc())
            .limit(RECENT_MESSAGES)
        ).all()
        out += [
            schemas.ContextMessage(
                channel="call",
                direction="outbound",
                subject=(c.draft or {}).get("subject"),
                sent_at=c.executed_at,
                status="done",
                review_item_id=c.id,
            )
            for c in calls
        ]
    if lead_ids:
        # What came back: replies, meetings, bounces, unsubscribes recorded as lead events. The note is the
        # sender's text (untrusted) and is not repeated here; the type says what happened.
        events = session.scalars(
            select(LeadEvent)
            .where(LeadEvent.lead_id.in_(lead_ids))
            .order_by(LeadEvent.occurred_at.desc(), LeadEvent.id.desc())
            .limit(RECENT_MESSAGES)
        ).all()
        out += [
            schemas.ContextMessage(
                channel="email" if e.type in ("reply", "bounced", "unsubscribed") else "event",
                direction="inbound",
                subject=e.type.replace("_", " "),
                sent_at=e.occurred_at,
                status=e.type,
            )
            for e in events
        ]
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    out.sort(key=lambda m: m.sent_at or epoch, reverse=True)
    return out[:RECENT_MESSAGES]


def build(session: Session, item: ReviewItem, *, today: dt.date | None = None) -> schemas.ReviewContext:
    """The context of one item, from records: the lead's words and what the screen found in them, the account,
    its open invoices, the deals and the last messages with the same contact or account."""
    today = today or utcnow().date()
    lead = session.get(Lead, item.lead_id) if item.lead_id is not None else None
    contact_id = item.contact_id or (lead.contact_id if lead is not None else None)
    contact = session.get(Contact, contact_id) if contact_id is not None else None
    account_id = (contact.account_id if contact is not None else None) or (lead.account_id if lead else None)
    refs = item.draft or {}
    if account_id is None and isinstance(refs.get("account_id"), int):
        account_id = refs["account_id"]
    if account_id is None and isinstance(refs.get("invoice_id"), int):  # a reminder: the invoice's account
        invoice = session.get(Invoice, refs["invoice_id"])
        account_id = invoice.account_id if invoice is not None else None
    account = session.get(Account, account_id) if account_id is not None else None
    flags: list[schemas.FlagInWords] = []
    if lead is not None:
        screened = {
            "message": lead.message,
            "company": lead.company,
            "title": lead.title,
            "first_name": lead.first_name,
            "last_name": lead.last_name,
            "website": lead.website,
            "custom": lead.custom or {},
        }
        # The codes the brief recorded, else the screen run now on the same text (an item without a brief).
        codes = injection_codes(item) or injection_signals(lead_text(screened), lead.email)
        flags = _injection_words(codes)
    return schemas.ReviewContext(
        review_item_id=item.id,
        lead_message=lead.message if lead is not None else None,
        lead_message_flags=flags,
        account=schemas.ContextAccount(
            id=account.id,
            name=account.name,
            domain=account.domain,
            industry=account.industry,
            employees=account.employees,
            country=account.country,
        )
        if account is not None
        else None,
        open_invoices=_open_invoices(session, account_id, today),
        deals=_deals(session, account_id, contact_id, item.lead_id),
        recent_messages=_recent_messages(session, account_id, contact_id, [item.lead_id] if item.lead_id else []),
    )
