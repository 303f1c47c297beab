"""Notifications: who is told, and that the same event tells each person once."""

from __future__ import annotations

from sqlalchemy import func, select

from core.db import session_scope
from core.enums import NotificationKind
from core.models import Notification, User
from core.notifications import notify
from tests import factories


def _count(settings, **where) -> int:
    with session_scope(settings) as session:
        query = select(func.count()).select_from(Notification)
        for column, value in where.items():
            query = query.where(getattr(Notification, column) == value)
        return session.scalar(query)


def test_a_dedupe_key_tells_each_recipient_once(settings):
    factories.user(settings, "manager", "Mia Manager")
    factories.user(settings, "closer", "Cal Closer")
    with session_scope(settings) as session:
        first = notify(
            session, NotificationKind.SEND_FAILED, "Send failed", names=["Cal Closer"], dedupe_key="send-failed:7"
        )
    assert len(first) == 2  # the manager (an operator) and the named closer
    with session_scope(settings) as session:
        again = notify(
            session, NotificationKind.SEND_FAILED, "Send failed", names=["Cal Closer"], dedupe_key="send-failed:7"
        )
    assert again == []
    assert _count(settings, dedupe_key="send-failed:7") == 2
    # a new key is a new event; no key never collapses
    with session_scope(settings) as session:
        assert len(notify(session, NotificationKind.SEND_FAILED, "x", dedupe_key="send-failed:8")) == 1
        assert len(notify(session, NotificationKind.SEND_FAILED, "x")) == 1
        assert len(notify(session, NotificationKind.SEND_FAILED, "x")) == 1
    assert _count(settings) == 5


def test_a_user_added_later_still_gets_a_deduplicated_event(settings):
    factories.user(settings, "manager", "Mia Manager")
    with session_scope(settings) as session:
        notify(session, NotificationKind.INTEGRATION_DOWN, "SMTP down", dedupe_key="down:smtp:1")
    factories.user(settings, "admin", "Ada Admin")
    with session_scope(settings) as session:
        rows = notify(session, NotificationKind.INTEGRATION_DOWN, "SMTP down", dedupe_key="down:smtp:1")
        admin_id = session.scalar(select(User.id).where(User.name == "Ada Admin"))
        assert [r.user_id for r in rows] == [admin_id]
