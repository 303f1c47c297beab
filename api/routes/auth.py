"""Sign-in for people: email + password -> a session token that expires; sign-out; who am I."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials

from api.auth import Principal
from api.deps import SessionDep, SettingsDep, bearer, get_principal
from core import users
from core.schemas import LoginRequest, LoginResult, Me

router = APIRouter(tags=["auth"])


def me_of(principal: Principal) -> Me:
    return Me(
        name=principal.name,
        role=principal.role,
        email=principal.email,
        kind="user" if principal.user_id is not None else "token",
    )


@router.post("/v1/auth/login", response_model=LoginResult, summary="Sign in with email and password (no token)")
def login(data: LoginRequest, session: SessionDep, settings: SettingsDep) -> LoginResult:
    row, plaintext = users.login(session, settings, email=data.email, password=data.password)
    user = row.user
    return LoginResult(
        token=plaintext,
        expires_at=row.expires_at,
        user=Me(name=user.name, role=user.role, email=user.email, kind="user"),
    )


@router.post("/v1/auth/logout", status_code=204, summary="End this session (API tokens are revoked by an admin)")
def logout(
    session: SessionDep,
    _: Annotated[Principal, Depends(get_principal)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    if credentials is not None:
        users.logout(session, credentials.credentials)


@router.get("/v1/me", response_model=Me, summary="Who this token is")
def me(principal: Annotated[Principal, Depends(get_principal)]) -> Me:
    return me_of(principal)
