"""Pruning graph checkpoints, so they do not grow forever (45 KB a lead, never deleted, was 2.3 GB at 50k leads).

A finished thread (nothing left to run: sent, rejected, declined) loses all its checkpoints once its last step is
older than REVLOOP_CHECKPOINT_RETENTION_DAYS; the review item, the decision, the outbox and the audit log keep
what happened. A thread that is still waiting (on a review interrupt) or was stopped midway keeps its latest
checkpoint, with that checkpoint's pending writes (the interrupt), which is all a resume reads; older ones go.
Runs as the daily `checkpoint.prune` job on SqliteSaver and PostgresSaver alike."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from core import audit, jobs
from core.db import session_scope
from core.enums import JobKind
from core.models import utcnow
from core.settings import Settings

log = logging.getLogger("revloop.checkpoints")

# Done runs of these are deleted with the checkpoints past the retention (their keys are time slots).
PERIODIC_JOB_KINDS = [JobKind.HEALTH_CHECK, JobKind.SLA_WATCH, JobKind.CRM_SYNC]


@dataclass
class PruneResult:
    threads_deleted: int = 0  # finished threads past the retention: every checkpoint gone
    threads_trimmed: int = 0  # waiting or unfinished threads: only the latest checkpoint kept
    checkpoints_deleted: int = 0


def _is_sqlite(saver: BaseCheckpointSaver) -> bool:
    return type(saver).__name__ == "SqliteSaver"


def checkpoint_counts(saver: BaseCheckpointSaver) -> Iterator[tuple[str, int]]:
    """(thread id, number of checkpoints) of every thread the saver holds (root namespace)."""
    sql = "SELECT thread_id, COUNT(*) AS n FROM checkpoints WHERE checkpoint_ns = '' GROUP BY thread_id"
    if _is_sqlite(saver):
        with saver.cursor(transaction=False) as cur:
            rows = cur.execute(sql).fetchall()
        yield from ((str(t), int(n)) for t, n in rows)
        return
    with saver.conn.connection() as conn:
        rows = conn.execute(sql).fetchall()
    yield from ((str(r["thread_id"]), int(r["n"])) for r in rows)


def keep_latest(saver: BaseCheckpointSaver, thread_id: str) -> None:
    """Delete every checkpoint of a thread but the latest of each namespace, with its pending writes (which hold
    an interrupt). PostgresSaver has this built in; SqliteSaver does not."""
    if not _is_sqlite(saver):
        saver.prune([thread_id], strategy="keep_latest")
        return
    latest = "SELECT checkpoint_ns, MAX(checkpoint_id) FROM checkpoints WHERE thread_id = ? GROUP BY checkpoint_ns"
    with saver.cursor() as cur:  # one transaction, under the saver's lock
        for ns, checkpoint_id in cur.execute(latest, (thread_id,)).fetchall():
            where = "thread_id = ? AND checkpoint_ns = ? AND checkpoint_id <> ?"
            cur.execute(f"DELETE FROM writes WHERE {where}", (thread_id, ns, checkpoint_id))
            cur.execute(f"DELETE FROM checkpoints WHERE {where}", (thread_id, ns, checkpoint_id))


def prune(
    settings: Settings, saver: BaseCheckpointSaver, graph_for: Any, *, now: dt.datetime | None = None
) -> PruneResult:
    """Prune every thread the saver holds. graph_for(thread_id) is the compiled graph that runs the thread (it
    tells whether the thread has anything left to run), None for a thread of no graph we know (left alone)."""
    cutoff = (now or utcnow()) - dt.timedelta(days=settings.checkpoint_retention_days)
    result = PruneResult()
    for thread_id, count in list(checkpoint_counts(saver)):
        graph = graph_for(thread_id)
        snapshot = graph.get_state({"configurable": {"thread_id": thread_id}}) if graph is not None else None
        if snapshot is None or snapshot.created_at is None:
            continue
        finished = not snapshot.next and not snapshot.interrupts
        if finished and dt.datetime.fromisoformat(snapshot.created_at) <= cutoff:
            saver.delete_thread(thread_id)
            result.threads_deleted += 1
            result.checkpoints_deleted += count
        elif count > 1:
            keep_latest(saver, thread_id)
            result.threads_trimmed += 1
            result.checkpoints_deleted += count - 1
    return result


def schedule(settings: Settings, day: dt.date, at_hour: int = 3) -> None:
    """Queue the day's prune (once, whatever restarts); each run queues the next day's."""
    run_after = dt.datetime.combine(day, dt.time(at_hour), tzinfo=dt.UTC)
    key = f"{JobKind.CHECKPOINT_PRUNE}:{day.isoformat()}"
    with session_scope(settings) as session:
        jobs.enqueue(session, JobKind.CHECKPOINT_PRUNE, {"day": day.isoformat()}, dedupe_key=key, run_after=run_after)


def run_scheduled(settings: Settings, saver: BaseCheckpointSaver, graph_for: Any, payload: dict[str, Any]) -> None:
    result = prune(settings, saver, graph_for)
    log.info("checkpoints pruned: %s", result)
    cutoff = utcnow() - dt.timedelta(days=settings.checkpoint_retention_days)
    with session_scope(settings) as session:
        periodic_jobs_deleted = jobs.prune_finished_slots(session, PERIODIC_JOB_KINDS, cutoff)
        audit.record(
            session,
            actor="agent:checkpoints",
            action="checkpoints.pruned",
            entity_type="scan",
            entity_id=payload["day"],
            after={
                **asdict(result),
                "periodic_jobs_deleted": periodic_jobs_deleted,
                "retention_days": settings.checkpoint_retention_days,
            },
        )
    schedule(settings, dt.date.fromisoformat(payload["day"]) + dt.timedelta(days=1))
