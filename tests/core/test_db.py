"""The session layer: read-only sessions that never take (or wait for) the write lock, and the retry of a unit
of work that finds the database busy."""

from __future__ import annotations

import sqlite3

import psycopg.errors
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from core.db import is_busy_error, run_in_transaction, session_scope, write_if_free
from core.models import Company
from tests.conftest import only_on


def _busy(backend: str, kind: str = "busy") -> OperationalError:
    """The error the driver raises when the database is busy (as SQLAlchemy wraps it)."""
    if backend == "sqlite":
        orig = sqlite3.OperationalError("database is locked")
    elif kind == "deadlock":
        orig = psycopg.errors.DeadlockDetected("deadlock detected")
    else:
        orig = psycopg.errors.SerializationFailure("could not serialize access due to concurrent update")
    return OperationalError("UPDATE ...", {}, orig)


def _companies(settings) -> int:
    with session_scope(settings, readonly=True) as session:
        return session.scalar(select(func.count(Company.id)))


def _sqlite_path(settings) -> str:
    return settings.resolved_database_url.split("///", 1)[1]


def test_a_busy_unit_of_work_runs_again_and_its_first_attempt_leaves_nothing(settings, database):
    calls = []

    def unit(session):
        calls.append(1)
        session.add(Company(name=f"Attempt {len(calls)}", source="test"))
        session.flush()
        if len(calls) == 1:
            raise _busy(database["backend"])
        return "done"

    assert run_in_transaction(settings, unit, attempts=3, backoff_seconds=0) == "done"
    assert len(calls) == 2
    with session_scope(settings, readonly=True) as session:
        assert session.scalars(select(Company.name)).all() == ["Attempt 2"]


def test_the_retry_gives_up_after_the_last_attempt(settings, database):
    calls = []

    def always_busy(session):
        calls.append(1)
        raise _busy(database["backend"], "deadlock")

    with pytest.raises(OperationalError) as raised:
        run_in_transaction(settings, always_busy, attempts=3, backoff_seconds=0)
    assert len(calls) == 3 and is_busy_error(raised.value)
    settings.db_busy_retries = 2  # the default number of attempts comes from the settings
    calls.clear()
    with pytest.raises(OperationalError):
        run_in_transaction(settings, always_busy, backoff_seconds=0)
    assert len(calls) == 2


def test_other_errors_are_not_retried(settings):
    calls = []

    def broken(session):
        calls.append(1)
        session.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(DBAPIError) as raised:
        run_in_transaction(settings, broken, attempts=3, backoff_seconds=0)
    assert len(calls) == 1 and not is_busy_error(raised.value)
    with pytest.raises(ValueError):
        run_in_transaction(settings, lambda s: calls.append(1) or int("x"), attempts=3)
    assert len(calls) == 2


def test_a_read_only_session_refuses_writes_and_keeps_what_it_read(settings):
    with session_scope(settings) as session:
        session.add(Company(name="Acme", source="test"))
    with pytest.raises(DBAPIError):
        with session_scope(settings, readonly=True) as session:
            session.add(Company(name="Sneaky", source="test"))
            session.flush()
    with session_scope(settings, readonly=True) as session:
        row = session.scalars(select(Company)).one()
    assert row.name == "Acme" and row.source == "test"  # loaded attributes stay readable after the block
    assert _companies(settings) == 1


@only_on("sqlite")  # SQLite's single write lock
def test_a_reader_and_a_writer_never_wait_for_each_other_on_sqlite(settings, database):
    other = sqlite3.connect(_sqlite_path(settings), timeout=0, isolation_level=None)  # never waits
    try:
        with session_scope(settings, readonly=True) as reader:
            assert reader.scalar(select(func.count(Company.id))) == 0
            # Another process writes while the read transaction is open: no lock is in its way.
            other.execute("BEGIN IMMEDIATE")
            other.execute(
                "INSERT INTO companies (name, source, created_at, updated_at) "
                "VALUES ('Other', 'test', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
            # ...and holds the write lock, uncommitted: the reader still reads (its snapshot).
            assert reader.scalar(select(func.count(Company.id))) == 0
        with session_scope(settings, readonly=True) as reader:
            assert reader.scalar(select(func.count(Company.id))) == 0  # a new reader, the lock still held
        other.execute("COMMIT")
        assert _companies(settings) == 1
        # A write unit of work takes the lock when it begins, so the other process cannot write meanwhile.
        with session_scope(settings) as writer:
            writer.scalar(select(func.count(Company.id)))
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()


@only_on("postgresql")  # PostgreSQL's read-only transactions
def test_a_read_only_session_does_not_hold_up_a_writer_on_postgresql(settings, database):
    with session_scope(settings, readonly=True) as reader:
        assert reader.scalar(text("SHOW transaction_read_only")) == "on"
        assert reader.scalar(select(func.count(Company.id))) == 0
        with session_scope(settings) as writer:
            assert writer.scalar(text("SHOW transaction_read_only")) == "off"
            writer.add(Company(name="Written", source="test"))
    assert _companies(settings) == 1


@only_on("sqlite")  # SQLite's single write lock
def test_a_skippable_write_is_skipped_while_the_database_is_locked(settings, database):

    def add(session):
        session.add(Company(name="Clock", source="test"))
        return "written"

    other = sqlite3.connect(_sqlite_path(settings), timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        assert write_if_free(settings, add, wait_seconds=0.05) is None
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert write_if_free(settings, add) == "written"
    assert _companies(settings) == 1


@only_on("postgresql")  # a server that drops connections: a restart, an idle timeout, pg_terminate_backend
def test_a_pooled_connection_the_server_dropped_while_idle_is_replaced_before_use(settings, monkeypatch):
    """Both pools (the database engine's and the graph checkpointer's) check a connection that sat idle before
    handing it out, and hand out a fresh one in its place; one used a moment ago is handed out without a check."""
    import psycopg

    from agents.runtime import open_checkpointer
    from core import db

    def backend_pid() -> int:
        with session_scope(settings, readonly=True) as session:
            return session.scalar(text("SELECT pg_backend_pid()"))

    def terminate(pid: int) -> None:
        with psycopg.connect(settings.resolved_database_url.replace("+psycopg", ""), autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0] is True

    db.dispose_engines(settings)  # one pooled connection from here on, made by the next session
    engine = db.get_engine(settings)
    pings: list[int] = []
    ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(1) or ping(conn))
    dropped = backend_pid()
    assert backend_pid() == dropped and pings == []  # the same connection again, unchecked: used a moment ago
    terminate(dropped)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # as if it had sat idle for a while
    assert backend_pid() != dropped  # checked, found dropped and replaced: no error reaches the caller
    assert pings == [1]

    config = {"configurable": {"thread_id": "dropped-while-idle", "checkpoint_ns": ""}}
    with open_checkpointer(settings) as saver:
        with saver.conn.connection() as conn:
            dropped = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
        terminate(dropped)
        assert saver.get_tuple(config) is None  # a fresh connection answered
        with saver.conn.connection() as conn:
            assert conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"] != dropped


def test_a_read_only_unit_of_work_reads_a_keyed_read_once_and_a_writing_one_each_time(settings):
    """core.db.read_once: the lead run's parts share what they read (its records, the research look-ups) in one
    read-only unit of work; a writing one, whose own writes would make a kept answer stale, reads each time."""
    from core.db import known_read, read_once

    reads: list[int] = []

    def load() -> int:
        reads.append(1)
        return len(reads)

    with session_scope(settings, readonly=True) as session:
        assert read_once(session, ("deals of account", 1), load) == read_once(session, ("deals of account", 1), load)
        known_read(session, ("contact by email", "a@b.example"), "the contact")
        assert read_once(session, ("contact by email", "a@b.example"), load) == "the contact"
    assert len(reads) == 1
    with session_scope(settings, readonly=True) as session:  # another unit of work reads again
        assert read_once(session, ("deals of account", 1), load) == 2
    with session_scope(settings) as session:
        known_read(session, ("deals of account", 1), "not kept")
        assert [read_once(session, ("deals of account", 1), load) for _ in range(2)] == [3, 4]
