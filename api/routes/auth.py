"""Sign-in for people: email + password -> a session token that expires; sign-out; who am I."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from api.auth import Principal
from api.deps import SessionDep, SettingsDep, bearer, get_principal
from core import users
from core.errors import Conflict
from core.schemas import ErrorBody, LoginRequest, LoginResult, Me

router = APIRouter(tags=["auth"])


def me_of(principal: Principal) -> Me:
    return Me(
        name=principal.name,
        role=principal.role,
        email=principal.email,
        kind="user" if principal.user_id is not None else "token",
    )


@router.post(
    "/v1/auth/login",
    response_model=LoginResult,
    summary="Sign in with email and password (no token)",
    description="Wrong passwords are counted per account and client address: past REVLOOP_LOGIN_MAX_FAILURES "
    "that address waits longer before each try (429 with Retry-After); nobody elsewhere is slowed or locked out.",
    responses={
        429: {"model": ErrorBody, "description": "Too many failed sign-ins from this address: wait Retry-After"}
    },
)
def login(data: LoginRequest, request: Request, session: SessionDep, settings: SettingsDep) -> LoginResult:
    source = request.client.host if request.client else "unknown"
    row, plaintext = users.login(session, settings, email=data.email, password=data.password, source=source)
    user = row.user
    return LoginResult(
        token=plaintext,
        expires_at=row.expires_at,
        user=Me(name=user.name, role=user.role, email=user.email, kind="user"),
    )


@router.post(
    "/v1/auth/logout",
    status_code=204,
    summary="End this sign-in session",
    description="Only review-app sessions end here: an API token answers 409 and keeps working until an admin "
    "revokes it (`revloop tokens revoke ID` or POST /v1/tokens/{id}/revoke).",
)
def logout(
    session: SessionDep,
    principal: Annotated[Principal, Depends(get_principal)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    if principal.token_id is not None:
        raise Conflict(
            f"this is an API token ({principal.name}), not a sign-in session: nothing was ended; an admin revokes "
            f"it with `revloop tokens revoke {principal.token_id}` or POST /v1/tokens/{principal.token_id}/revoke"
        )
    if credentials is not None:
        users.logout(session, credentials.credentials)


@router.get("/v1/me", response_model=Me, summary="Who this token is")
def me(principal: Annotated[Principal, Depends(get_principal)]) -> Me:
    return me_of(principal)
