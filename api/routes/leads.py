"""Lead capture and lookup. Thin: auth, one service call, a schema."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from api.auth import Principal
from api.deps import SessionDep, SettingsDep, require
from core.errors import NotFound
from core.models import Lead as LeadRow
from core.models import LlmRun as LlmRunRow
from core.schemas import Lead, LeadAccepted, LeadCreate
from crm.capture import capture_lead
from deals import cadences

router = APIRouter(prefix="/v1/leads", tags=["leads"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=LeadAccepted,
    summary="Capture a lead; it is scored and drafted in the background",
)
def create_lead(
    data: LeadCreate,
    session: SessionDep,
    response: Response,
    principal: Annotated[Principal, Depends(require("integration", "manager", "closer"))],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255, min_length=1)] = None,
) -> LeadAccepted:
    lead, duplicate = capture_lead(session, data, actor=principal.actor, idempotency_key=idempotency_key)
    response.headers["Location"] = f"/v1/leads/{lead.id}"
    return LeadAccepted(id=lead.id, status=lead.status, duplicate=duplicate)


@router.get("", response_model=list[Lead], summary="Recent leads")
def list_leads(
    session: SessionDep,
    _: Annotated[Principal, Depends(require("closer", "manager", "evaluator"))],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[LeadRow]:
    return list(session.scalars(select(LeadRow).order_by(LeadRow.id.desc()).limit(limit).offset(offset)))


class LlmRun(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    purpose: str
    model: str
    calls: int
    tool_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    status: str
    error: str | None
    created_at: dt.datetime


@router.get("/{lead_id}/llm-runs", response_model=list[LlmRun], summary="LLM calls, tokens and cost for a lead")
def lead_llm_runs(
    lead_id: int, session: SessionDep, _: Annotated[Principal, Depends(require("closer", "manager", "evaluator"))]
) -> list[Any]:
    if session.get(LeadRow, lead_id) is None:
        raise NotFound(f"lead {lead_id} not found")
    return list(session.scalars(select(LlmRunRow).where(LlmRunRow.lead_id == lead_id).order_by(LlmRunRow.id)))


class LeadEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["reply", "meeting_booked", "proposal_opened", "unsubscribed", "bounced"]
    note: str | None = Field(None, max_length=5000, description="e.g. the reply's text, shown to the closer")
    occurred_at: dt.datetime | None = None
    event_id: str | None = Field(None, max_length=200, description="The sender's id: a re-delivery counts once")


@router.post(
    "/{lead_id}/events",
    summary="Something the lead did: a reply hands it to its closer; reply, meeting, unsubscribe or bounce "
    "stop the follow-ups; an opened proposal gets a timely follow-up",
)
def lead_event(
    lead_id: int,
    data: LeadEventIn,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require("integration", "manager", "closer"))],
) -> dict[str, Any]:
    result = cadences.record_event(
        session,
        settings,
        lead_id,
        type=data.type,
        note=data.note,
        occurred_at=data.occurred_at,
        external_id=data.event_id,
        actor=principal.actor,
    )
    return result


@router.get("/{lead_id}", response_model=Lead, summary="One lead with its brief")
def get_lead(
    lead_id: int, session: SessionDep, _: Annotated[Principal, Depends(require("closer", "manager", "evaluator"))]
) -> LeadRow:
    lead = session.get(LeadRow, lead_id)
    if lead is None:
        raise NotFound(f"lead {lead_id} not found")
    return lead
