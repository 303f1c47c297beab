"""M-Pesa (Daraja): C2B confirmations matched by account reference to our invoice numbers (exact, partial,
overpaid, unknown), STK Push as a reviewed outbound action against a local server speaking Daraja's shapes, and
the callbacks reconciled by the ledger's one code path."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select

from billing import ledger
from billing.reminders import scan
from core.db import session_scope
from core.models import Account, Contact, Invoice, Notification, Payment
from review import health
from tests.collections.test_collections import _h, _items
from tests.factories import session_token, token
from tests.vendor_server import VendorServer

TOKEN = "cb-token-1"
DUE = dt.date(2026, 12, 1)
HOOK = f"/v1/webhooks/mpesa?token={TOKEN}"


def _kes_invoice(settings, amount: str = "12000.00", number: str = "INV-2026-00042") -> int:
    with session_scope(settings) as session:
        account = Account(name="Duka Traders", domain="duka.example")
        session.add(account)
        session.flush()
        session.add(
            Contact(email="pay@duka.example", first_name="Wanjiru", phone="0712 345 678", account_id=account.id)
        )
        invoice = Invoice(
            number=number,
            account_id=account.id,
            amount=Decimal(amount),
            currency="KES",
            issued_on=DUE - dt.timedelta(days=30),
            due_on=DUE,
        )
        session.add(invoice)
        session.flush()
        return invoice.id


def _c2b(trans_id: str, amount: str, reference: str, shortcode: str = "600984") -> dict:
    """A Daraja C2B confirmation as documented (paybill)."""
    return {
        "TransactionType": "Pay Bill",
        "TransID": trans_id,
        "TransTime": "20261202143005",
        "TransAmount": amount,
        "BusinessShortCode": shortcode,
        "BillRefNumber": reference,
        "InvoiceNumber": "",
        "OrgAccountBalance": "49197.00",
        "ThirdPartyTransID": "",
        "MSISDN": "2547 ***** 678",
        "FirstName": "Wanjiru",
    }


def _settings(settings) -> None:
    settings.mpesa_callback_token, settings.mpesa_shortcode = TOKEN, "600984"


def _balance(settings, invoice_id: int) -> tuple[str, Decimal]:
    with session_scope(settings) as session:
        invoice = session.get(Invoice, invoice_id)
        return invoice.status, ledger.balance(session, invoice)


def test_c2b_exact_partial_and_overpayment_reconcile_by_account_reference(settings, http):
    _settings(settings)
    invoice_id = _kes_invoice(settings)
    scan(settings, DUE + dt.timedelta(days=1))
    [reminder] = _items(settings)
    assert "KES 12,000.00" in reminder.draft["body"]

    partial = http.post(HOOK, json=_c2b("SLK1A2B3C4", "5000.00", " inv 2026 00042 "))  # typed loosely on a phone
    assert partial.status_code == 200, partial.text
    assert partial.json()["ResultCode"] == 0 and partial.json()["status"] == "applied"
    assert partial.json()["balance"] == "7000.00"
    assert _balance(settings, invoice_id) == ("issued", Decimal("7000.00"))
    again = http.post(HOOK, json=_c2b("SLK1A2B3C4", "5000.00", "INV-2026-00042"))  # Daraja retries a confirmation
    assert again.json()["duplicate"] is True and _balance(settings, invoice_id)[1] == Decimal("7000.00")
    # The next reminder asks for the net balance, and the pending one for 12,000 no longer goes out as drafted.
    scan(settings, DUE + dt.timedelta(days=7))
    assert "KES 7,000.00" in _items(settings)[-1].draft["body"]

    over = http.post(HOOK, json=_c2b("SLK9Z8Y7X6", "7500.00", "inv-2026-00042")).json()
    assert (over["status"], over["balance"], over["unallocated"]) == ("applied", "0.00", "500.00")
    assert _balance(settings, invoice_id)[0] == "paid"
    assert {i.status for i in _items(settings)} == {"cancelled"}  # the ladder stopped
    with session_scope(settings) as session:
        credit = session.scalar(select(Payment).where(Payment.external_id == "mpesa:SLK9Z8Y7X6"))
        assert credit.unallocated == Decimal("500.00") and credit.currency == "KES"  # held as the customer's credit


def test_an_unknown_account_reference_is_held_shown_and_assigned_not_lost(settings, http):
    _settings(settings)
    manager = _h(session_token(settings, "manager"))
    invoice_id = _kes_invoice(settings)
    r = http.post(HOOK, json=_c2b("SLKUNKNOWN1", "3000.00", "duka shop"))
    assert r.status_code == 200 and r.json()["ResultCode"] == 0  # Daraja is told we have it
    assert r.json()["status"] == "held" and "matches no invoice" in r.json()["reason"]
    [held] = http.get("/v1/payments/held", headers=manager).json()["items"]
    assert (held["event_id"], held["amount"], held["currency"], held["reference"]) == (
        "SLKUNKNOWN1",
        "3000.00",
        "KES",
        "duka shop",
    )
    with session_scope(settings) as session:
        titles = session.scalars(select(Notification.title)).all()
        assert any("Payment held: KES 3000.00 via mpesa" in t for t in titles)
        assert session.scalar(select(func.count(Payment.id))) == 0
    assert "1 payment(s) held" in health.run_check(settings, "mpesa").detail
    bad = http.post(f"/v1/payments/held/{held['id']}/assign", json={"invoice_number": "INV-NOPE"}, headers=manager)
    assert bad.status_code == 422 and bad.json()["details"]["field"] == "invoice_number"
    ok = http.post(f"/v1/payments/held/{held['id']}/assign", json={"invoice_number": "INV-2026-00042"}, headers=manager)
    assert ok.status_code == 200, ok.text
    assert _balance(settings, invoice_id) == ("issued", Decimal("9000.00"))
    assert http.get("/v1/payments/held", headers=manager).json()["total"] == 0


def test_callbacks_need_the_token_and_our_shortcode(settings, http):
    assert http.post(HOOK, json=_c2b("A1", "10", "x")).status_code == 503  # not configured: refused, named
    _settings(settings)
    _kes_invoice(settings)
    assert http.post("/v1/webhooks/mpesa?token=wrong", json=_c2b("A1", "10", "x")).status_code == 401
    assert http.post("/v1/webhooks/mpesa", json=_c2b("A1", "10", "x")).status_code == 401
    other = http.post(HOOK, json=_c2b("A1", "10", "INV-2026-00042", shortcode="123456"))
    assert other.status_code == 422 and other.json()["details"]["field"] == "BusinessShortCode"
    bad = http.post(HOOK, json={**_c2b("A2", "ten", "INV-2026-00042")})
    assert bad.status_code == 422 and bad.json()["details"]["field"] == "TransAmount"
    assert http.post(HOOK, json={"hello": 1}).json()["details"]["field"] == "TransID"
    odd = {"CheckoutRequestID": "ws_1", "ResultCode": "zero"}
    assert http.post(HOOK, json={"Body": {"stkCallback": odd}}).json()["details"]["field"] == "ResultCode"
    odd = {"CheckoutRequestID": "ws_2", "ResultCode": 0, "CallbackMetadata": "x"}
    assert http.post(HOOK, json={"Body": {"stkCallback": odd}}).json()["details"]["field"] == "CallbackMetadata"
    assert http.post(HOOK, content=b"[1, 2]").json()["details"]["field"] == "body"


def _daraja() -> VendorServer:
    def oauth(req):
        if req.headers.get("authorization", "").startswith("Basic ") and req.query.get("grant_type"):
            return 200, {"access_token": "tok-123", "expires_in": "3599"}
        return 400, {"errorMessage": "Invalid grant type"}

    def stk(req):
        if req.headers.get("authorization") != "Bearer tok-123":
            return 401, {"errorCode": "404.001.03", "errorMessage": "Invalid Access Token"}
        return 200, {
            "MerchantRequestID": "29115-34620561-1",
            "CheckoutRequestID": "ws_CO_191220191020363925",
            "ResponseCode": "0",
            "ResponseDescription": "Success. Request accepted for processing",
            "CustomerMessage": "Success. Request accepted for processing",
        }

    return VendorServer({("GET", "/oauth/v1/generate"): oauth, ("POST", "/mpesa/stkpush/v1/processrequest"): stk})


def _stk_callback(checkout: str, code: int = 0, amount: float = 7000) -> dict:
    callback = {
        "MerchantRequestID": "29115-34620561-1",
        "CheckoutRequestID": checkout,
        "ResultCode": code,
        "ResultDesc": "The service request is processed successfully." if code == 0 else "Request cancelled by user",
    }
    if code == 0:
        callback["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": amount},
                {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
                {"Name": "TransactionDate", "Value": 20261202102115},
                {"Name": "PhoneNumber", "Value": 254712345678},
            ]
        }
    return {"Body": {"stkCallback": callback}}


def test_stk_push_is_a_review_item_with_the_balance_from_the_record_and_its_callback_pays(settings, http, worker):
    _settings(settings)
    manager = _h(token(settings, "manager"))
    invoice_id = _kes_invoice(settings)
    with session_scope(settings) as session:
        ledger.record_payment(
            session,
            external_id="mpesa:EARLIER",
            amount=Decimal("5000"),
            received_on=DUE,
            currency="KES",
            reference="INV-2026-00042",
        )
    with _daraja() as daraja:
        settings.mpesa_base_url, settings.mpesa_consumer_key, settings.mpesa_consumer_secret = daraja.url, "ck", "cs"
        settings.mpesa_passkey, settings.mpesa_callback_url = "pk", "https://revloop.example/v1/webhooks/mpesa?token=x"
        r = http.post(f"/v1/invoices/{invoice_id}/mpesa-request", headers=manager)
        assert r.status_code == 201, r.text
        assert (r.json()["amount"], r.json()["to"]) == ("7000", "254712345678")
        assert http.post(f"/v1/invoices/{invoice_id}/mpesa-request", headers=manager).status_code == 409
        worker.run_until_idle()
        assert daraja.requests == []  # nothing leaves before a person approves
        [item] = _items(settings)
        assert (item.kind, item.source, item.status) == ("payment_request", "payment_request", "pending")
        assert http.post(f"/v1/review-items/{item.id}/approve", headers=manager).status_code == 200
        worker.run_until_idle()
        [push] = daraja.calls("POST", "/mpesa/stkpush/v1/processrequest")
        assert push.fields["Amount"] == 7000 and push.fields["PhoneNumber"] == "254712345678"
        assert push.fields["AccountReference"] == "INV-2026-000" and push.fields["BusinessShortCode"] == "600984"
        assert len(daraja.calls("GET", "/oauth/v1/generate")) == 1
        [item] = _items(settings)
        assert item.status == "done" and item.result["checkout_request_id"] == "ws_CO_191220191020363925"
    cancelled = http.post(HOOK, json=_stk_callback("ws_CO_other", code=1032)).json()
    assert cancelled["status"] == "failed" and "cancelled" in cancelled["reason"]
    paid = http.post(HOOK, json=_stk_callback("ws_CO_191220191020363925")).json()
    assert (paid["status"], paid["invoice_number"], paid["balance"]) == ("applied", "INV-2026-00042", "0.00")
    assert _balance(settings, invoice_id) == ("paid", Decimal("0.00"))
    # Safaricom may also confirm the same transaction through C2B: the receipt is counted once.
    dup = http.post(HOOK, json=_c2b("NLJ7RT61SV", "7000", "INV-2026-00042")).json()
    assert dup["already_recorded"] is True and dup["unallocated"] == "0.00"
    with session_scope(settings) as session:
        assert session.scalar(select(func.count(Payment.id))) == 2


def test_the_cash_page_shows_a_held_payment_and_a_manager_assigns_it(settings, live_server, http):
    from tests.review.test_app import _open, _signed_in

    _settings(settings)
    invoice_id = _kes_invoice(settings)
    assert http.post(HOOK, json=_c2b("SLKHELD0001", "2500.00", "my shop")).json()["status"] == "held"
    with session_scope(settings) as session:  # and an invoice the tax authority refused
        refused = Invoice(
            number="INV-2026-00043",
            account_id=session.get(Invoice, invoice_id).account_id,
            amount=Decimal("800.00"),
            currency="KES",
            issued_on=DUE,
            due_on=DUE,
            fiscal_status="rejected",
            fiscal_error="resultCd 910: Request parameter error: custTin",
        )
        session.add(refused)
    at = _signed_in(live_server, settings, "manager")
    _open(at, "cash")
    assert any(s.value == "Held payments" for s in at.subheader)
    [table] = [df.value for df in at.dataframe if "why held" in df.value.columns]
    assert table.iloc[0]["transaction"] == "SLKHELD0001" and table.iloc[0]["reference given"] == "my shop"
    at.text_input(key="held_invoice_number").input("INV-2026-00042")
    next(b for b in at.button if b.label == "Assign to the invoice").click()
    at.run()
    assert not at.exception, at.exception
    assert _balance(settings, invoice_id) == ("issued", Decimal("9500.00"))
    assert any("No payment is waiting" in c.value for c in at.caption)
    [fiscal] = [df.value for df in at.dataframe if "fiscal" in df.value.columns]
    assert list(fiscal["number"]) == ["INV-2026-00043"] and "custTin" in fiscal.iloc[0]["why"]
    assert any(b.label == "Resubmit INV-2026-00043 (after fixing it)" for b in at.button)


def test_a_refused_stk_push_fails_the_item_once_instead_of_retrying(settings, http, worker):
    _settings(settings)
    manager = _h(token(settings, "manager"))
    invoice_id = _kes_invoice(settings)
    refused = (
        400,
        {"requestId": "1-2", "errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid PhoneNumber"},
    )
    daraja = VendorServer(
        {
            ("GET", "/oauth/v1/generate"): lambda req: (200, {"access_token": "tok-123", "expires_in": "3599"}),
            ("POST", "/mpesa/stkpush/v1/processrequest"): lambda req: refused,
        }
    )
    with daraja:
        settings.mpesa_base_url, settings.mpesa_consumer_key, settings.mpesa_consumer_secret = daraja.url, "ck", "cs"
        settings.mpesa_passkey, settings.mpesa_callback_url = "pk", "https://revloop.example/v1/webhooks/mpesa?token=x"
        assert http.post(f"/v1/invoices/{invoice_id}/mpesa-request", headers=manager).status_code == 201
        [item] = _items(settings)
        assert http.post(f"/v1/review-items/{item.id}/approve", headers=manager).status_code == 200
        worker.run_until_idle()
        worker.run_until_idle()
        assert len(daraja.calls("POST", "/mpesa/stkpush/v1/processrequest")) == 1  # not retried blindly
    [item] = _items(settings)
    assert item.status == "failed" and "Invalid PhoneNumber" in item.result["reason"]
    # Once the record is fixed a new request can be drafted (the failed one does not block it).
    assert http.post(f"/v1/invoices/{invoice_id}/mpesa-request", headers=manager).status_code == 201
