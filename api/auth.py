"""API tokens: random secrets shown once, stored as SHA-256 hashes, each with one role.

A token has 256 bits of entropy, so a fast hash is the right tool (as for GitHub tokens); password
hashing (argon2/bcrypt) is for low-entropy human secrets.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.errors import InvalidInput
from core.models import ApiToken
from core.schemas import ROLES

TOKEN_PREFIX = "rl_"


@dataclass(frozen=True)
class Principal:
    token_id: int
    name: str
    role: str

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.name}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, *, role: str, name: str, actor: str = "cli") -> tuple[ApiToken, str]:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}, got {role!r}", details={"role": role})
    if not name.strip():
        raise InvalidInput("name must not be empty", details={"name": name})
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name.strip(), role=role, token_hash=hash_token(plaintext), prefix=plaintext[:10])
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="api_token.created",
        entity_type="api_token",
        entity_id=row.id,
        after={"name": row.name, "role": role, "prefix": row.prefix},
    )
    return row, plaintext


def authenticate(session: Session, plaintext: str) -> Principal | None:
    row = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext), ApiToken.revoked_at.is_(None))
    )
    if row is None:
        return None
    return Principal(token_id=row.id, name=row.name, role=row.role)
