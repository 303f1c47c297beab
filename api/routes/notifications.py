"""Notifications for the signed-in person (new A leads, SLAs, failed sends, integrations down or back), their
own preferences (channels per kind, quiet hours), and the team webhook's kinds (managers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.auth import Principal
from api.deps import SessionDep, SettingsDep, get_principal, require
from core import notifications
from core.enums import Role
from core.errors import Forbidden, NotFound
from core.schemas import (
    ID_MAX,
    NotificationList,
    NotificationPreferences,
    NotificationPreferencesUpdate,
    NotificationRead,
    TeamChannels,
    TeamChannelsUpdate,
)

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])

Me = Annotated[Principal, Depends(get_principal)]
Manager = Annotated[Principal, Depends(require(Role.MANAGER))]


def _person(principal: Principal) -> int:
    if principal.user_id is None:
        raise Forbidden("notification preferences belong to people: sign in as a user (API tokens have none)")
    return principal.user_id


@router.get("", response_model=NotificationList, summary="My notifications, newest first, with the unread count")
def list_notifications(
    session: SessionDep,
    settings: SettingsDep,
    principal: Me,
    unread: Annotated[bool, Query(description="Only the unread ones")] = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> NotificationList:
    if principal.user_id is None:  # API tokens are not people: nothing is addressed to them
        return NotificationList(unread=0, items=[])
    rows = notifications.for_user(session, principal.user_id, unread_only=unread, limit=limit)
    return NotificationList(
        unread=notifications.unread_count(session, principal.user_id),
        items=[
            NotificationRead.model_validate(r).model_copy(
                update={"link": notifications.deep_link(settings, r.entity_type, r.entity_id)}
            )
            for r in rows
        ],
    )


@router.get(
    "/preferences",
    response_model=NotificationPreferences,
    summary="My notification channels per kind, quiet hours and the address email goes to",
)
def get_preferences(session: SessionDep, principal: Me) -> NotificationPreferences:
    return NotificationPreferences.model_validate(notifications.preferences(session, _person(principal)))


@router.put(
    "/preferences",
    response_model=NotificationPreferences,
    summary="Change my channels (only the kinds and channels given) and quiet hours (null removes them)",
)
def put_preferences(session: SessionDep, principal: Me, body: NotificationPreferencesUpdate) -> NotificationPreferences:
    channels = {
        kind: {channel: on for channel, on in choice.model_dump().items() if on is not None}
        for kind, choice in body.channels.items()
    }
    updated = notifications.set_preferences(
        session,
        _person(principal),
        actor=principal.name,
        channels=channels,
        quiet_hours=body.quiet_hours.model_dump() if body.quiet_hours else None,
        clear_quiet_hours="quiet_hours" in body.model_fields_set and body.quiet_hours is None,
    )
    return NotificationPreferences.model_validate(updated)


def _team(session, settings) -> TeamChannels:
    return TeamChannels(
        webhook=notifications.team_channels(session),
        webhook_configured=bool(settings.notify_webhook_url),
        webhook_signed=bool(settings.notify_webhook_secret),
    )


@router.get("/team", response_model=TeamChannels, summary="Which kinds go to the team webhook (managers)")
def get_team(session: SessionDep, settings: SettingsDep, _: Manager) -> TeamChannels:
    return _team(session, settings)


@router.put("/team", response_model=TeamChannels, summary="Switch kinds on or off for the team webhook (managers)")
def put_team(session: SessionDep, settings: SettingsDep, principal: Manager, body: TeamChannelsUpdate) -> TeamChannels:
    notifications.set_team_channels(session, dict(body.webhook), actor=principal.name)
    return _team(session, settings)


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
