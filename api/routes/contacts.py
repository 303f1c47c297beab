"""Contacts: the conversation across channels (email, SMS, WhatsApp) the review app shows beside a draft."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.auth import Principal
from api.deps import ReadSessionDep, require
from core.enums import Role
from core.schemas import Conversation
from review import conversations

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])

Reader = Annotated[Principal, Depends(require(Role.CLOSER, Role.MANAGER, Role.EVALUATOR))]


@router.get(
    "/{contact_id}/conversation",
    response_model=Conversation,
    summary="A contact's messages across email, SMS and WhatsApp, newest first, with delivery status",
)
def get_conversation(
    contact_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    session: ReadSessionDep,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Conversation:
    return Conversation.model_validate(conversations.thread(session, contact_id, limit))
