"""Request dependencies: the unit-of-work session and the authenticated principal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.auth import Principal, authenticate
from core.db import session_factory
from core.errors import Forbidden, Unauthorized
from core.settings import Settings

bearer = HTTPBearer(
    auto_error=False, description="An API token (`revloop tokens create`) or a session token from POST /v1/auth/login."
)


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """One session per request. Write routes commit before answering; anything else is rolled back."""
    session = session_factory(request.app.state.settings)()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    session = session_factory(request.app.state.settings)()
    try:
        principal = authenticate(session, credentials.credentials, request.app.state.settings)
    finally:
        session.close()
    if principal is None:
        raise Unauthorized("invalid, expired or revoked token: sign in again")
    return principal


def require(*roles: str):
    allowed = set(roles) | {"admin"}

    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(f"role {principal.role!r} may not do this; allowed: {', '.join(sorted(allowed))}")
        return principal

    return check
