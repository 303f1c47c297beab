"""Request dependencies: the unit-of-work session and the authenticated principal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.auth import Principal, authenticate, scope_needed, touch_token, verified_tokens
from core.db import session_factory, session_scope, write_if_free
from core.enums import Role
from core.errors import AppError, Forbidden, Unauthorized
from core.settings import Settings
from core.users import touch_session

bearer = HTTPBearer(
    auto_error=False, description="An API token (`revloop tokens create`) or a session token from POST /v1/auth/login."
)


# Dependencies that only read memory are `async def`: FastAPI runs a sync one on the thread pool, a hand-off that
# cost more than the work (py-spy on `revloop serve` under bench/bench_ingest.py).
async def get_settings_dep(request: Request) -> Settings:
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


def get_read_session(request: Request) -> Iterator[Session]:
    """A read-only session for routes that only read: on SQLite it neither takes nor waits for the write lock
    (a long import or a training run does not hold up these pages); nothing is committed."""
    with session_scope(request.app.state.settings, readonly=True) as session:
        yield session


ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    settings = request.app.state.settings
    token, ttl = credentials.credentials, settings.api_token_cache_seconds
    principal = verified_tokens.get(settings.resolved_database_url, token, ttl)
    if principal is not None:
        return principal  # verified a moment ago by this process (REVLOOP_API_TOKEN_CACHE_SECONDS): no thread needed
    return await anyio.to_thread.run_sync(_verify_token, settings, token)


def _verify_token(settings: Settings, token: str) -> Principal:
    """Look the token up in the database (on the thread pool: it waits for the database)."""
    database_url, ttl = settings.resolved_database_url, settings.api_token_cache_seconds
    # Looked up read-only: a token check never waits for (nor takes) the database's write lock.
    with session_scope(settings, readonly=True) as session:
        principal = authenticate(session, token, settings, touch=False)
    if principal is not None and principal.token_id is not None:
        verified_tokens.put(database_url, token, principal, ttl)
    if principal is None:
        raise Unauthorized(
            "invalid, expired or revoked token: people sign in again; for an API token ask an admin for a new one"
        )
    if principal.touch_due:
        # The idle clock moves at most every 30 s, in its own short write that is skipped (the next request
        # does it) when the database is busy, so a busy database never holds the request up here.
        write_if_free(settings, lambda s: touch_session(s, token))
    if principal.token_touch_due and principal.token_id is not None:
        write_if_free(settings, lambda s: touch_token(s, principal.token_id))  # last_used_at, at most every 60 s
    return principal


def require(*roles: Role):
    allowed = set(roles) | {Role.ADMIN}

    async def check(request: Request, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(f"role {principal.role!r} may not do this; allowed: {', '.join(sorted(allowed))}")
        if not principal.allows(request.method, request.url.path):
            raise Forbidden(
                f"this token's scopes ({', '.join(principal.scopes or ())}) do not include "
                f"{scope_needed(request.method, request.url.path)}"
            )
        return principal

    return check
