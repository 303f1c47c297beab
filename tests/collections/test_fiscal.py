"""E-invoicing: an issued invoice goes to an eTIMS-style control unit API (a local server with its documented answer
shapes) before it may be sent; the receipt number and QR payload are stored and printed; a timeout is retried; a
rejection blocks the invoice and is shown to the managers, never skipped."""

from __future__ import annotations

import email
import re
import time
from decimal import Decimal

import segno
from sqlalchemy import select

from billing.reminders import scan
from core.db import session_scope
from core.models import Deal, Invoice, Job, Notification
from review import health
from review.outbox import outbox_files
from tests.collections.test_deal_flow import SECRET, _deal, _items, _pdf_text, _sign
from tests.factories import session_token, token
from tests.vendor_server import VendorServer

RECEIPT = {
    "resultCd": "000",
    "resultMsg": "It is succeeded",
    "resultDt": "20261203101010",
    "data": {
        "rcptNo": 38,
        "intrlData": "TE68S62EOGGQUC3BYGTOYEOGGJ",
        "rcptSign": "4FUZUBZHHS2MFNDG",
        "totRcptNo": 81,
        "vsdcRcptPbctDate": "20261203101010",
        "sdcId": "KRACU0100000001",
        "mrcNo": "WIS01002345",
    },
}


def issued_invoice(settings, http, worker, manager: dict[str, str]) -> tuple[int, int]:
    """A signed deal (worth 9,642.00, no proposal) whose first milestone's invoice was approved and issued:
    (invoice id, invoice item id). The quick way to an issued invoice (no proposal graph run)."""
    settings.webhook_secret_esign = SECRET
    deal_id = _deal(settings)
    with session_scope(settings) as session:
        session.get(Deal, deal_id).amount = Decimal("9642.00")
    assert _sign(http, deal_id).status_code == 200
    assert http.post(f"/v1/deals/{deal_id}/milestones/1/complete", headers=manager).status_code == 200
    [invoice_item] = _items(settings, "invoice")
    assert http.post(f"/v1/review-items/{invoice_item.id}/approve", headers=manager).status_code == 200
    worker.run_until_idle()
    with session_scope(settings) as session:
        [invoice] = session.scalars(select(Invoice)).all()
        return invoice.id, invoice_item.id


def _etims(answers: list[tuple]) -> VendorServer:
    """Answers the sales endpoint with the next scripted answer (the last one repeats)."""

    def sales(req):
        return answers.pop(0) if len(answers) > 1 else answers[0]

    return VendorServer({("POST", "/trnsSales/saveSales"): sales, ("GET", "/"): lambda req: (200, {"status": "up"})})


def _configure(settings, url: str) -> None:
    settings.fiscal_backend, settings.fiscal_base_url = "etims", url
    settings.fiscal_tin, settings.fiscal_device_key = "P051234567X", "cmc-key-1"
    settings.fiscal_timeout_seconds, settings.fiscal_retry_seconds = 0.5, 0.2


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_timeout_is_retried_then_the_receipt_is_stored_printed_and_the_invoice_sent(settings, http, worker):
    manager = _h(token(settings, "manager"))
    with _etims([(200, RECEIPT, 1.5), (200, RECEIPT)]) as etims:
        _configure(settings, etims.url)
        invoice_id, _ = issued_invoice(settings, http, worker, manager)
        with session_scope(settings) as session:
            invoice = session.get(Invoice, invoice_id)
            number = invoice.number
            assert invoice.fiscal_status == "pending" and "did not answer within 0.5s" in invoice.fiscal_error
        assert _items(settings, "invoice-email") == []  # blocked: nothing to send while the submission is unanswered
        assert not health.run_check(settings, "fiscal").healthy
        # The job retries it by itself: a manager's resubmission now could send it twice.
        assert http.post(f"/v1/invoices/{invoice_id}/fiscal-submit", headers=manager).status_code == 409
        time.sleep(0.3)
        worker.run_until_idle()
        first, second = etims.calls("POST", "/trnsSales/saveSales")
        assert first.body == second.body  # the retry is the same submission, every figure from the record
        assert (second.fields["trdInvcNo"], second.fields["totAmt"], second.fields["custNm"]) == (
            number,
            "2892.60",
            "Initech",
        )
        assert (second.headers["tin"], second.headers["bhfid"], second.headers["cmckey"]) == (
            "P051234567X",
            "00",
            "cmc-key-1",
        )
        with session_scope(settings) as session:
            invoice = session.get(Invoice, invoice_id)
            assert (invoice.fiscal_status, invoice.fiscal_receipt_number, invoice.fiscal_attempts) == (
                "accepted",
                "KRACU0100000001/38",
                2,
            )
            assert invoice.fiscal_qr.endswith("P051234567X004FUZUBZHHS2MFNDG")
            qr = invoice.fiscal_qr
        assert health.run_check(settings, "fiscal").healthy
    [email_item] = _items(settings, "invoice-email")
    assert http.post(f"/v1/review-items/{email_item.id}/approve", headers=manager).status_code == 200
    worker.run_until_idle()
    [eml] = outbox_files(settings)
    [attachment] = [p for p in email.message_from_bytes(eml.read_bytes()).walk() if p.get_filename()]
    pdf = attachment.get_payload(decode=True)
    text = _pdf_text(pdf)
    assert "Control unit receipt: KRACU0100000001/38" in text and f"({qr})" in text
    # The QR code is drawn as an image (the payload's text stays under it): its size is the payload's QR symbol.
    size, _ = segno.make_qr(qr, error="m").symbol_size(scale=4, border=4)
    assert b"/Subtype /Image" in pdf and f"/Width {size}\n".encode() in pdf and f"/Height {size}\n".encode() in pdf
    assert re.search(r"/I\d+ Do", text)  # the page draws it


def test_a_rejection_blocks_the_invoice_is_shown_to_managers_and_can_be_resubmitted(settings, http, worker):
    manager = _h(session_token(settings, "manager"))
    rejected = {
        "resultCd": "910",
        "resultMsg": "Request parameter error: custTin",
        "resultDt": "20261203",
        "data": None,
    }
    with _etims([(200, rejected), (200, RECEIPT)]) as etims:
        _configure(settings, etims.url)
        invoice_id, _ = issued_invoice(settings, http, worker, manager)
        worker.run_until_idle()
        assert len(etims.calls("POST", "/trnsSales/saveSales")) == 1  # a rejection is not retried blindly
        with session_scope(settings) as session:
            invoice = session.get(Invoice, invoice_id)
            assert invoice.fiscal_status == "rejected" and "resultCd 910" in invoice.fiscal_error
            [note] = session.scalars(select(Notification).where(Notification.kind == "fiscal_rejected")).all()
            assert "rejected by the tax authority" in note.title and "custTin" in note.body
            assert session.scalar(select(Job.status).where(Job.kind == "fiscal.submit")) == "done"
        assert _items(settings, "invoice-email") == [] and outbox_files(settings) == []  # not sent, not skipped
        [listed] = http.get("/v1/invoices", headers=manager).json()["items"]
        assert listed["fiscal_status"] == "rejected" and "custTin" in listed["fiscal_error"]
        check = health.run_check(settings, "fiscal")
        assert not check.healthy and "rejected: resultCd 910" in check.detail
        assert scan(settings, invoice.due_on)["skipped"] == 1  # never sent, so never chased

        closer = _h(token(settings, "closer"))
        assert http.post(f"/v1/invoices/{invoice_id}/fiscal-submit", headers=closer).status_code == 403
        r = http.post(f"/v1/invoices/{invoice_id}/fiscal-submit", headers=manager)
        assert r.status_code == 200 and r.json()["fiscal_status"] == "pending", r.text
        worker.run_until_idle()
        assert http.post(f"/v1/invoices/{invoice_id}/fiscal-submit", headers=manager).status_code == 409
    with session_scope(settings) as session:
        assert session.get(Invoice, invoice_id).fiscal_status == "accepted"
    [email_item] = _items(settings, "invoice-email")
    assert email_item.status == "pending"
