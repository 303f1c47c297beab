"""The deal flow after the first conversations. Everything client-facing is drafted into the review
queue; nothing is sent without approval. Prices come from the price book, never from the request or a
model; the discount is capped by REVLOOP_MAX_DISCOUNT_PCT.

- proposal stage -> a proposal (lines, discount, terms, validity) rendered to HTML and PDF, with a cover
  email that carries the PDF
- signature (e-sign webhook) -> deal won, delivery hand-off (project brief, tasks, kickoff), billing
  schedule (milestones), onboarding welcome email
- milestone completed -> an invoice to approve (approval issues it in the billing and queues its email to the
  client, the invoice PDF attached) and a client update
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from jinja2 import Environment, select_autoescape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing import backends as billing_backends
from billing import fiscal, reminders
from core import audit, jobs
from core.db import session_scope
from core.enums import (
    PHONE_KINDS,
    DealOutcome,
    DealStage,
    InvoiceStatus,
    ItemKind,
    ItemSource,
    ItemStatus,
    JobKind,
    MilestoneStatus,
    NotificationKind,
    Role,
)
from core.errors import Conflict, InvalidInput, NotFound
from core.models import Contact, Deal, Invoice, Milestone, Product, Project, Proposal, ReviewItem, SalesAgent, utcnow
from core.notifications import notify
from core.settings import Settings
from crm import writeback as crm_writeback
from review import channels
from review import queue as review_queue
from review.documents import latin1
from review.execute import Rule
from review.queue import Draft

CENT = Decimal("0.01")
_html = Environment(autoescape=select_autoescape(default=True))
PROPOSAL_HTML = _html.from_string(
    """<!doctype html><html><head><meta charset="utf-8"><title>Proposal {{ p.number }}</title>
<style>body{font-family:sans-serif;margin:2rem}table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;
padding:.4rem;text-align:left}td.n{text-align:right}</style></head><body>
<h1>Proposal {{ p.number }}</h1><p>{{ our_company }} for {{ company }} &middot; valid until {{ p.valid_until }}</p>
<table><tr><th>Item</th><th>Quantity</th><th>Unit price</th><th>Amount</th></tr>
{% for line in p.lines %}<tr><td>{{ line.product }}</td><td class="n">{{ line.quantity }}</td>
<td class="n">{{ line.unit_price }}</td><td class="n">{{ line.amount }}</td></tr>{% endfor %}
<tr><td colspan="3">Subtotal</td><td class="n">{{ p.subtotal }}</td></tr>
<tr><td colspan="3">Discount ({{ p.discount_pct }}%)</td><td class="n">-{{ discount }}</td></tr>
<tr><th colspan="3">Total ({{ p.currency }})</th><th class="n">{{ p.total }}</th></tr></table>
<h2>Terms</h2><p>{{ p.terms }}</p></body></html>"""
)


def render_pdf(p: Proposal, company: str, our_company: str) -> bytes:
    from fpdf import FPDF  # 0.6 s to import (numpy, PIL): only when a proposal is rendered, not at API start

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, latin1(f"Proposal {p.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    pdf.cell(0, 6, latin1(f"{our_company} for {company} - valid until {p.valid_until}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    with pdf.table(col_widths=(90, 25, 35, 35), text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT")) as table:
        table.row(["Item", "Quantity", "Unit price", "Amount"])
        for line in p.lines:
            table.row([latin1(str(line["product"])), str(line["quantity"]), line["unit_price"], line["amount"]])
        table.row(["Subtotal", "", "", str(p.subtotal)])
        table.row([f"Discount ({p.discount_pct}%)", "", "", f"-{(p.subtotal - p.total).quantize(CENT)}"])
        table.row([f"Total ({p.currency})", "", "", str(p.total)])
    pdf.ln(4)
    pdf.multi_cell(0, 5, latin1(f"Terms: {p.terms}"))
    return bytes(pdf.output())


def _recipient(session: Session, deal: Deal) -> Contact:
    contact = session.get(Contact, deal.contact_id) if deal.contact_id else None
    if contact is None and deal.lead is not None:
        contact = deal.lead.contact
    if contact is None:
        raise InvalidInput(f"deal {deal.id} has no contact record to send to", details={"field": "contact_id"})
    return contact


def _deal(session: Session, deal_id: int) -> Deal:
    deal = session.get(Deal, deal_id)
    if deal is None:
        raise NotFound(f"deal {deal_id} not found")
    return deal


# The WhatsApp template a milestone update uses outside the 24-hour window, when REVLOOP_WHATSAPP_TEMPLATES lists it;
# body parameters: first name, the milestone done, the next step (all from records). A contact with no first name on
# record gets no template (never "Hi there"): outside the window the update goes by email.
UPDATE_TEMPLATE = "order_update"


def _queue(
    session: Session,
    *,
    source: ItemSource,
    thread: str,
    step: str,
    deal: Deal,
    contact: Contact,
    kind: ItemKind,
    template: str | None,
    slots: dict[str, Any],
    brief: dict[str, Any],
    refs: dict[str, Any] | None = None,
    sla_hours: int = 24,
    attachments: list[dict[str, Any]] | None = None,
) -> ReviewItem:
    return review_queue.queue_drafted(
        session,
        actor="agent:deals",
        template=template,
        slots=slots,
        sla_hours=sla_hours,
        attachments=attachments or [],
        source=source,
        kind=kind,
        thread_id=thread,
        dedupe_key=step,
        lead_id=deal.lead_id,
        contact_id=contact.id,
        to=contact.phone_e164 if kind in PHONE_KINDS else contact.email,
        brief={"summary": brief.pop("summary"), "next_action": brief.pop("next_action"), "deal_id": deal.id, **brief},
        refs=refs or {},
    )


def _base_slots(settings: Settings, deal: Deal, contact: Contact) -> dict[str, Any]:
    return {
        "first_name": (contact.first_name or "").strip(),  # none: "Hello," (never "Hi there"; issue 17)
        "company": deal.account.name if deal.account else deal.name,
        "sender_name": settings.sender_name,
        "our_company": settings.company_name,
    }


def price_book(session: Session) -> list[Product]:
    return list(session.scalars(select(Product).order_by(Product.name)))


def price_request(
    session: Session, settings: Settings, deal_id: int, lines: list[dict[str, Any]] | None, discount_pct: Decimal
) -> dict[str, Any]:
    """Validate a proposal request and price it from the price book (nothing is written)."""
    deal = _deal(session, deal_id)
    if deal.outcome is not None:
        raise Conflict(f"deal {deal_id} is already {deal.outcome}")
    if discount_pct < 0 or discount_pct > Decimal(str(settings.max_discount_pct)):
        raise InvalidInput(
            f"discount_pct must be between 0 and {settings.max_discount_pct} (REVLOOP_MAX_DISCOUNT_PCT)",
            details={"field": "discount_pct"},
        )
    _recipient(session, deal)  # fail now, not at send time, when nobody can receive it
    if not lines:
        product = session.get(Product, deal.product_id) if deal.product_id else None
        if product is None:
            raise InvalidInput(f"deal {deal_id} has no product: send lines", details={"field": "lines"})
        lines = [{"product": product.name, "quantity": 1}]
    priced, currency = [], None
    for n, line in enumerate(lines):
        product = session.scalar(select(Product).where(Product.name == str(line.get("product", ""))))
        if product is None:
            raise InvalidInput(
                f"lines[{n}].product {line.get('product')!r} is not in the price book",
                details={"field": f"lines.{n}.product"},
            )
        quantity = int(line.get("quantity", 1))
        if quantity < 1:
            raise InvalidInput(f"lines[{n}].quantity must be at least 1", details={"field": f"lines.{n}.quantity"})
        if currency not in (None, product.currency):
            raise InvalidInput("all lines must have one currency", details={"field": f"lines.{n}.product"})
        currency = product.currency
        amount = (product.price * quantity).quantize(CENT)
        priced.append(
            {"product": product.name, "quantity": quantity, "unit_price": str(product.price), "amount": str(amount)}
        )
    subtotal = sum((Decimal(line["amount"]) for line in priced), Decimal("0"))
    total = (subtotal * (1 - discount_pct / 100)).quantize(CENT, rounding=ROUND_HALF_UP)
    return {
        "deal_id": deal.id,
        "lines": priced,
        "currency": currency or "USD",
        "subtotal": str(subtotal),
        "discount_pct": str(discount_pct),
        "total": str(total),
    }


def create_proposal(session: Session, settings: Settings, thread_id: str, priced: dict[str, Any]) -> Proposal:
    """The proposal document (HTML and PDF) of a graph thread, once: a re-run returns the same row."""
    existing = session.scalar(select(Proposal).where(Proposal.thread_id == thread_id))
    if existing is not None:
        return existing
    deal = _deal(session, int(priced["deal_id"]))
    contact = _recipient(session, deal)
    count = session.scalar(select(func.count(Proposal.id)).where(Proposal.deal_id == deal.id)) or 0
    subtotal, total = Decimal(priced["subtotal"]), Decimal(priced["total"])
    proposal = Proposal(
        number=f"P-{deal.id}-{count + 1}",
        thread_id=thread_id,
        deal_id=deal.id,
        lines=priced["lines"],
        currency=priced["currency"],
        subtotal=subtotal,
        discount_pct=Decimal(priced["discount_pct"]),
        total=total,
        terms=f"Payment {settings.payment_terms_days} days from invoice, billed by milestone "
        f"({settings.milestone_plan.replace(':', ' ').replace(',', '%, ')}%).",
        valid_until=utcnow().date() + dt.timedelta(days=settings.proposal_valid_days),
        html="",
        pdf=b"",
    )
    session.add(proposal)
    session.flush()
    company = _base_slots(settings, deal, contact)["company"]
    proposal.html = PROPOSAL_HTML.render(
        p=proposal, company=company, our_company=settings.company_name, discount=subtotal - total
    )
    proposal.pdf = render_pdf(proposal, company, settings.company_name)
    audit.record(
        session,
        actor="agent:proposal",
        action="proposal.drafted",
        entity_type="deal",
        entity_id=deal.id,
        after={"proposal": proposal.number, "total": str(total)},
    )
    return proposal


def cover_email(session: Session, settings: Settings, proposal: Proposal) -> Draft:
    """What the reviewer approves: the cover email (approved template) carrying the proposal's PDF."""
    deal = _deal(session, proposal.deal_id)
    contact = _recipient(session, deal)
    slots = _base_slots(settings, deal, contact)
    slots.update(
        number=proposal.number,
        total=f"{proposal.currency} {proposal.total:,.2f}",
        valid_until=str(proposal.valid_until),
    )
    draft, _ = review_queue.compose(
        session,
        template="proposal_cover",
        slots=slots,
        source=ItemSource.PROPOSAL,
        kind=ItemKind.EMAIL,
        thread_id=proposal.thread_id,
        lead_id=deal.lead_id,
        contact_id=contact.id,
        to=contact.email,
        attachments=[{"proposal_id": proposal.id, "filename": f"{proposal.number}.pdf"}],
        brief={
            "summary": f"Proposal {proposal.number} for {slots['company']}: {slots['total']} "
            f"({len(proposal.lines)} line(s), {proposal.discount_pct}% discount).",
            "next_action": "send_proposal",
            "deal_id": deal.id,
            "proposal": {
                "id": proposal.id,
                "number": proposal.number,
                "lines": proposal.lines,
                "subtotal": str(proposal.subtotal),
                "total": str(proposal.total),
            },
        },
        sla_due_at=utcnow() + dt.timedelta(hours=4),
    )
    return draft


def link_review_item(session: Session, thread_id: str, review_item_id: int) -> None:
    """The proposal document points at the review item that sends it."""
    proposal = session.scalar(select(Proposal).where(Proposal.thread_id == thread_id))
    proposal.review_item_id = proposal.review_item_id or review_item_id


def request_proposal(
    session: Session,
    settings: Settings,
    deal_id: int,
    *,
    lines: list[dict[str, Any]] | None = None,
    discount_pct: Decimal = Decimal("0"),
    actor: str,
) -> dict[str, Any]:
    """Check and price the request now (errors name the field), then start the proposal graph."""
    priced = price_request(session, settings, deal_id, lines, discount_pct)
    thread_id = f"proposal-{deal_id}-{uuid.uuid4().hex[:10]}"
    jobs.enqueue(
        session,
        JobKind.PROPOSAL_RUN,
        {"thread_id": thread_id, "deal_id": deal_id, "lines": lines, "discount_pct": str(discount_pct)},
        dedupe_key=f"{JobKind.PROPOSAL_RUN}:{thread_id}",
    )
    audit.record(
        session,
        actor=actor,
        action="proposal.requested",
        entity_type="deal",
        entity_id=deal_id,
        after={"thread_id": thread_id, "total": priced["total"]},
    )
    return {"deal_id": deal_id, "thread_id": thread_id, "status": "drafting", **priced}


def _plan(settings: Settings) -> list[tuple[str, Decimal]]:
    plan = []
    for part in settings.milestone_plan.split(","):
        name, _, percent = part.partition(":")
        plan.append((name.strip(), Decimal(percent.strip())))
    if sum(p for _, p in plan) != 100:
        raise InvalidInput("REVLOOP_MILESTONE_PLAN percentages must add up to 100")
    return plan


def signed(session: Session, settings: Settings, deal_id: int, *, signed_at: dt.datetime, actor: str) -> dict[str, Any]:
    """The client signed: won, delivery hand-off, milestones, onboarding. A second notice changes nothing."""
    deal = _deal(session, deal_id)
    if deal.outcome == DealOutcome.WON:
        return {"deal_id": deal.id, "duplicate": True}
    if deal.outcome == DealOutcome.LOST:
        raise Conflict(f"deal {deal_id} is lost; a signature cannot reopen it")
    proposal = session.scalar(select(Proposal).where(Proposal.deal_id == deal.id).order_by(Proposal.id.desc()).limit(1))
    value = proposal.total if proposal is not None else (deal.amount or Decimal("0"))
    stage_before = deal.stage  # the weekly review reads a past stage back from this event
    deal.outcome, deal.stage, deal.closed_at, deal.stage_changed_at = (
        DealOutcome.WON,
        DealStage.WON,
        signed_at,
        signed_at,
    )
    if proposal is not None:
        deal.amount = proposal.total
    crm_writeback.queue_deal_stage(session, settings, deal)
    contact = _recipient(session, deal)
    owner = session.get(SalesAgent, deal.sales_agent_id).name if deal.sales_agent_id else settings.sender_name
    kickoff = signed_at.date() + dt.timedelta(days=settings.kickoff_days)
    plan = _plan(settings)
    milestones = []
    for seq, (name, percent) in enumerate(plan, start=1):
        amount = (value * percent / 100).quantize(CENT)
        milestones.append(Milestone(deal_id=deal.id, seq=seq, name=name, percent=percent, amount=amount))
    if milestones:  # rounding: the last milestone takes the remainder so the schedule adds up to the total
        milestones[-1].amount = value - sum((m.amount for m in milestones[:-1]), Decimal("0"))
    session.add_all(milestones)
    scope = proposal.lines if proposal is not None else [{"product": deal.name, "quantity": 1}]
    session.add(
        Project(
            deal_id=deal.id,
            brief={
                "scope": scope,
                "value": str(value),
                "contacts": [
                    {
                        "name": f"{contact.first_name or ''} {contact.last_name or ''}".strip(),
                        "email": contact.email,
                        "phone": contact.phone,
                    }
                ],
                "owner": owner,
            },
            tasks=[
                {"task": "Schedule the kickoff call", "due": str(kickoff)},
                {"task": "Set up client access and shared folder", "due": str(kickoff)},
                *({"task": f"Deliver milestone: {m.name}", "due": None} for m in milestones),
            ],
            kickoff_on=kickoff,
        )
    )
    session.flush()
    slots = {
        **_base_slots(settings, deal, contact),
        "kickoff_on": kickoff.strftime("%d %b %Y"),
        "milestones": ", ".join(m.name for m in milestones),
        "owner": owner,
    }
    _queue(
        session,
        source=ItemSource.ONBOARDING,
        thread=f"onboarding-{deal.id}",
        step=f"onboarding-{deal.id}-welcome",
        deal=deal,
        contact=contact,
        kind=ItemKind.EMAIL,
        template="onboarding_welcome",
        slots=slots,
        brief={"summary": f"{slots['company']} signed: welcome email with the kickoff date.", "next_action": "welcome"},
    )
    audit.record(
        session,
        actor=actor,
        action="deal.won",
        entity_type="deal",
        entity_id=deal.id,
        before={"stage": stage_before},
        after={"value": str(value), "milestones": len(milestones), "kickoff_on": str(kickoff)},
    )
    return {"deal_id": deal.id, "duplicate": False, "milestones": len(milestones), "kickoff_on": str(kickoff)}


def complete_milestone(session: Session, settings: Settings, deal_id: int, seq: int, *, actor: str) -> dict[str, Any]:
    deal = _deal(session, deal_id)
    milestone = session.scalar(select(Milestone).where(Milestone.deal_id == deal_id, Milestone.seq == seq))
    if milestone is None:
        raise NotFound(f"deal {deal_id} has no milestone {seq}")
    if milestone.status != MilestoneStatus.PLANNED:
        raise Conflict(f"milestone {seq} of deal {deal_id} is already {milestone.status}")
    milestone.status, milestone.completed_at = MilestoneStatus.COMPLETED, utcnow()
    contact = _recipient(session, deal)
    company = deal.account.name if deal.account else deal.name
    due = utcnow().date() + dt.timedelta(days=settings.payment_terms_days)
    invoice_item = _queue(
        session,
        source=ItemSource.INVOICE,
        thread=f"invoice-{milestone.id}",
        step=f"invoice-{milestone.id}",
        deal=deal,
        contact=contact,
        kind=ItemKind.INVOICE,
        template=None,
        slots={
            "subject": f"Invoice {company}: {milestone.name} ({milestone.amount})",
            "body": f"Issue an invoice to {company} for milestone {seq} '{milestone.name}': {milestone.amount} "
            f"({milestone.percent}% of the deal), due {due} ({settings.payment_terms_days} days).",
        },
        brief={
            "summary": f"Milestone '{milestone.name}' complete: invoice {milestone.amount}.",
            "next_action": "issue_invoice",
            "milestone_id": milestone.id,
        },
        refs={"milestone_id": milestone.id, "amount": str(milestone.amount)},
    )
    later = session.scalar(
        select(Milestone.name).where(Milestone.deal_id == deal_id, Milestone.seq > seq).order_by(Milestone.seq).limit(1)
    )
    slots = {
        **_base_slots(settings, deal, contact),
        "milestone": milestone.name,
        "next_step": later or "we wrap up the project with you",
    }
    # By text when the contact prefers SMS or WhatsApp and consented (WhatsApp outside its 24-hour window: only the
    # approved template UPDATE_TEMPLATE), else by email.
    text = channels.text_step(
        session,
        settings,
        contact,
        "preferred",
        wa_template=UPDATE_TEMPLATE if slots["first_name"] else None,
        params=(slots["first_name"], milestone.name, slots["next_step"]),
    )
    update_item = _queue(
        session,
        source=ItemSource.CLIENT_UPDATE,
        thread=f"update-{deal.id}",
        step=f"update-{milestone.id}",
        deal=deal,
        contact=contact,
        kind=ItemKind(text[0]) if text else ItemKind.EMAIL,
        template="client_update_text" if text else "client_update",
        slots=slots,
        brief={"summary": f"Status update to {company}: {milestone.name} complete.", "next_action": "client_update"},
        refs=text[1] if text else None,
    )
    audit.record(
        session,
        actor=actor,
        action="milestone.completed",
        entity_type="deal",
        entity_id=deal.id,
        after={"milestone": seq, "amount": str(milestone.amount)},
    )
    return {"milestone": seq, "invoice_item": invoice_item.id, "update_item": update_item.id}


def issue_invoice(session: Session, settings: Settings, milestone_id: int) -> Invoice:
    """The approved invoice of a milestone, issued once in the built-in billing."""
    milestone = session.get(Milestone, milestone_id)
    if milestone.invoice_id is not None:
        return session.get(Invoice, milestone.invoice_id)
    deal = session.get(Deal, milestone.deal_id)
    today = utcnow().date()
    count = session.scalar(select(func.count(Invoice.id)).where(Invoice.number.like(f"INV-{today:%Y}-%"))) or 0
    number = f"INV-{today:%Y}-{count + 1:05d}"
    invoice = Invoice(
        number=number,
        account_id=deal.account_id,
        deal_id=deal.id,
        amount=milestone.amount,
        currency=deal.currency,
        issued_on=today,
        due_on=today + dt.timedelta(days=settings.payment_terms_days),
        payment_link=f"{settings.payment_link_base.rstrip('/')}/{number}",
    )
    session.add(invoice)
    session.flush()
    milestone.invoice_id, milestone.status = invoice.id, MilestoneStatus.INVOICED
    billing_backends.backend(settings).invoice_issued(session, invoice)  # e.g. created at Stripe too
    if settings.fiscal_backend != "none":  # sent only once the tax authority accepted it (submit_fiscal)
        invoice.fiscal_status = fiscal.PENDING
        _enqueue_fiscal(session, invoice)
    audit.record(
        session,
        actor="agent:deals",
        action="invoice.issued",
        entity_type="invoice",
        entity_id=invoice.id,
        after={
            "number": number,
            "amount": str(invoice.amount),
            "due_on": str(invoice.due_on),
            "fiscal_status": invoice.fiscal_status,
        },
    )
    return invoice


def _enqueue_fiscal(session: Session, invoice: Invoice) -> None:
    # A manager's resubmission after a rejection is a new job (the attempt count is in the key).
    jobs.enqueue(
        session,
        JobKind.FISCAL_SUBMIT,
        {"invoice_id": invoice.id},
        dedupe_key=f"fiscal-{invoice.id}-{invoice.fiscal_attempts}",
    )


def submit_fiscal(settings: Settings, invoice_id: int) -> str:
    """The fiscal submission job: submit a pending invoice; accepted -> the receipt is stored and the invoice email
    is queued for review; rejected -> managers are told and the invoice is not sent; no answer (timeout, 5xx) ->
    retried later (RetryLater), for as long as it takes. Returns the invoice's fiscal status."""
    with session_scope(settings, readonly=True) as session:
        invoice = session.get(Invoice, invoice_id)
        if invoice is None or invoice.fiscal_status != fiscal.PENDING:
            return invoice.fiscal_status if invoice else "missing"
        customer = invoice.account.name if invoice.account else ""
        session.expunge(invoice)
    error: Exception | None = None
    try:
        receipt = fiscal.backend(settings).submit(invoice, customer=customer)
    except (fiscal.FiscalRejected, fiscal.FiscalUnavailable) as exc:
        error = exc
    with session_scope(settings) as session:
        invoice = session.get(Invoice, invoice_id)
        if invoice.fiscal_status != fiscal.PENDING:  # a concurrent run finished it
            return invoice.fiscal_status
        invoice.fiscal_attempts += 1
        if error is None:
            invoice.fiscal_status, invoice.fiscal_error = fiscal.ACCEPTED, None
            invoice.fiscal_receipt_number, invoice.fiscal_qr = receipt.receipt_number, receipt.qr_payload
            email = queue_invoice_email(session, settings, invoice)
            audit.record(
                session,
                actor="agent:deals",
                action="invoice.fiscal_accepted",
                entity_type="invoice",
                entity_id=invoice.id,
                after={"receipt": receipt.receipt_number, "invoice_email_item": email.id if email else None},
            )
            return fiscal.ACCEPTED
        invoice.fiscal_error = str(error)[:1000]
        if isinstance(error, fiscal.FiscalRejected):
            invoice.fiscal_status = fiscal.REJECTED
            audit.record(
                session,
                actor="agent:deals",
                action="invoice.fiscal_rejected",
                entity_type="invoice",
                entity_id=invoice.id,
                after={"error": invoice.fiscal_error},
            )
            notify(
                session,
                NotificationKind.FISCAL_REJECTED,
                f"Invoice {invoice.number} was rejected by the tax authority: it is not sent",
                body=f"{invoice.fiscal_error}. Fix the invoice record, then resubmit it "
                f"(POST /v1/invoices/{invoice.id}/fiscal-submit).",
                severity="critical",
                roles=(Role.MANAGER,),
                entity=("invoice", invoice.id),
                dedupe_key=f"fiscal-rejected-{invoice.id}-{invoice.fiscal_attempts}",
            )
            return fiscal.REJECTED
        if invoice.fiscal_attempts == 3:  # still no answer: tell the managers once, keep retrying
            notify(
                session,
                NotificationKind.FISCAL_REJECTED,
                f"Invoice {invoice.number} is waiting for the tax authority",
                body=f"{invoice.fiscal_attempts} submissions got no answer ({invoice.fiscal_error}); revloop keeps "
                "retrying and the invoice is not sent until it is accepted.",
                roles=(Role.MANAGER,),
                entity=("invoice", invoice.id),
                dedupe_key=f"fiscal-waiting-{invoice.id}",
            )
        delay = fiscal.retry_delay(settings, invoice.fiscal_attempts)
    raise jobs.RetryLater(f"fiscal submission of invoice {invoice_id}: {error}", delay_seconds=delay)


def resubmit_fiscal(session: Session, invoice_id: int, *, actor: str) -> Invoice:
    """A manager sends a rejected invoice to the tax authority again, after fixing its record. (A pending one is
    being retried by its job already: a second job could submit it twice.)"""
    invoice = session.get(Invoice, invoice_id)
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} not found")
    if invoice.fiscal_status != fiscal.REJECTED:
        state = "is being retried" if invoice.fiscal_status == fiscal.PENDING else f"is {invoice.fiscal_status}"
        raise Conflict(f"invoice {invoice.number} was not rejected by the tax authority: its submission {state}")
    invoice.fiscal_status = fiscal.PENDING
    _enqueue_fiscal(session, invoice)
    audit.record(
        session, actor=actor, action="invoice.fiscal_resubmitted", entity_type="invoice", entity_id=invoice.id
    )
    return invoice


def kickoffs_due(session: Session, today: dt.date) -> list[int]:
    """Projects whose kickoff is tomorrow (reads only)."""
    return list(session.scalars(select(Project.id).where(Project.kickoff_on == today + dt.timedelta(days=1))).all())


def onboarding_step(session: Session, settings: Settings, project_id: int, today: dt.date) -> int:
    """Draft one project's kickoff reminder unless it was drafted already; 1 when drafted."""
    project = session.get(Project, project_id)
    if project is None or project.kickoff_on != today + dt.timedelta(days=1):
        return 0
    deal = session.get(Deal, project.deal_id)
    step = f"onboarding-{deal.id}-kickoff"
    if session.scalar(select(func.count(ReviewItem.id)).where(ReviewItem.dedupe_key == step)):
        return 0
    contact = _recipient(session, deal)
    milestones = session.scalars(select(Milestone.name).where(Milestone.deal_id == deal.id).order_by(Milestone.seq))
    slots = {
        **_base_slots(settings, deal, contact),
        "kickoff_on": project.kickoff_on.strftime("%d %b %Y"),
        "milestones": ", ".join(milestones),
        "owner": project.brief.get("owner", settings.sender_name),
    }
    _queue(
        session,
        source=ItemSource.ONBOARDING,
        thread=f"onboarding-{deal.id}",
        step=step,
        deal=deal,
        contact=contact,
        kind=ItemKind.EMAIL,
        template="onboarding_kickoff",
        slots=slots,
        brief={"summary": f"Kickoff reminder to {slots['company']}.", "next_action": "kickoff_reminder"},
    )
    return 1


def _invoice_recipient(session: Session, deal: Deal, invoice: Invoice) -> Contact | None:
    """The deal's contact when they accept email, else the account's billing contact (who the reminders go to)."""
    contact = session.get(Contact, deal.contact_id) if deal.contact_id else None
    if contact is None and deal.lead is not None:
        contact = deal.lead.contact
    if contact is not None and not contact.do_not_email:
        return contact
    return reminders.billing_contact(session, invoice.account_id)


def queue_invoice_email(session: Session, settings: Settings, invoice: Invoice) -> ReviewItem | None:
    """The issued invoice goes to the client through review: an email (approved template) with the invoice
    PDF attached, every figure from the invoice record. Once per invoice; None when nobody can receive it."""
    deal = _deal(session, invoice.deal_id)
    contact = _invoice_recipient(session, deal, invoice)
    if contact is None:
        return None
    milestone = session.scalar(select(Milestone).where(Milestone.invoice_id == invoice.id))
    amount = f"{invoice.currency} {invoice.amount:,.2f}"
    slots = {
        **_base_slots(settings, deal, contact),
        "number": invoice.number,
        "amount": amount,
        "due_on": invoice.due_on.strftime("%d %b %Y"),
        "payment_link": invoice.payment_link or f"{settings.payment_link_base.rstrip('/')}/{invoice.number}",
        "milestone": milestone.name if milestone else "",
    }
    return _queue(
        session,
        source=ItemSource.INVOICE_EMAIL,
        thread=f"invoice-email-{invoice.id}",
        step=f"invoice-email-{invoice.id}",
        deal=deal,
        contact=contact,
        kind=ItemKind.EMAIL,
        template="invoice_email",
        slots=slots,
        brief={
            "summary": f"Send invoice {invoice.number} to {slots['company']}: {amount}, due {slots['due_on']}.",
            "next_action": "send_invoice",
            "invoice": {
                "id": invoice.id,
                "number": invoice.number,
                "amount": str(invoice.amount),
                "due_on": str(invoice.due_on),
            },
        },
        refs={"invoice_id": invoice.id, "amount": str(invoice.amount)},
        attachments=[{"invoice_id": invoice.id, "filename": f"{invoice.number}.pdf"}],
    )


def _issue_refused(session: Session, item: ReviewItem, reason: str) -> dict[str, Any]:
    """The billing provider refused the invoice for good (e.g. Stripe: a bad key, an invalid request): nothing was
    issued, the item ends send_failed with the provider's reason, and its closer and the managers are told. Once
    the cause is fixed, Retry issues it (a timeout or 5xx is not this: the job tries again by itself)."""
    label = item.draft.get("subject") or f"review item {item.id}"
    milestone = session.get(Milestone, int(item.draft["milestone_id"]))
    deal = session.get(Deal, milestone.deal_id) if milestone else None
    result = {"reason": reason, "summary": f"Not issued: {reason}"}
    review_queue.mark_executed(session, item, status=ItemStatus.SEND_FAILED, result=result, actor="agent:deals")
    notify(
        session,
        NotificationKind.SEND_FAILED,
        f"Invoice not issued: {label}",
        body=f"{reason.rstrip('.')}. Nothing was issued: fix the cause (e.g. REVLOOP_STRIPE_API_KEY), then Retry.",
        severity="critical",
        names=[item.assignee, deal.owner if deal else None],  # the deal's closer, and the managers (OPERATORS)
        entity=("review_item", item.id),
    )
    return result


def _issue_invoice_action(settings: Settings, session: Session, item: ReviewItem) -> dict[str, Any]:
    try:
        with session.begin_nested():  # a refusal leaves no invoice, number or milestone change behind
            invoice = issue_invoice(session, settings, int(item.draft["milestone_id"]))
    except billing_backends.BillingRefused as exc:
        return _issue_refused(session, item, exc.message)
    if invoice.fiscal_status in fiscal.BLOCKING:
        return {
            "invoice_number": invoice.number,
            "due_on": str(invoice.due_on),
            "fiscal_status": invoice.fiscal_status,
            "invoice_email_item": None,
            "summary": f"Issued {invoice.number}; it is sent once the tax authority accepts it",
        }
    email = queue_invoice_email(session, settings, invoice)
    return {
        "invoice_number": invoice.number,
        "due_on": str(invoice.due_on),
        "invoice_email_item": email.id if email else None,
        "summary": f"Issued {invoice.number}"
        + ("; its email to the client waits for review" if email else "; no contact accepts email: send it by hand"),
    }


def invoice_still_due(session: Session, item: ReviewItem) -> str | None:
    """The invoice email goes out only for an invoice that is still owed (not void, not paid meanwhile)."""
    invoice = session.get(Invoice, int(item.draft["invoice_id"]))
    if invoice is None:
        return f"invoice {item.draft['invoice_id']} no longer exists"
    if invoice.status == InvoiceStatus.VOID:
        return f"invoice {invoice.number} is void"
    if invoice.status == InvoiceStatus.PAID:
        return f"invoice {invoice.number} is already paid"
    if invoice.fiscal_status in fiscal.BLOCKING:
        return f"invoice {invoice.number} is not accepted by the tax authority ({invoice.fiscal_status})"
    return None


def deal_open_and_offer_valid(session, item) -> str | None:
    """Send only while the deal is open and the proposal still valid."""
    proposal = session.get(Proposal, int(item.draft["attachments"][0]["proposal_id"]))
    deal = session.get(Deal, proposal.deal_id)
    if deal.outcome is not None:
        return f"deal {deal.id} is already {deal.outcome}"
    if proposal.valid_until < utcnow().date():
        return f"proposal {proposal.number} expired on {proposal.valid_until}"
    return None


# How approved items of the deal flow are executed (review/execute.py runs them).
PROPOSAL_EXECUTION = Rule(actor="agent:proposal", check=deal_open_and_offer_valid)
ONBOARDING_EXECUTION = Rule(actor="agent:deals")  # welcome, kickoff reminder and client update emails
INVOICE_EXECUTION = Rule(actor="agent:deals", action=_issue_invoice_action)  # issue it, then queue its email
INVOICE_EMAIL_EXECUTION = Rule(actor="agent:deals", check=invoice_still_due)
