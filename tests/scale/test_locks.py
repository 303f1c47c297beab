"""One graph thread runs in one worker at a time, across processes: the named lock (PostgreSQL advisory lock,
SQLite flock) keeps a second holder out, gives up after its wait, and is released when its holder is killed."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest
from sqlalchemy import select

from core.db import session_scope
from core.locks import LockBusy, named_lock
from core.models import Job, Lead, ReviewItem
from tests.factories import captured_lead

HOLD = textwrap.dedent(
    """
    import sys, time
    from core.locks import named_lock
    from core.settings import Settings
    settings = Settings(database_url=sys.argv[1], var_dir=sys.argv[2])
    with named_lock(settings, sys.argv[3], wait_seconds=5):
        print("held", flush=True)
        time.sleep(60)
    """
)


def _holder(settings, name: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, settings.resolved_database_url, str(settings.var_dir), name],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_lock_held_by_another_process_keeps_others_out_until_its_holder_is_killed(settings):
    holder = _holder(settings, "graph-thread:lead-1")
    try:
        started = time.monotonic()
        with pytest.raises(LockBusy):
            with named_lock(settings, "graph-thread:lead-1", wait_seconds=0.5):
                pass
        assert time.monotonic() - started >= 0.5
        with named_lock(settings, "graph-thread:lead-2", wait_seconds=0.5):  # another thread is not held up
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with named_lock(settings, "graph-thread:lead-1", wait_seconds=5):  # the dead holder's lock is gone
        with pytest.raises(LockBusy):  # and held again, it keeps a second holder out in this process too
            with named_lock(settings, "graph-thread:lead-1", wait_seconds=0.2):
                pass


def test_a_lead_run_waits_for_its_graph_thread_and_runs_once_it_is_free(settings, worker):
    settings.thread_lock_wait_seconds = 0.3
    lead_id = captured_lead(settings)
    with session_scope(settings) as session:
        thread_id = session.get(Lead, lead_id).thread_id
    holder = _holder(settings, f"graph-thread:{thread_id}")
    try:
        assert worker.run_until_idle() == 1
        with session_scope(settings) as session:
            job = session.scalars(select(Job).where(Job.kind == "lead.run")).one()
            assert (job.status, job.attempts) == ("queued", 0)  # put back, not counted as a failure
            assert "is running in another worker" in job.last_error
            assert session.scalars(select(ReviewItem)).all() == []
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with session_scope(settings) as session:  # due again now (the retry delay is a second)
        session.get(Job, job.id).run_after = job.created_at
    assert worker.run_until_idle() >= 1
    with session_scope(settings) as session:
        assert session.scalars(select(Job.status).where(Job.kind == "lead.run")).one() == "done"
        assert len(session.scalars(select(ReviewItem).where(ReviewItem.lead_id == lead_id)).all()) == 1


def test_many_holders_of_one_name_take_turns_and_leave_no_lock_files_behind(settings):
    import threading

    inside, overlaps, errors = [0], [0], []
    guard = threading.Lock()

    def hold_a_few_times():
        try:
            for _ in range(15):
                with named_lock(settings, "graph-thread:lead-busy", wait_seconds=30):
                    with guard:
                        inside[0] += 1
                        overlaps[0] += inside[0] > 1
                    time.sleep(0.001)
                    with guard:
                        inside[0] -= 1
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hold_a_few_times) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and overlaps[0] == 0
    lock_dir = settings.var_dir / "locks"
    # SQLite's lock files are removed by their last holder (PostgreSQL uses advisory locks, no files)
    assert not lock_dir.exists() or list(lock_dir.iterdir()) == []
