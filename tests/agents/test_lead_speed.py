"""The lead graph's cost and order: one checkpoint and two commits of ours per lead, hot leads drafted first, and
old checkpoints pruned (a finished thread's all, a waiting thread's all but the latest, which still resumes)."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager

from sqlalchemy import event, select

from agents import checkpoints
from agents.runtime import LeadGraphRunner, open_checkpointer
from core.db import get_engine, session_scope
from core.enums import JobKind, JobPriority
from core.models import AuditEvent, Job, Lead, ReviewItem, utcnow
from tests.factories import auth, captured_lead

WRITES = ("insert", "update", "delete")


@contextmanager
def counting_commits(settings):
    """The commits of transactions that wrote something (what costs a durable commit; a transaction that only read,
    like taking a PostgreSQL advisory lock, is not counted)."""
    commits: list[int] = []

    def statement(conn, _cursor, sql, *_args) -> None:
        if sql.lstrip().lower().startswith(WRITES):
            conn.info["wrote"] = True

    def commit(conn) -> None:
        if conn.info.pop("wrote", False):
            commits.append(1)

    engine = get_engine(settings)
    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        yield commits
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)


@contextmanager
def runner(settings):
    with open_checkpointer(settings) as saver:
        yield LeadGraphRunner(settings, saver), saver


def _thread(settings, lead_id: int) -> str:
    with session_scope(settings, readonly=True) as session:
        return session.scalar(select(Lead.thread_id).where(Lead.id == lead_id))


def _checkpoints(saver, thread_id: str) -> int:
    return dict(checkpoints.checkpoint_counts(saver)).get(thread_id, 0)


def test_a_lead_costs_two_commits_and_one_checkpoint_up_to_its_review_item(settings, worker):
    captured_lead(settings)  # a first lead warms what is cached per company (the directory look-up)
    worker.run_until_idle()
    lead_id = captured_lead(settings, email="john@acme-software.com", first_name="John")
    with counting_commits(settings) as commits:
        assert worker.run_one()  # the lead's graph, up to its review interrupt
    with session_scope(settings, readonly=True) as session:
        item = session.scalars(select(ReviewItem).where(ReviewItem.lead_id == lead_id)).one()
        job = session.scalars(
            select(Job).where(Job.kind == JobKind.LEAD_RUN, Job.payload["lead_id"].as_integer() == lead_id)
        ).one()
        lead = session.get(Lead, lead_id)
    assert len(commits) == 2  # the claim, then the brief + the review item + the job's end in one unit of work
    assert job.status == "done" and item.status == "pending" and lead.status == "in_review" and lead.grade
    with runner(settings) as (_, saver):
        assert _checkpoints(saver, _thread(settings, lead_id)) == 1  # saved once, at the interrupt


@contextmanager
def counting_units_of_work(settings):
    """Transactions begun (on the read and the write engine) and UPDATE statements of the leads table."""
    counts = {"begun": 0, "lead_updates": 0}

    def begin(_conn) -> None:
        counts["begun"] += 1

    def statement(_conn, _cursor, sql, *_args) -> None:
        if sql.lstrip().lower().startswith("update leads"):
            counts["lead_updates"] += 1

    engines = {get_engine(settings), get_engine(settings, readonly=True)}
    for engine in engines:
        event.listen(engine, "begin", begin)
        event.listen(engine, "before_cursor_execute", statement)
    try:
        yield counts
    finally:
        for engine in engines:
            event.remove(engine, "begin", begin)
            event.remove(engine, "before_cursor_execute", statement)


def test_a_leads_first_run_reads_in_one_unit_of_work_and_updates_its_lead_once(settings, worker):
    captured_lead(settings)  # warms what is cached per company (the directory look-up)
    worker.run_until_idle()
    lead_id = captured_lead(settings, email="jane@acme-software.com", first_name="Jane", phone="+1 415 555 0100")
    with counting_units_of_work(settings) as counts:
        assert worker.run_one()
    with session_scope(settings, readonly=True) as session:
        lead = session.get(Lead, lead_id)
        trail = session.scalars(
            select(AuditEvent.after)
            .where(AuditEvent.action == "lead.status_changed", AuditEvent.entity_id == str(lead_id))
            .order_by(AuditEvent.id)
        ).all()
    assert lead.status == "in_review" and lead.brief and lead.grade
    assert [t["status"] for t in trail] == ["scored", "in_review"]  # both changes audited, in order...
    assert counts["lead_updates"] == 1  # ...and stored with the brief in one UPDATE
    # The idle worker's look for a job and its claim, the run's reads (records, look-ups, rubric, routing, template:
    # one read-only unit of work), the run's one write; PostgreSQL adds the graph thread's advisory lock (taken, then
    # released). Before: about a dozen.
    assert counts["begun"] <= (4 if settings.is_sqlite else 6), counts


def test_a_likely_a_lead_posted_after_a_burst_is_drafted_first(settings, worker):
    cold = [captured_lead(settings, email=f"kid{i}@gmail.com", title="Student", message="homework") for i in range(3)]
    hot = captured_lead(settings, email="ceo@bigco.example", custom={"industry": "software", "employees": 300})
    with session_scope(settings, readonly=True) as session:
        priority = dict(session.execute(select(Job.payload["lead_id"].as_integer(), Job.priority)).all())
    assert priority[hot] == JobPriority.LEAD_A
    assert all(priority[c] < JobPriority.LEAD_A for c in cold)
    assert worker.run_one()  # one job only: the hot lead's, though it came last
    with session_scope(settings, readonly=True) as session:
        assert session.scalars(select(ReviewItem.lead_id)).all() == [hot]


def test_prune_deletes_a_finished_threads_checkpoints_and_keeps_a_waiting_thread_resumable(settings, worker, http):
    settings.checkpoint_retention_days = 7
    finished = captured_lead(settings, email="nobody@acme-software.com", consent={"email": False, "call": False})
    waiting = captured_lead(settings, email="jane@acme-software.com")
    with runner(settings) as (run, saver):
        # The waiting lead runs checkpointed after every step (as before "exit" durability): seven checkpoints.
        run.graph.invoke({"lead_id": waiting}, {"configurable": {"thread_id": _thread(settings, waiting)}})
        run._queue_interrupts(_thread(settings, waiting), run.graph, lead_id=waiting)
        with session_scope(settings) as session:
            session.execute(
                Job.__table__.delete().where(
                    Job.kind == JobKind.LEAD_RUN, Job.payload["lead_id"].as_integer() == waiting
                )
            )
        worker.run_until_idle()  # the finished lead: no contact allowed, its thread ends
        assert _checkpoints(saver, _thread(settings, finished)) == 1
        assert _checkpoints(saver, _thread(settings, waiting)) > 1

        kept = checkpoints.prune(settings, saver, run.graph_for)  # the finished thread is within its retention
        assert kept.threads_trimmed >= 1  # (the checkpoint store is shared with other tests' threads)
        assert _checkpoints(saver, _thread(settings, finished)) == 1
        assert _checkpoints(saver, _thread(settings, waiting)) == 1

        later = checkpoints.prune(settings, saver, run.graph_for, now=utcnow() + dt.timedelta(days=8))
        assert later.threads_deleted >= 1
        assert _checkpoints(saver, _thread(settings, finished)) == 0
        assert _checkpoints(saver, _thread(settings, waiting)) == 1  # still waiting: never deleted

    # The trimmed thread resumes: approving its item sends the email once.
    with session_scope(settings, readonly=True) as session:
        item_id = session.scalar(select(ReviewItem.id).where(ReviewItem.lead_id == waiting))
    r = http.post(f"/v1/review-items/{item_id}/approve", json={}, headers=auth(settings, "closer"))
    assert r.status_code == 200, r.text
    worker.run_until_idle()
    with session_scope(settings, readonly=True) as session:
        assert session.get(ReviewItem, item_id).status == "sent"


def test_the_daily_prune_job_runs_in_the_worker_and_queues_the_next_day(settings, worker):
    today = utcnow().date()
    checkpoints.schedule(settings, today - dt.timedelta(days=1))
    worker.run_until_idle()
    with session_scope(settings, readonly=True) as session:
        jobs = {
            j.dedupe_key: j.status for j in session.scalars(select(Job).where(Job.kind == JobKind.CHECKPOINT_PRUNE))
        }
        pruned = session.scalars(select(AuditEvent).where(AuditEvent.action == "checkpoints.pruned")).all()
    assert jobs[f"checkpoint.prune:{today - dt.timedelta(days=1)}"] == "done"
    assert f"checkpoint.prune:{today}" in jobs  # each run queues the next day's
    assert pruned and pruned[0].after["retention_days"] == settings.checkpoint_retention_days


def test_the_daily_prune_deletes_old_done_runs_of_periodic_jobs_only(settings, worker):
    old = utcnow() - dt.timedelta(days=settings.checkpoint_retention_days + 1)
    rows = {
        "sla.watch:old": (JobKind.SLA_WATCH, "done", old),
        "health.check:old": (JobKind.HEALTH_CHECK, "done", old),
        "sla.watch:recent": (JobKind.SLA_WATCH, "done", utcnow()),
        "sla.watch:failed": (JobKind.SLA_WATCH, "failed", old),
        "lead:old": (JobKind.LEAD_RUN, "done", old),  # its key stops a second run of the lead: kept
    }
    with session_scope(settings) as session:
        for key, (kind, status, finished_at) in rows.items():
            session.add(Job(kind=kind, dedupe_key=key, status=status, finished_at=finished_at, run_after=old))
    checkpoints.schedule(settings, utcnow().date() - dt.timedelta(days=1))
    worker.run_until_idle()
    with session_scope(settings, readonly=True) as session:
        left = set(session.scalars(select(Job.dedupe_key).where(Job.dedupe_key.in_(rows))))
        runs = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "checkpoints.pruned").order_by(AuditEvent.id)
        ).all()
    assert left == {"sla.watch:recent", "sla.watch:failed", "lead:old"}
    # yesterday's run (and today's, as its hour has passed) ran: the first deleted the two old rows
    assert [run.after["periodic_jobs_deleted"] for run in runs][0] == 2
    assert sum(run.after["periodic_jobs_deleted"] for run in runs) == 2
