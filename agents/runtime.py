"""Running graphs durably: the checkpointer for the configured database, the lead-graph runner
that turns interrupts into review items and resumes threads with decisions, and the job handlers
the background worker runs."""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command, Interrupt
from sqlalchemy import select

from agents import checkpoints
from agents.lead import nodes as lead_nodes
from agents.lead.graph import build_lead_graph
from agents.proposal.graph import build_proposal_graph
from billing import mpesa, reminders
from core import audit, jobs
from core.db import idle_too_long, session_scope
from core.enums import GRAPH_SOURCES, DecisionAction, ItemSource, ItemStatus, JobKind, LeadStatus
from core.files import private_file
from core.jobs import RetryLater, Worker
from core.locks import LockBusy, named_lock
from core.models import Lead, ReviewItem
from core.settings import Settings, get_settings
from crm import records
from crm import sync as crm_sync
from crm import writeback as crm_writeback
from deals import cadences, daily, flow, pipeline
from review import decisions, health, notification_channels, repository, sla
from review.execute import Rule, execute_approved
from review.queue import Draft, queue_item

log = logging.getLogger("revloop.agents")
CHECKPOINT_SETUP_LOCK = 0x7265766C6F6F70  # "revloop": the advisory lock key of the checkpointer's migrations


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1).replace("postgres+psycopg://", "postgresql://", 1)


@contextmanager
def open_checkpointer(settings: Settings) -> Iterator[BaseCheckpointSaver]:
    """SqliteSaver on the embedded default, PostgresSaver (pooled) on PostgreSQL."""
    url = settings.resolved_checkpoint_url
    if url.startswith("sqlite"):
        from langgraph.checkpoint.sqlite import SqliteSaver

        path = Path(url.split("///", 1)[1])
        private_file(path)  # checkpoints hold leads' data: 0600 in a 0700 folder
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        try:
            # Workers opening a fresh file together: switching it to WAL is not covered by the busy timeout
            # ("database is locked"), so one at a time under a file lock (threads' separate opens conflict too).
            with open(path.with_name(path.name + ".setup-lock"), "a") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                conn.execute("PRAGMA journal_mode=WAL")
                saver = SqliteSaver(conn)
                saver.setup()
            yield saver
        finally:
            conn.close()
        return
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    # Checked before use only after sitting idle (core.db.PING_AFTER_IDLE_SECONDS), as the database engine's pool.
    returned_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def check_when_idle(conn) -> None:
        if idle_too_long(returned_at.pop(conn, None)):
            ConnectionPool.check_connection(conn)

    def mark_returned(conn) -> None:
        returned_at[conn] = time.monotonic()

    pool = ConnectionPool(
        _libpq_url(url),
        min_size=1,
        max_size=4,
        kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": 0},
        check=check_when_idle,
        reset=mark_returned,
        open=True,
    )
    try:
        saver = PostgresSaver(pool)
        # Workers started together on a fresh database would race on setup()'s CREATE TABLEs (UniqueViolation on
        # pg_type): one at a time, under an advisory lock. The others poll for it with short statements instead of
        # blocking in one: setup() builds indexes CONCURRENTLY, which waits for every open statement to finish.
        with pool.connection() as conn:
            while not conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (CHECKPOINT_SETUP_LOCK,)).fetchone()["ok"]:
                time.sleep(0.1)
            try:
                saver.setup()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (CHECKPOINT_SETUP_LOCK,))
        yield saver
    finally:
        pool.close()


# A lead's first run is checkpointed when it stops (at its review interrupt or its end), not after every node:
# one checkpoint instead of seven, and its nodes before the interrupt only read (run_lead stores their output).
FIRST_RUN_DURABILITY = "exit"


def _store_lead_run(session, lead_id: int, values: dict[str, Any], *, queued: bool = False) -> None:
    """What a lead's first run decided, stored once: the brief (score, grade; the lead becomes scored), then in_review
    when its review item was just queued (`queued`), or no_contact_allowed when it may not be contacted. The lead's
    changes go to the database in one UPDATE, each status change with its audit event. A re-run after a crash
    stores nothing twice."""
    statuses = [LeadStatus.IN_REVIEW] if queued else []
    if (values.get("outcome") or {}).get("status") == LeadStatus.NO_CONTACT_ALLOWED:
        statuses.append(LeadStatus.NO_CONTACT_ALLOWED)
    records.record_run(session, lead_id, values.get("brief"), statuses, actor="agent:lead")


class LeadGraphRunner:
    """Starts, recovers and resumes graph threads; the review_items table is the source of truth for
    what is pending. Items without a graph thread are executed by the one executor with their domain's rule."""

    def __init__(self, settings: Settings, checkpointer: BaseCheckpointSaver):
        self.settings = settings
        self.graph = build_lead_graph(settings).compile(checkpointer=checkpointer)
        self.proposal_graph = build_proposal_graph(settings).compile(checkpointer=checkpointer)
        self.graphs = {ItemSource.LEAD: self.graph, ItemSource.PROPOSAL: self.proposal_graph}

    def run_proposal(self, payload: dict[str, Any]) -> None:
        """Start (or continue after a crash) a proposal thread and queue its review item."""
        thread_id = payload["thread_id"]
        config = self._config(thread_id)
        snapshot = self.proposal_graph.get_state(config)
        if snapshot.created_at is None:
            request = {"lines": payload.get("lines"), "discount_pct": payload.get("discount_pct", "0")}
            self.proposal_graph.invoke({"deal_id": int(payload["deal_id"]), "request": request}, config)
        elif snapshot.next and not snapshot.interrupts:
            self.proposal_graph.invoke(None, config)
        item_ids = self._queue_interrupts(thread_id, self.proposal_graph)
        if item_ids:
            with session_scope(self.settings) as session:  # the document points at the item that sends it
                flow.link_review_item(session, thread_id, item_ids[0])

    def graph_for(self, thread_id: str):
        """The graph that runs a thread, by its id's prefix (Lead.thread_id, deals.flow's proposal threads)."""
        if thread_id.startswith("lead-"):
            return self.graph
        return self.proposal_graph if thread_id.startswith("proposal-") else None

    @staticmethod
    def _config(thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id}}

    def run_lead(self, lead_id: int, thread_id: str | None = None) -> None:
        """Run a lead's graph to its review interrupt (or its end), then store what it produced in one unit of
        work: the brief, the review item and the job's end. Checkpointed once, when the run stops (durability
        "exit"): before the interrupt the nodes only read, so a worker that dies mid-run re-runs them from the
        start, and the interrupt itself is saved before its review item is queued (a crash after that resumes).
        The run's own output (its values and interrupts) is what gets queued: the checkpoint is not read back."""
        if thread_id is None:
            with session_scope(self.settings, readonly=True) as session:
                thread_id = session.scalar(select(Lead.thread_id).where(Lead.id == lead_id))
        if thread_id is None:
            raise LookupError(f"lead {lead_id} not found")
        config = self._config(thread_id)
        snapshot = self.graph.get_state(config)
        values, interrupts = snapshot.values or {}, list(snapshot.interrupts)
        if snapshot.created_at is None or (snapshot.next and not snapshot.interrupts):
            # A new thread, or a run stopped midway (continued from its last checkpoint).
            start = {"lead_id": lead_id} if snapshot.created_at is None else None
            output = self.graph.invoke(start, config, durability=FIRST_RUN_DURABILITY, version="v2")
            values, interrupts = output.value or {}, list(output.interrupts)
        self._queue(thread_id, values, interrupts, lead_id=lead_id)

    def _queue_interrupts(self, thread_id: str, graph, *, lead_id: int | None = None) -> list[int]:
        """Queue the review items of a thread's pending interrupts, as its latest checkpoint holds them."""
        snapshot = graph.get_state(self._config(thread_id))
        return self._queue(thread_id, snapshot.values or {}, list(snapshot.interrupts), lead_id=lead_id)

    def _queue(
        self, thread_id: str, values: dict[str, Any], interrupts: list[Interrupt], *, lead_id: int | None = None
    ) -> list[int]:
        """Each pending interrupt carries a Draft; it becomes a review item keyed by the Interrupt.id. With
        lead_id (a lead's first run), the lead's brief and status are stored in the same unit of work, which also
        ends the worker's job (core.jobs.finish_current): one transaction for the whole run."""
        item_ids = []
        queued = False
        with session_scope(self.settings) as session:
            with audit.batched(session):  # the run's audit events: one INSERT
                for pending in interrupts:
                    draft = Draft.model_validate(pending.value).model_copy(
                        update={"thread_id": thread_id, "dedupe_key": pending.id}
                    )
                    # Queued once: an item already queued for this interrupt (a re-run after a crash) is returned as
                    # it is. On a lead's first run its move to in_review is stored with its brief (below), in one
                    # UPDATE.
                    ours = lead_id is not None and draft.lead_id == lead_id
                    item_id, created = queue_item(session, draft, actor=f"agent:{draft.source}", lead_status=not ours)
                    item_ids.append(item_id)
                    queued |= created and ours
                if lead_id is not None:
                    _store_lead_run(session, lead_id, values, queued=queued)
            if lead_id is not None:
                jobs.finish_current(session)
        return item_ids

    def resume(self, review_item_id: int) -> None:
        with session_scope(self.settings) as session:
            item = session.get(ReviewItem, review_item_id)
            if item is None:
                raise LookupError(f"review item {review_item_id} not found")
            decision = repository.decision_for(session, review_item_id)
            if decision is None:
                raise LookupError(f"review item {review_item_id} has no decision to resume with")
            source = ItemSource(item.source)
            thread_id, dedupe_key, lead_id = item.thread_id, item.dedupe_key, item.lead_id
            value = {"action": decision.action, "review_item_id": item.id, "decision_id": decision.id}
            if decision.redraft:
                value.update(
                    redraft=True, template=decision.redraft_template, reason=decision.reason, actor=decision.actor
                )
                if decision.instruction:  # respond: the closer's instruction, for the redraft to follow
                    value["instruction"] = decision.instruction
        if source not in GRAPH_SOURCES:
            # No graph thread behind it: an approval is executed now, a rejection needs nothing more.
            if decision.action == DecisionAction.APPROVE:
                execute_approved(self.settings, review_item_id, EXECUTION_RULES[source])
            return
        graph = self.graphs[source]
        config = self._config(thread_id)
        snapshot = graph.get_state(config)
        if dedupe_key in {i.id for i in snapshot.interrupts}:
            graph.invoke(Command(resume={dedupe_key: value}), config)
        elif snapshot.next:
            graph.invoke(None, config)  # resumed before but stopped mid-execute: finish the run
        if source == ItemSource.LEAD and lead_id is not None:
            self._queue_interrupts(thread_id, graph)  # a redraft asked for a new draft
        if (
            decision.action == DecisionAction.APPROVE
            and not graph.get_state(config).next
            and self._still_approved(review_item_id)
        ):
            # The records, not the thread, say what is owed: a worker killed mid-resume can leave a thread with
            # nothing left to run and the approval not carried out (seen after kill -9 on PostgreSQL). The one
            # executor finishes it, or returns at once when it was carried out.
            execute_approved(self.settings, review_item_id, ALL_EXECUTION_RULES[source])

    def _still_approved(self, review_item_id: int) -> bool:
        with session_scope(self.settings, readonly=True) as session:
            return (
                session.scalar(select(ReviewItem.status).where(ReviewItem.id == review_item_id)) == ItemStatus.APPROVED
            )

    def execute(self, review_item_id: int) -> None:
        """Carry out an approval again after a person's Retry: the graph thread (if any) has finished, so
        the one executor runs with the item's rule."""
        with session_scope(self.settings) as session:
            item = session.get(ReviewItem, review_item_id)
            if item is None:
                raise LookupError(f"review item {review_item_id} not found")
            source = ItemSource(item.source)
        execute_approved(self.settings, review_item_id, ALL_EXECUTION_RULES[source])


def redraft_now(settings: Settings, review_item_id: int, *, wait_seconds: float = 30.0) -> None:
    """Write the redraft a closer asked for (respond) while they wait: the item's resume job is claimed and run
    in this process, as the worker would run it; when a worker already holds it, wait for its result. A failure
    puts the job back for the worker and is raised."""
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:respond"
    job = jobs.claim_key(settings, decisions.resume_job_key(review_item_id), worker_id)
    if job is not None:
        try:
            with open_checkpointer(settings) as checkpointer:
                runner = LeadGraphRunner(settings, checkpointer)
                # The thread's lock, as the worker's resume holds it: one run of a graph thread at a time.
                resume = _one_at_a_time_per_thread(settings, lambda _: runner.resume(review_item_id), _item_thread)
                resume(dict(job.payload))
        except RetryLater as exc:  # the thread is busy in a worker: the job goes back, and we wait for the redraft
            jobs.fail(settings, job, str(exc), count_attempt=False, delay_seconds=exc.delay_seconds)
        except Exception as exc:
            jobs.fail(settings, job, f"{type(exc).__name__}: {exc}")
            raise
        else:
            jobs.finish(settings, job.id)
            return
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        with session_scope(settings, readonly=True) as session:
            if decisions.redraft_of(session, review_item_id) is not None:
                return
        time.sleep(0.2)


# How approved items without a graph thread are executed, by source: each domain owns its rule.
EXECUTION_RULES: dict[ItemSource, Rule] = {
    ItemSource.DUNNING: reminders.EXECUTION,
    ItemSource.CADENCE: cadences.EXECUTION,
    ItemSource.ONBOARDING: flow.ONBOARDING_EXECUTION,
    ItemSource.CLIENT_UPDATE: flow.ONBOARDING_EXECUTION,
    ItemSource.INVOICE: flow.INVOICE_EXECUTION,
    ItemSource.INVOICE_EMAIL: flow.INVOICE_EMAIL_EXECUTION,
    ItemSource.CONVERSION: pipeline.CONVERSION_EXECUTION,
    ItemSource.PAYMENT_REQUEST: mpesa.EXECUTION,
}
# ...and the graphs' own rules, for a Retry after their thread finished.
ALL_EXECUTION_RULES: dict[ItemSource, Rule] = {
    **EXECUTION_RULES,
    ItemSource.LEAD: lead_nodes.EXECUTION,
    ItemSource.PROPOSAL: flow.PROPOSAL_EXECUTION,
}


def _lead_thread(settings: Settings, payload: dict[str, Any]) -> str | None:
    if payload.get("thread_id"):  # queued at capture with the lead's thread id (core.models.Lead.thread_id)
        return str(payload["thread_id"])
    with session_scope(settings, readonly=True) as session:
        return session.scalar(select(Lead.thread_id).where(Lead.id == int(payload["lead_id"])))


def _item_thread(settings: Settings, payload: dict[str, Any]) -> str | None:
    with session_scope(settings, readonly=True) as session:
        return session.scalar(select(ReviewItem.thread_id).where(ReviewItem.id == int(payload["review_item_id"])))


def _one_at_a_time_per_thread(
    settings: Settings,
    handler: Callable[[dict[str, Any]], None],
    thread_of: Callable[[Settings, dict[str, Any]], str | None],
) -> Callable[[dict[str, Any]], None]:
    """The handler, holding the graph thread's lock (core.locks: released when its holder dies); a thread busy
    elsewhere for longer than REVLOOP_THREAD_LOCK_WAIT_SECONDS puts the job back for later."""

    def run(payload: dict[str, Any]) -> None:
        thread_id = thread_of(settings, payload)
        if not thread_id:
            return handler(payload)
        try:
            with named_lock(settings, f"graph-thread:{thread_id}", wait_seconds=settings.thread_lock_wait_seconds):
                return handler({**payload, "thread_id": thread_id})  # the handler need not look it up again
        except LockBusy:
            raise RetryLater(f"graph thread {thread_id} is running in another worker", delay_seconds=1) from None

    return run


@contextmanager
def lead_worker(settings: Settings | None = None) -> Iterator[Worker]:
    """A worker wired to the lead graph, with its checkpointer open for the worker's lifetime."""
    settings = settings or get_settings()
    with open_checkpointer(settings) as checkpointer:
        runner = LeadGraphRunner(settings, checkpointer)
        handlers = {
            JobKind.LEAD_RUN: lambda payload: runner.run_lead(int(payload["lead_id"]), payload.get("thread_id")),
            JobKind.REVIEW_RESUME: lambda payload: runner.resume(int(payload["review_item_id"])),
            JobKind.REVIEW_EXECUTE: lambda payload: runner.execute(int(payload["review_item_id"])),
            JobKind.HEALTH_CHECK: lambda payload: health.run_scheduled(settings, payload),
            JobKind.SLA_WATCH: lambda payload: sla.run_scheduled(settings, payload),
            JobKind.DAILY_SCAN: lambda payload: daily.run(settings, payload),
            JobKind.PROPOSAL_RUN: runner.run_proposal,
            JobKind.CHECKPOINT_PRUNE: lambda payload: checkpoints.run_scheduled(
                settings, checkpointer, runner.graph_for, payload
            ),
            JobKind.NOTIFICATION_DELIVER: lambda payload: notification_channels.deliver(
                settings, int(payload["delivery_id"])
            ),
            JobKind.CRM_WRITEBACK: lambda payload: crm_writeback.run(settings, payload),
            JobKind.CRM_SYNC: lambda payload: crm_sync.run_scheduled(settings, payload),
            JobKind.FISCAL_SUBMIT: lambda payload: flow.submit_fiscal(settings, int(payload["invoice_id"])),
        }
        # A graph thread is run by one worker at a time, across threads and processes (a run, a resume, a redraft).
        for kind, thread_of in ((JobKind.LEAD_RUN, _lead_thread), (JobKind.REVIEW_RESUME, _item_thread)):
            handlers[kind] = _one_at_a_time_per_thread(settings, handlers[kind], thread_of)
        handlers[JobKind.PROPOSAL_RUN] = _one_at_a_time_per_thread(
            settings, handlers[JobKind.PROPOSAL_RUN], lambda _settings, payload: payload.get("thread_id")
        )
        yield Worker(handlers, settings)
