"""Billing for managers: invoices with their balances, and the cash view (DSO, aging, expected collections)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select

from api.auth import Principal
from api.deps import ReadSessionDep, require
from billing import ledger as billing
from core.enums import InvoiceStatus, Role
from core.models import Deal, Invoice, utcnow
from core.schemas import CashView, Day, Id, InvoicePage, InvoiceRead, Offset

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
