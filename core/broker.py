"""Background jobs on Celery (REVLOOP_BROKER_URL=redis://... or amqp://...): the scale path.

The job table stays the source of truth. A job row is written in the same transaction as the work that asks
for it; once that transaction commits, a Celery task carrying only the job id is published. The task claims
the row by id with the same compare-and-set as the built-in worker and runs it with the same handlers
(core.jobs.Worker.run_job), so a duplicate message, a redelivery or a second worker finds the job taken and
does nothing: each job runs once. Nothing is lost when the broker is down or loses a message: the row stays
queued and beat's dispatch publishes it again. Tasks are acknowledged late and redelivered when a worker is
lost; a worker's housekeeping renews its jobs' leases and takes back (and republishes) jobs whose worker died.

Queues: `<namespace>.hot` (likely-A leads, core.enums.JobPriority.LEAD_A and above) and `<namespace>.default`;
a worker consumes both, so a hot lead does not wait behind a burst of others.
Handlers are registered by the process that runs the worker (agents.runtime.lead_worker via `revloop worker`):
core imports none of the domain packages.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from functools import lru_cache
from typing import Any

from celery import Celery
from celery.signals import worker_ready
from kombu import Exchange, Queue
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from core import jobs
from core.db import session_scope
from core.enums import JobPriority, JobStatus
from core.files import private_dir
from core.models import Job, utcnow
from core.settings import Settings, get_settings

log = logging.getLogger("revloop.broker")

RUN_JOB = "revloop.run_job"
DISPATCH = "revloop.dispatch"
HOT_PRIORITY = JobPriority.LEAD_A
# A job due within this long is published at once with an ETA (workers hold it until then); later ones are
# published by beat's dispatch when they come due (Redis redelivers an ETA longer than its visibility timeout).
ETA_WINDOW = dt.timedelta(minutes=10)
DISPATCH_BATCH = 1000
_PUBLISH_KEY = "revloop.jobs_to_publish"


def queue_names(settings: Settings) -> tuple[str, str]:
    """(hot, default) queue names."""
    return f"{settings.broker_namespace}.hot", f"{settings.broker_namespace}.default"


@lru_cache(maxsize=8)
def _app(broker_url: str, namespace: str, visibility_timeout: int, dispatch_seconds: float, var_dir: str) -> Celery:
    hot, default, beat = f"{namespace}.hot", f"{namespace}.default", f"{namespace}.beat"
    app = Celery(namespace, broker=broker_url, set_as_current=False)
    transport: dict[str, Any] = {"visibility_timeout": visibility_timeout}
    if broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
        transport["global_keyprefix"] = f"{namespace}:"  # deployments sharing one Redis never see each other's keys
    app.conf.update(
        task_acks_late=True,  # acknowledged after the job ran: a worker lost mid-job leaves the message to redeliver
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a busy worker does not sit on messages another could run now
        task_ignore_result=True,  # results live in the database (the job row, the records)
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_queues=tuple(Queue(name, Exchange(name), routing_key=name) for name in (hot, default, beat)),
        task_default_queue=default,
        task_default_exchange=default,
        task_default_routing_key=default,
        # A publish while the broker is down fails fast: the job row is already committed and dispatch resends it.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        beat_schedule={
            "revloop-dispatch": {
                "task": DISPATCH,
                "schedule": dispatch_seconds,
                # A queue of its own: dispatch looks at the job queues' depth, which its own messages must not fill.
                "options": {"queue": beat, "expires": max(dispatch_seconds, 1.0)},
            }
        },
        beat_schedule_filename=os.path.join(var_dir, "celerybeat-schedule"),
        worker_hijack_root_logger=False,
        timezone="UTC",
        enable_utc=True,
    )

    @app.task(name=RUN_JOB, ignore_result=True)
    def run_job(job_id: int) -> None:
        _run(int(job_id))

    @app.task(name=DISPATCH, ignore_result=True)
    def dispatch_task() -> None:
        dispatch(_runtime().settings)

    return app


def celery_app(settings: Settings) -> Celery:
    if not settings.broker_url:
        raise RuntimeError("REVLOOP_BROKER_URL is not set")
    return _app(
        settings.broker_url,
        settings.broker_namespace,
        settings.broker_visibility_timeout_seconds,
        settings.broker_dispatch_seconds,
        str(settings.var_dir.resolve()),
    )


def __getattr__(name: str) -> Any:
    # `celery -A core.broker:app beat` (a separate beat process) finds the app of the environment's settings.
    if name == "app":
        settings = get_settings()
        private_dir(settings.var_dir)  # beat keeps its schedule file there; on a beat-only host nothing else made it
        return celery_app(settings)
    raise AttributeError(name)


def publish(settings: Settings, job_id: int, *, run_after: dt.datetime | None = None, priority: int = 0) -> bool:
    """Send the task of one job; False (logged) when the broker cannot take it now: the row stays queued and
    dispatch publishes it later."""
    hot, default = queue_names(settings)
    options: dict[str, Any] = {"queue": hot if priority >= HOT_PRIORITY else default}
    if run_after is not None and run_after > utcnow():
        options["eta"] = run_after if run_after.tzinfo else run_after.replace(tzinfo=dt.UTC)
    try:
        celery_app(settings).send_task(RUN_JOB, args=[job_id], **options)
    except Exception as exc:  # the broker is down: the committed row is the record, dispatch resends it
        log.warning("could not publish job %s (%s); beat's dispatch will", job_id, exc)
        return False
    return True


def _publish_pending(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint was released (insert_once): the transaction goes on
        return
    pending = session.info.pop(_PUBLISH_KEY, None) or []
    settings = session.info.get("settings")
    for job_id, run_after, priority in pending:
        publish(settings, job_id, run_after=run_after, priority=priority)


def _forget_pending(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # the transaction rolled back (a savepoint's rollback keeps the jobs)
        session.info.pop(_PUBLISH_KEY, None)


def publish_after_commit(session: Session, job: Job) -> None:
    """Publish the job's task once the session's transaction commits (never before: a worker must find the row),
    unless it is due later than the ETA window (dispatch publishes it then)."""
    if job.run_after is not None and job.run_after > utcnow() + ETA_WINDOW:
        return
    pending = session.info.get(_PUBLISH_KEY)
    if pending is None:
        pending = session.info[_PUBLISH_KEY] = []
        event.listen(session, "after_commit", _publish_pending)
        event.listen(session, "after_soft_rollback", _forget_pending)
    pending.append((job.id, job.run_after, job.priority or 0))


def _waiting_messages(settings: Settings) -> int:
    """Messages waiting in the broker's queues (not yet taken by a worker)."""
    total = 0
    with celery_app(settings).connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=5)  # a broker that is down answers at once, with the reason
        channel = conn.default_channel
        # Redis: a plain declare only reads the list's length (a passive one misses keys under global_keyprefix);
        # AMQP: passive, so the queue's own arguments are never contradicted.
        passive = conn.transport.driver_type != "redis"
        for name in queue_names(settings):
            try:
                total += channel.queue_declare(queue=name, passive=passive).message_count
            except Exception:  # AMQP: the queue does not exist yet, nothing waits in it (the channel is closed)
                channel = conn.channel()
    return total


def dispatch(settings: Settings) -> int:
    """Beat's periodic pass: publish queued jobs that are due and that no message may stand for (scheduled far
    ahead, or a message the broker lost). Only when no message waits in the queues, so a backlog is never
    doubled; a duplicate is harmless (the claim is a compare-and-set). The number published."""
    if _waiting_messages(settings):
        return 0
    with session_scope(settings, readonly=True) as session:
        due = session.execute(
            select(Job.id, Job.priority)
            .where(Job.status == JobStatus.QUEUED, Job.run_after <= utcnow())
            .order_by(Job.priority.desc(), Job.run_after, Job.id)
            .limit(DISPATCH_BATCH)
        ).all()
    published = sum(publish(settings, job_id, priority=priority or 0) for job_id, priority in due)
    if published:
        log.info("dispatch published %s due job(s) the broker did not hold", published)
    return published


class CeleryRuntime:
    """One per worker process: the handlers (a core.jobs.Worker built by the entry point) shared by the pool's
    threads, and the housekeeping thread (heartbeat, sweep, republish what the sweep took back)."""

    def __init__(self, worker: jobs.Worker):
        self.worker = worker
        self.settings = worker.settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self, job_id: int) -> None:
        job = jobs.claim_id(self.settings, job_id, self.worker.worker_id)
        if job is None:
            return  # another worker ran or runs it, or it is not due yet (its own message or dispatch brings it)
        self.worker.run_job(job)
        self._republish_if_requeued(job_id)

    def _republish_if_requeued(self, job_id: int) -> None:
        """A job put back for later (RetryLater, an error with retries left) gets a message for its new time."""
        with session_scope(self.settings, readonly=True) as session:
            row = session.execute(select(Job.status, Job.run_after, Job.priority).where(Job.id == job_id)).first()
        if row is not None and row.status == JobStatus.QUEUED and row.run_after <= utcnow() + ETA_WINDOW:
            publish(self.settings, job_id, run_after=row.run_after, priority=row.priority or 0)

    def housekeeping(self) -> int:
        """The heartbeat and the sweep; jobs it took back (a dead worker's) are published again at once."""
        jobs.renew_leases(self.settings, self.worker.worker_id)
        with session_scope(self.settings, readonly=True) as session:
            running = set(session.scalars(select(Job.id).where(Job.status == JobStatus.RUNNING)))
        if not jobs.sweep_stale(self.settings) or not running:
            return 0
        with session_scope(self.settings, readonly=True) as session:
            taken_back = session.execute(
                select(Job.id, Job.priority).where(Job.id.in_(running), Job.status == JobStatus.QUEUED)
            ).all()
        for job_id, priority in taken_back:
            publish(self.settings, job_id, priority=priority or 0)
        log.warning("took back %s job(s) from a stopped worker and published them again", len(taken_back))
        return len(taken_back)

    def _loop(self) -> None:
        while not self._stop.wait(self.worker.heartbeat_seconds):
            try:
                self.housekeeping()
            except Exception:  # a lost connection must not end the heartbeat
                log.exception("celery worker housekeeping error")

    def start(self) -> None:
        self.housekeeping()
        self._thread = threading.Thread(target=self._loop, name="celery-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


_current: CeleryRuntime | None = None


def _runtime() -> CeleryRuntime:
    if _current is None:
        raise RuntimeError("no job handlers registered in this process: start it with `revloop worker`")
    return _current


def _run(job_id: int) -> None:
    _runtime().run(job_id)


@lru_cache(maxsize=1)
def node_name() -> str:
    return f"revloop-{os.getpid()}@{socket.gethostname()}"


HUB_TICK_SECONDS = 0.05


def _keep_the_event_loop_awake(sender: Any = None, **_: Any) -> None:
    """Threads pool + the Redis transport's event loop: a job finished in a pool thread hands its ack back to the
    loop, which sleeps in epoll until its next timer (up to 10 s): the worker then takes no new message meanwhile
    (measured: 4 jobs every 10 s). A short repeating timer makes the loop look every 50 ms."""
    hub = getattr(sender, "hub", None) or getattr(getattr(sender, "controller", None), "hub", None)
    if hub is not None:
        hub.call_repeatedly(HUB_TICK_SECONDS, lambda: None)


def run_worker(worker: jobs.Worker, *, concurrency: int, beat: bool = False, loglevel: str = "INFO") -> None:
    """Run a Celery worker in this process with the given handlers until it is stopped (SIGTERM: warm shutdown,
    running jobs finish). Threads pool: the graphs share this process's checkpointer pool and engines."""
    global _current
    settings = worker.settings
    runtime = _current = CeleryRuntime(worker)
    runtime.start()
    beat_thread = None
    if beat:
        from celery.beat import EmbeddedService

        private_dir(settings.var_dir)  # beat keeps its schedule file there
        # A thread of this process, not Celery's -B child process: that one outlives a worker killed with SIGKILL
        # and goes on ticking beside the next worker's beat.
        beat_thread = EmbeddedService(celery_app(settings), thread=True)
        beat_thread.start()
    # Two lines per job (received, succeeded) cost more than the job's own logging; failures are still logged.
    for name in ("celery.worker.strategy", "celery.app.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    worker_ready.connect(_keep_the_event_loop_awake, weak=False)
    try:
        celery_app(settings).Worker(
            hostname=node_name(),
            pool="threads",
            concurrency=concurrency,
            queues=[*queue_names(settings), f"{settings.broker_namespace}.beat"],
            loglevel=loglevel,
            without_gossip=True,
            without_mingle=True,
            without_heartbeat=True,
            optimization="fair",
        ).start()
    finally:
        if beat_thread is not None:
            beat_thread.stop()
        runtime.stop()
        _current = None


def queue_depth(settings: Settings) -> int:
    """Messages waiting in the broker (for monitoring and the benchmarks)."""
    return _waiting_messages(settings)
