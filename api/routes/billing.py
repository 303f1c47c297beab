"""Billing for managers: invoices with their balances, and the cash view (DSO, aging, expected collections)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select

from api.auth import Principal
from api.deps import ReadSessionDep, SessionDep, SettingsDep, require
from billing import ledger as billing
from billing import mpesa
from core.enums import InvoiceStatus, Role
from core.models import Deal, Invoice, PaymentEvent, utcnow
from core.schemas import (
    CashView,
    Day,
    FiscalResubmitted,
    HeldPayment,
    HeldPaymentAssign,
    HeldPaymentPage,
    Id,
    InvoicePage,
    InvoiceRead,
    Offset,
    PaymentRecorded,
    PaymentRequestQueued,
)
from deals import flow

router = APIRouter(tags=["billing"])
Manager = Annotated[Principal, Depends(require(Role.MANAGER))]


@router.get(
    "/v1/invoices", response_model=InvoicePage, summary="Invoices with their net balance, newest due date first"
)
def list_invoices(
    session: ReadSessionDep,
    _: Manager,
    status: InvoiceStatus | None = None,
    account_id: Id | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> InvoicePage:
    conditions = []
    if status:
        conditions.append(Invoice.status == status)
    if account_id is not None:
        conditions.append(Invoice.account_id == account_id)
    rows = session.scalars(
        select(Invoice)
        .where(*conditions)
        .order_by(Invoice.due_on.desc(), Invoice.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    paid = billing.allocated(session, [r.id for r in rows])
    total = session.scalar(select(func.count(Invoice.id)).where(*conditions)) or 0
    return InvoicePage(
        total=total,
        items=[
            InvoiceRead(
                id=r.id,
                number=r.number,
                account_id=r.account_id,
                amount=str(r.amount),
                balance=str(billing.balance(session, r)) if r.id in paid or r.status != InvoiceStatus.PAID else "0.00",
                currency=r.currency,
                issued_on=r.issued_on,
                due_on=r.due_on,
                status=r.status,
                disputed=r.disputed,
                paid_on=r.paid_on,
                fiscal_status=r.fiscal_status,
                fiscal_receipt_number=r.fiscal_receipt_number,
                fiscal_error=r.fiscal_error,
            )
            for r in rows
        ],
    )


@router.get(
    "/v1/cash",
    response_model=CashView,
    summary="DSO, aging buckets, expected collections by week, unpaid invoices, open deals",
)
def cash(
    session: ReadSessionDep,
    _: Manager,
    as_of: Annotated[Day | None, Query(description="The view as of this day (default: today)")] = None,
    weeks: Annotated[int, Query(ge=1, le=26)] = 8,
) -> dict[str, Any]:
    view = billing.cash_view(session, as_of or utcnow().date(), weeks=weeks)
    deals = session.execute(
        select(Deal.stage, func.count(Deal.id), func.coalesce(func.sum(Deal.amount), 0))
        .where(Deal.outcome.is_(None))
        .group_by(Deal.stage)
    ).all()
    view["open_deals"] = [{"stage": s, "deals": n, "amount": str(a)} for s, n, a in deals]
    return view


@router.post(
    "/v1/invoices/{invoice_id}/mpesa-request",
    status_code=201,
    response_model=PaymentRequestQueued,
    summary="Draft an M-Pesa STK Push for the invoice's balance; it is sent only once a person approves it",
    description="The phone is the account's contact's number on record and the amount is the balance (whole "
    "shillings, rounded up), both re-read when the approved item is executed. 409 when one already waits.",
)
def mpesa_request(
    invoice_id: Id, session: SessionDep, settings: SettingsDep, principal: Manager
) -> PaymentRequestQueued:
    item = mpesa.queue_stk_request(session, settings, invoice_id, actor=principal.actor)
    request = item.brief["request"]
    return PaymentRequestQueued(
        review_item_id=item.id,
        invoice_number=item.brief["invoice"]["number"],
        amount=str(request["amount"]),
        to=request["to"],
    )


@router.post(
    "/v1/invoices/{invoice_id}/fiscal-submit",
    response_model=FiscalResubmitted,
    summary="Submit a rejected invoice to the tax authority again, after fixing its record (409 otherwise)",
)
def fiscal_submit(invoice_id: Id, session: SessionDep, principal: Manager) -> FiscalResubmitted:
    invoice = flow.resubmit_fiscal(session, invoice_id, actor=principal.actor)
    return FiscalResubmitted(invoice_id=invoice.id, number=invoice.number, fiscal_status=invoice.fiscal_status)


@router.get(
    "/v1/payments/held",
    response_model=HeldPaymentPage,
    summary="Payments held because they name no invoice we issued (M-Pesa references, Stripe customers unknown)",
)
def held_payments(
    session: ReadSessionDep,
    _: Manager,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> HeldPaymentPage:
    held = PaymentEvent.status == "held"
    rows = session.scalars(
        select(PaymentEvent).where(held).order_by(PaymentEvent.received_at, PaymentEvent.id).limit(limit).offset(offset)
    ).all()
    return HeldPaymentPage(
        total=session.scalar(select(func.count(PaymentEvent.id)).where(held)) or 0,
        items=[
            HeldPayment(
                id=r.id,
                provider=r.provider,
                event_id=r.event_id,
                kind=r.kind,
                amount=str(r.amount) if r.amount is not None else None,
                currency=r.currency,
                reference=r.reference,
                reason=(r.detail or {}).get("reason"),
                received_at=r.received_at,
            )
            for r in rows
        ],
    )


@router.post(
    "/v1/payments/held/{event_id}/assign",
    response_model=PaymentRecorded,
    summary="Place a held payment on one of our invoices: recorded and reconciled like any payment",
)
def assign_held(event_id: Id, body: HeldPaymentAssign, session: SessionDep, principal: Manager) -> PaymentRecorded:
    payment, _ = billing.assign_held(session, event_id, body.invoice_number.strip(), actor=principal.actor)
    return PaymentRecorded(payment_id=payment.external_id, duplicate=False, unallocated=str(payment.unallocated))
