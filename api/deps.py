"""Request dependencies: the unit-of-work session and the authenticated principal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.auth import Principal, authenticate
from core.db import session_factory, session_scope
from core.enums import Role
from core.errors import AppError, Forbidden, Unauthorized
from core.settings import Settings

bearer = HTTPBearer(
    auto_error=False, description="An API token (`revloop tokens create`) or a session token from POST /v1/auth/login."
)


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """One session per request, the request's unit of work: routes and services only flush; this commits
    when the route succeeds (background jobs it enqueued included) and rolls back when it raises, except an
    AppError raised with commit=True (e.g. a failed sign-in's count must survive the 401)."""
    session = session_factory(request.app.state.settings)()
    try:
        yield session
    except AppError as exc:
        if exc.commit:
            session.commit()
        else:
            session.rollback()
        raise
    except BaseException:
        session.rollback()
        raise
    else:
        session.commit()
    finally:
        session.close()


# scope="function": the commit happens before the answer is sent, so a client (or the worker) that acts on
# the answer sees the rows, and a failed commit is an error answer, not a 200 for lost work.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    # Its own short unit of work: a session token's idle clock is touched even when the request fails.
    with session_scope(request.app.state.settings) as session:
        principal = authenticate(session, credentials.credentials, request.app.state.settings)
    if principal is None:
        raise Unauthorized("invalid, expired or revoked token: sign in again")
    return principal


def require(*roles: Role):
    allowed = set(roles) | {Role.ADMIN}

    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(f"role {principal.role!r} may not do this; allowed: {', '.join(sorted(allowed))}")
        return principal

    return check
