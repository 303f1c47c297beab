"""The review queue over HTTP: list, read, approve (optionally edited), reject (with a reason)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query

from api.auth import Principal
from api.deps import SessionDep, require
from core.schemas import ApproveRequest, RejectRequest, ReviewItem, ReviewItemPage
from review import service

router = APIRouter(prefix="/v1/review-items", tags=["review"])

Status = Literal["pending", "approved", "rejected", "sent", "done", "cancelled", "failed"]
Reader = Annotated[Principal, Depends(require("closer", "manager", "evaluator"))]
Decider = Annotated[Principal, Depends(require("closer", "manager"))]


@router.get("", response_model=ReviewItemPage, summary="The queue, oldest first")
def list_review_items(
    session: SessionDep,
    _: Reader,
    status: Status | None = None,
    queue: Literal["main", "exception"] | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ReviewItemPage:
    items, total = service.list_items(session, status=status, limit=limit, offset=offset, queue=queue)
    return ReviewItemPage(items=[ReviewItem.model_validate(i) for i in items], total=total, limit=limit, offset=offset)


@router.get("/{item_id}", response_model=ReviewItem)
def get_review_item(item_id: int, session: SessionDep, _: Reader) -> ReviewItem:
    return ReviewItem.model_validate(service.get_item(session, item_id))


@router.post(
    "/{item_id}/approve",
    response_model=ReviewItem,
    summary="Approve (optionally with an edited subject/body); the action runs once",
)
def approve_review_item(
    item_id: int, session: SessionDep, principal: Decider, edit: Annotated[ApproveRequest | None, Body()] = None
) -> ReviewItem:
    edit = edit or ApproveRequest()
    item = service.approve(
        session,
        item_id,
        actor=principal.actor,
        subject=edit.subject,
        body=edit.body,
        acknowledge_flags=edit.acknowledge_flags,
    )
    session.commit()
    return ReviewItem.model_validate(item)


@router.post("/{item_id}/reject", response_model=ReviewItem, summary="Reject with a reason; nothing is sent")
def reject_review_item(item_id: int, data: RejectRequest, session: SessionDep, principal: Decider) -> ReviewItem:
    item = service.reject(session, item_id, actor=principal.actor, reason=data.reason)
    session.commit()
    return ReviewItem.model_validate(item)
