"""Lead capture and lookup. Thin: auth, one service call, a schema."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import Principal
from api.capture_batches import BatchWriter
from api.deps import ReadSessionDep, SessionDep, SettingsDep, require
from api.routes import deals as deals_routes
from core.enums import Role
from core.errors import NotFound
from core.models import Lead as LeadRow
from core.models import LlmRun as LlmRunRow
from core.schemas import (
    DealRead,
    Id,
    Lead,
    LeadAccepted,
    LeadConvert,
    LeadCreate,
    LeadEventIn,
    LeadEventRecorded,
    LlmRun,
    NoNul,
    Offset,
)
from crm.capture import Captured, capture
from deals import cadences, pipeline

router = APIRouter(prefix="/v1/leads", tags=["leads"])
Reader = Annotated[Principal, Depends(require(Role.CLOSER, Role.MANAGER, Role.EVALUATOR))]
# Leads and their events come from forms and integrations (API tokens) and from people.
Sender = Annotated[Principal, Depends(require(Role.INTEGRATION, Role.MANAGER, Role.CLOSER))]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=LeadAccepted,
    summary="Capture a lead; it is scored and drafted in the background",
)
async def create_lead(
    data: LeadCreate,
    request: Request,
    response: Response,
    principal: Sender,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255, min_length=1), NoNul] = None,
) -> LeadAccepted:
    # The busiest route: posts that arrive together are captured in one transaction and one hand-off to the thread
    # pool (api.capture_batches), each answered once its batch has committed.
    lead = await _lead_captures(request).submit(data, principal.actor, idempotency_key)
    response.headers["Location"] = f"/v1/leads/{lead.id}"
    return LeadAccepted(id=lead.id, status=lead.status, duplicate=lead.duplicate)


def _lead_captures(request: Request) -> BatchWriter:
    state = request.app.state
    writer = getattr(state, "lead_captures", None)
    if writer is None:
        settings = state.settings

        def write(session: Session, data: LeadCreate, actor: str, idempotency_key: str | None) -> Captured:
            return capture(session, data, actor=actor, idempotency_key=idempotency_key, settings=settings)

        writer = state.lead_captures = BatchWriter(settings, write)
    return writer


@router.get("", response_model=list[Lead], summary="Recent leads")
def list_leads(
    session: ReadSessionDep,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> list[LeadRow]:
    return list(session.scalars(select(LeadRow).order_by(LeadRow.id.desc()).limit(limit).offset(offset)))


@router.get("/{lead_id}/llm-runs", response_model=list[LlmRun], summary="LLM calls, tokens and cost for a lead")
def lead_llm_runs(lead_id: Id, session: ReadSessionDep, _: Reader) -> list[Any]:
    if session.get(LeadRow, lead_id) is None:
        raise NotFound(f"lead {lead_id} not found")
    return list(session.scalars(select(LlmRunRow).where(LlmRunRow.lead_id == lead_id).order_by(LlmRunRow.id)))


@router.post(
    "/{lead_id}/events",
    response_model=LeadEventRecorded,
    summary="Something the lead did: a reply hands it to its closer; reply, meeting, unsubscribe or bounce "
    "stop the follow-ups; an opened proposal gets a timely follow-up",
)
def lead_event(
    lead_id: Id,
    data: LeadEventIn,
    session: SessionDep,
    settings: SettingsDep,
    principal: Sender,
) -> dict[str, Any]:
    return cadences.record_event(
        session,
        settings,
        lead_id,
        type=data.type,
        note=data.note,
        occurred_at=data.occurred_at,
        external_id=data.event_id,
        actor=principal.actor,
    )


@router.get("/{lead_id}", response_model=Lead, summary="One lead with its brief")
def get_lead(lead_id: Id, session: ReadSessionDep, _: Reader) -> LeadRow:
    lead = session.get(LeadRow, lead_id)
    if lead is None:
        raise NotFound(f"lead {lead_id} not found")
    return lead


Seller = Annotated[Principal, Depends(require(Role.CLOSER, Role.MANAGER))]


@router.post(
    "/{lead_id}/convert",
    status_code=status.HTTP_201_CREATED,
    response_model=DealRead,
    summary="Make a deal of a lead: contact and account come from the lead's records; the value from the price "
    "book unless given. A lead has one open deal at a time (409 names it).",
)
def convert_lead(lead_id: Id, data: LeadConvert, session: SessionDep, response: Response, principal: Seller) -> Any:
    deal = pipeline.convert_lead(session, lead_id, actor=principal.actor, **data.model_dump())
    response.headers["Location"] = f"/v1/deals/{deal.id}"
    return deals_routes.get_deal(deal.id, session, principal)
