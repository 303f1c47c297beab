"""Stripe: invoices created at Stripe through the official SDK (a local server speaking Stripe's API shapes), and
its webhooks verified with the Stripe-Signature scheme, each event once, reconciled by the ledger's one code path."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from decimal import Decimal

from sqlalchemy import func, select

from billing import ledger
from billing.reminders import scan
from core.db import session_scope
from core.models import (
    Account,
    Deal,
    Invoice,
    Job,
    Milestone,
    Notification,
    Payment,
    PaymentEvent,
    ReviewItem,
    User,
    utcnow,
)
from review import health
from tests.collections.test_collections import DUE, _customer, _h, _items
from tests.collections.test_deal_flow import SECRET, _deal, _sign
from tests.collections.test_deal_flow import _items as _thread_items
from tests.collections.test_fiscal import issued_invoice
from tests.factories import session_token, token, user
from tests.vendor_server import VendorServer

WHSEC = "whsec_test_revloop"


def stripe_headers(payload: bytes, secret: str = WHSEC, at: int | None = None) -> dict[str, str]:
    """The Stripe-Signature header as Stripe computes it: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.payload")>."""
    at = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={at},v1={mac}", "Content-Type": "application/json"}


def _event(event_id: str, kind: str, obj: dict) -> bytes:
    return json.dumps(
        {"id": event_id, "object": "event", "type": kind, "api_version": "2026-10-28", "data": {"object": obj}}
    ).encode()


def _paid(number: str, amount_cents: int, event_id: str = "evt_1", pi: str = "pi_1") -> bytes:
    return _event(
        event_id,
        "invoice.paid",
        {
            "id": "in_remote_1",
            "object": "invoice",
            "customer": "cus_x",
            "currency": "usd",
            "amount_paid": amount_cents,
            "payment_intent": pi,
            "status_transitions": {"paid_at": int(time.time())},
            "metadata": {"revloop_invoice": number},
        },
    )


def _count(settings, model) -> int:
    with session_scope(settings) as session:
        return session.scalar(select(func.count()).select_from(model))


def test_stripe_signatures_valid_wrong_secret_old_timestamp_and_replayed_event(settings, http, worker):
    settings.stripe_webhook_secret = WHSEC
    manager = token(settings, "manager")
    invoice_id = _customer(settings)
    scan(settings, DUE + dt.timedelta(days=1))  # the +1 reminder waits for review
    [reminder] = _items(settings)
    body = _paid("INV-1001", 120000)

    wrong = http.post("/v1/webhooks/stripe", content=body, headers=stripe_headers(body, "whsec_other"))
    assert wrong.status_code == 401 and "signature" in wrong.json()["message"].lower()
    stale = http.post("/v1/webhooks/stripe", content=body, headers=stripe_headers(body, at=int(time.time()) - 3600))
    assert stale.status_code == 401 and "tolerance" in stale.json()["message"].lower()
    tampered = http.post(
        "/v1/webhooks/stripe", content=body.replace(b"120000", b"999999"), headers=stripe_headers(body)
    )
    assert tampered.status_code == 401
    assert _count(settings, Payment) == 0 and _count(settings, PaymentEvent) == 0  # nothing refused was recorded

    ok = http.post("/v1/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert ok.status_code == 200, ok.text
    assert ok.json() == {
        "event_id": "evt_1",
        "type": "invoice.paid",
        "duplicate": False,
        "status": "applied",
        "payment_id": "stripe:pi_1",
        "invoice_number": "INV-1001",
        "unallocated": "0.00",
        "already_recorded": False,
    }
    with session_scope(settings) as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice.status == "paid"
    assert [i.status for i in _items(settings) if i.id == reminder.id] == ["cancelled"]  # the ladder stopped

    # Stripe re-sends the same event later with a fresh timestamp and signature: recognised by its id.
    replay = http.post("/v1/webhooks/stripe", content=body, headers=stripe_headers(body, at=int(time.time()) - 5))
    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    # The payment intent's own event for the same money (it pays a Stripe invoice) counts nothing more.
    pi = _event(
        "evt_2",
        "payment_intent.succeeded",
        {"id": "pi_1", "object": "payment_intent", "invoice": "in_x", "amount_received": 120000, "currency": "usd"},
    )
    assert http.post("/v1/webhooks/stripe", content=pi, headers=stripe_headers(pi)).json()["status"] == "ignored"
    assert _count(settings, Payment) == 1
    r = http.get("/v1/invoices", headers=_h(manager))
    assert [(i["number"], i["balance"], i["status"]) for i in r.json()["items"]] == [("INV-1001", "0.00", "paid")]
    unknown = _event("evt_3", "customer.created", {"id": "cus_9", "object": "customer"})
    assert http.post("/v1/webhooks/stripe", content=unknown, headers=stripe_headers(unknown)).json()["status"] == (
        "ignored"
    )


def test_a_partial_payment_intent_then_a_refund_reopens_the_invoice(settings, http):
    settings.stripe_webhook_secret = WHSEC
    invoice_id = _customer(settings)
    pi = _event(
        "evt_pi",
        "payment_intent.succeeded",
        {
            "id": "pi_9",
            "object": "payment_intent",
            "amount_received": 120000,
            "currency": "usd",
            "created": int(time.time()),
            "metadata": {"revloop_invoice": "INV-1001"},
        },
    )
    assert http.post("/v1/webhooks/stripe", content=pi, headers=stripe_headers(pi)).json()["status"] == "applied"
    refund = _event(
        "evt_refund",
        "charge.refunded",
        {"id": "ch_9", "object": "charge", "payment_intent": "pi_9", "amount_refunded": 20000, "currency": "usd"},
    )
    r = http.post("/v1/webhooks/stripe", content=refund, headers=stripe_headers(refund))
    assert r.status_code == 200 and r.json()["refunded_now"] == "200.00", r.text
    # Stripe's next charge.refunded carries the cumulative amount: only the new part is taken back.
    more = _event(
        "evt_refund2",
        "charge.refunded",
        {"id": "ch_9", "object": "charge", "payment_intent": "pi_9", "amount_refunded": 50000, "currency": "usd"},
    )
    assert http.post("/v1/webhooks/stripe", content=more, headers=stripe_headers(more)).json()["refunded_now"] == (
        "300.00"
    )
    with session_scope(settings) as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice.status == "issued" and invoice.paid_on is None
        assert ledger.balance(session, invoice) == Decimal("500.00")
    stranger = _event(
        "evt_stranger",
        "payment_intent.succeeded",
        {"id": "pi_x", "object": "payment_intent", "amount_received": 5000, "currency": "usd", "customer": "cus_zz"},
    )
    held = http.post("/v1/webhooks/stripe", content=stranger, headers=stripe_headers(stranger)).json()
    assert held["status"] == "held"
    manager = _h(token(settings, "manager"))
    [row] = http.get("/v1/payments/held", headers=manager).json()["items"]
    assert (row["provider"], row["amount"], row["currency"]) == ("stripe", "50.00", "USD")


def _stripe_api() -> VendorServer:
    """Stripe's documented answers for the calls the stripe billing backend makes."""
    state = {"customers": 0}

    def customer(req):
        state["customers"] += 1
        return 200, {"id": f"cus_{state['customers']}", "object": "customer", "name": req.fields.get("name")}

    def invoice(req):
        return 200, {"id": "in_remote_1", "object": "invoice", "status": "draft", "customer": req.fields["customer"]}

    def item(req):
        return 200, {"id": "ii_1", "object": "invoiceitem", "amount": int(req.fields["amount"])}

    def finalize(req):
        return 200, {
            "id": "in_remote_1",
            "object": "invoice",
            "status": "open",
            "hosted_invoice_url": "https://invoice.stripe.example/i/in_remote_1",
        }

    return VendorServer(
        {
            ("POST", "/v1/customers"): customer,
            ("POST", "/v1/invoices"): invoice,
            ("POST", "/v1/invoiceitems"): item,
            ("POST", "/v1/invoices/in_remote_1/finalize"): finalize,
            ("GET", "/v1/balance"): lambda req: (200, {"object": "balance", "livemode": False, "available": []}),
        }
    )


def test_the_stripe_backend_creates_customer_and_invoice_with_amounts_from_the_record(settings, http, worker):
    manager = _h(token(settings, "manager"))
    with _stripe_api() as api:
        settings.billing_backend, settings.stripe_api_key, settings.stripe_base_url = "stripe", "sk_test_1", api.url
        settings.stripe_webhook_secret = WHSEC
        invoice_id, _ = issued_invoice(settings, http, worker, manager)
        [customer] = api.calls("POST", "/v1/customers")
        [created] = api.calls("POST", "/v1/invoices")
        [line] = api.calls("POST", "/v1/invoiceitems")
        assert api.calls("POST", "/v1/invoices/in_remote_1/finalize")
        assert customer.fields["name"] == "Initech" and customer.headers["authorization"] == "Bearer sk_test_1"
        assert customer.headers.get("idempotency-key")
        with session_scope(settings) as session:
            invoice = session.get(Invoice, invoice_id)
            number = invoice.number
            assert (invoice.external_source, invoice.external_id) == ("stripe", "in_remote_1")
            assert invoice.payment_link == "https://invoice.stripe.example/i/in_remote_1"
            assert session.scalar(select(Account.stripe_customer_id)) == "cus_1"
        assert created.fields["metadata[revloop_invoice]"] == number and created.fields["customer"] == "cus_1"
        assert (line.fields["amount"], line.fields["currency"]) == ("289260", "usd")  # USD 2,892.60 from the record
        check = health.run_check(settings, "stripe")
        assert check.status == "ok" and "Stripe answers" in check.detail
        assert api.calls("GET", "/v1/balance")
    # Stripe's invoice.paid names the remote invoice: reconciled to ours, its email's PDF link is Stripe's page.
    body = _event(
        "evt_paid",
        "invoice.paid",
        {"id": "in_remote_1", "object": "invoice", "customer": "cus_1", "currency": "usd", "amount_paid": 289260},
    )
    assert http.post("/v1/webhooks/stripe", content=body, headers=stripe_headers(body)).json()["invoice_number"] == (
        number
    )
    with session_scope(settings) as session:
        assert session.get(Invoice, invoice_id).status == "paid"


def test_a_payment_intent_for_a_balance_carries_the_record_amount_and_our_number(settings):
    from billing.backends import StripeBilling

    invoice_id = _customer(settings, amount="1200.50")
    intents = VendorServer(
        {
            ("POST", "/v1/customers"): lambda req: (200, {"id": "cus_7", "object": "customer"}),
            ("POST", "/v1/payment_intents"): lambda req: (
                200,
                {
                    "id": "pi_7",
                    "object": "payment_intent",
                    "client_secret": "pi_7_secret_x",
                    "status": "requires_payment_method",
                },
            ),
        }
    )
    with intents:
        settings.stripe_api_key, settings.stripe_base_url = "sk_test_1", intents.url
        with session_scope(settings) as session:
            invoice = session.get(Invoice, invoice_id)
            answer = StripeBilling(settings).payment_intent(session, invoice, ledger.balance(session, invoice))
            assert session.get(Account, invoice.account_id).stripe_customer_id == "cus_7"
        [created] = intents.calls("POST", "/v1/payment_intents")
    assert answer == {"id": "pi_7", "client_secret": "pi_7_secret_x", "status": "requires_payment_method"}
    assert (created.fields["amount"], created.fields["currency"], created.fields["customer"]) == (
        "120050",
        "usd",
        "cus_7",
    )
    assert created.fields["metadata[revloop_invoice]"] == "INV-1001" and created.headers.get("idempotency-key")
    # Its payment_intent.succeeded then names our invoice through that metadata (test above).


def test_a_stripe_refusal_fails_the_invoice_item_and_tells_people_while_a_5xx_is_retried(settings, http, worker):
    settings.webhook_secret_esign = SECRET
    manager = _h(session_token(settings, "manager", "Morgan Demo"))
    user(settings, "closer", "Casey Jordan")
    refusal = {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****bad1"}}
    with _stripe_api() as api:
        settings.billing_backend, settings.stripe_api_key, settings.stripe_base_url = "stripe", "sk_test_1", api.url
        customers = api.routes[("POST", "/v1/customers")]
        deal_id = _deal(settings)
        with session_scope(settings) as session:
            session.get(Deal, deal_id).owner = "Casey Jordan"
        assert _sign(http, deal_id).status_code == 200
        assert http.post(f"/v1/deals/{deal_id}/milestones/1/complete", headers=manager).status_code == 200
        [item] = _thread_items(settings, "invoice")

        # Stripe down (5xx): nothing is issued, the item stays approved and the job tries again later.
        api.routes[("POST", "/v1/customers")] = lambda req: (500, {"error": {"type": "api_error", "message": "boom"}})
        assert http.post(f"/v1/review-items/{item.id}/approve", headers=manager).status_code == 200
        worker.run_until_idle()
        with session_scope(settings) as session:
            assert session.get(ReviewItem, item.id).status == "approved"
            [job] = session.scalars(select(Job).where(Job.status == "queued", Job.last_error.is_not(None))).all()
            assert session.scalar(select(func.count()).select_from(Invoice)) == 0
            assert session.scalar(select(func.count()).select_from(Notification)) == 0
            job.run_after = utcnow()  # due now, instead of waiting out the backoff

        # Then Stripe refuses the key (401): no retry can help, so the item fails with Stripe's reason, at once.
        api.routes[("POST", "/v1/customers")] = lambda req: (401, refusal)
        worker.run_until_idle()
        with session_scope(settings) as session:
            failed = session.get(ReviewItem, item.id)
            assert failed.status == "send_failed"
            assert "HTTP 401" in failed.result["reason"] and "Invalid API Key provided" in failed.result["reason"]
            assert session.get(Job, job.id).status == "done"
            assert session.scalar(select(func.count()).select_from(Invoice)) == 0  # nothing issued, no number used
            milestone = session.scalar(select(Milestone).where(Milestone.deal_id == deal_id, Milestone.seq == 1))
            assert (milestone.status, milestone.invoice_id) == ("completed", None)  # it can still be invoiced
            told = session.execute(
                select(User.name, Notification.kind, Notification.body).join(User, User.id == Notification.user_id)
            ).all()
        assert {name for name, _, _ in told} == {"Morgan Demo", "Casey Jordan"}  # the managers and the closer
        assert all(kind == "send_failed" and "Invalid API Key provided" in body for _, kind, body in told)

        # The key is fixed: Retry issues it.
        api.routes[("POST", "/v1/customers")] = customers
        assert http.post(f"/v1/review-items/{item.id}/retry", headers=manager).status_code == 200
        worker.run_until_idle()
        with session_scope(settings) as session:
            assert session.get(ReviewItem, item.id).status == "done"
            [invoice] = session.scalars(select(Invoice)).all()
            assert (invoice.external_source, invoice.external_id) == ("stripe", "in_remote_1")
