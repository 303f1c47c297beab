"""The whole loop over HTTP with no database edits: capture -> brief -> first touch approved and sent -> reply
asking for a quote -> conversion confirmed -> proposal approved and sent with its PDF -> e-sign -> onboarding ->
milestone -> invoice approved, issued and sent -> reminders in ladder order -> payment -> paid, ladder stopped ->
the deal is a training row. (Retraining on such rows, with enough of them: tests/deals/test_pipeline.py.)"""

from __future__ import annotations

import datetime as dt
import email
import json
import subprocess
import sys
import time
from decimal import Decimal
from email import policy

from sqlalchemy import select

from core import webhooks
from core.db import session_scope
from core.models import Invoice, Product, ReviewItem
from review.outbox import outbox_files
from scoring.registry import closed_training_rows, training_rows_by_origin
from tests.factories import auth, lead_payload, session_token

SECRET = "whsec-loop"


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _signed(http, path: str, body: dict) -> dict:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **webhooks.signed_headers(SECRET, raw, int(time.time()))}
    r = http.post(path, content=raw, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def _pending(http, closer, **filters) -> list[dict]:
    page = http.get("/v1/review-items", params={"status": "pending", "limit": 200}, headers=closer).json()
    return [i for i in page["items"] if all(i.get(k) == v for k, v in filters.items())]


def _approve(http, closer, worker, item: dict) -> dict:
    r = http.post(f"/v1/review-items/{item['id']}/approve", json={}, headers=closer)
    assert r.status_code == 200, r.text
    worker.run_until_idle()
    return http.get(f"/v1/review-items/{item['id']}", headers=closer).json()


def _scan(subprocess_env, day: dt.date) -> str:
    run = [sys.executable, "-m", "api.cli", "collections", "scan", "--today", day.isoformat()]
    done = subprocess.run(run, env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _sent_mail(settings, item_id: int) -> email.message.EmailMessage:
    [path] = [p for p in outbox_files(settings) if p.name == f"review-item-{item_id}.eml"]
    return email.message_from_bytes(path.read_bytes(), policy=policy.default)


def test_a_lead_runs_the_whole_loop_to_cash_and_back_into_training(settings, http, worker, subprocess_env):
    settings.webhook_secret_esign = settings.webhook_secret_payments = SECRET
    with session_scope(settings) as session:  # the price book (set up by the business once)
        session.add(Product(name="GTX Pro", price=Decimal("4821.00")))
    closer = _h(session_token(settings, "closer", name="Robin"))

    # Capture -> brief -> first touch, approved and sent.
    lead_id = http.post("/v1/leads", json=lead_payload(), headers=auth(settings, "integration")).json()["id"]
    worker.run_until_idle()
    [first_touch] = _pending(http, closer, lead_id=lead_id)
    assert first_touch["brief"]["grade"] and first_touch["draft"]["subject"]
    assert _approve(http, closer, worker, first_touch)["status"] == "sent"

    # The lead replies asking for a quote: the closer gets the hand-off and an agent proposes a deal.
    event = http.post(
        f"/v1/leads/{lead_id}/events",
        json={"type": "reply", "note": "Thanks - could you send us a quote for the Pro plan?"},
        headers=closer,
    ).json()
    assert event["handoff_item"] and event["conversion_item"]
    [conversion] = _pending(http, closer, id=event["conversion_item"])
    assert conversion["kind"] == "convert"
    assert _approve(http, closer, worker, conversion)["status"] == "done"
    [deal] = http.get("/v1/deals", params={"lead_id": lead_id}, headers=closer).json()["items"]
    assert deal["stage"] == "engaging" and deal["outcome"] is None  # no product or value yet: not qualified

    # Proposal: the closer sets the product and moves the deal; the graph drafts; approved; sent with its PDF.
    assert http.patch(f"/v1/deals/{deal['id']}", json={"product": "GTX Pro"}, headers=closer).status_code == 200
    assert http.post(f"/v1/deals/{deal['id']}/stage", json={"stage": "proposal"}, headers=closer).status_code == 200
    worker.run_until_idle()
    [cover] = _pending(http, closer, lead_id=lead_id, kind="email")
    assert _approve(http, closer, worker, cover)["status"] == "sent"
    mail = _sent_mail(settings, cover["id"])
    [pdf] = [p for p in mail.iter_attachments() if p.get_content_type() == "application/pdf"]
    assert pdf.get_content().startswith(b"%PDF")

    # E-sign -> won -> onboarding welcome approved and sent.
    signed = _signed(
        http,
        "/v1/webhooks/esign",
        {"envelope_id": "env-9", "deal_id": deal["id"], "status": "completed", "signed_at": "2026-11-20T10:00:00Z"},
    )
    assert signed["duplicate"] is False
    [welcome] = [i for i in _pending(http, closer, lead_id=lead_id) if i["template"] == "onboarding_welcome"]
    assert _approve(http, closer, worker, welcome)["status"] == "sent"
    won = http.get(f"/v1/deals/{deal['id']}", headers=closer).json()
    assert won["outcome"] == "won" and won["milestones"]

    # Milestone 1 -> invoice approved (issued) -> its email to the client approved and sent with the PDF.
    assert http.post(f"/v1/deals/{deal['id']}/milestones/1/complete", headers=closer).status_code == 200
    [invoice_item] = _pending(http, closer, kind="invoice")
    assert _approve(http, closer, worker, invoice_item)["status"] == "done"
    with session_scope(settings) as session:
        invoice = session.scalars(select(Invoice).where(Invoice.deal_id == deal["id"])).one()
        number, amount, due = invoice.number, invoice.amount, invoice.due_on
    [invoice_mail] = [i for i in _pending(http, closer) if i["template"] == "invoice_email"]
    assert _approve(http, closer, worker, invoice_mail)["status"] == "sent"
    attachments = list(_sent_mail(settings, invoice_mail["id"]).iter_attachments())
    assert [a.get_filename() for a in attachments] == [f"{number}.pdf"]

    # Reminders in ladder order: -3 sent; +1 drafted; +7 supersedes the still-pending +1.
    _scan(subprocess_env, due - dt.timedelta(days=3))
    [coming_up] = _pending(http, closer, template="dunning_friendly")
    assert _approve(http, closer, worker, coming_up)["status"] == "sent"
    _scan(subprocess_env, due + dt.timedelta(days=1))
    [plus_one] = [i for i in _pending(http, closer) if i["template"] and i["template"].startswith("dunning_")]
    _scan(subprocess_env, due + dt.timedelta(days=8))
    reminders = [i for i in _pending(http, closer) if i["template"] and i["template"].startswith("dunning_")]
    assert len(reminders) == 1 and reminders[0]["id"] != plus_one["id"]
    superseded = http.get(f"/v1/review-items/{plus_one['id']}", headers=closer).json()
    assert superseded["status"] == "cancelled" and "superseded" in superseded["result"]["reason"]
    _scan(subprocess_env, due + dt.timedelta(days=9))  # the same step is never drafted twice, nor an earlier one
    assert [i["id"] for i in _pending(http, closer) if (i["template"] or "").startswith("dunning_")] == [
        reminders[0]["id"]
    ]

    # Payment -> paid -> the pending reminder is cancelled and the ladder stops.
    paid = _signed(
        http,
        "/v1/webhooks/payments",
        {"payment_id": "pay-9", "amount": str(amount), "received_on": str(due), "invoice_number": number},
    )
    assert paid["duplicate"] is False
    with session_scope(settings) as session:
        assert session.scalars(select(Invoice).where(Invoice.number == number)).one().status == "paid"
        assert session.get(ReviewItem, reminders[0]["id"]).status == "cancelled"
    _scan(subprocess_env, due + dt.timedelta(days=15))
    assert not [i for i in _pending(http, closer) if (i["template"] or "").startswith("dunning_")]

    # The lead stays converted: drafts and sends about its deal do not make it a lead in review again.
    assert http.get(f"/v1/leads/{lead_id}", headers=closer).json()["status"] == "converted"

    # The won deal is a training row, with the features the lead had at capture.
    with session_scope(settings) as session:
        snapshots, _, labels = closed_training_rows(session)
        assert training_rows_by_origin(session) == {"revloop": 1, "imported": 0}
    assert len(snapshots) == 1 and labels.tolist() == [1] and snapshots[0]["source"] == "web_form"
