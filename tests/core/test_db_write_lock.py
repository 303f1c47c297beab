"""SQLite writers of one process queue on a lock that is handed over as the previous writer commits or rolls back
(instead of each polling SQLite's lock with growing sleeps); a connection dropped mid-transaction hands it over
too, and a skippable write still gives up after its own short wait."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select

from core.db import get_engine, session_scope, write_if_free
from core.models import Company
from tests.conftest import only_on


def _companies(settings) -> int:
    with session_scope(settings, readonly=True) as session:
        return session.scalar(select(func.count(Company.id)))


def _add(name: str):
    def add(session) -> str:
        session.add(Company(name=name, source="test"))
        session.flush()
        return name

    return add


@only_on("sqlite")
def test_writers_of_one_process_take_turns_and_none_fails(settings, database):
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        try:
            for i in range(15):
                with session_scope(settings) as session:
                    session.add(Company(name=f"w{n}-{i}", source="test"))
                    session.flush()
                    time.sleep(0.002)  # hold the lock a moment, as a unit of work does
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert _companies(settings) == 8 * 15


@only_on("sqlite")
def test_a_queued_writer_begins_when_the_holder_commits(settings, database):
    events: list[str] = []
    holding = threading.Event()

    def second() -> None:
        holding.wait(10)
        with session_scope(settings) as session:
            seen = session.scalar(select(func.count(Company.id)))  # its transaction begins here
            events.append(f"second began, saw {seen}")
            session.add(Company(name="second", source="test"))

    thread = threading.Thread(target=second)
    thread.start()
    with session_scope(settings) as session:
        session.add(Company(name="first", source="test"))
        session.flush()  # the transaction (and the write lock) is now held
        holding.set()
        time.sleep(0.3)  # the second writer is queued meanwhile
        events.append("first committing")
    thread.join(timeout=30)
    assert events == ["first committing", "second began, saw 1"]
    assert _companies(settings) == 2


@only_on("sqlite")
def test_a_rolled_back_or_dropped_transaction_hands_the_lock_over(settings, database):
    try:
        with session_scope(settings) as session:
            session.add(Company(name="never", source="test"))
            session.flush()
            raise RuntimeError("the unit of work fails")
    except RuntimeError:
        pass
    assert write_if_free(settings, _add("after rollback"), wait_seconds=0.5) == "after rollback"

    with get_engine(settings).connect() as conn:
        conn.exec_driver_sql(
            "INSERT INTO companies (name, source, created_at, updated_at) "
            "VALUES ('dropped', 'test', '2026-01-01', '2026-01-01')"
        )
        conn.invalidate()  # the connection is gone mid-transaction (as after a driver error)
    assert write_if_free(settings, _add("after drop"), wait_seconds=0.5) == "after drop"
    with session_scope(settings, readonly=True) as session:
        names = set(session.scalars(select(Company.name)))
    assert names == {"after rollback", "after drop"}


@only_on("sqlite")
def test_a_skippable_write_gives_up_after_its_own_wait_while_a_thread_here_writes(settings, database):
    with session_scope(settings) as session:
        session.add(Company(name="long unit", source="test"))
        session.flush()
        results: list[object] = []
        thread = threading.Thread(
            target=lambda: results.append(write_if_free(settings, _add("clock"), wait_seconds=0.1))
        )
        started = time.monotonic()
        thread.start()
        thread.join(timeout=30)
        waited = time.monotonic() - started
    assert results == [None]
    assert waited < settings.db_busy_timeout_seconds  # its own short wait, not the busy timeout
    assert write_if_free(settings, _add("clock")) == "clock"
