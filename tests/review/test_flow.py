"""Capture -> review item -> decision -> exactly one message, over real HTTP."""

from __future__ import annotations

import email
import subprocess
import sys
import threading
from email import policy

import httpx
import pytest
from sqlalchemy import func, select

from core.db import session_scope
from core.models import Activity, AuditEvent, Decision, Job, Lead, OutboxMessage, ReviewItem
from review.outbox import outbox_files
from tests.conftest import free_port
from tests.factories import auth, pending_item
from tests.smtp_server import SmtpServer


def _count(settings, model) -> int:
    with session_scope(settings) as session:
        return session.scalar(select(func.count()).select_from(model))


def test_approve_with_edit_sends_exactly_one_email_to_the_lead(settings, http, worker):
    item = pending_item(settings, http, worker)
    assert item["brief"]["grade"] in "ABCD" and item["draft"]["subject"]
    closer = auth(settings, "closer")
    edited_body = item["draft"]["body"].replace("Best regards", "Kind regards")
    r = http.post(f"/v1/review-items/{item['id']}/approve", json={"body": edited_body}, headers=closer)
    assert r.status_code == 200, r.text
    decided = r.json()
    assert decided["status"] == "approved"
    decision = decided["decision"]
    assert decision["action"] == "approve" and decision["actor"] == "closer:test-closer"
    assert decision["edited"] is True
    assert "-Best regards" in decision["edit_diff"] and "+Kind regards" in decision["edit_diff"]
    assert outbox_files(settings) == []  # nothing leaves before the worker executes the approval

    worker.run_until_idle()
    [eml] = outbox_files(settings)
    msg = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert msg["To"] == "jane.doe@acme-software.com"
    assert msg["Subject"] == item["draft"]["subject"]
    assert "Kind regards" in msg.get_content()
    final = http.get(f"/v1/review-items/{item['id']}", headers=closer).json()
    assert final["status"] == "sent" and final["result"]["to"] == "jane.doe@acme-software.com"

    # A second approve, a retry of the job and another worker pass send nothing more.
    again = http.post(f"/v1/review-items/{item['id']}/approve", headers=closer)
    assert again.status_code == 409 and "already sent" in again.json()["message"]
    worker.run_until_idle()
    assert len(outbox_files(settings)) == 1
    assert _count(settings, OutboxMessage) == 1
    assert _count(settings, Decision) == 1
    with session_scope(settings) as session:
        assert session.scalars(select(Activity.kind)).all() == ["email_sent"]
        assert session.scalars(select(Lead.status)).one() == "contacted"
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.entity_type == "review_item")).all()
        assert actions == ["review_item.created", "review_item.approved", "review_item.sent"]
        trail = session.scalars(
            select(AuditEvent).where(AuditEvent.entity_type == "lead", AuditEvent.action == "lead.status_changed")
        ).all()
        # The lead graph's first run stores its brief and review item in one unit of work: no "processing" step.
        assert [(e.before["status"], e.after["status"]) for e in trail] == [
            ("new", "scored"),
            ("scored", "in_review"),
            ("in_review", "contacted"),
        ]


def test_reject_records_the_reason_and_sends_nothing(settings, http, worker):
    item = pending_item(settings, http, worker)
    closer = auth(settings, "closer")
    r = http.post(
        f"/v1/review-items/{item['id']}/reject", json={"reason": "Tone is too pushy for this account"}, headers=closer
    )
    assert r.status_code == 200
    assert r.json()["status"] == "rejected" and r.json()["decision"]["reason"] == "Tone is too pushy for this account"
    worker.run_until_idle()
    assert outbox_files(settings) == []
    assert _count(settings, OutboxMessage) == 0
    assert http.post(f"/v1/review-items/{item['id']}/approve", headers=closer).status_code == 409
    with session_scope(settings) as session:
        assert session.scalars(select(Lead.status)).one() == "draft_rejected"
        assert session.scalars(select(Job.status).where(Job.kind == "review.resume")).one() == "done"


def test_bad_decisions_are_clear_4xx_and_write_nothing(settings, http, worker):
    item = pending_item(settings, http, worker)
    closer = auth(settings, "closer")
    assert http.post("/v1/review-items/999999/approve", headers=closer).status_code == 404
    assert http.get("/v1/review-items/999999", headers=closer).status_code == 404
    r = http.post(f"/v1/review-items/{item['id']}/reject", json={}, headers=closer)
    assert r.status_code == 422 and "reason" in r.json()["fields"]
    r = http.post(f"/v1/review-items/{item['id']}/approve", json={"subject": ""}, headers=closer)
    assert r.status_code == 422 and "subject" in r.json()["fields"]
    r = http.post(f"/v1/review-items/{item['id']}/approve", json={"to": "attacker@evil.example"}, headers=closer)
    assert r.status_code == 422 and "to" in r.json()["fields"]  # the recipient is never an input
    r = http.get("/v1/review-items", params={"status": "bogus"}, headers=closer)
    assert r.status_code == 422 and "status" in r.json()["fields"]
    r = http.post(f"/v1/review-items/{item['id']}/approve", headers=auth(settings, "evaluator"))
    assert r.status_code == 403
    assert _count(settings, Decision) == 0
    assert http.get(f"/v1/review-items/{item['id']}", headers=closer).json()["status"] == "pending"


def test_resume_happens_in_a_new_process(settings, http, worker, subprocess_env):
    item = pending_item(settings, http, worker)
    r = http.post(f"/v1/review-items/{item['id']}/approve", headers=auth(settings, "closer"))
    assert r.status_code == 200
    # A fresh process builds a new graph instance from the checkpoint and finishes the thread.
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "worker", "--until-idle"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "ran 1 job(s)" in done.stdout
    [eml] = outbox_files(settings)
    assert "jane.doe@acme-software.com" in eml.read_text()
    with session_scope(settings) as session:
        assert session.get(ReviewItem, item["id"]).status == "sent"
    worker.run_until_idle()  # the original process finds nothing left to do
    assert len(outbox_files(settings)) == 1


def test_ten_simultaneous_approvals_send_one_message(settings, live_server, worker):
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        item = pending_item(settings, http, worker)
    closer = auth(settings, "closer")
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def click() -> None:
        with httpx.Client(base_url=live_server.url, timeout=60) as client:
            barrier.wait()
            statuses.append(client.post(f"/v1/review-items/{item['id']}/approve", headers=closer).status_code)

    threads = [threading.Thread(target=click) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] + [409] * 9
    worker.run_until_idle()
    assert len(outbox_files(settings)) == 1
    assert _count(settings, Decision) == 1
    assert _count(settings, OutboxMessage) == 1


@pytest.fixture
def smtp_server():
    with SmtpServer() as smtp:
        yield smtp.controller, smtp.inbox


def test_approval_sends_through_smtp_when_configured(settings, http, worker, smtp_server):
    controller, inbox = smtp_server
    settings.smtp_url = f"smtp://{controller.hostname}:{controller.port}"
    item = pending_item(settings, http, worker)
    assert http.post(f"/v1/review-items/{item['id']}/approve", headers=auth(settings, "closer")).status_code == 200
    worker.run_until_idle()
    assert len(inbox.messages) == 1
    _, rcpts, content = inbox.messages[0]
    assert rcpts == ["jane.doe@acme-software.com"]
    msg = email.message_from_bytes(content, policy=policy.default)
    assert msg["Message-ID"] == f"<review-item-{item['id']}@revloop>"
    assert outbox_files(settings) == []
    worker.run_until_idle()
    assert len(inbox.messages) == 1
    with session_scope(settings) as session:
        row = session.scalars(select(OutboxMessage)).one()
        assert (row.transport, row.status, row.attempts) == ("smtp", "sent", 1)


def test_smtp_failure_is_retried_and_still_sends_once(settings, http, worker, smtp_server):
    controller, inbox = smtp_server
    settings.smtp_url = f"smtp://127.0.0.1:{free_port()}"  # nobody listens here yet
    item = pending_item(settings, http, worker)
    http.post(f"/v1/review-items/{item['id']}/approve", headers=auth(settings, "closer"))
    worker.run_until_idle()
    with session_scope(settings) as session:
        row = session.scalars(select(OutboxMessage)).one()
        assert row.status == "failed" and row.attempts == 1
        assert "the mail server refused the connection" in row.last_error
        assert session.get(ReviewItem, item["id"]).status == "approved"  # inside the retry window: not given up
        job = session.scalars(select(Job).where(Job.kind == "review.resume")).one()
        # A transient send failure is retried after a backoff and does not use up the job's attempts.
        assert job.status == "queued" and job.attempts == 0 and job.run_after > job.created_at
        job.run_after = job.created_at  # due now
    settings.smtp_url = f"smtp://{controller.hostname}:{controller.port}"
    worker.run_until_idle()
    assert len(inbox.messages) == 1
    with session_scope(settings) as session:
        assert session.get(ReviewItem, item["id"]).status == "sent"


def test_an_opt_out_after_approval_cancels_the_send(settings, http, worker):
    from core.models import Contact

    item = pending_item(settings, http, worker)
    assert http.post(f"/v1/review-items/{item['id']}/approve", headers=auth(settings, "closer")).status_code == 200
    with session_scope(settings) as session:
        session.scalars(select(Contact)).one().do_not_email = True  # e.g. an unsubscribe arrived meanwhile
    worker.run_until_idle()
    assert outbox_files(settings) == []
    with session_scope(settings) as session:
        row = session.get(ReviewItem, item["id"])
        assert row.status == "cancelled" and "opted out" in row.result["reason"]
        assert session.scalars(select(Job.status).where(Job.kind == "review.resume")).one() == "done"
