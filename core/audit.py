"""Audit log: every state change writes one event (actor, action, before/after)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from core.db import flush_pending
from core.models import AuditEvent, utcnow

_BATCH = "audit_batch"  # session.info key: the events recorded inside `batched`, not yet written


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: Any,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent | None:
    """Record one event in the session's unit of work; inside `batched(session)` it is written with the batch's
    others (and None is returned: there is no object to read back)."""
    batch = session.info.get(_BATCH)
    if batch is not None:
        batch.append(
            {
                "actor": actor,
                "action": action,
                "entity_type": entity_type,
                "entity_id": entity_id,
                "before": before,
                "after": after,
            }
        )
        return None
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


@contextmanager
def batched(session: Session) -> Iterator[None]:
    """The events that record() is asked for in the block (by any code handed this session) are written when it
    ends, in the order they were recorded, with record_many (one INSERT). Nothing is written when the block raises
    (the unit of work rolls back anyway). Nested blocks join the outer one."""
    if session.info.get(_BATCH) is not None:
        yield
        return
    batch: list[dict[str, Any]] = []
    session.info[_BATCH] = batch
    try:
        yield
    finally:
        session.info.pop(_BATCH, None)
    record_many(session, batch)
