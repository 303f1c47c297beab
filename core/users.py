"""People who sign in: argon2id password hashes, sessions with absolute and idle expiry, lockout.

Session tokens are 256-bit random strings stored as SHA-256 hashes (like API tokens); passwords are
low-entropy human secrets, hashed with argon2id (argon2-cffi) and rehashed when its parameters change.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import math
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from core import audit
from core.db import insert_once
from core.enums import Role
from core.errors import Conflict, InvalidInput, NotFound, TooManyAttempts, Unauthorized
from core.models import LoginThrottle, User, UserSession, utcnow
from core.schemas import USER_ROLES  # integration is for machines: API tokens only
from core.settings import Settings

SESSION_PREFIX = "rs_"
MIN_PASSWORD_LENGTH = 10
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the email is unknown, so a wrong email costs as long as a wrong password. Made on
    first use: an argon2 hash at import cost every process (the CLI's --help included) a fraction of a second."""
    return _hasher.hash("not-a-real-password")


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD_LENGTH} characters", details={"field": "password"})
    if password.strip() != password:
        raise InvalidInput("password must not start or end with whitespace", details={"field": "password"})


def _check_role(role: str) -> None:
    if role not in USER_ROLES:
        raise InvalidInput(
            f"role must be one of {', '.join(USER_ROLES)} (integration is for API tokens), got {role!r}",
            details={"field": "role"},
        )


def _normalise_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or email.startswith("@") or email.endswith("@") or len(email) > 320:
        raise InvalidInput(f"email is not a valid address: {email!r}", details={"field": "email"})
    return email


def get_user(session: Session, *, user_id: int | None = None, email: str | None = None) -> User:
    if user_id is not None:
        user = session.get(User, user_id)
    else:
        user = session.scalar(select(User).where(User.email == _normalise_email(email or "")))
    if user is None:
        raise NotFound(f"user {user_id if user_id is not None else email} not found")
    return user


def create_user(session: Session, *, email: str, role: str, password: str, name: str | None = None, actor: str) -> User:
    email = _normalise_email(email)
    _check_role(role)
    _check_password(password)
    name = (name or email.split("@")[0]).strip()
    if not name:
        raise InvalidInput("name must not be empty", details={"field": "name"})
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"a user with email {email} already exists", details={"field": "email"})
    if session.scalar(select(User.id).where(func.lower(User.name) == name.lower())) is not None:
        raise Conflict(f"a user named {name!r} already exists; pick another --name", details={"field": "name"})
    user, created = insert_once(  # the same person added twice at once: one user, the other answer a 409
        session,
        User(email=email, name=name, role=role, password_hash=_hasher.hash(password), active=True),
        select(User).where(or_(User.email == email, User.name == name)),
    )
    if not created:
        field = "email" if user.email == email else "name"
        raise Conflict(f"a user with {field} {getattr(user, field)} already exists", details={"field": field})
    audit.record(
        session,
        actor=actor,
        action="user.created",
        entity_type="user",
        entity_id=user.id,
        after={"email": email, "name": name, "role": role},
    )
    return user


def update_user(
    session: Session,
    user_id: int,
    *,
    actor: str,
    role: str | None = None,
    active: bool | None = None,
    password: str | None = None,
) -> User:
    user = get_user(session, user_id=user_id)
    before = {"role": user.role, "active": user.active}
    if role is not None:
        _check_role(role)
        user.role = role
    if password is not None:
        _check_password(password)
        user.password_hash = _hasher.hash(password)
        user.failed_logins, user.locked_until = 0, None
    if active is not None:
        user.active = active
    if password is not None or active is False or (role is not None and role != before["role"]):
        revoke_sessions(session, user.id)  # a changed password, role or deactivation signs the user out
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="user.updated",
        entity_type="user",
        entity_id=user.id,
        before=before,
        after={"role": user.role, "active": user.active, "password_changed": password is not None},
    )
    return user


def revoke_sessions(session: Session, user_id: int) -> int:
    return session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    ).rowcount


def _throttle_key(email: str, source: str) -> str:
    return hashlib.sha256(f"{email}|{source}".encode()).hexdigest()


def _check_throttle(session: Session, key: str, now: dt.datetime) -> LoginThrottle | None:
    throttle = session.get(LoginThrottle, key)
    if throttle is not None and throttle.blocked_until is not None and throttle.blocked_until > now:
        wait = max(1, math.ceil((throttle.blocked_until - now).total_seconds()))
        raise TooManyAttempts(f"too many failed sign-ins from here: try again in {wait} s", retry_after_seconds=wait)
    return throttle


def _record_failure(
    session: Session, settings: Settings, key: str, throttle: LoginThrottle | None, now: dt.datetime
) -> None:
    """Past login_max_failures from this source, each next try waits twice as long (1 s, 2 s, 4 s, ... capped)."""
    if throttle is None:
        throttle, _ = insert_once(
            session,
            LoginThrottle(key=key, failures=0, last_failure_at=now),
            select(LoginThrottle).where(LoginThrottle.key == key),
        )
    throttle.failures += 1
    throttle.last_failure_at = now
    over = throttle.failures - settings.login_max_failures
    if over >= 0:
        delay = min(2**over, settings.login_lockout_minutes * 60)
        throttle.blocked_until = now + dt.timedelta(seconds=delay)
    session.flush()


def login(
    session: Session, settings: Settings, *, email: str, password: str, source: str = "unknown"
) -> tuple[UserSession, str]:
    """A new session for the right email and password; one message for every kind of failure. Failures are
    counted per account and source (the client's address): a source that keeps failing waits longer and
    longer (429 with Retry-After), while the person signing in from elsewhere is not slowed at all."""
    failure = "wrong email or password"
    now = utcnow()
    try:
        normalised = _normalise_email(email)
    except InvalidInput:
        raise Unauthorized(failure) from None
    key = _throttle_key(normalised, source)
    throttle = _check_throttle(session, key, now)
    user = session.scalar(select(User).where(User.email == normalised))
    if user is None:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_dummy_hash(), password)
        _record_failure(session, settings, key, throttle, now)
        raise Unauthorized(failure, commit=True)
    try:
        _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        user.failed_logins += 1
        _record_failure(session, settings, key, throttle, now)
        # The failure count must survive the error answer: the unit of work commits it.
        raise Unauthorized(failure, commit=True) from None
    if not user.active:
        raise Unauthorized("this account is deactivated; ask an admin")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    if throttle is not None:
        session.delete(throttle)
    plaintext = SESSION_PREFIX + secrets.token_urlsafe(32)
    row = UserSession(
        user_id=user.id,
        token_hash=hash_secret(plaintext),
        created_at=now,
        last_seen_at=now,
        expires_at=now + dt.timedelta(hours=settings.session_hours),
    )
    session.add(row)
    session.flush()
    audit.record(session, actor=f"{user.role}:{user.name}", action="user.login", entity_type="user", entity_id=user.id)
    return row, plaintext


SESSION_TOUCH_SECONDS = 30  # a session's idle clock moves at most this often: keep writes rare on busy pages


def live_session(session: Session, settings: Settings, plaintext: str) -> UserSession | None:
    """The session row of a live session token whose user is active, or None (reads only)."""
    row = session.scalar(
        select(UserSession).where(UserSession.token_hash == hash_secret(plaintext), UserSession.revoked_at.is_(None))
    )
    now = utcnow()
    if row is None or row.expires_at <= now:
        return None
    if now - row.last_seen_at > dt.timedelta(minutes=settings.session_idle_minutes):
        return None
    if not row.user.active:
        return None
    return row


def touch_due(row: UserSession) -> bool:
    return utcnow() - row.last_seen_at > dt.timedelta(seconds=SESSION_TOUCH_SECONDS)


def session_user(session: Session, settings: Settings, plaintext: str) -> User | None:
    """The active user of a live session (and a touch of its idle clock), or None."""
    row = live_session(session, settings, plaintext)
    if row is None:
        return None
    if touch_due(row):
        row.last_seen_at = utcnow()
        session.flush()
    return row.user


def touch_session(session: Session, plaintext: str) -> bool:
    """Move a session's idle clock to now: one short UPDATE, skipped when it moved in the last seconds."""
    now = utcnow()
    return bool(
        session.execute(
            update(UserSession)
            .where(
                UserSession.token_hash == hash_secret(plaintext),
                UserSession.revoked_at.is_(None),
                UserSession.last_seen_at < now - dt.timedelta(seconds=SESSION_TOUCH_SECONDS),
            )
            .values(last_seen_at=now)
        ).rowcount
    )


def logout(session: Session, plaintext: str) -> bool:
    return bool(
        session.execute(
            update(UserSession)
            .where(UserSession.token_hash == hash_secret(plaintext), UserSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        ).rowcount
    )


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.role, User.name)).all())


def assignable_names(session: Session) -> list[str]:
    """People a review item can be assigned to: active closers and managers."""
    return list(
        session.scalars(
            select(User.name)
            .where(User.active.is_(True), User.role.in_((Role.CLOSER, Role.MANAGER)))
            .order_by(User.name)
        ).all()
    )
