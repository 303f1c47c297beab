"""Notifications: what a person must know without watching a table (a send that failed, an integration
that went down or came back). One row per recipient, so each person reads and clears their own."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from core.db import insert_once
from core.enums import NotificationKind, Role
from core.errors import NotFound
from core.models import Notification, User, utcnow

log = logging.getLogger("revloop.notifications")

# Who hears about trouble that is nobody's item in particular.
OPERATORS = (Role.MANAGER, Role.ADMIN)


def notify(
    session: Session,
    kind: NotificationKind,
    title: str,
    *,
    body: str = "",
    severity: str = "warning",
    roles: Iterable[str] = OPERATORS,
    names: Iterable[str | None] = (),
    entity: tuple[str, object] | None = None,
    dedupe_key: str | None = None,
) -> list[Notification]:
    """Notify every active user with one of `roles` and the active users named in `names` (each once).

    With a `dedupe_key`, a user who already has a notification with that key gets no second one (a retried
    job or a burst of the same event tells each person once). Returns only the rows created now."""
    wanted_names = [n for n in names if n]
    conditions = [User.role.in_([str(r) for r in roles])]
    if wanted_names:
        conditions.append(User.name.in_(wanted_names))
    users = session.scalars(select(User).where(User.active.is_(True), or_(*conditions)).order_by(User.id)).all()
    log.warning("notification %s: %s (%d recipient(s))", kind, title, len(users))
    rows = []
    for user in users:
        row = Notification(
            user_id=user.id,
            kind=kind,
            severity=severity,
            title=title[:300],
            body=body,
            entity_type=entity[0] if entity else None,
            entity_id=str(entity[1]) if entity else None,
            dedupe_key=dedupe_key,
        )
        if dedupe_key is None:
            session.add(row)
            rows.append(row)
            continue
        existing = select(Notification).where(Notification.user_id == user.id, Notification.dedupe_key == dedupe_key)
        row, created = insert_once(session, row, existing)
        if created:
            rows.append(row)
    session.flush()
    return rows


def for_user(session: Session, user_id: int, *, unread_only: bool = False, limit: int = 50) -> list[Notification]:
    query = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    return list(session.scalars(query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)))


def unread_count(session: Session, user_id: int) -> int:
    return session.scalar(select(func.count()).where(Notification.user_id == user_id, Notification.read_at.is_(None)))


def mark_read(session: Session, user_id: int, notification_id: int | None = None) -> int:
    """Mark one notification (or, with None, all of them) read; 404 for someone else's."""
    query = update(Notification).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    if notification_id is not None:
        found = session.scalar(
            select(Notification.id).where(Notification.id == notification_id, Notification.user_id == user_id)
        )
        if found is None:
            raise NotFound(f"notification {notification_id} not found")
        query = query.where(Notification.id == notification_id)
    return session.execute(query.values(read_at=utcnow()).execution_options(synchronize_session=False)).rowcount
