"""Notifications for the signed-in person: sends that failed, deliveries in doubt, integrations down or back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.auth import Principal
from api.deps import SessionDep, get_principal
from core import notifications
from core.errors import NotFound
from core.schemas import ID_MAX, NotificationList, NotificationRead

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])

Me = Annotated[Principal, Depends(get_principal)]


@router.get("", response_model=NotificationList, summary="My notifications, newest first, with the unread count")
def list_notifications(
    session: SessionDep,
    principal: Me,
    unread: Annotated[bool, Query(description="Only the unread ones")] = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> NotificationList:
    if principal.user_id is None:  # API tokens are not people: nothing is addressed to them
        return NotificationList(unread=0, items=[])
    rows = notifications.for_user(session, principal.user_id, unread_only=unread, limit=limit)
    return NotificationList(
        unread=notifications.unread_count(session, principal.user_id),
        items=[NotificationRead.model_validate(r) for r in rows],
    )


@router.post("/read-all", response_model=NotificationList, summary="Mark all my notifications read")
def read_all(session: SessionDep, principal: Me) -> NotificationList:
    if principal.user_id is not None:
        notifications.mark_read(session, principal.user_id)
    return NotificationList(unread=0, items=[])


@router.post("/{notification_id}/read", response_model=NotificationList, summary="Mark one notification read")
def read_one(
    session: SessionDep, principal: Me, notification_id: Annotated[int, Path(ge=1, le=ID_MAX)]
) -> NotificationList:
    if principal.user_id is None:
        raise NotFound(f"notification {notification_id} not found")
    notifications.mark_read(session, principal.user_id, notification_id)
    return NotificationList(unread=notifications.unread_count(session, principal.user_id), items=[])
