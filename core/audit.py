"""Audit log: every state change writes one event (actor, action, before/after)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from core.db import flush_pending
from core.models import AuditEvent, utcnow


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: Any,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        actor=actor, action=action, entity_type=entity_type, entity_id=str(entity_id), before=before, after=after
    )
    # Flushed with the unit of work's next write (or its commit), not on its own: a run's several events go to the
    # database in one INSERT instead of one round trip each.
    session.add(event)
    return event


def record_many(session: Session, events: list[dict[str, Any]]) -> None:
    """Write several events (record()'s keyword arguments each) in one INSERT now, without ORM objects: for hot
    paths that write with Core statements."""
    if events:
        flush_pending(session)  # after the events recorded before them
        session.connection().execute(
            insert(AuditEvent.__table__),  # Core: the ORM's bulk insert costs more than the INSERT
            [
                {"before": None, "after": None, **event, "entity_id": str(event["entity_id"]), "at": utcnow()}
                for event in events
            ],
        )
