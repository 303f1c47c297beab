"""SQLite writers of one process queue on a lock that is handed over as the previous writer commits or rolls back
(instead of each polling SQLite's lock with growing sleeps); a connection dropped mid-transaction hands it over
too, and a skippable write still gives up after its own short wait."""

from __future__ import annotations

import threading
import time
from pathlib import Path

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


_HOLDER = """
import sys, time
from core.db import make_engine
from sqlalchemy import text
engine = make_engine(sys.argv[1])
with engine.begin() as conn:  # BEGIN IMMEDIATE, after the writer file lock
    conn.execute(text("INSERT INTO companies (name, source, created_at, updated_at) VALUES ('other process', 'test', "
                      "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
print("committed", flush=True)
time.sleep(60)
"""


def _holder(settings, seconds: float):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, settings.resolved_database_url, str(seconds)],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "holding"
    return child


@only_on("sqlite")
def test_a_writer_of_another_process_holds_the_writer_file_lock_and_ours_begins_after_its_commit(settings, database):
    get_engine(settings)
    child = _holder(settings, 0.5)
    try:
        lock_file = Path(settings.resolved_database_url.split("///", 1)[1] + "-writer.lock")
        assert lock_file.exists() and lock_file.stat().st_mode & 0o777 == 0o600
        with session_scope(settings) as session:  # waits for the other process's commit
            session.add(Company(name="this process", source="test"))
        assert child.stdout.readline().strip() == "committed"
        with session_scope(settings, readonly=True) as session:
            names = list(session.scalars(select(Company.name).order_by(Company.id)))
        assert names[-2:] == ["other process", "this process"]
    finally:
        child.kill()
        child.wait()


@only_on("sqlite")
def test_a_writer_killed_mid_transaction_leaves_neither_lock_held(settings, database):
    get_engine(settings)
    child = _holder(settings, 60)
    child.kill()  # SIGKILL inside its transaction: the kernel drops its flock, SQLite its lock
    child.wait()
    with session_scope(settings) as session:
        session.add(Company(name="after the crash", source="test"))
    with session_scope(settings, readonly=True) as session:
        names = list(session.scalars(select(Company.name)))
    assert "after the crash" in names and "other process" not in names
