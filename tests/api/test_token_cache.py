"""Verified API tokens are trusted for REVLOOP_API_TOKEN_CACHE_SECONDS without a database read; revocation through
the API is immediate, revocation elsewhere takes effect within the cache time, and expiry is checked on every use."""

from __future__ import annotations

import datetime as dt
import time

import httpx
from sqlalchemy import event, update

from core.db import get_engine, session_scope
from core.models import ApiToken, utcnow
from tests.conftest import LiveServer
from tests.factories import auth, lead_payload, token


def _bearer(plaintext: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plaintext}"}


def _serve(settings, cache_seconds: float) -> LiveServer:
    return LiveServer(settings.model_copy(update={"api_token_cache_seconds": cache_seconds}))


def _token_reads(settings) -> list[str]:
    reads: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:
        if "FROM api_tokens" in statement:
            reads.append(statement)

    event.listen(get_engine(settings, readonly=True), "before_cursor_execute", seen)
    return reads


def test_a_token_used_again_within_the_cache_time_is_read_once(settings):
    form = _bearer(token(settings, "integration", "web-form"))
    reads = _token_reads(settings)
    with _serve(settings, 30) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        for n in range(5):
            r = http.post("/v1/leads", json=lead_payload(email=f"lead{n}@acme-software.com"), headers=form)
            assert r.status_code == 202, r.text
        assert http.post("/v1/leads", json=lead_payload(), headers=_bearer("rl_not-a-token")).status_code == 401
    assert len(reads) == 2  # the form's token once, the unknown one (never cached) once


def test_a_token_revoked_through_the_api_stops_at_once(settings):
    admin = auth(settings, "admin")
    with _serve(settings, 30) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        made = http.post("/v1/tokens", json={"name": "form", "role": "integration"}, headers=admin).json()
        form = _bearer(made["token"])
        assert http.post("/v1/leads", json=lead_payload(), headers=form).status_code == 202
        assert http.post(f"/v1/tokens/{made['details']['id']}/revoke", headers=admin).status_code == 200
        r = http.post("/v1/leads", json=lead_payload(email="next@acme-software.com"), headers=form)
        assert r.status_code == 401 and "revoked" in r.json()["message"]


def test_a_token_revoked_elsewhere_stops_within_the_cache_time(settings):
    plaintext = token(settings, "integration", "crm-sync")
    with _serve(settings, 0.3) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/v1/leads", json=lead_payload(), headers=_bearer(plaintext)).status_code == 202
        with session_scope(settings) as session:  # as `revloop tokens revoke` in another process does
            session.execute(update(ApiToken).where(ApiToken.name == "crm-sync").values(revoked_at=utcnow()))
        time.sleep(0.5)
        r = http.post("/v1/leads", json=lead_payload(email="later@acme-software.com"), headers=_bearer(plaintext))
        assert r.status_code == 401


def test_without_a_cache_every_request_reads_the_token(settings):
    plaintext = token(settings, "integration", "crm-sync")
    with _serve(settings, 0) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/v1/leads", json=lead_payload(), headers=_bearer(plaintext)).status_code == 202
        with session_scope(settings) as session:
            session.execute(update(ApiToken).where(ApiToken.name == "crm-sync").values(revoked_at=utcnow()))
        r = http.post("/v1/leads", json=lead_payload(email="later@acme-software.com"), headers=_bearer(plaintext))
        assert r.status_code == 401


def test_a_cached_token_still_expires_on_time(settings):
    plaintext = token(settings, "integration", "short-lived")
    expires_at = utcnow() + dt.timedelta(seconds=4)
    with session_scope(settings) as session:
        session.execute(update(ApiToken).where(ApiToken.name == "short-lived").values(expires_at=expires_at))
    with _serve(settings, 30) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/v1/leads", json=lead_payload(), headers=_bearer(plaintext)).status_code == 202
        time.sleep(max(0.0, (expires_at - utcnow()).total_seconds()) + 0.2)
        r = http.post("/v1/leads", json=lead_payload(email="later@acme-software.com"), headers=_bearer(plaintext))
        assert r.status_code == 401


def test_last_used_at_is_written_once_for_many_requests(settings):
    plaintext = token(settings, "integration", "busy-form")
    touches: list[str] = []
    event.listen(
        get_engine(settings),
        "before_cursor_execute",
        lambda conn, cursor, statement, *args: touches.append(statement) if "UPDATE api_tokens" in statement else None,
    )
    with _serve(settings, 0) as server, httpx.Client(base_url=server.url, timeout=30) as http:  # even uncached
        for n in range(5):
            r = http.post("/v1/leads", json=lead_payload(email=f"l{n}@acme-software.com"), headers=_bearer(plaintext))
            assert r.status_code == 202
    assert len(touches) == 1
    with session_scope(settings, readonly=True) as session:
        assert session.query(ApiToken).filter_by(name="busy-form").one().last_used_at is not None
