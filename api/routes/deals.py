"""Deals over HTTP: the pipeline list, edits, stage changes with entry criteria (the proposal stage drafts a
proposal), closing won or lost, proposals with their PDF, the delivery hand-off and milestones (completing one
drafts its invoice and a client update)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from api.auth import Principal
from api.deps import ReadSessionDep, SessionDep, SettingsDep, require
from core.enums import Role
from core.errors import NotFound
from core.models import Deal, Milestone, Project, Proposal
from core.schemas import (
    DealClose,
    DealClosed,
    DealCreate,
    DealPage,
    DealRead,
    DealSummary,
    DealUpdate,
    Id,
    MilestoneCompleted,
    MilestoneRead,
    NoNul,
    Offset,
    ProjectRead,
    ProposalRead,
    ProposalRequest,
    ProposalRequested,
    StageChange,
    StageChanged,
    Text,
)
from deals import flow, pipeline

router = APIRouter(prefix="/v1/deals", tags=["deals"])
Seller = Annotated[Principal, Depends(require(Role.CLOSER, Role.MANAGER))]


def _proposal(row: Proposal) -> ProposalRead:
    return ProposalRead(
        id=row.id,
        number=row.number,
        deal_id=row.deal_id,
        lines=row.lines,
        currency=row.currency,
        subtotal=str(row.subtotal),
        discount_pct=str(row.discount_pct),
        total=str(row.total),
        terms=row.terms,
        valid_until=row.valid_until,
        review_item_id=row.review_item_id,
    )


def summary(session, deal: Deal) -> dict:
    return {
        "id": deal.id,
        "name": deal.name,
        "stage": deal.stage,
        "outcome": deal.outcome,
        "lost_reason": deal.lost_reason,
        "amount": str(deal.amount) if deal.amount is not None else None,
        "currency": deal.currency,
        "owner": deal.owner,
        "lead_id": deal.lead_id,
        "contact_id": deal.contact_id,
        "account_id": deal.account_id,
        "product": pipeline.product_name(session, deal),
        "expected_close": deal.expected_close,
        "next_step": deal.next_step,
        "next_step_due": deal.next_step_due,
        "stage_changed_at": deal.stage_changed_at,
    }


@router.get("", response_model=DealPage, summary="The pipeline: deals by stage, owner, open or closed")
def list_deals(
    session: ReadSessionDep,
    _: Seller,
    stage: Annotated[str | None, Query(max_length=200), NoNul] = None,
    owner: Annotated[str | None, Query(max_length=200), NoNul] = None,
    open: bool = False,
    lead_id: Id | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: Offset = 0,
) -> DealPage:
    deals, total = pipeline.list_deals(
        session, stage=stage, owner=owner, open_only=open, lead_id=lead_id, limit=limit, offset=offset
    )
    return DealPage(items=[DealSummary(**summary(session, d)) for d in deals], total=total)


@router.post(
    "",
    status_code=201,
    response_model=DealRead,
    summary="A deal for a contact already on record (an existing customer's new order); contact and account "
    "come from the records. To make a deal of a lead, use POST /v1/leads/{id}/convert.",
)
def create_deal(data: DealCreate, session: SessionDep, response: Response, principal: Seller) -> DealRead:
    deal = pipeline.create_deal(session, actor=principal.actor, **data.model_dump())
    response.headers["Location"] = f"/v1/deals/{deal.id}"
    return get_deal(deal.id, session, principal)


@router.get(
    "/{deal_id}", response_model=DealRead, summary="A deal with its proposals, delivery hand-off and milestones"
)
def get_deal(deal_id: Id, session: ReadSessionDep, _: Seller) -> DealRead:
    deal = session.get(Deal, deal_id)
    if deal is None:
        raise NotFound(f"deal {deal_id} not found")
    project = session.scalar(select(Project).where(Project.deal_id == deal_id))
    return DealRead(
        **summary(session, deal),
        proposals=[_proposal(p) for p in session.scalars(select(Proposal).where(Proposal.deal_id == deal_id))],
        project=None
        if project is None
        else ProjectRead(brief=project.brief, tasks=project.tasks, kickoff_on=project.kickoff_on),
        milestones=[
            MilestoneRead(
                seq=m.seq,
                name=m.name,
                percent=str(m.percent),
                amount=str(m.amount),
                status=m.status,
                invoice_id=m.invoice_id,
            )
            for m in session.scalars(select(Milestone).where(Milestone.deal_id == deal_id).order_by(Milestone.seq))
        ],
    )


@router.post(
    "/{deal_id}/stage",
    response_model=StageChanged,
    summary="Move a deal; entering 'proposal' starts the proposal graph",
)
def change_stage(
    deal_id: Id, data: StageChange, session: SessionDep, settings: SettingsDep, principal: Seller
) -> dict[str, Any]:
    return pipeline.change_stage(session, settings, deal_id, data.stage, actor=principal.actor)


@router.patch("/{deal_id}", response_model=DealRead, summary="Edit an open deal: value, close date, owner, next step")
def update_deal(deal_id: Id, data: DealUpdate, session: SessionDep, principal: Seller) -> DealRead:
    pipeline.update_deal(session, deal_id, data.model_dump(exclude_unset=True), actor=principal.actor)
    return get_deal(deal_id, session, principal)


@router.post(
    "/{deal_id}/close",
    response_model=DealClosed,
    summary="Close a deal: won (a signature recorded by a person: the same hand-off as the e-sign webhook) or "
    "lost with a reason; either way it becomes a training row for the outcome model",
)
def close_deal(
    deal_id: Id, data: DealClose, session: SessionDep, settings: SettingsDep, principal: Seller
) -> dict[str, Any]:
    result = pipeline.close_deal(session, settings, deal_id, data.outcome, reason=data.reason, actor=principal.actor)
    return {"outcome": data.outcome, **result}


@router.post(
    "/{deal_id}/proposals",
    status_code=202,
    response_model=ProposalRequested,
    summary="Request a proposal: checked and priced now (price book, discount cap); the proposal graph renders "
    "it and queues it for review",
)
def request_proposal(
    deal_id: Id, data: ProposalRequest, session: SessionDep, settings: SettingsDep, principal: Seller
) -> dict[str, Any]:
    return flow.request_proposal(
        session,
        settings,
        deal_id,
        lines=[line.model_dump() for line in data.lines],
        discount_pct=data.discount_pct,
        actor=principal.actor,
    )


def _find(session, deal_id: int, number: str) -> Proposal:
    row = session.scalar(select(Proposal).where(Proposal.deal_id == deal_id, Proposal.number == number))
    if row is None:
        raise NotFound(f"deal {deal_id} has no proposal {number}")
    return row


@router.get(
    "/{deal_id}/proposals/{number}/pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}},
    summary="The proposal as PDF",
)
def proposal_pdf(deal_id: Id, number: Text, session: ReadSessionDep, _: Seller) -> Response:
    row = _find(session, deal_id, number)
    return Response(
        row.pdf, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="{row.number}.pdf"'}
    )


@router.get("/{deal_id}/proposals/{number}/html", response_class=HTMLResponse, summary="The proposal as HTML")
def proposal_html(deal_id: Id, number: Text, session: ReadSessionDep, _: Seller) -> HTMLResponse:
    return HTMLResponse(_find(session, deal_id, number).html)


@router.post(
    "/{deal_id}/milestones/{milestone}/complete",
    response_model=MilestoneCompleted,
    summary="Complete a milestone: its invoice and a client update are drafted for review",
)
def complete_milestone(
    deal_id: Id, milestone: Id, session: SessionDep, settings: SettingsDep, principal: Seller
) -> dict[str, Any]:
    return flow.complete_milestone(session, settings, deal_id, milestone, actor=principal.actor)
