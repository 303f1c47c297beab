"""People and roles (admin only). Passwords are argon2id hashes; the API never returns them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from api.auth import Principal
from api.deps import ReadSessionDep, SessionDep, require
from core import users
from core.enums import Role
from core.schemas import Id, UserCreate, UserRead, UserUpdate

router = APIRouter(prefix="/v1/users", tags=["users"])
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


@router.get("", response_model=list[UserRead], summary="All users")
def list_users(session: ReadSessionDep, _: Admin) -> list[UserRead]:
    return [UserRead.model_validate(u) for u in users.list_users(session)]


@router.post("", response_model=UserRead, status_code=status.HTTP_201_CREATED, summary="Create a user")
def create_user(data: UserCreate, session: SessionDep, principal: Admin) -> UserRead:
    user = users.create_user(
        session, email=str(data.email), role=data.role, password=data.password, name=data.name, actor=principal.actor
    )
    return UserRead.model_validate(user)


@router.patch("/{user_id}", response_model=UserRead, summary="Change role, (de)activate, or set a new password")
def update_user(user_id: Id, data: UserUpdate, session: SessionDep, principal: Admin) -> UserRead:
    if principal.user_id == user_id and (data.active is False or (data.role and data.role != Role.ADMIN)):
        from core.errors import Conflict

        raise Conflict("you cannot deactivate or demote yourself; ask another admin")
    user = users.update_user(
        session, user_id, actor=principal.actor, role=data.role, active=data.active, password=data.password
    )
    return UserRead.model_validate(user)
