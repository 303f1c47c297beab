"""API tokens: random secrets shown once, stored as SHA-256 hashes, each with one role.

A token has 256 bits of entropy, so a fast hash is the right tool (as for GitHub tokens); password
hashing (argon2/bcrypt) is for low-entropy human secrets.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.errors import InvalidInput
from core.models import ApiToken
from core.schemas import ROLES
from core.settings import Settings
from core.users import SESSION_PREFIX, live_session, session_user, touch_due

TOKEN_PREFIX = "rl_"


@dataclass(frozen=True)
class Principal:
    token_id: int | None
    name: str
    role: str
    user_id: int | None = None  # set for people signed in with a password (sessions), None for API tokens
    email: str | None = None
    # A session whose idle clock is due a touch, found by a read-only lookup (authenticate(touch=False)).
    touch_due: bool = field(default=False, compare=False, repr=False)

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


def authenticate(
    session: Session, plaintext: str, settings: Settings | None = None, *, touch: bool = True
) -> Principal | None:
    """An API token (rl_...) or, with settings, a review-app session (rs_...). touch=False reads only: a
    session's idle clock is then not moved, and the principal says whether it is due (touch_due)."""
    if settings is not None and plaintext.startswith(SESSION_PREFIX):
        if touch:
            user = session_user(session, settings, plaintext)
            due = False
        else:
            row = live_session(session, settings, plaintext)
            user, due = (row.user, touch_due(row)) if row is not None else (None, False)
        if user is None:
            return None
        return Principal(
            token_id=None, name=user.name, role=user.role, user_id=user.id, email=user.email, touch_due=due
        )
    row = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext), ApiToken.revoked_at.is_(None))
    )
    if row is None:
        return None
    return Principal(token_id=row.id, name=row.name, role=row.role)
