"""State of one lead's thread. Every key is written by exactly one node, so the reducer is replace."""

from __future__ import annotations

from typing import Any, TypedDict


class LeadState(TypedDict, total=False):
    lead_id: int
    facts: dict[str, Any]  # enrich: what the CRM knows (read-only snapshot)
    research: dict[str, Any]  # enrich: tool calls, evidence, LLM insight (or why it was not used)
    scoring: dict[str, Any]  # score: rubric result with evidence per criterion
    brief: dict[str, Any]  # brief: score, grade, summary, flags, next action
    route: dict[str, Any]  # route: next action and channel (email | call_task | none)
    draft: dict[str, Any] | None  # draft: what the closer will review
    decision: dict[str, Any] | None  # review: the closer's decision, passed in on resume
    redrafts: list[dict[str, Any]]  # draft: rejected drafts redrafted on request (reason, template, item)
    outcome: dict[str, Any]  # execute / finish: what happened
