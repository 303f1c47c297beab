"""Read queries over review items that other packages need (routing, the graph runner)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from core.db import flush_pending
from core.enums import ItemStatus
from core.models import Decision, ReviewItem


def pending_load(session: Session, names: Iterable[str], cap: int) -> dict[str, int]:
    """How many pending items each named person holds, counted up to `cap` (routing only needs to know who is
    under capacity): each count reads at most `cap` entries of the (status, assignee, sla_due_at) index, so it
    costs the same with 100 or 100,000 pending items."""
    count = _PENDING_LOAD.get(cap)
    if count is None:  # built once per cap (routing runs it for every lead and candidate)
        items = ReviewItem.__table__  # Core: counts need no ORM set-up
        held = (
            select(items.c.id)
            .where(items.c.status == ItemStatus.PENDING, items.c.assignee == bindparam("name"))
            .limit(cap)
            .subquery()
        )
        count = _PENDING_LOAD[cap] = select(func.count()).select_from(held)
    flush_pending(session)  # a Core statement does not autoflush
    conn = session.connection()
    return {name: conn.execute(count, {"name": name}).scalar() or 0 for name in dict.fromkeys(names)}


_PENDING_LOAD: dict[int, Select] = {}


def item_id_for_key(session: Session, dedupe_key: str) -> int | None:
    return session.scalar(select(ReviewItem.id).where(ReviewItem.dedupe_key == dedupe_key))


def decision_for(session: Session, review_item_id: int) -> Decision | None:
    return session.scalar(select(Decision).where(Decision.review_item_id == review_item_id))
