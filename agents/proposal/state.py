"""State of one proposal thread. Every key is written by exactly one node, so the reducer is replace."""

from __future__ import annotations

from typing import Any, TypedDict


class ProposalState(TypedDict, total=False):
    deal_id: int
    request: dict[str, Any]  # input: lines (product, quantity) and discount_pct, as the closer asked
    priced: dict[str, Any]  # price: lines priced from the price book, subtotal, total
    proposal: dict[str, Any]  # render: the stored document (id, number, total, valid until)
    review: dict[str, Any]  # draft: what the reviewer sees (cover email with the PDF attached)
    decision: dict[str, Any] | None  # review: the decision, passed in on resume
    outcome: dict[str, Any]  # execute / finish
