"""Stripe webhook events: verified with the official `Stripe-Signature` scheme (the SDK's
`Webhook.construct_event`: HMAC-SHA256 of "<t>.<body>" with the endpoint's whsec_ secret, timestamp tolerance),
each event id handled once, payments reconciled by `ledger.record_payment` (the same code as the generic
payments webhook), refunds reopening what they paid.

invoice.paid             the Stripe invoice we created (metadata revloop_invoice, or its id on our invoice)
payment_intent.succeeded a payment intent revloop created (metadata) or any payment of a customer we know;
                         a payment intent that pays a Stripe invoice is left to invoice.paid (counted once)
charge.refunded          the refunded part of a payment we recorded is taken back from its invoices
Anything else is acknowledged and ignored; a payment nobody can place is held for a person.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import ledger
from billing.backends import METADATA_KEY, from_minor
from core.db import insert_once
from core.errors import InvalidInput, Unauthorized
from core.models import Account, Invoice, Payment, PaymentEvent
from core.webhooks import WebhookNotConfigured

HANDLED = ("invoice.paid", "payment_intent.succeeded", "charge.refunded")


def verify(body: bytes, signature: str | None, secret: str | None, tolerance: int) -> dict[str, Any]:
    """The event, once its Stripe-Signature matches; 401 otherwise (wrong secret, stale timestamp, tampering)."""
    if not secret:
        raise WebhookNotConfigured("the stripe webhook has no secret: set REVLOOP_STRIPE_WEBHOOK_SECRET")
    if not signature:
        raise Unauthorized("missing Stripe-Signature header")
    import stripe

    try:
        event = stripe.Webhook.construct_event(body, signature, secret, tolerance=tolerance)
    except stripe.SignatureVerificationError as exc:
        raise Unauthorized(f"Stripe-Signature: {exc.user_message or exc}") from None
    except ValueError:
        raise InvalidInput("the body is not a Stripe event (JSON)", details={"field": "body"}) from None
    data = event.to_dict()
    if not data.get("id") or not data.get("type") or not isinstance(data.get("data", {}).get("object"), dict):
        raise InvalidInput("a Stripe event needs id, type and data.object", details={"field": "body"})
    return data


def _day(stamp: Any) -> dt.date:
    return dt.datetime.fromtimestamp(int(stamp), dt.UTC).date() if stamp else dt.datetime.now(dt.UTC).date()


def _our_invoice(session: Session, obj: dict[str, Any]) -> Invoice | None:
    number = (obj.get("metadata") or {}).get(METADATA_KEY)
    if number:
        found = session.scalar(select(Invoice).where(Invoice.number == number))
        if found is not None:
            return found
    invoice_id = obj.get("invoice") if obj.get("object") != "invoice" else obj.get("id")
    if invoice_id:
        return session.scalar(
            select(Invoice).where(Invoice.external_source == "stripe", Invoice.external_id == str(invoice_id))
        )
    return None


def _customer_account(session: Session, customer: Any) -> Account | None:
    if not customer:
        return None
    return session.scalar(select(Account).where(Account.stripe_customer_id == str(customer)))


def handle(session: Session, event: dict[str, Any]) -> dict[str, Any]:
    """Apply one verified event once; the answer says what happened (and `duplicate` for a replayed id)."""
    kind, obj = event["type"], event["data"]["object"]
    row, created = insert_once(
        session,
        PaymentEvent(provider="stripe", event_id=str(event["id"]), kind=kind, status="received", detail={}),
        select(PaymentEvent).where(PaymentEvent.provider == "stripe", PaymentEvent.event_id == str(event["id"])),
    )
    if not created:
        return {"event_id": row.event_id, "type": kind, "status": row.status, "duplicate": True}
    if kind == "invoice.paid":
        outcome = _invoice_paid(session, row, obj)
    elif kind == "payment_intent.succeeded":
        outcome = _intent_succeeded(session, row, obj)
    elif kind == "charge.refunded":
        outcome = _charge_refunded(session, row, obj)
    else:
        outcome = {"status": "ignored", "reason": f"{kind} is not a payment event revloop acts on"}
    row.status = outcome["status"]
    row.detail = {k: v for k, v in outcome.items() if k != "status"}
    session.flush()
    return {"event_id": row.event_id, "type": kind, "duplicate": False, **outcome}


def _apply(
    session: Session,
    row: PaymentEvent,
    *,
    external_id: str,
    amount: Decimal,
    currency: str,
    day: dt.date,
    invoice: Invoice | None,
    account: Account | None,
) -> dict[str, Any]:
    row.amount, row.currency = amount, currency
    row.reference = invoice.number if invoice else None
    if invoice is None and account is None:
        return ledger.hold_payment(
            session,
            row,
            "the payment names no invoice or customer revloop knows",
            external_id=external_id,
            received_on=day.isoformat(),
        )
    payment, duplicate = ledger.record_payment(
        session,
        external_id=external_id,
        amount=amount,
        received_on=day,
        currency=currency,
        account_id=invoice.account_id if invoice else account.id,
        reference=invoice.number if invoice else None,
        actor="webhook:stripe",
    )
    row.invoice_id, row.payment_id = (invoice.id if invoice else None), payment.id
    return {
        "status": "applied",
        "payment_id": external_id,
        "invoice_number": invoice.number if invoice else None,
        "already_recorded": duplicate,
        "unallocated": str(payment.unallocated),
    }


def _invoice_paid(session: Session, row: PaymentEvent, obj: dict[str, Any]) -> dict[str, Any]:
    currency = str(obj.get("currency") or "usd").upper()
    amount = from_minor(int(obj.get("amount_paid") or 0), currency)
    if amount <= 0:
        return {"status": "ignored", "reason": "the invoice was settled without money (amount_paid 0)"}
    paid_at = (obj.get("status_transitions") or {}).get("paid_at") or obj.get("created")
    return _apply(
        session,
        row,
        external_id=f"stripe:{obj.get('payment_intent') or obj['id']}",
        amount=amount,
        currency=currency,
        day=_day(paid_at),
        invoice=_our_invoice(session, obj),
        account=_customer_account(session, obj.get("customer")),
    )


def _intent_succeeded(session: Session, row: PaymentEvent, obj: dict[str, Any]) -> dict[str, Any]:
    invoice = _our_invoice(session, {**obj, "invoice": None})
    if invoice is None and obj.get("invoice"):
        return {"status": "ignored", "reason": f"pays Stripe invoice {obj['invoice']}: counted by its invoice.paid"}
    currency = str(obj.get("currency") or "usd").upper()
    return _apply(
        session,
        row,
        external_id=f"stripe:{obj['id']}",
        amount=from_minor(int(obj.get("amount_received") or obj.get("amount") or 0), currency),
        currency=currency,
        day=_day(obj.get("created")),
        invoice=invoice,
        account=_customer_account(session, obj.get("customer")),
    )


def _charge_refunded(session: Session, row: PaymentEvent, obj: dict[str, Any]) -> dict[str, Any]:
    currency = str(obj.get("currency") or "usd").upper()
    refunded = from_minor(int(obj.get("amount_refunded") or 0), currency)
    keys = [f"stripe:{k}" for k in (obj.get("payment_intent"), obj.get("invoice"), obj.get("id")) if k]
    payment = session.scalar(select(Payment).where(Payment.external_id.in_(keys))) if keys else None
    row.amount, row.currency = refunded, currency
    if payment is None:
        return ledger.hold_payment(session, row, f"a refund of {refunded} for a payment revloop never recorded")
    taken = ledger.record_refund(session, payment, refunded_total=refunded, actor="webhook:stripe")
    row.payment_id = payment.id
    return {"status": "applied", "payment_id": payment.external_id, "refunded_now": str(taken)}
