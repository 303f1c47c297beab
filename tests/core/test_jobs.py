"""The job table's leases: renewed by a heartbeat while a job runs, taken back when its worker dies."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import threading
import time

from sqlalchemy import text

from core.db import get_engine, session_scope
from core.jobs import RetryLater, Worker, claim_next, enqueue, renew_leases, sweep_stale
from core.models import Job, utcnow
from tests.conftest import only_on


def _job(settings, key: str = "k1", kind: str = "test.kind") -> int:
    with session_scope(settings) as session:
        return enqueue(session, kind, {"n": 1}, dedupe_key=key).id


def _get(settings, job_id: int) -> Job:
    with session_scope(settings) as session:
        return session.get(Job, job_id)


def test_an_expired_lease_is_taken_back_and_a_renewed_one_is_not(settings):
    settings.job_lease_seconds = 30
    old, fresh = _job(settings, "old"), _job(settings, "fresh")
    claim_next(settings, "elsewhere:1:1", ["test.kind"])
    claim_next(settings, "elsewhere:2:1", ["test.kind"])
    with session_scope(settings) as session:
        for job_id in (old, fresh):
            session.get(Job, job_id).locked_at = utcnow() - dt.timedelta(seconds=60)
    assert renew_leases(settings, _get(settings, fresh).locked_by) == 1  # its worker's heartbeat
    assert sweep_stale(settings) == 1
    assert _get(settings, old).status == "queued" and _get(settings, old).locked_by is None
    assert _get(settings, fresh).status == "running"


def test_a_job_held_by_a_dead_process_on_this_host_is_taken_back_at_once(settings):
    settings.job_lease_seconds = 3600  # the lease alone would keep it for an hour
    job_id = _job(settings)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    claim_next(settings, f"{socket.gethostname()}:{dead_pid}:1", ["test.kind"])
    alive = _job(settings, "alive")
    claim_next(settings, f"{socket.gethostname()}:1:1", ["test.kind"])  # pid 1 is alive
    assert sweep_stale(settings) == 1
    assert _get(settings, job_id).status == "queued"
    assert _get(settings, alive).status == "running"


def test_a_running_worker_heartbeats_its_long_job_and_sweeps_a_dead_ones(settings):
    """Lease 2 s, a job that runs 3 s: the heartbeat keeps it from being taken back (it runs once), while
    a job abandoned by another worker is recovered by the same running worker, not only at start-up."""
    settings.job_lease_seconds = 2
    settings.worker_poll_seconds = 0.05
    runs: list[int] = []

    def slow(payload):
        runs.append(payload["n"])
        time.sleep(3)

    long_job = _job(settings, "long", "slow")
    worker = Worker({"slow": slow, "test.kind": lambda p: runs.append(-1)}, settings, worker_id="here:0:1")
    second = Worker({"slow": slow}, settings, worker_id="there:0:1")  # would steal an expired lease
    threads = [threading.Thread(target=w.run_forever, daemon=True) for w in (worker, second)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    abandoned = _job(settings, "abandoned")
    with session_scope(settings) as session:  # as a worker that died holding it would leave it
        row = session.get(Job, abandoned)
        row.status, row.locked_by, row.locked_at = "running", "gone:0:1", utcnow() - dt.timedelta(seconds=10)
    deadline = time.monotonic() + 15
    while (_get(settings, long_job).status != "done" or _get(settings, abandoned).status != "done") and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    worker.stop()
    second.stop()
    for t in threads:
        t.join(timeout=10)
    assert _get(settings, long_job).status == "done" and _get(settings, long_job).attempts == 1
    assert runs.count(1) == 1  # the slow job ran once despite a lease shorter than its run
    assert _get(settings, abandoned).status == "done" and -1 in runs


def test_retry_later_waits_the_given_delay_without_using_an_attempt(settings):
    def not_yet(payload):
        raise RetryLater("the server is down", delay_seconds=120)

    job_id = _job(settings)
    before = utcnow()
    Worker({"test.kind": not_yet}, settings).run_until_idle()
    job = _get(settings, job_id)
    assert job.status == "queued" and job.attempts == 0 and "server is down" in job.last_error
    assert before + dt.timedelta(seconds=110) < job.run_after < utcnow() + dt.timedelta(seconds=121)


def test_due_jobs_are_claimed_highest_priority_first_then_in_due_order(settings):
    from core.enums import JobPriority

    with session_scope(settings) as session:
        ids = {
            key: enqueue(session, "test.kind", {}, dedupe_key=key, priority=priority).id
            for key, priority in (
                ("d-first", JobPriority.BACKGROUND),
                ("c-first", JobPriority.LEAD_C),
                ("a-late", JobPriority.LEAD_A),
                ("c-second", JobPriority.LEAD_C),
                ("a-later", JobPriority.LEAD_A),
                ("not-due", JobPriority.LEAD_A),
            )
        }
        session.get(Job, ids["not-due"]).run_after = utcnow() + dt.timedelta(hours=1)
    claimed = []
    while (job := claim_next(settings, "w:1:1", ["test.kind"])) is not None:
        claimed.append(job.dedupe_key)
    assert claimed == ["a-late", "a-later", "c-first", "c-second", "d-first"]


def test_a_handler_that_finishes_its_job_in_its_own_last_write_is_not_finished_twice(settings):
    """finish_current: the job ends in the handler's transaction; if that transaction rolls back, the worker
    still finishes the job itself."""
    from sqlalchemy import event

    from core.db import get_engine
    from core.jobs import finish_current

    def finishing(payload):
        with session_scope(settings) as session:
            finish_current(session)

    def rolled_back(payload):
        try:
            with session_scope(settings) as session:
                finish_current(session)
                raise ValueError("the last write failed")
        except ValueError:
            pass

    commits = []

    def count(conn):
        commits.append(1)

    event.listen(get_engine(settings), "commit", count)
    try:
        worker = Worker({"finishing": finishing, "rolled_back": rolled_back}, settings)
        first = _job(settings, "finishing", kind="finishing")
        commits.clear()
        assert worker.run_one()
        assert len(commits) == 2  # the claim and the handler's write, which finished the job
        assert _get(settings, first).status == "done" and _get(settings, first).locked_by is None
        second = _job(settings, "rolled_back", kind="rolled_back")
        assert worker.run_one()
        assert _get(settings, second).status == "done"
    finally:
        event.remove(get_engine(settings), "commit", count)


@only_on("postgresql")  # FOR UPDATE SKIP LOCKED
def test_a_worker_claims_the_next_job_while_another_is_mid_claim_without_waiting_for_it(settings):
    """One statement finds, locks and claims the next due job; a job another worker has locked but not yet
    claimed (its transaction still open) is skipped, not waited for, and stays queued for whoever holds it."""
    first, second = _job(settings, "first"), _job(settings, "second")
    with get_engine(settings).connect() as other_worker:
        other_worker.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": first})
        started = time.monotonic()
        claimed = claim_next(settings, "here:1:1", ["test.kind"], look_first=False)
        assert claimed is not None and claimed.id == second and claimed.status == "running"
        assert claimed.locked_by == "here:1:1" and claimed.attempts == 1
        assert time.monotonic() - started < 1  # not held up by the other worker's lock
        assert claim_next(settings, "here:1:1", ["test.kind"], look_first=False) is None  # nothing else free
        other_worker.rollback()
    assert _get(settings, first).status == "queued"
    assert claim_next(settings, "here:1:1", ["test.kind"]).id == first  # free again
