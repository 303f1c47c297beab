"""Where invoices live besides revloop's own tables: the `BillingBackend` (REVLOOP_BILLING_BACKEND).

`native` (the default): revloop's tables only; the payment link is REVLOOP_PAYMENT_LINK_BASE + the number.
`stripe`: an issued invoice is also created at Stripe with the official `stripe` SDK (pointed at
REVLOOP_STRIPE_BASE_URL): the customer once per account (its id kept on the account), an invoice item and a
`send_invoice` invoice carrying our number in its metadata, finalized; Stripe's hosted page becomes the payment
link. Payment intents (card payments against an invoice's balance) carry the same metadata. Every amount comes from
the invoice record; Stripe's payments come back through POST /v1/webhooks/stripe (billing/stripe_events.py).

A refusal no retry can fix (a bad API key 401, an invalid request 400, 403, 404) raises BillingRefused with Stripe's
reason; a timeout, 409, 429 or 5xx raises Stripe's own error, and the job that issues the invoice tries again.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Account, Contact, Invoice
from core.settings import Settings

# Currencies Stripe counts in whole units (no cents): https://docs.stripe.com/currencies#zero-decimal
ZERO_DECIMAL = {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF"}
METADATA_KEY = "revloop_invoice"


def to_minor(amount: Decimal, currency: str) -> int:
    """An amount in the currency's smallest unit, as Stripe counts it."""
    factor = 1 if currency.upper() in ZERO_DECIMAL else 100
    return int((amount * factor).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def from_minor(value: int, currency: str) -> Decimal:
    factor = 1 if currency.upper() in ZERO_DECIMAL else 100
    return (Decimal(int(value)) / factor).quantize(Decimal("0.01"))


class BillingRefused(Exception):
    """The billing provider refused the request for good (bad key, invalid request): retrying it cannot help."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _stripe_refusal(exc: Exception) -> BillingRefused | None:
    """BillingRefused for a 4xx that will not change on retry; None for what is worth retrying (no answer, 409
    (a concurrent request with the same idempotency key), 429, 5xx)."""
    status = getattr(exc, "http_status", None)
    if status is None or not 400 <= status < 500 or status in (409, 429):
        return None
    return BillingRefused(f"Stripe refused the request (HTTP {status}): {getattr(exc, 'user_message', None) or exc}")


class BillingBackend(Protocol):
    name: str

    def invoice_issued(self, session: Session, invoice: Invoice) -> None:
        """Called once when revloop issues an invoice (before its email is queued); BillingRefused when the
        provider refuses it for good."""

    def probe(self) -> str: ...


class NativeBilling:
    name = "native"

    def invoice_issued(self, session: Session, invoice: Invoice) -> None:
        return None

    def probe(self) -> str:
        return "revloop's own invoices and payments"


class StripeBilling:
    """Customers, invoices and payment intents at Stripe, through the official SDK."""

    name = "stripe"

    def __init__(self, settings: Settings):
        if not settings.stripe_api_key:
            raise ValueError("REVLOOP_BILLING_BACKEND=stripe needs REVLOOP_STRIPE_API_KEY")
        import stripe  # imported only where Stripe is configured

        self.client = stripe.StripeClient(
            settings.stripe_api_key,
            base_addresses={"api": settings.stripe_base_url.rstrip("/")},
            http_client=stripe.RequestsClient(timeout=settings.stripe_timeout_seconds),
            max_network_retries=2,  # the SDK sends an Idempotency-Key with each POST, so a retry creates nothing twice
        )

    def customer(self, session: Session, account: Account) -> str:
        """The account's Stripe customer, created once (its id is kept on the account)."""
        if account.stripe_customer_id:
            return account.stripe_customer_id
        contact = session.scalar(select(Contact).where(Contact.account_id == account.id).order_by(Contact.id).limit(1))
        params: dict[str, Any] = {"name": account.name, "metadata": {"revloop_account_id": str(account.id)}}
        if contact is not None:
            params["email"] = contact.email
        created = self.client.v1.customers.create(params, options={"idempotency_key": f"revloop-customer-{account.id}"})
        account.stripe_customer_id = created.id
        session.flush()
        return created.id

    def invoice_issued(self, session: Session, invoice: Invoice) -> None:
        if invoice.external_source == "stripe":
            return
        import stripe

        try:
            self._create_invoice(session, invoice)
        except stripe.StripeError as exc:
            refusal = _stripe_refusal(exc)
            if refusal is None:
                raise
            raise refusal from exc

    def _create_invoice(self, session: Session, invoice: Invoice) -> None:
        customer = self.customer(session, invoice.account)
        currency = invoice.currency.lower()
        key = f"revloop-invoice-{invoice.number}"
        metadata = {METADATA_KEY: invoice.number}
        remote = self.client.v1.invoices.create(
            {
                "customer": customer,
                "collection_method": "send_invoice",
                "days_until_due": max(0, (invoice.due_on - invoice.issued_on).days),
                "currency": currency,
                "auto_advance": False,  # revloop sends the invoice email after review, not Stripe
                "metadata": metadata,
            },
            options={"idempotency_key": key},
        )
        self.client.v1.invoice_items.create(
            {
                "customer": customer,
                "invoice": remote.id,
                "amount": to_minor(invoice.amount, invoice.currency),
                "currency": currency,
                "description": f"Invoice {invoice.number}",
                "metadata": metadata,
            },
            options={"idempotency_key": key + "-item"},
        )
        final = self.client.v1.invoices.finalize_invoice(remote.id, options={"idempotency_key": key + "-finalize"})
        invoice.external_source, invoice.external_id = "stripe", remote.id
        if getattr(final, "hosted_invoice_url", None):
            invoice.payment_link = final.hosted_invoice_url
        session.flush()

    def payment_intent(self, session: Session, invoice: Invoice, amount: Decimal) -> dict[str, Any]:
        """A card payment for (part of) an invoice's balance; the amount is the caller's, read from the record."""
        intent = self.client.v1.payment_intents.create(
            {
                "amount": to_minor(amount, invoice.currency),
                "currency": invoice.currency.lower(),
                "customer": self.customer(session, invoice.account),
                "metadata": {METADATA_KEY: invoice.number},
            },
            options={"idempotency_key": f"revloop-pi-{invoice.number}-{amount}"},
        )
        return {"id": intent.id, "client_secret": intent.client_secret, "status": intent.status}

    def probe(self) -> str:
        balance = self.client.v1.balance.retrieve()
        return f"Stripe answers (livemode={getattr(balance, 'livemode', '?')})"


def backend(settings: Settings) -> BillingBackend:
    return StripeBilling(settings) if settings.billing_backend == "stripe" else NativeBilling()
