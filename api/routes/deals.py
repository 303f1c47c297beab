"""The deal flow over HTTP: stage changes (the proposal stage drafts a proposal), proposals with their
PDF, the delivery hand-off and milestones (completing one drafts its invoice and a client update)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from api.auth import Principal
from api.deps import SessionDep, SettingsDep, require
from core.enums import Role
from core.errors import NotFound
from core.models import Deal, Milestone, Project, Proposal
from core.schemas import (
    DealRead,
    MilestoneCompleted,
    MilestoneRead,
    ProjectRead,
    ProposalRead,
    ProposalRequest,
    ProposalRequested,
    StageChange,
    StageChanged,
)
from deals import flow

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


@router.get(
    "/{deal_id}", response_model=DealRead, summary="A deal with its proposals, delivery hand-off and milestones"
)
def get_deal(deal_id: int, session: SessionDep, _: Seller) -> DealRead:
    deal = session.get(Deal, deal_id)
    if deal is None:
        raise NotFound(f"deal {deal_id} not found")
    project = session.scalar(select(Project).where(Project.deal_id == deal_id))
    return DealRead(
        id=deal.id,
        name=deal.name,
        stage=deal.stage,
        outcome=deal.outcome,
        amount=str(deal.amount) if deal.amount is not None else None,
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
    deal_id: int, data: StageChange, session: SessionDep, settings: SettingsDep, principal: Seller
) -> dict[str, Any]:
    return flow.change_stage(session, settings, deal_id, data.stage, actor=principal.actor)


@router.post(
    "/{deal_id}/proposals",
    status_code=202,
    response_model=ProposalRequested,
    summary="Request a proposal: checked and priced now (price book, discount cap); the proposal graph renders "
    "it and queues it for review",
)
def request_proposal(
    deal_id: int, data: ProposalRequest, session: SessionDep, settings: SettingsDep, principal: Seller
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
def proposal_pdf(deal_id: int, number: str, session: SessionDep, _: Seller) -> Response:
    row = _find(session, deal_id, number)
    return Response(
        row.pdf, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="{row.number}.pdf"'}
    )


@router.get("/{deal_id}/proposals/{number}/html", response_class=HTMLResponse, summary="The proposal as HTML")
def proposal_html(deal_id: int, number: str, session: SessionDep, _: Seller) -> HTMLResponse:
    return HTMLResponse(_find(session, deal_id, number).html)


@router.post(
    "/{deal_id}/milestones/{milestone}/complete",
    response_model=MilestoneCompleted,
    summary="Complete a milestone: its invoice and a client update are drafted for review",
)
def complete_milestone(
    deal_id: int, milestone: int, session: SessionDep, settings: SettingsDep, principal: Seller
) -> dict[str, Any]:
    return flow.complete_milestone(session, settings, deal_id, milestone, actor=principal.actor)
