"""Audit log: every state change writes one event (actor, action, before/after)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.models import AuditEvent


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
