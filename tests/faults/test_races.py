"""Duplicate storms over a real socket, on SQLite and PostgreSQL: many clients send the same thing at the same
moment (a payment provider re-delivering, a form double-submitting, colleagues at one new company signing up).
Every answer is the one a replay gets (never a 5xx), and the rows exist once."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import func, select

from core.db import session_scope
from core.models import Account, Contact, Decision, Job, Lead, LeadEvent, Payment, ReviewItem
from core.webhooks import signed_headers
from tests.conftest import LiveServer
from tests.factories import account, auth, captured_lead, lead_payload, queued_item

CLIENTS = 20
PAYMENTS_SECRET = "race-payments-secret"


@pytest.fixture
def server(settings) -> Iterator[LiveServer]:
    settings.webhook_secret_payments = PAYMENTS_SECRET
    with LiveServer(settings) as live:
        yield live


def storm(
    url: str, send: Callable[[httpx.Client, int], httpx.Response], clients: int = CLIENTS
) -> list[httpx.Response]:
    """`clients` threads, each with its own connection, send at the same moment; their answers in order."""
    ready = threading.Barrier(clients)

    def one(i: int) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=60) as client:
            client.get("/healthz")  # connected before the barrier, so the requests really overlap
            ready.wait()
            return send(client, i)

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(clients)))


def statuses(answers: list[httpx.Response]) -> list[int]:
    return sorted(a.status_code for a in answers)


def count(settings, statement) -> int:
    with session_scope(settings) as session:
        return session.scalar(statement)


def rows(settings, model, *where) -> int:
    return count(settings, select(func.count()).select_from(model).where(*where))


def signed(body: dict, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, {**signed_headers(PAYMENTS_SECRET, raw, timestamp), "Content-Type": "application/json"}


def test_a_payment_delivered_many_times_at_once_is_recorded_once(settings, server):
    customer = account(settings)
    notice = {"payment_id": "pay_race_1", "amount": "120.00", "received_on": "2026-01-15", "account_id": customer}

    def deliver(client: httpx.Client, i: int) -> httpx.Response:
        # Each re-delivery is its own signed request (the provider's delivery id differs; the payment is the same).
        raw, headers = signed({**notice, "delivery": f"evt_{i}"})
        return client.post("/v1/webhooks/payments", content=raw, headers=headers)

    answers = storm(server.url, deliver)
    assert statuses(answers) == [200] * CLIENTS, [a.text for a in answers if a.status_code != 200][:3]
    bodies = [a.json() for a in answers]
    assert sorted(b["duplicate"] for b in bodies) == [False] + [True] * (CLIENTS - 1)
    assert {b["unallocated"] for b in bodies} == {"120.00"}  # the replays answer with the recorded payment
    assert rows(settings, Payment, Payment.external_id == "pay_race_1") == 1
    with session_scope(settings) as session:
        assert session.scalar(select(Payment.amount).where(Payment.external_id == "pay_race_1")) == Decimal("120.00")


def test_the_same_signed_delivery_at_once_is_accepted_once_and_refused_as_a_replay(settings, server):
    customer = account(settings)
    raw, headers = signed(
        {"payment_id": "pay_race_2", "amount": "10.00", "received_on": "2026-01-15", "account_id": customer}
    )
    answers = storm(server.url, lambda client, i: client.post("/v1/webhooks/payments", content=raw, headers=headers))
    assert statuses(answers) == [200] + [409] * (CLIENTS - 1), [a.text for a in answers if a.status_code >= 500][:3]
    assert all(a.json()["error"] == "conflict" for a in answers if a.status_code == 409)
    assert rows(settings, Payment, Payment.external_id == "pay_race_2") == 1


def test_a_lead_event_delivered_many_times_at_once_counts_once(settings, server):
    lead_id = captured_lead(settings)
    headers = auth(settings, "integration")
    event = {"type": "reply", "note": "Yes, let's talk on Tuesday.", "event_id": "evt-race-1"}
    answers = storm(
        server.url, lambda client, i: client.post(f"/v1/leads/{lead_id}/events", json=event, headers=headers)
    )
    assert statuses(answers) == [200] * CLIENTS, [a.text for a in answers if a.status_code != 200][:3]
    bodies = [a.json() for a in answers]
    assert sorted(b["duplicate"] for b in bodies) == [False] + [True] * (CLIENTS - 1)
    handoffs = {b["handoff_item"] for b in bodies if not b["duplicate"]}
    assert rows(settings, LeadEvent, LeadEvent.external_id == "evt-race-1") == 1
    assert rows(settings, LeadEvent, LeadEvent.lead_id == lead_id) == 1
    # One hand-off for the one reply (it was drafted once).
    assert handoffs != {None}
    assert rows(settings, ReviewItem, ReviewItem.id.in_(handoffs)) == 1


def test_an_empty_event_id_is_refused_naming_the_field(settings, server):
    lead_id = captured_lead(settings)
    headers = auth(settings, "integration")
    with httpx.Client(base_url=server.url) as client:
        for _ in range(2):  # twice: the second used to collide with the first on the unique external_id
            answer = client.post(f"/v1/leads/{lead_id}/events", json={"type": "reply", "event_id": ""}, headers=headers)
            assert answer.status_code == 422, answer.text
            assert "event_id" in answer.json()["fields"]
    assert rows(settings, LeadEvent) == 0


def test_a_form_submitted_many_times_with_one_idempotency_key_is_one_lead(settings, server):
    headers = {**auth(settings, "integration"), "Idempotency-Key": "form-race-1"}
    payload = lead_payload(
        email="sam.race@racers-inc.example", company="Racers Inc", website="https://racers-inc.example"
    )
    answers = storm(server.url, lambda client, i: client.post("/v1/leads", json=payload, headers=headers))
    assert statuses(answers) == [202] * CLIENTS, [a.text for a in answers if a.status_code != 202][:3]
    bodies = [a.json() for a in answers]
    assert len({b["id"] for b in bodies}) == 1
    assert sorted(b["duplicate"] for b in bodies) == [False] + [True] * (CLIENTS - 1)
    assert rows(settings, Lead) == 1
    assert rows(settings, Contact) == 1
    assert rows(settings, Account) == 1
    assert rows(settings, Job) == 1  # one graph run for the one lead
    assert count(settings, select(Lead.duplicate_count)) == CLIENTS - 1


def test_one_person_submitting_many_times_without_a_key_is_one_lead(settings, server):
    headers = auth(settings, "integration")
    payload = lead_payload(
        email="ana.race@samepeople.example", company="Same People", website="https://samepeople.example"
    )
    answers = storm(server.url, lambda client, i: client.post("/v1/leads", json=payload, headers=headers))
    assert statuses(answers) == [202] * CLIENTS, [a.text for a in answers if a.status_code != 202][:3]
    assert len({a.json()["id"] for a in answers}) == 1
    assert rows(settings, Lead) == 1
    assert rows(settings, Contact) == 1


def test_colleagues_from_one_new_company_at_once_share_one_account(settings, server):
    headers = auth(settings, "integration")

    def sign_up(client: httpx.Client, i: int) -> httpx.Response:
        payload = lead_payload(
            email=f"person{i}@brand-new-co.example", company="Brand New Co", website="https://brand-new-co.example"
        )
        return client.post("/v1/leads", json=payload, headers=headers)

    answers = storm(server.url, sign_up)
    assert statuses(answers) == [202] * CLIENTS, [a.text for a in answers if a.status_code != 202][:3]
    assert not any(a.json()["duplicate"] for a in answers)
    assert rows(settings, Lead) == CLIENTS
    assert rows(settings, Account, Account.domain == "brand-new-co.example") == 1
    with session_scope(settings) as session:
        account_id = session.scalar(select(Account.id).where(Account.domain == "brand-new-co.example"))
        assert set(session.scalars(select(Lead.account_id))) == {account_id}
        assert set(session.scalars(select(Contact.account_id))) == {account_id}


def test_many_approvals_of_one_item_at_once_record_one_decision(settings, server):
    item_id = queued_item(settings)
    headers = auth(settings, "closer")
    answers = storm(server.url, lambda client, i: client.post(f"/v1/review-items/{item_id}/approve", headers=headers))
    assert statuses(answers) == [200] + [409] * (CLIENTS - 1), [a.text for a in answers if a.status_code >= 500][:3]
    assert rows(settings, Decision, Decision.review_item_id == item_id) == 1
