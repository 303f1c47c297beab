"""M-Pesa (Safaricom Daraja): C2B confirmations and STK Push, reconciled like every other payment.

Inbound (POST /v1/webhooks/mpesa?token=...; Daraja does not sign callbacks, so the callback URL carries a secret):
- C2B confirmation (a customer paid our paybill or till): `TransID`, `TransAmount`, `BusinessShortCode`,
  `BillRefNumber` (the account reference the customer typed), `TransTime` (yyyymmddHHMMSS, Nairobi time).
  The account reference is matched to an invoice number (case, spaces and dashes ignored). A payment to another
  shortcode is refused; one whose reference matches no open invoice of ours is held for a person, never lost.
- STK Push callback (`Body.stkCallback`): the result of a payment prompt revloop sent; matched by its
  CheckoutRequestID to the invoice of the approved request. ResultCode 0 carries the amount and the M-Pesa receipt.
Every payment goes through `ledger.record_payment` (external id "mpesa:<receipt>", so a C2B confirmation and an STK
callback of the same transaction count once): partial payments leave the balance open, overpayments become credit,
paid invoices stop their reminders.

Outbound: an STK Push prompt is an outbound action, so it is a review item (`queue_stk_request`); the amount is the
invoice's balance re-read when the approved item is executed, the phone number is the billing contact's on record.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing import ledger
from core.db import insert_once
from core.enums import InvoiceStatus, ItemKind, ItemSource, ItemStatus, NotificationKind
from core.errors import AppError, Conflict, InvalidInput, Unauthorized
from core.models import Contact, Invoice, PaymentEvent, ReviewItem
from core.notifications import notify
from core.settings import Settings
from core.webhooks import WebhookNotConfigured
from review import queue as review_queue
from review.execute import Rule

NAIROBI = ZoneInfo("Africa/Nairobi")
ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}


class MpesaError(AppError):
    """Daraja did not answer usefully (timeout, 5xx): the approved request is retried by its job."""

    status_code = 502
    code = "mpesa_error"


class MpesaRefused(MpesaError):
    """Daraja (or our configuration) refuses the request: retrying the same request cannot help."""


def check_token(settings: Settings, token: str | None) -> None:
    if not settings.mpesa_callback_token:
        raise WebhookNotConfigured("the mpesa webhook has no secret: set REVLOOP_MPESA_CALLBACK_TOKEN")
    if not token or not hmac.compare_digest(token.encode(), settings.mpesa_callback_token.encode()):
        raise Unauthorized("the M-Pesa callback URL's token does not match REVLOOP_MPESA_CALLBACK_TOKEN")


def normalise_reference(value: str | None) -> str:
    return re.sub(r"[\s\-_/.#]", "", value or "").upper()


def find_invoice(session: Session, reference: str | None) -> Invoice | None:
    """The invoice whose number the payer typed as the account reference (ignoring case, spaces and dashes)."""
    wanted = normalise_reference(reference)
    if not wanted:
        return None
    stripped = func.upper(func.replace(func.replace(Invoice.number, "-", ""), " ", ""))
    return session.scalar(select(Invoice).where(stripped == wanted).order_by(Invoice.id).limit(1))


def _amount(value: Any, field: str) -> Decimal:
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        raise InvalidInput(f"{field} is not an amount: {value!r}", details={"field": field}) from None
    if amount <= 0:
        raise InvalidInput(f"{field} must be positive", details={"field": field})
    return amount


def _day(stamp: Any, field: str) -> dt.date:
    try:
        return dt.datetime.strptime(str(stamp), "%Y%m%d%H%M%S").date()
    except ValueError:
        raise InvalidInput(f"{field} is not yyyymmddHHMMSS: {stamp!r}", details={"field": field}) from None


def handle_callback(session: Session, settings: Settings, body: dict[str, Any]) -> dict[str, Any]:
    """A C2B confirmation or an STK Push callback; the answer is Daraja's acknowledgement plus what happened."""
    if isinstance(body.get("Body"), dict) and isinstance(body["Body"].get("stkCallback"), dict):
        outcome = _stk_callback(session, settings, body["Body"]["stkCallback"])
    elif body.get("TransID"):
        outcome = _c2b(session, settings, body)
    else:
        raise InvalidInput(
            "not a Daraja C2B confirmation (TransID) or STK Push callback (Body.stkCallback)",
            details={"field": "TransID"},
        )
    return {**ACCEPTED, **outcome}


def _event(session: Session, event_id: str, kind: str) -> tuple[PaymentEvent, bool]:
    return insert_once(
        session,
        PaymentEvent(provider="mpesa", event_id=event_id, kind=kind, status="received", detail={}),
        select(PaymentEvent).where(PaymentEvent.provider == "mpesa", PaymentEvent.event_id == event_id),
    )


def _settle(
    session: Session,
    settings: Settings,
    row: PaymentEvent,
    *,
    receipt: str,
    amount: Decimal,
    day: dt.date,
    invoice: Invoice | None,
    reference: str | None,
) -> dict[str, Any]:
    """Reconcile an M-Pesa payment to the invoice it names, or hold it."""
    currency = settings.mpesa_currency.upper()
    row.amount, row.currency, row.reference = amount, currency, reference
    hold = {"external_id": f"mpesa:{receipt}", "received_on": day.isoformat()}
    if invoice is None:
        out = ledger.hold_payment(session, row, f"account reference {reference!r} matches no invoice we issued", **hold)
        return {**out, "transaction": receipt}
    if invoice.status == InvoiceStatus.VOID or invoice.currency.upper() != currency:
        why = "is void" if invoice.status == InvoiceStatus.VOID else f"is billed in {invoice.currency}, not {currency}"
        out = ledger.hold_payment(session, row, f"invoice {invoice.number} {why}", **hold)
        return {**out, "transaction": receipt}
    payment, duplicate = ledger.record_payment(
        session,
        external_id=hold["external_id"],
        amount=amount,
        received_on=day,
        currency=currency,
        account_id=invoice.account_id,
        reference=invoice.number,
        actor="webhook:mpesa",
    )
    row.status, row.invoice_id, row.payment_id = "applied", invoice.id, payment.id
    session.flush()
    return {
        "status": "applied",
        "transaction": receipt,
        "invoice_number": invoice.number,
        "balance": str(ledger.balance(session, invoice)),
        "unallocated": str(payment.unallocated),
        "already_recorded": duplicate,
    }


def _c2b(session: Session, settings: Settings, body: dict[str, Any]) -> dict[str, Any]:
    receipt = str(body["TransID"]).strip()
    shortcode = str(body.get("BusinessShortCode") or "").strip()
    if settings.mpesa_shortcode and shortcode != settings.mpesa_shortcode:
        raise InvalidInput(
            f"BusinessShortCode {shortcode!r} is not our paybill/till ({settings.mpesa_shortcode})",
            details={"field": "BusinessShortCode"},
        )
    amount = _amount(body.get("TransAmount"), "TransAmount")
    day = _day(body.get("TransTime"), "TransTime")
    row, created = _event(session, receipt, "c2b.confirmation")
    if not created:
        return {"status": row.status, "transaction": receipt, "duplicate": True}
    reference = str(body.get("BillRefNumber") or "").strip() or None
    outcome = _settle(
        session,
        settings,
        row,
        receipt=receipt,
        amount=amount,
        day=day,
        invoice=find_invoice(session, reference),
        reference=reference,
    )
    row.detail = {**row.detail, "msisdn": str(body.get("MSISDN") or ""), "type": str(body.get("TransactionType") or "")}
    return {**outcome, "duplicate": False}


def _stk_callback(session: Session, settings: Settings, callback: dict[str, Any]) -> dict[str, Any]:
    checkout = str(callback.get("CheckoutRequestID") or "").strip()
    if not checkout:
        raise InvalidInput("stkCallback needs a CheckoutRequestID", details={"field": "CheckoutRequestID"})
    row, created = _event(session, f"stk:{checkout}", "stk.callback")
    if not created:
        return {"status": row.status, "checkout_request_id": checkout, "duplicate": True}
    request = session.scalar(
        select(PaymentEvent).where(PaymentEvent.provider == "mpesa", PaymentEvent.event_id == checkout)
    )
    try:
        code = int(callback.get("ResultCode", -1))
    except (TypeError, ValueError):
        raise InvalidInput("stkCallback.ResultCode must be a number", details={"field": "ResultCode"}) from None
    if code != 0:
        reason = f"ResultCode {code}: {callback.get('ResultDesc') or 'the customer did not pay'}"
        row.status, row.detail = "failed", {"reason": reason}
        if request is not None:
            request.status, request.detail = "failed", {**request.detail, "reason": reason}
        return {"status": "failed", "checkout_request_id": checkout, "reason": reason, "duplicate": False}
    metadata = callback.get("CallbackMetadata")
    listed = metadata.get("Item") if isinstance(metadata, dict) else None
    if not isinstance(listed, list):
        raise InvalidInput(
            "a successful stkCallback needs CallbackMetadata.Item", details={"field": "CallbackMetadata"}
        )
    items = {i.get("Name"): i.get("Value") for i in listed if isinstance(i, dict)}
    receipt = str(items.get("MpesaReceiptNumber") or "").strip()
    if not receipt:
        raise InvalidInput("a successful stkCallback needs MpesaReceiptNumber", details={"field": "MpesaReceiptNumber"})
    invoice = session.get(Invoice, request.invoice_id) if request is not None and request.invoice_id else None
    outcome = _settle(
        session,
        settings,
        row,
        receipt=receipt,
        amount=_amount(items.get("Amount"), "Amount"),
        day=_day(items.get("TransactionDate"), "TransactionDate"),
        invoice=invoice,
        reference=invoice.number if invoice else (request.reference if request else None),
    )
    if request is not None:
        request.status = "paid" if outcome["status"] == "applied" else outcome["status"]
    return {**outcome, "checkout_request_id": checkout, "duplicate": False}


# --- STK Push: a payment prompt on the customer's phone, through review ---------------------------------


def msisdn(phone: str | None) -> str | None:
    """A Kenyan mobile number as Daraja wants it (2547XXXXXXXX / 2541XXXXXXXX), or None."""
    digits = re.sub(r"\D", "", phone or "")
    if digits.startswith("0") and len(digits) == 10:
        digits = "254" + digits[1:]
    elif len(digits) == 9 and digits[0] in "71":
        digits = "254" + digits
    return digits if re.fullmatch(r"254[17]\d{8}", digits) else None


def stk_amount(balance: Decimal) -> int:
    """M-Pesa takes whole shillings: the balance rounded up (a cent's excess stays as the customer's credit)."""
    return int(balance.quantize(Decimal("1"), rounding=ROUND_CEILING))


def _payer(session: Session, invoice: Invoice) -> Contact | None:
    """The account's first contact with a phone number that M-Pesa accepts."""
    for contact in session.scalars(
        select(Contact).where(Contact.account_id == invoice.account_id, Contact.phone.is_not(None)).order_by(Contact.id)
    ):
        if msisdn(contact.phone):
            return contact
    return None


def queue_stk_request(session: Session, settings: Settings, invoice_id: int, *, actor: str) -> ReviewItem:
    """Draft an STK Push for an open invoice's balance, to the phone of its billing contact, for review."""
    invoice = session.get(Invoice, invoice_id)
    if invoice is None:
        from core.errors import NotFound

        raise NotFound(f"invoice {invoice_id} not found")
    if invoice.status != InvoiceStatus.ISSUED:
        raise Conflict(f"invoice {invoice.number} is {invoice.status}: nothing to collect")
    if invoice.currency.upper() != settings.mpesa_currency.upper():
        raise InvalidInput(
            f"invoice {invoice.number} is billed in {invoice.currency}; M-Pesa collects {settings.mpesa_currency}",
            details={"field": "invoice_id"},
        )
    owed = ledger.balance(session, invoice)
    if owed <= 0:
        raise Conflict(f"invoice {invoice.number} has no balance to collect")
    contact = _payer(session, invoice)
    if contact is None:
        raise InvalidInput(
            f"no contact of {invoice.account.name} has a Kenyan mobile number on record", details={"field": "phone"}
        )
    phone = msisdn(contact.phone)
    amount = stk_amount(owed)
    pending = session.scalar(
        select(func.count(ReviewItem.id)).where(
            ReviewItem.source == ItemSource.PAYMENT_REQUEST,
            ReviewItem.status == "pending",
            ReviewItem.thread_id == f"mpesa-{invoice.id}",
        )
    )
    if pending:
        raise Conflict(f"an M-Pesa request for invoice {invoice.number} already waits for review")
    count = session.scalar(select(func.count(ReviewItem.id)).where(ReviewItem.thread_id == f"mpesa-{invoice.id}"))
    return review_queue.queue_drafted(
        session,
        actor=actor,
        template=None,
        slots={
            "subject": f"M-Pesa payment request: {invoice.number}, {invoice.currency} {amount:,}",
            "body": f"Send an M-Pesa prompt (STK Push) to {phone} ({contact.email}) for invoice {invoice.number}: "
            f"{invoice.currency} {amount:,} (the balance), account reference {invoice.number}.",
        },
        source=ItemSource.PAYMENT_REQUEST,
        kind=ItemKind.PAYMENT_REQUEST,
        thread_id=f"mpesa-{invoice.id}",
        dedupe_key=f"mpesa-{invoice.id}-{count + 1}",
        contact_id=contact.id,
        to=phone,
        brief={
            "summary": f"Ask {invoice.account.name} to pay {invoice.number} by M-Pesa: {invoice.currency} {amount:,}.",
            "next_action": "mpesa_stk_push",
            "invoice": {"id": invoice.id, "number": invoice.number, "balance": str(owed)},
            "request": {"amount": amount, "to": phone},
        },
        refs={"invoice_id": invoice.id, "amount": str(owed)},
    )


def _token(settings: Settings) -> str:
    if not (settings.mpesa_consumer_key and settings.mpesa_consumer_secret):
        raise MpesaRefused("set REVLOOP_MPESA_CONSUMER_KEY and REVLOOP_MPESA_CONSUMER_SECRET to send STK Push requests")
    response = httpx.get(
        settings.mpesa_base_url.rstrip("/") + "/oauth/v1/generate",
        params={"grant_type": "client_credentials"},
        auth=(settings.mpesa_consumer_key, settings.mpesa_consumer_secret),
        timeout=settings.mpesa_timeout_seconds,
    )
    if 400 <= response.status_code < 500:
        raise MpesaRefused(f"Daraja OAuth refused the app's credentials: HTTP {response.status_code}")
    if response.status_code != 200 or not response.json().get("access_token"):
        raise MpesaError(f"Daraja OAuth answered HTTP {response.status_code}: {response.text[:200]}")
    return response.json()["access_token"]


def stk_push(settings: Settings, *, phone: str, amount: int, reference: str) -> dict[str, Any]:
    """Send one STK Push (Lipa Na M-Pesa Online) request; Daraja's answer, or MpesaError."""
    missing = [
        f"REVLOOP_MPESA_{n.upper()}"
        for n in ("shortcode", "passkey", "callback_url")
        if not getattr(settings, f"mpesa_{n}")
    ]
    if missing:
        raise MpesaRefused(f"STK Push needs {', '.join(missing)}")
    stamp = dt.datetime.now(NAIROBI).strftime("%Y%m%d%H%M%S")
    password = base64.b64encode(f"{settings.mpesa_shortcode}{settings.mpesa_passkey}{stamp}".encode()).decode()
    response = httpx.post(
        settings.mpesa_base_url.rstrip("/") + "/mpesa/stkpush/v1/processrequest",
        headers={"Authorization": f"Bearer {_token(settings)}"},
        json={
            "BusinessShortCode": settings.mpesa_shortcode,
            "Password": password,
            "Timestamp": stamp,
            "TransactionType": settings.mpesa_transaction_type,
            "Amount": amount,
            "PartyA": phone,
            "PartyB": settings.mpesa_shortcode,
            "PhoneNumber": phone,
            "CallBackURL": settings.mpesa_callback_url,
            "AccountReference": reference[:12],
            "TransactionDesc": f"Invoice {reference}"[:13],
        },
        timeout=settings.mpesa_timeout_seconds,
    )
    answer = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code >= 500 or response.status_code == 429:
        raise MpesaError(f"Daraja answered HTTP {response.status_code}: try again later")
    if response.status_code != 200 or str(answer.get("ResponseCode")) != "0":
        detail = answer.get("errorMessage") or answer.get("ResponseDescription") or response.text[:200]
        raise MpesaRefused(f"Daraja refused the STK Push (HTTP {response.status_code}): {detail}")
    return answer


def _still_owed(session: Session, item: ReviewItem) -> str | None:
    invoice = session.get(Invoice, int(item.draft["invoice_id"]))
    if invoice is None or invoice.status != InvoiceStatus.ISSUED:
        return f"invoice {item.draft['invoice_id']} is no longer open"
    owed = ledger.balance(session, invoice)
    if str(owed) != item.draft.get("amount"):
        return f"the balance changed to {owed} since the request was drafted"
    return None


def _refused(session: Session, item: ReviewItem, invoice: Invoice, reason: str) -> dict[str, Any]:
    """A refusal that no retry can fix: the item ends `failed` (not done) and its closer and the managers are told;
    a new request can be drafted once the record is fixed."""
    result = {"reason": reason, "summary": f"M-Pesa prompt for {invoice.number} not sent: {reason}"}
    review_queue.mark_executed(session, item, status=ItemStatus.FAILED, result=result, actor="agent:collections")
    notify(
        session,
        NotificationKind.SEND_FAILED,
        f"M-Pesa prompt refused: {invoice.number}",
        body=reason,
        severity="critical",
        names=[item.assignee],
        entity=("review_item", item.id),
    )
    return result


def _send_request(settings: Settings, session: Session, item: ReviewItem) -> dict[str, Any]:
    """The approved prompt: amount and phone re-read from the records now, never from the draft's text."""
    invoice = session.get(Invoice, int(item.draft["invoice_id"]))
    contact = session.get(Contact, item.contact_id) if item.contact_id else None
    phone = msisdn(contact.phone if contact else None)
    if phone is None:
        return _refused(session, item, invoice, "the contact has no M-Pesa number on record any more")
    amount = stk_amount(ledger.balance(session, invoice))
    try:
        answer = stk_push(settings, phone=phone, amount=amount, reference=invoice.number)
    except MpesaRefused as exc:
        return _refused(session, item, invoice, exc.message)
    checkout = str(answer["CheckoutRequestID"])
    _event(session, checkout, "stk.request")
    request = session.scalar(
        select(PaymentEvent).where(PaymentEvent.provider == "mpesa", PaymentEvent.event_id == checkout)
    )
    request.status, request.invoice_id = "requested", invoice.id
    request.amount, request.currency, request.reference = Decimal(amount), settings.mpesa_currency, invoice.number
    request.detail = {"review_item_id": item.id, "merchant_request_id": answer.get("MerchantRequestID")}
    session.flush()
    return {
        "checkout_request_id": checkout,
        "amount": amount,
        "to": phone,
        "summary": f"M-Pesa prompt for {invoice.currency} {amount:,} sent to {phone} ({invoice.number})",
    }


EXECUTION = Rule(actor="agent:collections", check=_still_owed, action=_send_request)
