"""The audit trail (admin): every state change, filterable by actor, entity and time."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select

from api.auth import Principal
from api.deps import ReadSessionDep, require
from core.enums import Role
from core.models import AuditEvent
from core.schemas import AuditEventRead, AuditPage, Moment, NoNul, Offset

router = APIRouter(prefix="/v1/audit-events", tags=["audit"])


def _utc(value: dt.datetime) -> dt.datetime:
    """Times without a zone are UTC; stored times are UTC (SQLite keeps no offset)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@router.get("", response_model=AuditPage, summary="Audit events, newest first")
def list_audit_events(
    session: ReadSessionDep,
    _: Annotated[Principal, Depends(require(Role.ADMIN))],
    actor: Annotated[str | None, Query(max_length=200, description="Exact actor, e.g. closer:Dana"), NoNul] = None,
    action: Annotated[str | None, Query(max_length=100, description="Prefix, e.g. review_item."), NoNul] = None,
    entity_type: Annotated[str | None, Query(max_length=50), NoNul] = None,
    entity_id: Annotated[str | None, Query(max_length=64), NoNul] = None,
    since: Moment | None = None,
    until: Moment | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> AuditPage:
    conditions = []
    if actor:
        conditions.append(AuditEvent.actor == actor)
    if action:
        conditions.append(AuditEvent.action.startswith(action, autoescape=True))
    if entity_type:
        conditions.append(AuditEvent.entity_type == entity_type)
    if entity_id:
        conditions.append(AuditEvent.entity_id == entity_id)
    if since:
        conditions.append(AuditEvent.at >= _utc(since))
    if until:
        conditions.append(AuditEvent.at < _utc(until))
    rows = session.scalars(
        select(AuditEvent)
        .where(*conditions)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    total = session.scalar(select(func.count(AuditEvent.id)).where(*conditions)) or 0
    return AuditPage(items=[AuditEventRead.model_validate(r) for r in rows], total=total, limit=limit, offset=offset)
