"""Nodes of the proposal graph. Writes happen in their own nodes, after the checkpoint before them, and
are idempotent per thread (a re-run finds the same proposal); nothing is sent before the interrupt."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from langgraph.types import interrupt

from core.db import session_scope
from core.errors import AppError
from core.settings import Settings
from deals import flow
from review.execute import execute_approved


class ProposalNodes:
    def __init__(self, settings: Settings, thread_id_of):
        self.settings = settings
        self.thread_id_of = thread_id_of  # config -> thread id (the render step keys the document by it)

    def price(self, state: dict[str, Any]) -> dict[str, Any]:
        request = state.get("request") or {}
        with session_scope(self.settings) as session:
            try:
                priced = flow.price_request(
                    session,
                    self.settings,
                    state["deal_id"],
                    request.get("lines"),
                    Decimal(str(request.get("discount_pct", "0"))),
                )
            except AppError as exc:  # the price book or the deal changed since the request was checked
                return {"priced": {}, "outcome": {"status": "failed", "reason": exc.message}}
        return {"priced": priced}

    def render(self, state: dict[str, Any], config) -> dict[str, Any]:
        with session_scope(self.settings) as session:
            proposal = flow.create_proposal(session, self.settings, self.thread_id_of(config), state["priced"])
            return {
                "proposal": {
                    "id": proposal.id,
                    "number": proposal.number,
                    "total": str(proposal.total),
                    "valid_until": proposal.valid_until.isoformat(),
                }
            }

    def draft(self, state: dict[str, Any]) -> dict[str, Any]:
        from core.models import Proposal

        with session_scope(self.settings) as session:
            draft = flow.cover_email(session, self.settings, session.get(Proposal, state["proposal"]["id"]))
        return {"review": draft.model_dump(mode="json")}

    def review(self, state: dict[str, Any]) -> dict[str, Any]:
        # Nothing before interrupt(): this node re-runs from its first line on resume.
        return {"decision": interrupt(state["review"])}

    def execute(self, state: dict[str, Any]) -> dict[str, Any]:
        item_id = int(state["decision"]["review_item_id"])
        done = execute_approved(self.settings, item_id, flow.PROPOSAL_EXECUTION)
        return {
            "outcome": {"status": done.status.value, "review_item_id": item_id, "proposal": state["proposal"]["number"]}
        }

    def finish(self, state: dict[str, Any]) -> dict[str, Any]:
        if state.get("outcome"):
            return {}
        decision = state.get("decision") or {}
        return {"outcome": {"status": "rejected" if decision.get("action") == "reject" else "done"}}
