"""The built-in billing: invoice balances, payments reconciled to invoices (once per provider payment
id), customers' payment history as of a date, and the IBM accounts-receivable import.

SettledDate / DaysToSettle / DaysLate in the IBM file are outcomes: they become payments (what happened),
never features; a customer's history at a date only counts invoices paid before that date.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import audit
from core.db import insert_once
from core.enums import InvoiceStatus
from core.errors import InvalidInput
from core.models import Account, Invoice, Payment, PaymentAllocation, utcnow
from crm.imports import ImportReport, Progress, RowError, _each, _finish, _require_columns, _set_fields, read_csv
from review import queue as review_queue


@dataclass(frozen=True)
class PaymentHistory:
    """How a customer has paid: invoices paid, how many late, average days late (over all paid)."""

    invoices: int = 0
    paid_late: int = 0
    avg_days_late: float = 0.0

    @property
    def late_share(self) -> float:
        return self.paid_late / self.invoices if self.invoices else 0.0


IBM_SOURCE = "ibm-ar"
INVOICE_FORMATS = ("ibm-ar",)
CENT = Decimal("0.01")


def allocated(session: Session, invoice_ids: list[int], as_of: dt.date | None = None) -> dict[int, Decimal]:
    """Payments allocated per invoice (optionally only those received on or before as_of)."""
    if not invoice_ids:
        return {}
    stmt = (
        select(PaymentAllocation.invoice_id, func.coalesce(func.sum(PaymentAllocation.amount), 0))
        .where(PaymentAllocation.invoice_id.in_(invoice_ids))
        .group_by(PaymentAllocation.invoice_id)
    )
    if as_of is not None:
        stmt = stmt.join(Payment, Payment.id == PaymentAllocation.payment_id).where(Payment.received_on <= as_of)
    return {invoice_id: Decimal(str(total)) for invoice_id, total in session.execute(stmt).all()}


def balance(session: Session, invoice: Invoice, as_of: dt.date | None = None) -> Decimal:
    """The net balance: amount minus payments (a void invoice owes nothing)."""
    if invoice.status == InvoiceStatus.VOID:
        return Decimal("0")
    return (invoice.amount - allocated(session, [invoice.id], as_of).get(invoice.id, Decimal("0"))).quantize(CENT)


def payment_history(session: Session, account_id: int, as_of: dt.date) -> PaymentHistory:
    """How the customer paid before as_of: invoices paid, how many late, average days late."""
    rows = session.execute(
        select(Invoice.due_on, Invoice.paid_on).where(
            Invoice.account_id == account_id, Invoice.paid_on.is_not(None), Invoice.paid_on < as_of
        )
    ).all()
    late = [(paid - due).days for due, paid in rows if paid > due]
    return PaymentHistory(
        invoices=len(rows),
        paid_late=len(late),
        avg_days_late=round(sum(max(0, (paid - due).days) for due, paid in rows) / len(rows), 2) if rows else 0.0,
    )


def _cancel_pending_reminders(session: Session, invoice: Invoice, reason: str) -> int:
    from core.models import DunningTouch

    item_ids = [
        i
        for (i,) in session.execute(
            select(DunningTouch.review_item_id).where(
                DunningTouch.invoice_id == invoice.id, DunningTouch.review_item_id.is_not(None)
            )
        ).all()
    ]
    cancelled = review_queue.cancel_pending(session, reason=reason, actor="billing", item_ids=item_ids)
    if cancelled:
        audit.record(
            session,
            actor="billing",
            action="dunning.stopped",
            entity_type="invoice",
            entity_id=invoice.id,
            after={"reason": reason, "cancelled_items": cancelled},
        )
    return cancelled


def record_payment(
    session: Session,
    *,
    external_id: str,
    amount: Decimal,
    received_on: dt.date,
    currency: str = "USD",
    account_id: int | None = None,
    reference: str | None = None,
    actor: str = "billing",
) -> tuple[Payment, bool]:
    """Record a payment once (by provider id) and reconcile it: the quoted invoice first, then the
    customer's oldest open invoices; what is left stays as credit. Paid invoices stop their ladder.
    (payment, True) when the provider id was recorded before, by a replay or a concurrent delivery."""
    same_id = select(Payment).where(Payment.external_id == external_id)
    existing = session.scalar(same_id)
    if existing is not None:
        return existing, True
    if amount <= 0:
        raise InvalidInput("amount must be positive", details={"field": "amount"})
    quoted = session.scalar(select(Invoice).where(Invoice.number == reference)) if reference else None
    if account_id is None and quoted is not None:
        account_id = quoted.account_id
    if account_id is None:
        raise InvalidInput(
            "the payment names no known customer or invoice: send customer_id or an invoice_number we issued",
            details={"field": "invoice_number"},
        )
    if quoted is not None and quoted.account_id != account_id:
        raise InvalidInput(f"invoice {reference} belongs to another customer", details={"field": "invoice_number"})
    if quoted is None and session.get(Account, account_id) is None:
        raise InvalidInput(f"customer {account_id} is not on record", details={"field": "account_id"})
    payment, created = insert_once(
        session,
        Payment(
            external_id=external_id,
            account_id=account_id,
            amount=amount.quantize(CENT),
            currency=currency,
            received_on=received_on,
            reference=reference,
        ),
        same_id,
    )
    if not created:  # a concurrent delivery of the same payment recorded it first
        return payment, True
    open_invoices = session.scalars(
        select(Invoice)
        .where(Invoice.account_id == account_id, Invoice.status == InvoiceStatus.ISSUED, Invoice.currency == currency)
        .order_by(Invoice.due_on, Invoice.id)
    ).all()
    ordered = ([quoted] if quoted is not None and quoted.status == InvoiceStatus.ISSUED else []) + [
        i for i in open_invoices if quoted is None or i.id != quoted.id
    ]
    left = payment.amount
    for invoice in ordered:
        if left <= 0:
            break
        owed = balance(session, invoice)
        if owed <= 0:
            continue
        part = min(owed, left)
        session.add(PaymentAllocation(payment_id=payment.id, invoice_id=invoice.id, amount=part))
        session.flush()
        left -= part
        if part == owed:
            invoice.status, invoice.paid_on, invoice.payment_pending = InvoiceStatus.PAID, received_on, False
            _cancel_pending_reminders(session, invoice, f"paid on {received_on.isoformat()}")
    payment.unallocated = left
    audit.record(
        session,
        actor=actor,
        action="payment.recorded",
        entity_type="payment",
        entity_id=payment.id,
        after={"external_id": external_id, "amount": str(payment.amount), "unallocated": str(left)},
    )
    return payment, False


def record_refund(session: Session, payment: Payment, *, refunded_total: Decimal, actor: str = "billing") -> Decimal:
    """Take back what the provider refunded of `payment` (refunded_total: the cumulative amount refunded so far,
    as Stripe reports it, so a re-delivered notice takes nothing twice). The credit left over goes first, then
    the payment's allocations, latest first; an invoice that owes money again is open again (and chased again).
    Returns the amount taken back now."""
    prefix = f"{payment.external_id}:refund:"
    refunds = session.scalars(select(Payment).where(Payment.external_id.like(prefix + "%"))).all()
    before = -sum((r.amount for r in refunds), Decimal("0"))
    delta = (min(refunded_total, payment.amount) - before).quantize(CENT)
    if delta <= 0:
        return Decimal("0.00")
    refund = Payment(
        external_id=f"{prefix}{refunded_total.quantize(CENT)}",
        account_id=payment.account_id,
        amount=-delta,
        currency=payment.currency,
        received_on=dt.date.today(),
        reference=payment.reference,
    )
    session.add(refund)
    session.flush()
    left = delta
    from_credit = min(payment.unallocated, left)
    payment.unallocated -= from_credit
    left -= from_credit
    payment_ids = [payment.id, *(r.id for r in refunds), refund.id]
    net = dict(
        session.execute(
            select(PaymentAllocation.invoice_id, func.sum(PaymentAllocation.amount))
            .where(PaymentAllocation.payment_id.in_(payment_ids))
            .group_by(PaymentAllocation.invoice_id)
        ).all()
    )
    latest_first = session.scalars(
        select(PaymentAllocation.invoice_id)
        .where(PaymentAllocation.payment_id == payment.id)
        .order_by(PaymentAllocation.id.desc())
    ).all()
    for invoice_id in latest_first:
        if left <= 0:
            break
        part = min(Decimal(str(net.get(invoice_id) or 0)), left)
        if part <= 0:
            continue
        session.add(PaymentAllocation(payment_id=refund.id, invoice_id=invoice_id, amount=-part))
        left -= part
        invoice = session.get(Invoice, invoice_id)
        if invoice.status == InvoiceStatus.PAID:
            invoice.status, invoice.paid_on = InvoiceStatus.ISSUED, None
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="payment.refunded",
        entity_type="payment",
        entity_id=payment.id,
        after={"refunded": str(delta), "refunded_total": str(refunded_total)},
    )
    return delta


def hold_payment(session: Session, event: Any, reason: str, **detail: Any) -> dict[str, Any]:
    """Money that names no invoice or customer we know: kept on its payment event as `held` (listed at
    GET /v1/payments/held, counted in the integration health) and the managers are told; a person assigns it
    to an invoice (assign_held), and nothing is lost or guessed."""
    from core.enums import NotificationKind, Role
    from core.notifications import notify

    event.status = "held"
    event.detail = {**(event.detail or {}), "reason": reason, **detail}
    session.flush()
    amount = f"{event.currency or ''} {event.amount}".strip() if event.amount is not None else "a payment"
    notify(
        session,
        NotificationKind.PAYMENT_HELD,
        f"Payment held: {amount} via {event.provider} ({event.reference or 'no reference'})",
        body=f"{reason}. Assign it to an invoice on the Cash page or with POST /v1/payments/held/{event.id}/assign.",
        roles=(Role.MANAGER,),
        entity=("payment_event", event.id),
        dedupe_key=f"payment-held-{event.id}",
    )
    audit.record(
        session,
        actor=f"webhook:{event.provider}",
        action="payment.held",
        entity_type="payment_event",
        entity_id=event.id,
        after={"reason": reason, "amount": str(event.amount), "reference": event.reference},
    )
    return {"status": "held", "reason": reason}


def assign_held(session: Session, event_id: int, invoice_number: str, *, actor: str) -> tuple[Payment, Any]:
    """A person places a held payment on one of our invoices: it is recorded and reconciled like any payment."""
    from core.errors import Conflict, NotFound
    from core.models import PaymentEvent

    event = session.get(PaymentEvent, event_id)
    if event is None:
        raise NotFound(f"payment event {event_id} not found")
    if event.status != "held":
        raise Conflict(f"payment event {event_id} is {event.status}, not held")
    external_id = (event.detail or {}).get("external_id")
    if not external_id or event.amount is None or event.amount <= 0:
        raise Conflict(f"payment event {event_id} is not a payment that can be assigned (a refund or an empty notice)")
    invoice = session.scalar(select(Invoice).where(Invoice.number == invoice_number))
    if invoice is None:
        raise InvalidInput(f"invoice {invoice_number!r} is not one we issued", details={"field": "invoice_number"})
    received = (event.detail or {}).get("received_on")
    payment, _ = record_payment(
        session,
        external_id=external_id,
        amount=event.amount,
        received_on=dt.date.fromisoformat(received) if received else event.received_at.date(),
        currency=event.currency or invoice.currency,
        account_id=invoice.account_id,
        reference=invoice.number,
        actor=actor,
    )
    event.status, event.invoice_id, event.payment_id, event.resolved_at = "applied", invoice.id, payment.id, utcnow()
    event.detail = {**event.detail, "assigned_by": actor}
    session.flush()
    return payment, event


# --- IBM accounts-receivable import ----------------------------------------------------------------

IBM_COLUMNS = ["countryCode", "customerID", "invoiceNumber", "InvoiceDate", "DueDate", "InvoiceAmount", "Disputed"]


def _date(value: str, column: str) -> dt.date:
    try:
        return dt.datetime.strptime(value.strip(), "%m/%d/%Y").date()
    except ValueError:
        raise RowError(f"{column} is not a m/d/yyyy date: {value!r}") from None


def _money(value: str, column: str) -> Decimal:
    try:
        amount = Decimal(value.replace(",", "").strip())
    except InvalidOperation:
        raise RowError(f"{column} is not an amount: {value!r}") from None
    if amount < 0:
        raise RowError(f"{column} is negative: {value!r}")
    return amount.quantize(CENT)


def import_invoices(
    session: Session,
    path: Path,
    fmt: str,
    *,
    strict: bool = False,
    progress: Progress | None = None,
    actor: str = "cli",
) -> ImportReport:
    """Import billing history (customers, invoices, and the payments that settled them); the caller commits."""
    if fmt not in INVOICE_FORMATS:
        raise InvalidInput(f"--format must be one of {', '.join(INVOICE_FORMATS)}, got {fmt!r}")
    header, rows = read_csv(path)
    _require_columns(path, header, IBM_COLUMNS)
    report = ImportReport(kind="invoices", format=fmt, path=str(path))
    accounts = {a.external_id: a for a in session.scalars(select(Account).where(Account.external_source == IBM_SOURCE))}
    invoices = {i.external_id: i for i in session.scalars(select(Invoice).where(Invoice.external_source == IBM_SOURCE))}
    payments = {p.external_id for p in session.scalars(select(Payment).where(Payment.external_id.like("ibm-ar:%")))}

    def handle(number: int, row: dict[str, str]) -> None:
        customer, invoice_number = row["customerID"], row["invoiceNumber"]
        if not customer or not invoice_number:
            raise RowError("customerID and invoiceNumber are required")
        issued, due = _date(row["InvoiceDate"], "InvoiceDate"), _date(row["DueDate"], "DueDate")
        if due < issued:
            raise RowError(f"DueDate {due} is before InvoiceDate {issued}")
        amount = _money(row["InvoiceAmount"], "InvoiceAmount")
        disputed = row["Disputed"].strip().lower() == "yes"
        settled = _date(row["SettledDate"], "SettledDate") if row.get("SettledDate") else None
        account = accounts.get(customer)
        if account is None:
            account = Account(
                name=f"Customer {customer}",
                external_source=IBM_SOURCE,
                external_id=customer,
                country=row["countryCode"] or None,
            )
            session.add(account)
            session.flush()
            accounts[customer] = account
            report.count("created", "accounts")
        values = {
            "number": f"IBM-{invoice_number}",
            "account_id": account.id,
            "amount": amount,
            "issued_on": issued,
            "due_on": due,
            "disputed": disputed,
            "status": InvoiceStatus.PAID if settled else InvoiceStatus.ISSUED,
            "paid_on": settled,
        }
        invoice = invoices.get(invoice_number)
        if invoice is None:
            invoice = Invoice(external_source=IBM_SOURCE, external_id=invoice_number, **values)
            session.add(invoice)
            session.flush()
            invoices[invoice_number] = invoice
            report.count("created", "invoices")
        else:
            report.count("updated" if _set_fields(invoice, values) else "unchanged", "invoices")
        payment_id = f"ibm-ar:{invoice_number}"
        if settled and payment_id not in payments:
            payment = Payment(
                external_id=payment_id,
                account_id=account.id,
                amount=amount,
                received_on=settled,
                reference=values["number"],
            )
            session.add(payment)
            session.flush()
            session.add(PaymentAllocation(payment_id=payment.id, invoice_id=invoice.id, amount=amount))
            payments.add(payment_id)
            report.count("created", "payments")

    _each(report, path.name, rows, progress, handle)
    _finish(session, report, strict, actor)
    return report


# --- cash view -------------------------------------------------------------------------------------

BUCKETS = (("0-30", 0, 30), ("31-60", 31, 60), ("61-90", 61, 90), ("90+", 91, 10**6))


def cash_view(session: Session, as_of: dt.date, *, weeks: int = 8, dso_days: int = 90) -> dict[str, Any]:
    """DSO, aging buckets, expected collections by week and the unpaid invoices, as of a date (the state
    then: invoices issued by that day, payments received by that day)."""
    issued = session.scalars(
        select(Invoice).where(Invoice.issued_on <= as_of, Invoice.status != InvoiceStatus.VOID)
    ).all()
    paid_by = allocated(session, [i.id for i in issued], as_of)
    open_rows = []
    for invoice in issued:
        owed = (invoice.amount - paid_by.get(invoice.id, Decimal("0"))).quantize(CENT)
        if owed > 0:
            open_rows.append((invoice, owed))
    receivable = sum((owed for _, owed in open_rows), Decimal("0"))
    window_start = as_of - dt.timedelta(days=dso_days)
    sales = sum((i.amount for i in issued if i.issued_on > window_start), Decimal("0"))
    dso = float(receivable / sales * dso_days) if sales else None
    aging = {name: Decimal("0") for name, _, _ in BUCKETS}
    for invoice, owed in open_rows:
        days = max(0, (as_of - invoice.due_on).days)
        name = next(n for n, low, high in BUCKETS if low <= days <= high)
        aging[name] += owed
    histories: dict[int, PaymentHistory] = {}
    expected: dict[str, Decimal] = defaultdict(lambda: Decimal("0"))
    week_start = as_of - dt.timedelta(days=as_of.weekday())
    unpaid = []
    for invoice, owed in sorted(open_rows, key=lambda r: r[0].due_on):
        history = histories.setdefault(invoice.account_id, payment_history(session, invoice.account_id, as_of))
        expected_on = max(as_of, invoice.due_on + dt.timedelta(days=round(history.avg_days_late)))
        if not invoice.disputed:
            week = week_start + dt.timedelta(days=7 * ((expected_on - week_start).days // 7))
            if week < week_start + dt.timedelta(days=7 * weeks):
                expected[week.isoformat()] += owed
        unpaid.append(
            {
                "id": invoice.id,
                "number": invoice.number,
                "account_id": invoice.account_id,
                "due_on": invoice.due_on.isoformat(),
                "days_past_due": max(0, (as_of - invoice.due_on).days),
                "balance": str(owed),
                "disputed": invoice.disputed,
                "expected_on": expected_on.isoformat() if not invoice.disputed else None,
                "late_share": round(history.late_share, 3),
            }
        )
    return {
        "as_of": as_of.isoformat(),
        "receivable": str(receivable),
        "sales_last_days": str(sales),
        "dso_days": round(dso, 1) if dso is not None else None,
        "dso_window_days": dso_days,
        "aging": {name: str(value) for name, value in aging.items()},
        "expected_by_week": [
            {
                "week_of": (week_start + dt.timedelta(days=7 * n)).isoformat(),
                "amount": str(expected.get((week_start + dt.timedelta(days=7 * n)).isoformat(), Decimal("0"))),
            }
            for n in range(weeks)
        ],
        "unpaid": unpaid,
    }
