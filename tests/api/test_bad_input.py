"""Bad input gets a 4xx naming the field, on SQLite and PostgreSQL, never a 500: ids and offsets out of range,
oversized pages, NUL characters (PostgreSQL refuses them), CR/LF in a subject (refused when the closer decides,
not five times at send), non-ASCII digits in a webhook timestamp, a payment for a customer not on record."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from core.db import session_scope
from core.enums import ItemStatus
from core.models import Decision, Lead, Payment, ReviewItem
from core.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, signed_headers
from tests.factories import auth, lead_payload, queued_item

PAYMENTS_SECRET = "bad-input-payments-secret"


def refused(answer, field: str, status: int = 422) -> dict:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] == "validation_error"
    assert field in body["fields"], body
    assert field in body["message"]
    return body


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/review-items/9223372036854775808", "item_id"),
        ("/v1/review-items/2147483648", "item_id"),  # past PostgreSQL's INTEGER ids
        ("/v1/review-items/0", "item_id"),
        ("/v1/leads/9223372036854775808", "lead_id"),
        ("/v1/deals/99999999999", "deal_id"),
        ("/v1/leads?offset=9223372036854775808", "offset"),
        ("/v1/leads?offset=-1", "offset"),
        ("/v1/leads?limit=100000", "limit"),  # an oversized page
        ("/v1/review-items?offset=1000000000", "offset"),
        ("/v1/deals?lead_id=9223372036854775808", "lead_id"),
        ("/v1/reviews/weekly?as_of=9999-12-31", "as_of"),
    ],
)
def test_out_of_range_numbers_are_refused_naming_the_parameter(settings, http, path, field):
    refused(http.get(path, headers=auth(settings, "manager")), field)


def test_nul_characters_are_refused_naming_the_field(settings, http):
    headers = auth(settings, "integration")
    refused(http.post("/v1/leads", json=lead_payload(company="Acme\x00Corp"), headers=headers), "company")
    refused(http.post("/v1/leads", json=lead_payload(custom={"plan": "pro\x00"}), headers=headers), "custom")
    admin = auth(settings, "admin")
    refused(http.get("/v1/audit-events", params={"actor": "closer:\x00"}, headers=admin), "actor")
    refused(http.get("/v1/evals/runs/run%00id", headers=admin), "run_id")
    with session_scope(settings) as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 0


def test_a_subject_with_a_line_break_is_refused_when_the_closer_decides(settings, http):
    item_id = queued_item(settings)
    closer = auth(settings, "closer")
    answer = http.post(
        f"/v1/review-items/{item_id}/approve", json={"subject": "Hi\r\nBcc: x@evil.example"}, headers=closer
    )
    body = refused(answer, "subject")
    assert "CR" in body["fields"]["subject"]
    # A draft whose own subject carries a line break (text from elsewhere) is refused too, naming the subject.
    broken = queued_item(settings, draft={"subject": "Hello\nBcc: x@evil.example", "body": "Hi", "to": "x@example.com"})
    answer = http.post(f"/v1/review-items/{broken}/approve", headers=closer)
    assert answer.status_code == 422, answer.text
    assert answer.json()["details"] == {"field": "subject"}
    with session_scope(settings) as session:
        assert {session.get(ReviewItem, i).status for i in (item_id, broken)} == {ItemStatus.PENDING}
        assert session.scalar(select(func.count()).select_from(Decision)) == 0


def test_line_breaks_in_header_like_lead_fields_are_refused(settings, http):
    headers = auth(settings, "integration")
    for field in ("first_name", "company", "title"):
        refused(
            http.post("/v1/leads", json=lead_payload(**{field: "Ann\r\nBcc: x@evil.example"}), headers=headers), field
        )
    # A message is free text: line breaks are fine there.
    assert (
        http.post("/v1/leads", json=lead_payload(message="Hello,\nwe need a demo."), headers=headers).status_code == 202
    )


@pytest.mark.parametrize("timestamp", ["\u00b2\u00b3", "9" * 5000, "-1", "1e9", ""])
def test_a_webhook_timestamp_that_is_not_ascii_unix_seconds_is_refused(settings, http, timestamp):
    settings.webhook_secret_payments = PAYMENTS_SECRET
    raw = json.dumps({"payment_id": "p1", "amount": "1.00", "received_on": "2026-01-15"}).encode()
    headers = {
        TIMESTAMP_HEADER: timestamp.encode("latin-1"),
        SIGNATURE_HEADER: "sha256=" + "0" * 64,
        "Content-Type": "application/json",
    }
    answer = http.post("/v1/webhooks/payments", content=raw, headers=headers)
    assert answer.status_code == 401, answer.text
    assert TIMESTAMP_HEADER in answer.json()["message"]


def test_a_webhook_signature_with_non_ascii_characters_is_refused(settings, http):
    settings.webhook_secret_payments = PAYMENTS_SECRET
    raw = json.dumps({"payment_id": "p1", "amount": "1.00", "received_on": "2026-01-15"}).encode()
    headers = {**signed_headers(PAYMENTS_SECRET, raw), "Content-Type": "application/json"}
    headers[SIGNATURE_HEADER] = ("sha256=\u00e9" + "0" * 63).encode("latin-1")
    answer = http.post("/v1/webhooks/payments", content=raw, headers=headers)
    assert answer.status_code == 401, answer.text


def test_a_payment_for_a_customer_not_on_record_is_refused_naming_the_field(settings, http):
    settings.webhook_secret_payments = PAYMENTS_SECRET
    for account_id, status in ((424242, 422), (2**31, 422)):
        raw = json.dumps(
            {"payment_id": f"p-{account_id}", "amount": "5.00", "received_on": "2026-01-15", "account_id": account_id}
        ).encode()
        headers = {**signed_headers(PAYMENTS_SECRET, raw), "Content-Type": "application/json"}
        answer = http.post("/v1/webhooks/payments", content=raw, headers=headers)
        assert answer.status_code == status, answer.text
        body = answer.json()
        assert "account_id" in (body.get("fields") or {}) or body["details"] == {"field": "account_id"}, body
    with session_scope(settings) as session:
        assert session.scalar(select(func.count()).select_from(Payment)) == 0
