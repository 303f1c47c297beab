"""Running graphs durably: the checkpointer for the configured database, the lead-graph runner
that turns interrupts into review items and resumes threads with decisions, and the job handlers
the background worker runs."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command

from agents import daily
from agents.cadences import scheduler as cadences
from agents.collections import scheduler as collections
from agents.deals import flow as deals
from agents.kinds import LEAD_RUN, PROPOSAL_RUN, REVIEW_RESUME
from agents.lead.graph import build_lead_graph
from agents.proposal.graph import build_proposal_graph
from core.db import session_scope
from core.jobs import Worker
from core.models import Decision, Lead, ReviewItem
from core.settings import Settings, get_settings
from tools import outbound
from tools.crm import set_lead_status
from tools.review_queue import queue_for_review

log = logging.getLogger("revloop.agents")


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1).replace("postgres+psycopg://", "postgresql://", 1)


@contextmanager
def open_checkpointer(settings: Settings) -> Iterator[BaseCheckpointSaver]:
    """SqliteSaver on the embedded default, PostgresSaver (pooled) on PostgreSQL."""
    url = settings.resolved_checkpoint_url
    if url.startswith("sqlite"):
        from langgraph.checkpoint.sqlite import SqliteSaver

        path = Path(url.split("///", 1)[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        try:
            saver = SqliteSaver(conn)
            saver.setup()
            yield saver
        finally:
            conn.close()
        return
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(
        _libpq_url(url),
        min_size=1,
        max_size=4,
        kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": 0},
        check=ConnectionPool.check_connection,
        open=True,
    )
    try:
        saver = PostgresSaver(pool)
        saver.setup()
        yield saver
    finally:
        pool.close()


class LeadGraphRunner:
    """Starts, recovers and resumes lead threads; the review_items table is the source of truth
    for what is pending."""

    def __init__(self, settings: Settings, checkpointer: BaseCheckpointSaver):
        self.settings = settings
        self.graph = build_lead_graph(settings).compile(checkpointer=checkpointer)
        self.proposal_graph = build_proposal_graph(settings).compile(checkpointer=checkpointer)

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
        item_ids = self._queue_interrupts(thread_id, None, graph=self.proposal_graph)
        if item_ids:
            from core.models import Proposal

            with session_scope(self.settings) as session:  # the document points at the item that sends it
                proposal = session.query(Proposal).filter_by(thread_id=thread_id).one()
                proposal.review_item_id = proposal.review_item_id or item_ids[0]

    @staticmethod
    def _config(thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id}}

    def run_lead(self, lead_id: int) -> None:
        with session_scope(self.settings) as session:
            lead = session.get(Lead, lead_id)
            if lead is None:
                raise LookupError(f"lead {lead_id} not found")
            thread_id = lead.thread_id
            if lead.status == "new":
                set_lead_status(session, lead_id, "processing", actor="agent:lead")
        config = self._config(thread_id)
        snapshot = self.graph.get_state(config)
        if snapshot.created_at is None:
            self.graph.invoke({"lead_id": lead_id}, config)
        elif snapshot.next and not snapshot.interrupts:
            self.graph.invoke(None, config)  # a worker died mid-run: continue from the last checkpoint
        self._queue_interrupts(thread_id, lead_id)

    def _queue_interrupts(self, thread_id: str, lead_id: int | None, graph=None) -> list[int]:
        graph = graph or self.graph
        snapshot = graph.get_state(self._config(thread_id))
        item_ids = []
        for pending in snapshot.interrupts:
            payload = pending.value
            with session_scope(self.settings) as session:
                item = queue_for_review(
                    session,
                    thread_id=thread_id,
                    interrupt_id=pending.id,
                    lead_id=lead_id if lead_id is not None else payload.get("lead_id"),
                    contact_id=payload.get("contact_id"),
                    kind=payload["kind"],
                    template=payload.get("template"),
                    brief=payload["brief"],
                    draft=payload["draft"],
                    queue=payload.get("queue", "main"),
                    sla_due_at=dt.datetime.fromisoformat(payload["sla_due_at"]) if payload.get("sla_due_at") else None,
                    assignee=payload.get("assignee"),
                    guard_flags=payload.get("guard_flags"),
                    redraft_of=payload.get("redraft_of"),
                )
                item_ids.append(item.id)
        return item_ids

    def resume(self, review_item_id: int) -> None:
        with session_scope(self.settings) as session:
            item = session.get(ReviewItem, review_item_id)
            if item is None:
                raise LookupError(f"review item {review_item_id} not found")
            # Payment reminders and follow-ups have no graph thread behind them: their own executors send them.
            executor = EXECUTORS.get(item.thread_id.split("-")[0])
        if executor is not None:
            if decision_action(self.settings, review_item_id) == "approve":
                executor(self.settings, review_item_id)
            return
        with session_scope(self.settings) as session:
            item = session.get(ReviewItem, review_item_id)
            decision = session.query(Decision).filter_by(review_item_id=review_item_id).one_or_none()
            if decision is None:
                raise LookupError(f"review item {review_item_id} has no decision to resume with")
            thread_id, interrupt_id, lead_id = item.thread_id, item.interrupt_id, item.lead_id
            graph = self.proposal_graph if thread_id.startswith("proposal-") else self.graph
            value = {"action": decision.action, "review_item_id": item.id, "decision_id": decision.id}
            if decision.redraft:
                value.update(
                    redraft=True, template=decision.redraft_template, reason=decision.reason, actor=decision.actor
                )
        config = self._config(thread_id)
        snapshot = graph.get_state(config)
        if interrupt_id in {i.id for i in snapshot.interrupts}:
            graph.invoke(Command(resume={interrupt_id: value}), config)
        elif snapshot.next:
            graph.invoke(None, config)  # resumed before but stopped mid-execute: finish the run
        if graph is self.graph and lead_id is not None:
            self._queue_interrupts(thread_id, lead_id)


def _issue(settings: Settings):
    def action(session, item) -> dict[str, Any]:
        invoice = deals.issue_invoice(session, settings, int(item.draft["milestone_id"]))
        return {"invoice_number": invoice.number, "due_on": str(invoice.due_on), "summary": f"Issued {invoice.number}"}

    return action


# Approved items without a graph thread, by thread prefix: how each is executed.
EXECUTORS = {
    "dunning": collections.execute,
    "cadence": cadences.execute,
    "onboarding": lambda s, i: outbound.execute_approved(s, i, actor="agent:deals"),
    "update": lambda s, i: outbound.execute_approved(s, i, actor="agent:deals"),
    "invoice": lambda s, i: outbound.execute_approved(s, i, actor="agent:deals", action=_issue(s)),
}


def decision_action(settings: Settings, review_item_id: int) -> str | None:
    with session_scope(settings) as session:
        decision = session.query(Decision).filter_by(review_item_id=review_item_id).one_or_none()
        return decision.action if decision else None


@contextmanager
def lead_worker(settings: Settings | None = None) -> Iterator[Worker]:
    """A worker wired to the lead graph, with its checkpointer open for the worker's lifetime."""
    settings = settings or get_settings()
    with open_checkpointer(settings) as checkpointer:
        runner = LeadGraphRunner(settings, checkpointer)
        handlers = {
            LEAD_RUN: lambda payload: runner.run_lead(int(payload["lead_id"])),
            REVIEW_RESUME: lambda payload: runner.resume(int(payload["review_item_id"])),
            daily.DAILY: lambda payload: daily.run(settings, payload),
            PROPOSAL_RUN: runner.run_proposal,
        }
        yield Worker(handlers, settings)
