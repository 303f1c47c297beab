"""Sends that fail are visible and recoverable: send_failed with the reason, a notification to managers,
Retry by the item's closer or a manager, and still at most one delivery."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from core.db import session_scope
from core.models import AuditEvent, OutboxMessage, ReviewItem
from tests.conftest import free_port
from tests.factories import auth, pending_item, session_token, token
from tests.smtp_server import SmtpServer


def _status(settings, item_id: int) -> str:
    with session_scope(settings) as session:
        return session.get(ReviewItem, item_id).status


def _bearer(plaintext: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plaintext}"}


def test_a_refused_recipient_fails_at_once_tells_managers_and_retry_sends_once(settings, http, worker):
    manager = _bearer(session_token(settings, "manager", "Morgan Manager"))
    closer = auth(settings, "closer")
    with SmtpServer() as smtp:
        settings.smtp_url = smtp.url
        smtp.inbox.refuse_recipients = "550 5.1.1 mailbox unavailable"
        item = pending_item(settings, http, worker)
        assert http.post(f"/v1/review-items/{item['id']}/approve", headers=closer).status_code == 200
        worker.run_until_idle()
        shown = http.get(f"/v1/review-items/{item['id']}", headers=closer).json()
        # A 5xx is permanent: no retries for a day, the closer sees why at once.
        assert shown["status"] == "send_failed" and "refused the recipient" in shown["result"]["reason"], shown
        assert "550 5.1.1 mailbox unavailable" in shown["result"]["reason"]
        assert smtp.inbox.messages == []
        notes = http.get("/v1/notifications", headers=manager).json()
        assert notes["unread"] == 1
        [note] = notes["items"]
        assert note["kind"] == "send_failed" and note["entity_id"] == str(item["id"]) and "550" in note["body"]

        # Another closer may not retry someone else's send; the one who approved it may.
        other = _bearer(token(settings, "closer", "other-closer"))
        assert http.post(f"/v1/review-items/{item['id']}/retry", headers=other).status_code == 403
        smtp.inbox.refuse_recipients = None  # the address was fixed on the provider's side
        r = http.post(f"/v1/review-items/{item['id']}/retry", headers=closer)
        assert r.status_code == 200 and r.json()["status"] == "approved", r.text
        assert http.post(f"/v1/review-items/{item['id']}/retry", headers=closer).status_code == 409  # double click
        worker.run_until_idle()
        worker.run_until_idle()
        assert len(smtp.inbox.messages) == 1
    assert _status(settings, item["id"]) == "sent"
    with session_scope(settings) as session:
        assert session.scalar(select(OutboxMessage.attempts)) == 2
        actions = session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.entity_type == "review_item", AuditEvent.entity_id == str(item["id"]))
            .order_by(AuditEvent.id)
        ).all()
    assert "review_item.send_failed" in actions and "review_item.send_retried" in actions
    assert actions[-1] == "review_item.sent"
    assert http.post("/v1/notifications/read-all", headers=manager).json()["unread"] == 0
    assert http.get("/v1/notifications?unread=true", headers=manager).json()["items"] == []


def test_smtp_down_past_the_retry_window_becomes_send_failed_then_retry_sends_once(settings, http, worker):
    settings.send_retry_hours = 1.5 / 3600  # the window in this test: 1.5 s
    settings.send_retry_base_seconds = 0.2
    port = free_port()
    settings.smtp_url = f"smtp://127.0.0.1:{port}"  # nobody listens: connection refused, a transient failure
    item = pending_item(settings, http, worker)
    closer = auth(settings, "closer")
    assert http.post(f"/v1/review-items/{item['id']}/approve", headers=closer).status_code == 200
    deadline = time.monotonic() + 30
    while _status(settings, item["id"]) == "approved" and time.monotonic() < deadline:
        worker.run_until_idle()
        time.sleep(0.1)
    shown = http.get(f"/v1/review-items/{item['id']}", headers=closer).json()
    assert shown["status"] == "send_failed", shown
    assert "retries" in shown["result"]["reason"] and shown["result"]["attempts"] >= 2
    assert "the mail server refused the connection" in shown["result"]["reason"]
    with SmtpServer(port) as smtp:  # the server is back
        assert http.post(f"/v1/review-items/{item['id']}/retry", headers=closer).status_code == 200
        worker.run_until_idle()
        worker.run_until_idle()
        assert len(smtp.inbox.messages) == 1
    assert _status(settings, item["id"]) == "sent"


def test_mark_sent_is_only_for_unknown_deliveries_and_retry_only_for_failed_ones(settings, http, worker):
    item = pending_item(settings, http, worker)
    closer = auth(settings, "closer")
    assert http.post(f"/v1/review-items/{item['id']}/retry", headers=closer).status_code == 409  # still pending
    assert http.post(f"/v1/review-items/{item['id']}/approve", headers=closer).status_code == 200
    worker.run_until_idle()
    assert _status(settings, item["id"]) == "sent"
    for action in ("retry", "mark-sent"):
        r = http.post(f"/v1/review-items/{item['id']}/{action}", headers=closer)
        assert r.status_code == 409 and r.json()["error"] == "conflict", r.text
    assert http.post("/v1/review-items/999999/retry", headers=closer).status_code == 404
    with session_scope(settings) as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
