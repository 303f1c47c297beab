"""One unit of work per request, committed in one place (api/deps.get_session): routes and services only
flush; a success commits (background jobs included) before the answer is sent; an error rolls back, except
an AppError raised with commit=True (a failed sign-in's count)."""

from __future__ import annotations

import datetime as dt
import json

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.deps import SessionDep
from core import audit, webhooks
from core.db import session_scope
from core.enums import JobKind, JobStatus
from core.errors import Conflict
from core.models import AuditEvent, Job, Lead, LoginThrottle, User, WebhookDelivery
from tests.factories import auth, lead_payload, user

SECRET = "whsec-unit-of-work"


def _audit_count(settings, action: str) -> int:
    with session_scope(settings) as session:
        return session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == action)) or 0


def test_the_request_commits_on_success_and_rolls_back_on_error_unless_told_to_commit(settings):
    app = create_app(settings)

    def flush_then(session, outcome: str) -> dict[str, str]:
        audit.record(session, actor="test", action=f"uow.{outcome}", entity_type="test", entity_id="1")
        session.flush()
        if outcome == "rolled_back":
            raise Conflict("refused")
        if outcome == "committed_anyway":
            raise Conflict("refused, but what was flushed stays", commit=True)
        if outcome == "crashed":
            raise RuntimeError("a bug")
        return {"ok": outcome}

    @app.post("/test/{outcome}")
    def route(outcome: str, session: SessionDep) -> dict[str, str]:
        return flush_then(session, outcome)

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/test/ok").status_code == 200
        assert client.post("/test/rolled_back").status_code == 409
        assert client.post("/test/committed_anyway").status_code == 409
        assert client.post("/test/crashed").status_code == 500
    assert _audit_count(settings, "uow.ok") == 1
    assert _audit_count(settings, "uow.rolled_back") == 0
    assert _audit_count(settings, "uow.committed_anyway") == 1
    assert _audit_count(settings, "uow.crashed") == 0


def test_a_failed_sign_in_is_counted_although_the_answer_is_an_error(settings, http):
    settings.login_max_failures = 2
    email = user(settings, "closer")
    wrong = http.post("/v1/auth/login", json={"email": email, "password": "wrong-password"})
    assert wrong.status_code == 401
    with session_scope(settings) as session:
        assert session.scalars(select(User)).one().failed_logins == 1
        throttle = session.scalars(select(LoginThrottle)).one()
        assert (throttle.failures, throttle.blocked_until) == (1, None)
    assert http.post("/v1/auth/login", json={"email": email, "password": "wrong-password"}).status_code == 401
    with session_scope(settings) as session:
        throttle = session.scalars(select(LoginThrottle)).one()
        assert throttle.failures == 2 and throttle.blocked_until is not None  # this address now waits


def test_a_lead_and_its_background_job_are_committed_before_the_answer(settings, http):
    r = http.post("/v1/leads", json=lead_payload(), headers=auth(settings, "integration"))
    assert r.status_code == 202, r.text
    with session_scope(settings) as session:
        [lead] = session.scalars(select(Lead)).all()
        [job] = session.scalars(select(Job)).all()
        assert lead.id == r.json()["id"]
        # The job carries the lead's graph thread, so the worker takes the thread's lock without looking it up.
        expected = {"lead_id": lead.id, "thread_id": lead.thread_id}
        assert (job.kind, job.status, job.payload) == (JobKind.LEAD_RUN, JobStatus.QUEUED, expected)


def _esign(http, notice: dict, headers: dict[str, str] | None = None):
    body = json.dumps(notice).encode()
    headers = headers or webhooks.signed_headers(SECRET, body)
    return http.post("/v1/webhooks/esign", content=body, headers={"Content-Type": "application/json", **headers})


def test_a_webhook_delivery_is_recorded_with_its_request_so_a_replay_is_refused(settings, http):
    settings.webhook_secret_esign = SECRET
    signed_at = dt.datetime.now(dt.UTC).isoformat()
    declined = {"envelope_id": "env-1", "deal_id": 999_999, "status": "declined", "signed_at": signed_at}
    body = json.dumps(declined).encode()
    headers = webhooks.signed_headers(SECRET, body)
    first = _esign(http, declined, headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"deal_id": 999_999, "status": "declined", "acted": False}
    replay = _esign(http, declined, headers)
    assert replay.status_code == 409 and "replay" in replay.json()["message"]


def test_a_failed_webhook_records_nothing_so_the_sender_may_retry(settings, http):
    settings.webhook_secret_esign = SECRET
    completed = {
        "envelope_id": "env-2",
        "deal_id": 999_999,  # no such deal: the whole request is rolled back, the delivery included
        "status": "completed",
        "signed_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    body = json.dumps(completed).encode()
    headers = webhooks.signed_headers(SECRET, body)
    assert _esign(http, completed, headers).status_code == 404
    with session_scope(settings) as session:
        assert session.scalars(select(WebhookDelivery)).all() == []
    assert _esign(http, completed, headers).status_code == 404  # a retry is not taken for a replay
