"""A busy database never reaches a user as a bare 500: writes answer 503 with Retry-After and a JSON error,
reads and token checks go on (they take no write lock), and a session's idle clock waits for a free moment."""

from __future__ import annotations

import datetime as dt
import sqlite3

import psycopg.errors
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from api.app import create_app
from core.db import dispose_engines, session_scope
from core.migrate import upgrade
from core.models import Lead, UserSession, utcnow
from core.settings import Settings
from tests.factories import auth, lead_payload, session_token


@pytest.fixture
def locked_db(tmp_path):
    """Settings of a fresh SQLite database whose writers wait only briefly, and a way to hold its write lock
    from another connection (as a long job in another process would)."""
    s = Settings(
        var_dir=tmp_path / "var",
        database_url=f"sqlite:///{tmp_path / 'busy.db'}",
        outbox_dir=tmp_path / "outbox",
        db_busy_timeout_seconds=0.2,
        db_busy_retries=1,
    )
    upgrade(s)
    other = sqlite3.connect(tmp_path / "busy.db", timeout=0, isolation_level=None)
    try:
        yield s, other
    finally:
        other.close()
        dispose_engines(s)


def test_while_another_process_holds_the_write_lock_writes_answer_503_and_reads_go_on(locked_db):
    settings, other = locked_db
    integration, closer = auth(settings, "integration"), {"Authorization": f"Bearer {session_token(settings)}"}
    with TestClient(create_app(settings)) as client:
        other.execute("BEGIN IMMEDIATE")
        r = client.post("/v1/leads", json=lead_payload(), headers={**integration, "Idempotency-Key": "k-1"})
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "2"
        assert r.json()["error"] == "busy" and "send the same request again" in r.json()["message"]
        # Reads and the token checks behind them take no write lock.
        assert client.get("/v1/leads", headers=closer).status_code == 200
        assert client.get("/v1/me", headers=closer).status_code == 200
        assert client.get("/healthz").status_code == 200
        other.execute("ROLLBACK")
        again = client.post("/v1/leads", json=lead_payload(), headers={**integration, "Idempotency-Key": "k-1"})
        assert again.status_code == 202, again.text
    with session_scope(settings, readonly=True) as session:
        assert len(session.scalars(select(Lead)).all()) == 1


def test_a_session_idle_clock_moves_when_the_database_is_free(locked_db):
    settings, other = locked_db
    token = session_token(settings)
    headers = {"Authorization": f"Bearer {token}"}
    long_ago = utcnow() - dt.timedelta(minutes=5)

    def last_seen() -> dt.datetime:
        with session_scope(settings, readonly=True) as session:
            return session.scalars(select(UserSession.last_seen_at)).one()

    with session_scope(settings) as session:
        session.scalars(select(UserSession)).one().last_seen_at = long_ago
    with TestClient(create_app(settings)) as client:
        other.execute("BEGIN IMMEDIATE")
        assert client.get("/v1/me", headers=headers).status_code == 200  # answered; the touch is skipped
        assert last_seen() == long_ago
        other.execute("ROLLBACK")
        assert client.get("/v1/me", headers=headers).status_code == 200
        touched = last_seen()
        assert touched > long_ago
        assert client.get("/v1/me", headers=headers).status_code == 200
        assert last_seen() == touched  # touched at most every 30 s


@pytest.mark.parametrize(
    "orig",
    [
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.errors.DeadlockDetected("deadlock detected"),
        sqlite3.OperationalError("database is locked"),
    ],
    ids=["serialization_failure", "deadlock_detected", "sqlite_locked"],
)
def test_busy_failures_of_either_database_answer_503(settings, orig):
    app = create_app(settings)

    @app.get("/test-busy")
    def busy() -> None:
        raise OperationalError("UPDATE leads ...", {}, orig)

    @app.get("/test-broken")
    def broken() -> None:
        raise OperationalError("SELECT ...", {}, sqlite3.OperationalError("no such table: x"))

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/test-busy")
        assert r.status_code == 503 and r.headers["Retry-After"] == "2" and r.json()["error"] == "busy"
        assert client.get("/test-broken").status_code == 500  # not every database error is "busy"
