"""API tokens: random secrets shown once, stored as SHA-256 hashes, each with one role.

A token has 256 bits of entropy, so a fast hash is the right tool (as for GitHub tokens); password
hashing (argon2/bcrypt) is for low-entropy human secrets.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field, replace

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import audit
from core.errors import InvalidInput, NotFound
from core.models import ApiToken, utcnow
from core.schemas import ROLES
from core.settings import Settings
from core.users import SESSION_PREFIX, live_session, session_user, touch_due
from review.policy import Who

TOKEN_PREFIX = "rl_"
# A token scope is "<area>:read" or "<area>:write" (write includes read); the area is the path segment after
# /v1/ (POST /v1/leads needs leads:write). A token without scopes may do whatever its role may.
SCOPE_AREAS = (
    "leads",
    "contacts",
    "review-items",
    "deals",
    "products",
    "invoices",
    "payments",
    "cash",
    "kpis",
    "reviews",
    "icp",
    "scoring",
    "templates",
    "evals",
    "sales-agents",
    "users",
    "tokens",
    "audit-events",
    "health",
)
IDENTITY_AREAS = ("me", "auth", "notifications")  # about the caller itself: no scope needed
TOKEN_TOUCH_SECONDS = 60  # last_used_at moves at most this often (one short write)


def scope_needed(method: str, path: str) -> str | None:
    parts = path.split("/")
    if len(parts) < 3 or parts[1] != "v1" or parts[2] in IDENTITY_AREAS:
        return None
    return f"{parts[2]}:{'read' if method in ('GET', 'HEAD', 'OPTIONS') else 'write'}"


def check_scopes(scopes: list[str]) -> list[str]:
    bad = [s for s in scopes if s.partition(":")[0] not in SCOPE_AREAS or s.partition(":")[2] not in ("read", "write")]
    if bad:
        raise InvalidInput(
            f"unknown scope(s) {', '.join(bad)}: use <area>:read or <area>:write with area one of "
            + ", ".join(SCOPE_AREAS),
            details={"field": "scopes"},
        )
    return sorted(set(scopes))


@dataclass(frozen=True)
class Principal:
    token_id: int | None
    name: str
    role: str
    user_id: int | None = None  # set for people signed in with a password (sessions), None for API tokens
    email: str | None = None
    # A session whose idle clock is due a touch, found by a read-only lookup (authenticate(touch=False)).
    touch_due: bool = field(default=False, compare=False, repr=False)
    scopes: tuple[str, ...] | None = None  # an API token's scopes; None: whatever the role may do
    token_touch_due: bool = field(default=False, compare=False, repr=False)  # its last_used_at is stale
    expires_at: dt.datetime | None = field(default=None, compare=False, repr=False)  # an API token's expiry

    def allows(self, method: str, path: str) -> bool:
        needed = scope_needed(method, path)
        if self.scopes is None or needed is None:
            return True
        return needed in self.scopes or needed.replace(":read", ":write") in self.scopes

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.name}"

    @property
    def who(self) -> Who:
        """The principal as the review policy sees it (object-level authorization)."""
        return Who(name=self.name, role=self.role, actor=self.actor)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session,
    *,
    role: str,
    name: str,
    actor: str = "cli",
    scopes: list[str] | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[ApiToken, str]:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}, got {role!r}", details={"role": role})
    if not name.strip():
        raise InvalidInput("name must not be empty", details={"name": name})
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput("expires_at must be in the future", details={"field": "expires_at"})
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name.strip(),
        role=role,
        token_hash=hash_token(plaintext),
        prefix=plaintext[:10],
        scopes=check_scopes(scopes) if scopes else None,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="api_token.created",
        entity_type="api_token",
        entity_id=row.id,
        after={
            "name": row.name,
            "role": role,
            "prefix": row.prefix,
            "scopes": row.scopes,
            "expires_at": str(expires_at),
        },
    )
    return row, plaintext


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(session: Session, token_id: int, *, actor: str) -> ApiToken:
    """Revoke once; the token stops working on its next request. Revoking a revoked token is a no-op."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"API token {token_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
        verified_tokens.forget(row.id)  # this process stops trusting it at once (others within their cache time)
        audit.record(
            session,
            actor=actor,
            action="api_token.revoked",
            entity_type="api_token",
            entity_id=row.id,
            after={"name": row.name, "prefix": row.prefix},
        )
    return row


def touch_token(session: Session, token_id: int) -> None:
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow()))


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
    now = utcnow()
    if row is None or (row.expires_at is not None and row.expires_at <= now):
        return None
    stale = row.last_used_at is None or (now - row.last_used_at).total_seconds() > TOKEN_TOUCH_SECONDS
    return Principal(
        token_id=row.id,
        name=row.name,
        role=row.role,
        scopes=tuple(row.scopes) if row.scopes is not None else None,
        token_touch_due=stale,
        expires_at=row.expires_at,
    )


class VerifiedTokens:
    """API tokens this process verified in the last few seconds (REVLOOP_API_TOKEN_CACHE_SECONDS), by database
    and token hash: a form or integration posting many leads costs one token read every few seconds instead of a
    read transaction per request. Only valid tokens are kept; expiry is checked on every hit."""

    MAX_ENTRIES = 10_000  # past this (a flood of distinct tokens) the cache starts over

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, database_url: str, plaintext: str, ttl_seconds: float) -> Principal | None:
        if ttl_seconds <= 0 or not plaintext.startswith(TOKEN_PREFIX):
            return None
        key = (database_url, hash_token(plaintext))
        entry = self._entries.get(key)
        if entry is None:
            return None
        verified_at, principal = entry
        if time.monotonic() - verified_at > ttl_seconds or (
            principal.expires_at is not None and principal.expires_at <= utcnow()
        ):
            with self._lock:
                self._entries.pop(key, None)
            return None
        return principal

    def put(self, database_url: str, plaintext: str, principal: Principal, ttl_seconds: float) -> None:
        if ttl_seconds <= 0 or principal.token_id is None:
            return
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            # A hit is never due a touch: the read that refreshes the entry says whether last_used_at is stale.
            self._entries[(database_url, hash_token(plaintext))] = (
                time.monotonic(),
                replace(principal, token_touch_due=False),
            )

    def forget(self, token_id: int) -> None:
        with self._lock:
            for key in [k for k, (_, p) in self._entries.items() if p.token_id == token_id]:
                del self._entries[key]


verified_tokens = VerifiedTokens()
