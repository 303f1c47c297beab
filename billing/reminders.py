"""The collections scheduler: finds the ladder step due today, drafts it once into the review queue,
and executes approved reminders after re-reading the balance (a paid invoice is never chased).

It runs in the worker's daily job (deals/daily.py); a (invoice, step) pair is unique in
`dunning_touches`, so a second run drafts nothing twice. The ladder runs forwards only (billing/dunning.py),
and a later step supersedes the earlier reminder of the same invoice while that one is still pending."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

from sqlalchemy import select

from billing import fiscal, ledger
from billing.dunning import InvoiceState, decide, load_policy
from core.db import insert_once, session_scope
from core.enums import InvoiceStatus, ItemKind, ItemSource
from core.models import Contact, DunningTouch, Invoice, ReviewItem, utcnow
from core.settings import Settings
from review import channels
from review import queue as review_queue
from review.execute import Rule

log = logging.getLogger("revloop.collections")
SLA_HOURS = {"high": 4, "normal": 24, "low": 72}
# The WhatsApp template a reminder uses outside the 24-hour window, when it is listed in REVLOOP_WHATSAPP_TEMPLATES;
# its body parameters are, in order: first name, invoice number, amount, due date, payment link (all from records).
# A contact with no first name on record gets no template (never "Hi there"): outside the window, email.
WHATSAPP_TEMPLATE = "payment_reminder"


def _money(amount: Decimal, currency: str) -> str:
    return f"{currency} {amount:,.2f}"


def billing_contact(session, account_id: int) -> Contact | None:
    """Who receives an account's billing mail: its first contact that accepts email."""
    return session.scalar(
        select(Contact)
        .where(Contact.account_id == account_id, Contact.do_not_email.is_(False))
        .order_by(Contact.id)
        .limit(1)
    )


def scan(settings: Settings, today: dt.date | None = None) -> dict[str, int]:
    """Draft every ladder step due `today`; returns counts (drafted, skipped, waiting, already)."""
    today = today or utcnow().date()
    policy = load_policy(settings.dunning_policy_path)
    counts = {"drafted": 0, "skipped": 0, "waiting": 0, "already_drafted": 0, "no_contact": 0}
    histories: dict[int, ledger.PaymentHistory] = {}
    with session_scope(settings, readonly=True) as session:  # then one short unit of work per invoice
        invoice_ids = session.scalars(
            select(Invoice.id).where(Invoice.status == InvoiceStatus.ISSUED, Invoice.issued_on <= today)
        ).all()
    for invoice_id in invoice_ids:
        with session_scope(settings) as session:
            outcome = _scan_one(session, settings, policy, invoice_id, today, histories)
        counts[outcome] += 1
    log.info("collections scan %s: %s", today, counts)
    return counts


def _scan_one(
    session, settings: Settings, policy, invoice_id: int, today: dt.date, histories: dict[int, ledger.PaymentHistory]
) -> str:
    invoice = session.get(Invoice, invoice_id)
    owed = ledger.balance(session, invoice)
    sent = tuple(s for (s,) in session.execute(select(DunningTouch.step).where(DunningTouch.invoice_id == invoice.id)))
    status = "disputed" if invoice.disputed else "payment_pending" if invoice.payment_pending else invoice.status
    if invoice.fiscal_status in fiscal.BLOCKING:  # never sent to the client: nothing to remind them of
        status = "fiscal_blocked"
    if status == "issued":
        status = "open"
    if invoice.account_id not in histories:  # one history query per customer and scan
        histories[invoice.account_id] = ledger.payment_history(session, invoice.account_id, today)
    history = histories[invoice.account_id]
    decision = decide(policy, InvoiceState(invoice.due_on, owed, status, sent), history, today)
    if decision.action == "skip":
        return "skipped"
    if decision.action == "wait":
        return "waiting"
    contact = billing_contact(session, invoice.account_id)
    if contact is None:
        return "no_contact"
    touch, created = insert_once(
        session,
        DunningTouch(invoice_id=invoice.id, step=decision.step),
        select(DunningTouch).where(DunningTouch.invoice_id == invoice.id, DunningTouch.step == decision.step),
    )
    if not created:
        return "already_drafted"
    days_overdue = (today - invoice.due_on).days
    template = f"dunning_{decision.tone}"
    slots = {
        "first_name": (contact.first_name or "").strip(),  # none: "Hello," (never "Hi there"; issue 17)
        "full_name": " ".join(p for p in (contact.first_name, contact.last_name) if p) or contact.email,
        "company": invoice.account.name,
        "phone": contact.phone or "",
        "number": invoice.number,
        "amount": _money(owed, invoice.currency),
        "due_on": invoice.due_on.strftime("%d %b %Y"),
        "days_overdue": max(0, days_overdue),
        "payment_link": invoice.payment_link or f"{settings.payment_link_base.rstrip('/')}/{invoice.number}",
        "reference": invoice.number,
        "history": (
            f"Pays late {history.late_share:.0%} of the time ({history.avg_days_late:.0f} days on average)."
            if history.invoices
            else "No payment history."
        ),
        "sender_name": settings.sender_name,
        "our_company": settings.company_name,
    }
    kind, to, refs = ItemKind.CALL_TASK if decision.channel == "call_task" else ItemKind.EMAIL, contact.email, {}
    if decision.channel in ("sms", "whatsapp", "preferred"):
        # A text when the contact's consent (and WhatsApp's window, or an approved template) allows it, else email.
        params = (slots["first_name"], slots["number"], slots["amount"], slots["due_on"], slots["payment_link"])
        chosen = channels.text_step(
            session,
            settings,
            contact,
            decision.channel,
            wa_template=WHATSAPP_TEMPLATE if slots["first_name"] else None,
            params=params,
        )
        if chosen is not None:
            kind, to, refs, template = ItemKind(chosen[0]), contact.phone_e164, chosen[1], "dunning_text"
    item = review_queue.queue_drafted(
        session,
        actor="agent:collections",
        source=ItemSource.DUNNING,
        thread_id=f"dunning-{invoice.id}",
        dedupe_key=f"dunning-{invoice.id}-{decision.step}",
        # One pending reminder per invoice: a later step withdraws the earlier one nobody approved yet.
        supersede_key=f"invoice:{invoice.id}:reminder",
        supersede_label=f"the {decision.step:+d} {'call task' if decision.channel == 'call_task' else 'reminder'}",
        lead_id=None,
        contact_id=contact.id,
        to=to,
        kind=kind,
        template=template,
        slots=slots,
        brief={
            "summary": f"Invoice {invoice.number}: {slots['amount']} open, {decision.reason}.",
            "next_action": "escalate_to_human" if decision.action == "escalate" else f"send_{decision.tone}_reminder",
            "priority": decision.priority,
            "invoice": {
                "id": invoice.id,
                "number": invoice.number,
                "balance": str(owed),
                "due_on": str(invoice.due_on),
            },
            "history": {
                "invoices": history.invoices,
                "late_share": history.late_share,
                "avg_days_late": history.avg_days_late,
            },
            "flags": [f"priority_{decision.priority}"],
        },
        refs={"amount": str(owed), "invoice_id": invoice.id, **refs},
        sla_hours=SLA_HOURS[decision.priority],
    )
    touch.review_item_id = item.id
    return "drafted"


def _still_owed(session, item: ReviewItem) -> str | None:
    """A reminder goes out only for the balance it states, on an invoice still open and undisputed."""
    invoice = session.get(Invoice, int(item.draft["invoice_id"]))
    owed = ledger.balance(session, invoice)
    if invoice.status in (InvoiceStatus.PAID, InvoiceStatus.VOID) or owed <= 0:
        return f"invoice {invoice.number} is paid"
    if invoice.disputed:
        return f"invoice {invoice.number} is disputed"
    if invoice.payment_pending:
        return f"a payment is pending on invoice {invoice.number}"
    if str(owed) != item.draft.get("amount"):
        return f"the balance changed to {owed} since the reminder was drafted"
    return None


# A reminder goes out only for the balance it states, re-read from billing at send time.
EXECUTION = Rule(actor="agent:collections", check=_still_owed)
