"""Proposal (HTML + PDF from the price book) -> signature webhook -> won, hand-off, milestones,
onboarding -> milestone completed -> invoice approved and issued -> invoice emailed with its PDF -> reminders;
all through review."""

from __future__ import annotations

import datetime as dt
import email
import json
import re
import time
import zlib
from decimal import Decimal

from sqlalchemy import select

from billing import ledger
from core import webhooks
from core.db import session_scope
from core.models import Account, Contact, Deal, Invoice, OutboxMessage, Product, ReviewItem
from review.outbox import outbox_files
from tests.factories import session_token

SECRET = "whsec-esign"


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _deal(settings) -> int:
    with session_scope(settings) as session:
        account = Account(name="Initech", domain="initech.example")
        session.add(account)
        session.flush()
        contact = Contact(email="bill@initech.example", first_name="Bill", last_name="Lumbergh", account_id=account.id)
        session.add_all(
            [
                contact,
                Product(name="GTX Basic", price=Decimal("550.00")),
                Product(name="GTX Pro", price=Decimal("4821.00")),
            ]
        )
        session.flush()
        deal = Deal(
            name="Initech rollout",
            account_id=account.id,
            contact_id=contact.id,
            stage="qualified",
            product_id=session.scalar(select(Product.id).where(Product.name == "GTX Pro")),
        )
        session.add(deal)
        session.flush()
        return deal.id


def _items(settings, prefix: str) -> list[ReviewItem]:
    with session_scope(settings) as session:
        return list(
            session.scalars(
                select(ReviewItem).where(ReviewItem.thread_id.like(f"{prefix}-%")).order_by(ReviewItem.id)
            ).all()
        )


def _sign(http, deal_id: int, status: str = "completed", seconds_ago: int = 0):
    raw = json.dumps(
        {"envelope_id": "env-1", "deal_id": deal_id, "status": status, "signed_at": "2026-11-20T10:00:00Z"}
    ).encode()
    headers = {
        "Content-Type": "application/json",
        **webhooks.signed_headers(SECRET, raw, int(time.time()) - seconds_ago),
    }
    return http.post("/v1/webhooks/esign", content=raw, headers=headers)


def test_proposal_prices_come_from_the_price_book_and_the_discount_is_capped(settings, http, worker):
    closer = _h(session_token(settings, "closer"))
    deal_id = _deal(settings)
    too_much = http.post(f"/v1/deals/{deal_id}/proposals", json={"discount_pct": "25"}, headers=closer)
    assert too_much.status_code == 422 and too_much.json()["details"] == {"field": "discount_pct"}
    unknown = http.post(f"/v1/deals/{deal_id}/proposals", json={"lines": [{"product": "GTX Ultra"}]}, headers=closer)
    assert unknown.status_code == 422 and "not in the price book" in unknown.json()["message"]
    r = http.post(
        f"/v1/deals/{deal_id}/proposals",
        json={
            "lines": [{"product": "GTX Pro", "quantity": 2}, {"product": "GTX Basic", "quantity": 3}],
            "discount_pct": "10",
        },
        headers=closer,
    )
    assert r.status_code == 202, r.text
    priced = r.json()
    assert priced["subtotal"] == "11292.00" and priced["total"] == "10162.80"  # 2 x 4821 + 3 x 550, less 10%
    assert priced["lines"][0] == {"product": "GTX Pro", "quantity": 2, "unit_price": "4821.00", "amount": "9642.00"}
    worker.run_until_idle()  # the proposal graph renders it and queues it for review
    [p] = http.get(f"/v1/deals/{deal_id}", headers=closer).json()["proposals"]
    assert p["total"] == "10162.80" and p["number"] == f"P-{deal_id}-1" and p["review_item_id"] is not None
    pdf = http.get(f"/v1/deals/{deal_id}/proposals/{p['number']}/pdf", headers=closer)
    assert (
        pdf.status_code == 200 and pdf.content.startswith(b"%PDF") and pdf.headers["content-type"] == "application/pdf"
    )
    html = http.get(f"/v1/deals/{deal_id}/proposals/{p['number']}/html", headers=closer).text
    assert "GTX Pro" in html and "10162.80" in html


def test_entering_the_proposal_stage_drafts_a_proposal_sent_with_its_pdf_after_approval(settings, http, worker):
    manager = _h(session_token(settings, "manager"))
    deal_id = _deal(settings)
    r = http.post(f"/v1/deals/{deal_id}/stage", json={"stage": "proposal"}, headers=manager)
    assert r.status_code == 200 and r.json()["proposal"].startswith(f"proposal-{deal_id}-")
    assert _items(settings, "proposal") == []  # drafted by the proposal graph in the worker
    worker.run_until_idle()
    [item] = _items(settings, "proposal")
    assert item.thread_id == r.json()["proposal"]
    assert item.status == "pending" and item.draft["to"] == "bill@initech.example"
    assert "USD 4,821.00" in item.draft["body"] and item.draft["attachments"][0]["filename"] == f"P-{deal_id}-1.pdf"
    assert outbox_files(settings) == []  # not before approval
    assert http.post(f"/v1/review-items/{item.id}/approve", headers=manager).status_code == 200
    worker.run_until_idle()
    [eml] = outbox_files(settings)
    message = email.message_from_bytes(eml.read_bytes())
    [attachment] = [part for part in message.walk() if part.get_filename()]
    assert attachment.get_filename() == f"P-{deal_id}-1.pdf" and attachment.get_payload(decode=True).startswith(b"%PDF")
    kpis = http.get("/v1/kpis", headers=manager).json()
    assert kpis["proposals_sent"] == 1 and kpis["median_proposal_turnaround_hours"] >= 0


def test_signature_wins_the_deal_creates_hand_off_milestones_and_onboarding_once(settings, http, worker):
    settings.webhook_secret_esign = SECRET
    manager = _h(session_token(settings, "manager"))
    deal_id = _deal(settings)
    http.post(
        f"/v1/deals/{deal_id}/proposals", json={"lines": [{"product": "GTX Pro", "quantity": 2}]}, headers=manager
    )
    worker.run_until_idle()  # the proposal graph renders the proposal
    declined = _sign(http, deal_id, status="declined", seconds_ago=30)
    assert declined.status_code == 200 and declined.json()["acted"] is False
    r = _sign(http, deal_id)
    assert r.status_code == 200, r.text
    assert r.json()["acted"] is True and r.json()["milestones"] == 3 and r.json()["kickoff_on"] == "2026-11-27"
    assert _sign(http, deal_id, seconds_ago=10).json()["duplicate"] is True  # the provider retried
    deal = http.get(f"/v1/deals/{deal_id}", headers=manager).json()
    assert deal["outcome"] == "won" and deal["amount"] == "9642.00"
    assert [(m["name"], m["amount"]) for m in deal["milestones"]] == [
        ("Kickoff", "2892.60"),
        ("Delivery", "3856.80"),
        ("Acceptance", "2892.60"),
    ]
    assert deal["project"]["brief"]["contacts"][0]["email"] == "bill@initech.example"
    assert deal["project"]["tasks"][0]["task"] == "Schedule the kickoff call"
    [welcome] = _items(settings, "onboarding")
    assert "27 Nov 2026" in welcome.draft["body"] and welcome.status == "pending"
    from deals import daily

    daily.run(settings, {"day": "2026-11-26"})  # the day before the kickoff
    daily.run(settings, {"day": "2026-11-26"})  # a second run drafts nothing twice
    kickoff = [i for i in _items(settings, "onboarding") if i.template == "onboarding_kickoff"]
    assert len(kickoff) == 1 and "27 Nov 2026" in kickoff[0].draft["body"]


def test_a_completed_milestone_drafts_an_invoice_that_approval_issues_and_collections_then_chase(
    settings, http, worker
):
    settings.webhook_secret_esign = SECRET
    manager = _h(session_token(settings, "manager"))
    deal_id = _deal(settings)
    http.post(
        f"/v1/deals/{deal_id}/proposals", json={"lines": [{"product": "GTX Pro", "quantity": 2}]}, headers=manager
    )
    worker.run_until_idle()  # the proposal graph renders the proposal
    _sign(http, deal_id)
    r = http.post(f"/v1/deals/{deal_id}/milestones/1/complete", headers=manager)
    assert r.status_code == 200, r.text
    again = http.post(f"/v1/deals/{deal_id}/milestones/1/complete", headers=manager)
    assert again.status_code == 409
    [invoice_item] = _items(settings, "invoice")
    [update] = _items(settings, "update")
    assert invoice_item.kind == "invoice" and "2892.60" in invoice_item.draft["body"]
    assert "Kickoff is complete" in update.draft["subject"] and "Next: Delivery" in update.draft["body"]
    with session_scope(settings) as session:
        assert session.scalars(select(Invoice)).all() == []  # nothing issued before approval
    assert http.post(f"/v1/review-items/{invoice_item.id}/approve", headers=manager).status_code == 200
    worker.run_until_idle()
    worker.run_until_idle()  # a second run issues nothing more
    with session_scope(settings) as session:
        [invoice] = session.scalars(select(Invoice)).all()
        assert invoice.amount == Decimal("2892.60") and invoice.deal_id == deal_id
        assert invoice.number.startswith(f"INV-{dt.date.today():%Y}-") and invoice.payment_link.endswith(invoice.number)
        assert invoice.due_on == invoice.issued_on + dt.timedelta(days=30)
        due = invoice.due_on
    done = [i for i in _items(settings, "invoice")][0]
    assert done.status == "done" and done.result["invoice_number"] == invoice.number
    from billing.reminders import scan

    assert scan(settings, due + dt.timedelta(days=1))["drafted"] == 1  # the issued invoice joins the ladder


def test_a_proposal_thread_run_twice_drafts_one_proposal_and_one_review_item(settings, http):
    from agents.runtime import LeadGraphRunner, open_checkpointer
    from core.models import Job, Proposal

    manager = _h(session_token(settings, "manager"))
    deal_id = _deal(settings)
    http.post(f"/v1/deals/{deal_id}/proposals", json={}, headers=manager)
    with session_scope(settings) as session:
        payload = session.scalars(select(Job).where(Job.kind == "proposal.run")).one().payload
    with open_checkpointer(settings) as checkpointer:
        runner = LeadGraphRunner(settings, checkpointer)
        runner.run_proposal(payload)
        runner.run_proposal(payload)  # a retried job, or a second worker
    with session_scope(settings) as session:
        assert len(session.scalars(select(Proposal)).all()) == 1
    assert len(_items(settings, "proposal")) == 1


def _issued_invoice(settings, http, worker, manager: dict[str, str]) -> tuple[int, int]:
    """A signed deal whose first milestone's invoice was approved and issued: (invoice id, invoice item id)."""
    settings.webhook_secret_esign = SECRET
    deal_id = _deal(settings)
    http.post(
        f"/v1/deals/{deal_id}/proposals", json={"lines": [{"product": "GTX Pro", "quantity": 2}]}, headers=manager
    )
    worker.run_until_idle()
    assert _sign(http, deal_id).status_code == 200
    assert http.post(f"/v1/deals/{deal_id}/milestones/1/complete", headers=manager).status_code == 200
    [invoice_item] = _items(settings, "invoice")
    assert http.post(f"/v1/review-items/{invoice_item.id}/approve", headers=manager).status_code == 200
    worker.run_until_idle()
    with session_scope(settings) as session:
        [invoice] = session.scalars(select(Invoice)).all()
        return invoice.id, invoice_item.id


def _pdf_text(data: bytes) -> str:
    """The text drawing operators of a PDF's (compressed) content streams."""
    streams = re.findall(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S)
    out = []
    for raw in streams:
        try:
            out.append(zlib.decompress(raw).decode("latin-1"))
        except zlib.error:
            out.append(raw.decode("latin-1"))
    return "\n".join(out)


def test_an_issued_invoice_is_emailed_to_the_client_with_its_pdf_then_chased_in_ladder_order(settings, http, worker):
    manager = _h(session_token(settings, "manager"))
    invoice_id, invoice_item_id = _issued_invoice(settings, http, worker, manager)
    with session_scope(settings) as session:
        invoice = session.get(Invoice, invoice_id)
        number, due, link = invoice.number, invoice.due_on, invoice.payment_link
    [issued] = [i for i in _items(settings, "invoice") if i.id == invoice_item_id]
    [email_item] = _items(settings, "invoice-email")
    assert issued.status == "done" and issued.result["invoice_email_item"] == email_item.id
    assert (email_item.source, email_item.kind, email_item.status) == ("invoice_email", "email", "pending")
    assert email_item.draft["to"] == "bill@initech.example" and email_item.template == "invoice_email"
    assert (
        email_item.draft["subject"] == f"Invoice {number} from {settings.company_name}: USD 2,892.60 due {due:%d %b %Y}"
    )
    body = email_item.draft["body"]
    assert f"invoice {number} for the Kickoff milestone: USD 2,892.60, due on {due:%d %b %Y}" in body
    assert f"pay at {link} (reference {number})" in body
    assert email_item.draft["attachments"] == [{"invoice_id": invoice_id, "filename": f"{number}.pdf"}]
    assert outbox_files(settings) == []  # nothing leaves before approval

    assert http.post(f"/v1/review-items/{email_item.id}/approve", headers=manager).status_code == 200
    worker.run_until_idle()
    worker.run_until_idle()  # a second run sends nothing more
    [eml] = outbox_files(settings)
    message = email.message_from_bytes(eml.read_bytes())
    assert message["To"] == "bill@initech.example" and number in message["Subject"]
    [attachment] = [part for part in message.walk() if part.get_filename()]
    pdf = attachment.get_payload(decode=True)
    assert attachment.get_filename() == f"{number}.pdf" and pdf.startswith(b"%PDF")
    text = _pdf_text(pdf)
    assert number in text and "2,892.60" in text and f"{due:%d %b %Y}" in text and "Initech" in text
    with session_scope(settings) as session:
        sent = session.get(ReviewItem, email_item.id)
        assert sent.status == "sent" and sent.result["to"] == "bill@initech.example"
        assert len(session.scalars(select(OutboxMessage).where(OutboxMessage.review_item_id == sent.id)).all()) == 1

    # The issued invoice then runs through the reminder ladder, forwards only.
    from billing.reminders import scan

    assert scan(settings, due - dt.timedelta(days=3))["drafted"] == 1
    assert scan(settings, due + dt.timedelta(days=1))["drafted"] == 1
    assert scan(settings, due + dt.timedelta(days=2))["waiting"] == 1
    heads_up, first = _items(settings, "dunning")
    assert heads_up.draft["invoice_id"] == first.draft["invoice_id"] == invoice_id
    assert first.draft["to"] == "bill@initech.example" and number in first.draft["subject"]
    assert (
        heads_up.status == "cancelled" and heads_up.result["reason"] == f"superseded by the +1 reminder (#{first.id})"
    )
    assert first.status == "pending"


def test_an_invoice_paid_before_its_email_is_approved_is_not_sent(settings, http, worker):
    manager = _h(session_token(settings, "manager"))
    invoice_id, _ = _issued_invoice(settings, http, worker, manager)
    with session_scope(settings) as session:
        invoice = session.get(Invoice, invoice_id)
        ledger.record_payment(
            session,
            external_id="pay-early",
            amount=invoice.amount,
            received_on=invoice.issued_on,
            account_id=invoice.account_id,
        )
        number = invoice.number
    [email_item] = _items(settings, "invoice-email")
    assert http.post(f"/v1/review-items/{email_item.id}/approve", headers=manager).status_code == 200
    worker.run_until_idle()
    assert outbox_files(settings) == []
    [after] = _items(settings, "invoice-email")
    assert after.status == "cancelled" and after.result == {"reason": f"invoice {number} is already paid"}
