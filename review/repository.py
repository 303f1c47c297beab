"""Read queries over review items that other packages need (routing, the graph runner)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.enums import ItemStatus
from core.models import Decision, ReviewItem


def pending_load_by_assignee(session: Session) -> dict[str, int]:
    """How many pending items each person holds (routing keeps closers under capacity)."""
    return dict(
        session.execute(
            select(ReviewItem.assignee, func.count(ReviewItem.id))
            .where(ReviewItem.status == ItemStatus.PENDING, ReviewItem.assignee.is_not(None))
            .group_by(ReviewItem.assignee)
        ).all()
    )


def item_id_for_key(session: Session, dedupe_key: str) -> int | None:
    return session.scalar(select(ReviewItem.id).where(ReviewItem.dedupe_key == dedupe_key))


def decision_for(session: Session, review_item_id: int) -> Decision | None:
    return session.scalar(select(Decision).where(Decision.review_item_id == review_item_id))
