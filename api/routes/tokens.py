"""API tokens for machines and scripts (admins): list with last use, create with scopes and expiry, revoke."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Path

from api import auth as tokens
from api.auth import Principal
from api.deps import ReadSessionDep, SessionDep, require
from core.enums import Role
from core.models import utcnow
from core.schemas import ID_MAX, TokenCreate, TokenCreated, TokenRead

router = APIRouter(prefix="/v1/tokens", tags=["auth"])

Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
TokenId = Annotated[int, Path(ge=1, le=ID_MAX)]  # ids are INTEGER columns (32-bit on PostgreSQL)


@router.get("", response_model=list[TokenRead], summary="Every API token with its scopes, expiry and last use")
def list_tokens(session: ReadSessionDep, _: Admin) -> list[TokenRead]:
    return [TokenRead.model_validate(t) for t in tokens.list_tokens(session)]


@router.post("", response_model=TokenCreated, status_code=201, summary="Create a token (shown once)")
def create_token(data: TokenCreate, session: SessionDep, principal: Admin) -> TokenCreated:
    expires = utcnow() + dt.timedelta(days=data.expires_in_days) if data.expires_in_days else None
    row, plaintext = tokens.create_token(
        session, role=data.role, name=data.name, actor=principal.actor, scopes=data.scopes, expires_at=expires
    )
    return TokenCreated(token=plaintext, details=TokenRead.model_validate(row))


@router.post("/{token_id}/revoke", response_model=TokenRead, summary="Revoke a token: it stops working at once")
def revoke_token(token_id: TokenId, session: SessionDep, principal: Admin) -> TokenRead:
    return TokenRead.model_validate(tokens.revoke_token(session, token_id, actor=principal.actor))
