"""Durable background jobs in the database, and the in-process worker that runs them.

Claiming is a compare-and-set UPDATE, so several workers (threads or processes) never run the same
job twice. A running job holds a lease that its worker renews with a heartbeat; while running, every
worker sweeps periodically and takes back jobs whose lease expired (their worker died or hung) and, at
once, jobs held by a dead process on its own host.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import traceback
from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, bindparam, delete, event, select, update
from sqlalchemy.orm import Session

from core.db import insert_ignore, session_scope
from core.enums import JobPriority, JobStatus
from core.models import Job, utcnow
from core.settings import Settings, get_settings

log = logging.getLogger("revloop.worker")

JobHandler = Callable[[dict[str, Any]], None]
IDLE_POLL_FIRST_SECONDS = 0.01  # an idle worker's first wait; it doubles up to settings.worker_poll_seconds


class RetryLater(Exception):
    """Raised by a handler that cannot proceed yet; the job is retried without counting as an error,
    after `delay_seconds` when given (else the usual backoff)."""

    def __init__(self, message: str, delay_seconds: float | None = None):
        super().__init__(message)
        self.delay_seconds = delay_seconds


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    *,
    dedupe_key: str,
    run_after: dt.datetime | None = None,
    priority: int = JobPriority.BACKGROUND,
) -> Job:
    """Queue a job once: a second call with the same dedupe key returns the existing job. Due jobs of a higher
    priority are claimed first (core.enums.JobPriority)."""
    enqueue_new(session, kind, payload, dedupe_key=dedupe_key, run_after=run_after, priority=priority)
    return session.scalars(select(Job).where(Job.dedupe_key == dedupe_key)).one()


def enqueue_new(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    *,
    dedupe_key: str,
    run_after: dt.datetime | None = None,
    priority: int = JobPriority.BACKGROUND,
) -> int | None:
    """enqueue() without loading the job: its id when this call queued it, None when the dedupe key was taken."""
    run_after = run_after or utcnow()
    values = {"kind": kind, "payload": payload, "dedupe_key": dedupe_key, "run_after": run_after, "priority": priority}
    row = insert_ignore(session, Job, values)
    if row is None:
        return None
    settings = session.info.get("settings")
    if settings is not None and settings.broker_url:
        from core import broker  # Celery is imported only where a broker is configured

        broker.publish_after_commit(session, Job(id=row.id, run_after=run_after, priority=priority))
    return row.id


def enqueue_next_slot(session: Session, kind: str, interval: dt.timedelta, *, now: dt.datetime | None = None) -> Job:
    """Queue a periodic job for the next interval slot after `now` (slots counted from 2000-01-01 UTC): the slot is
    the dedupe key, so every worker and restart that schedules it queues it once."""
    epoch = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    slot = epoch + interval * (((now or utcnow()) - epoch) // interval + 1)
    return enqueue(session, kind, {"slot": slot.isoformat()}, dedupe_key=f"{kind}:{slot.isoformat()}", run_after=slot)


def prune_finished_slots(session: Session, kinds: list[str], before: dt.datetime) -> int:
    """Delete done jobs of periodic kinds (keyed by their time slot, so no later enqueue can reuse the key)
    that finished before `before`: a watch every 30 s leaves ~2,900 rows a day otherwise. Other kinds stay, as
    their dedupe keys are what stops a second run."""
    return session.execute(
        delete(Job).where(Job.kind.in_(kinds), Job.status == JobStatus.DONE, Job.finished_at < before)
    ).rowcount


def cancel_queued(session: Session, dedupe_key: str) -> bool:
    """Delete a job that no worker has claimed yet; False if it is running or done (too late)."""
    return (
        session.execute(delete(Job).where(Job.dedupe_key == dedupe_key, Job.status == JobStatus.QUEUED)).rowcount == 1
    )


# The claim's statements, built once (their SQL compiled and cached once; no statement construction per claim), Core
# statements of the table run on the session's connection: the ORM's machinery cost more than the claim itself.
_JOBS = Job.__table__


def _due_ids(jobs) -> Select:
    """Due jobs of these kinds, the highest priority first, then the one due longest (of `jobs`: the table or an
    alias of it)."""
    return (
        select(jobs.c.id)
        .where(
            jobs.c.status == JobStatus.QUEUED,
            jobs.c.run_after <= bindparam("now"),
            jobs.c.kind.in_(bindparam("kinds", expanding=True)),
        )
        .order_by(jobs.c.priority.desc(), jobs.c.run_after, jobs.c.id)
    )


_DUE = _due_ids(_JOBS)
_DUE_FIRST, _DUE_FIVE = _DUE.limit(1), _DUE.limit(5)
_CLAIM = (
    update(_JOBS)
    .where(_JOBS.c.id == bindparam("job_id"), _JOBS.c.status == JobStatus.QUEUED)
    .values(status=JobStatus.RUNNING, locked_by=bindparam("worker_id"), locked_at=bindparam("now"))
    .values(attempts=_JOBS.c.attempts + 1)
    .returning(*_JOBS.c)
)
# PostgreSQL: the next due job found, locked and claimed by one statement; a job another worker is claiming is
# skipped, not waited for (SQLite has one writer at a time, so there the look and the compare-and-set suffice).
_CLAIM_NEXT_SKIP_LOCKED = (
    update(_JOBS)
    .where(_JOBS.c.id == _due_ids(_JOBS.alias("due")).limit(1).with_for_update(skip_locked=True).scalar_subquery())
    .values(status=JobStatus.RUNNING, locked_by=bindparam("worker_id"), locked_at=bindparam("now"))
    .values(attempts=_JOBS.c.attempts + 1)
    .returning(*_JOBS.c)
)


def claim_next(settings: Settings, worker_id: str, kinds: list[str], *, look_first: bool = True) -> Job | None:
    """Take the next due job: the highest priority first, then the one due longest (index status, priority,
    run_after). look_first=False skips the read-only look for a due job, for a worker that has just finished one
    (in a busy spell the next one is most likely there: one transaction instead of two)."""
    now = utcnow()
    due = {"now": now, "kinds": list(kinds)}
    # Look first with a read (no write lock), so idle workers polling often never hold up a writer.
    if look_first:
        with session_scope(settings, readonly=True) as session:
            if session.connection().execute(_DUE_FIRST, due).first() is None:
                return None
    with session_scope(settings) as session:
        conn = session.connection()
        if conn.dialect.name == "postgresql":
            claimed = conn.execute(_CLAIM_NEXT_SKIP_LOCKED, {**due, "worker_id": worker_id}).first()
            return Job(**claimed._mapping) if claimed is not None else None
        for job_id in conn.execute(_DUE_FIVE, due).scalars().all():
            # Compare-and-set, the claimed row returned by the same statement.
            claimed = conn.execute(_CLAIM, {"job_id": job_id, "worker_id": worker_id, "now": now}).first()
            if claimed is not None:
                return Job(**claimed._mapping)  # the row as it is now, detached (as a loaded row after the commit)
    return None


def claim_key(settings: Settings, dedupe_key: str, worker_id: str) -> Job | None:
    """Claim the queued job with this key to run it now, in this process (a request that waits for its result);
    None when there is none or another worker holds it."""
    with session_scope(settings) as session:
        job_id = session.scalar(select(Job.id).where(Job.dedupe_key == dedupe_key, Job.status == JobStatus.QUEUED))
        if job_id is None:
            return None
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
            .values(status=JobStatus.RUNNING, locked_by=worker_id, locked_at=utcnow(), attempts=Job.attempts + 1)
        ).rowcount
        if claimed != 1:
            return None
        session.flush()
        job = session.get(Job, job_id)
        session.expunge(job)
        return job


def claim_id(settings: Settings, job_id: int, worker_id: str) -> Job | None:
    """Claim one job by id when it is queued and due (a Celery task carries the id); None when another worker
    has it, it is done, or it is not due yet. The same compare-and-set as claim_next, so each job runs once."""
    now = utcnow()
    with session_scope(settings) as session:
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.run_after <= now)
            .values(status=JobStatus.RUNNING, locked_by=worker_id, locked_at=now, attempts=Job.attempts + 1)
        ).rowcount
        if claimed != 1:
            return None
        session.flush()
        return session.get(Job, job_id)


def finish(settings: Settings, job_id: int) -> None:
    with session_scope(settings) as session:
        _mark_done(session, job_id)


_DONE = (
    update(Job.__table__)
    .where(Job.__table__.c.id == bindparam("job_id"))
    .values(status=JobStatus.DONE, finished_at=bindparam("finished_at"), locked_by=None)
)


def _mark_done(session: Session, job_id: int) -> None:
    session.connection().execute(_DONE, {"job_id": job_id, "finished_at": utcnow()})


class _RunningJob(threading.local):
    job_id: int | None = None
    finished: bool = False


_running = _RunningJob()


def finish_current(session: Session) -> None:
    """Mark the job this thread is running as done inside the caller's unit of work, so a handler's last write
    and the job's end commit together (one transaction less per job). Once that unit of work commits, the worker
    does not finish the job again; if it rolls back, the worker finishes (or retries) the job as usual. Does
    nothing outside a worker's job."""
    job_id = _running.job_id
    if job_id is None:
        return
    _mark_done(session, job_id)

    @event.listens_for(session, "after_commit", once=True)
    def _done(_session: Session) -> None:
        if _running.job_id == job_id:
            _running.finished = True


def fail(
    settings: Settings, job: Job, error: str, *, count_attempt: bool = True, delay_seconds: float | None = None
) -> None:
    retry_in = delay_seconds if delay_seconds is not None else min(2**job.attempts, 300)
    give_up = count_attempt and job.attempts >= settings.job_max_attempts
    with session_scope(settings) as session:
        values: dict[str, Any] = {"last_error": error[-4000:], "locked_by": None, "locked_at": None}
        if give_up:
            values.update(status=JobStatus.FAILED, finished_at=utcnow())
        else:
            values.update(status=JobStatus.QUEUED, run_after=utcnow() + dt.timedelta(seconds=retry_in))
            if not count_attempt:
                values["attempts"] = Job.attempts - 1
        session.execute(update(Job).where(Job.id == job.id).values(**values))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _held_by_dead_local_process(locked_by: str | None) -> bool:
    """True when the lock holder ran on this host in a process that no longer exists (killed, crashed)."""
    host, _, rest = (locked_by or "").partition(":")
    pid = rest.partition(":")[0]
    return host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid))


def sweep_stale(settings: Settings) -> int:
    """Requeue jobs left 'running' by a worker that died: their lease expired (no heartbeat for
    job_lease_seconds) or their process on this host is gone."""
    cutoff = utcnow() - dt.timedelta(seconds=settings.job_lease_seconds)
    requeue = {"status": JobStatus.QUEUED, "locked_by": None, "locked_at": None, "run_after": utcnow()}
    with session_scope(settings) as session:
        count = session.execute(
            update(Job).where(Job.status == JobStatus.RUNNING, Job.locked_at < cutoff).values(**requeue)
        ).rowcount
        held = session.execute(select(Job.id, Job.locked_by).where(Job.status == JobStatus.RUNNING)).all()
        for job_id, locked_by in held:
            if _held_by_dead_local_process(locked_by):
                count += session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.locked_by == locked_by)
                    .values(**requeue)
                ).rowcount
        return count


def renew_leases(settings: Settings, worker_id: str) -> int:
    """The heartbeat: push the lease of every job this worker runs forward."""
    with session_scope(settings) as session:
        return session.execute(
            update(Job).where(Job.status == JobStatus.RUNNING, Job.locked_by == worker_id).values(locked_at=utcnow())
        ).rowcount


class Worker:
    """Runs queued jobs with the given handlers until stopped; one housekeeping thread per worker renews
    the leases of its running jobs and sweeps abandoned ones."""

    def __init__(self, handlers: dict[str, JobHandler], settings: Settings | None = None, worker_id: str | None = None):
        self.handlers = handlers
        self.settings = settings or get_settings()
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self._stop = threading.Event()
        self._housekeeper: threading.Thread | None = None
        self._housekeeper_lock = threading.Lock()

    def stop(self) -> None:
        self._stop.set()

    @property
    def heartbeat_seconds(self) -> float:
        return max(0.5, self.settings.job_lease_seconds / 4)

    def housekeeping(self) -> int:
        """One heartbeat and sweep; the number of abandoned jobs taken back."""
        renew_leases(self.settings, self.worker_id)
        requeued = sweep_stale(self.settings)
        if requeued:
            log.warning("recovered %s job(s) abandoned by a stopped worker", requeued)
        return requeued

    def _housekeeping_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                self.housekeeping()
            except Exception:  # a lost database connection must not end the heartbeat
                log.exception("worker housekeeping error")

    def start_housekeeping(self) -> None:
        with self._housekeeper_lock:
            if self._housekeeper is None or not self._housekeeper.is_alive():
                self._housekeeper = threading.Thread(
                    target=self._housekeeping_loop, name="worker-heartbeat", daemon=True
                )
                self._housekeeper.start()

    def run_one(self, *, busy: bool = False) -> bool:
        """Run the next due job; False when there is none. busy: the caller has just run one (see claim_next)."""
        job = claim_next(self.settings, self.worker_id, list(self.handlers), look_first=not busy)
        if job is None:
            return False
        self.run_job(job)
        return True

    def run_job(self, job: Job) -> None:
        """Run a job this worker claimed with its handler, then finish it, or put it back (RetryLater, an error)."""
        log.debug("job %s %s attempt %s", job.id, job.kind, job.attempts)
        _running.job_id, _running.finished = job.id, False
        try:
            self.handlers[job.kind](dict(job.payload))
        except RetryLater as exc:
            fail(self.settings, job, f"retry later: {exc}", count_attempt=False, delay_seconds=exc.delay_seconds)
        except Exception:
            log.exception("job %s %s failed", job.id, job.kind)
            fail(self.settings, job, traceback.format_exc())
        else:
            if not _running.finished:  # the handler did not finish it in its own last write
                finish(self.settings, job.id)
        finally:
            _running.job_id = None

    def run_until_idle(self, max_jobs: int = 10_000) -> int:
        """Run due jobs until none is left (used by tests and `revloop worker --until-idle`)."""
        self.housekeeping()
        done = 0
        while done < max_jobs and self.run_one(busy=done > 0):
            done += 1
        return done

    def run_forever(self) -> None:
        """Run jobs until stopped; several threads may call this on one worker (they share its heartbeat). After
        a job it looks again at once; when idle it waits IDLE_POLL_FIRST_SECONDS, doubling up to
        worker_poll_seconds: a lead arriving in a busy spell waits milliseconds, an idle worker polls rarely."""
        self.housekeeping()
        self.start_housekeeping()
        idle_wait = IDLE_POLL_FIRST_SECONDS
        busy = False
        while not self._stop.is_set():
            try:
                busy = self.run_one(busy=busy)
                if busy:
                    idle_wait = IDLE_POLL_FIRST_SECONDS
                else:
                    self._stop.wait(min(idle_wait, self.settings.worker_poll_seconds))
                    idle_wait = min(idle_wait * 2, self.settings.worker_poll_seconds)
            except Exception:  # a lost database connection must not kill the worker
                log.exception("worker loop error")
                self._stop.wait(min(5.0, self.settings.worker_poll_seconds * 10))
