"""Notifications: who is told, on which channels (their preferences over the defaults), that the same event
tells each person once, and when quiet hours hold email."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from core.db import session_scope
from core.enums import DeliveryStatus, JobKind, NotificationKind
from core.errors import InvalidInput
from core.models import Job, Notification, NotificationDelivery, QuietHours, User
from core.notifications import (
    deep_link,
    for_user,
    notify,
    preferences,
    quiet_until,
    set_preferences,
    set_team_channels,
    unread_count,
)
from tests import factories


def _count(settings, model=Notification, **where) -> int:
    with session_scope(settings) as session:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return session.scalar(query)


def _user_id(settings, name: str) -> int:
    with session_scope(settings) as session:
        return session.scalar(select(User.id).where(User.name == name))


def _notify(settings, kind=NotificationKind.NEW_A_LEAD, title="New A lead: Acme", **kwargs):
    kwargs.setdefault("roles", ())
    with session_scope(settings) as session:
        return [row.id for row in notify(session, kind, title, settings=settings, **kwargs)]


def test_a_dedupe_key_tells_each_recipient_once(settings):
    factories.user(settings, "manager", "Mia Manager")
    factories.user(settings, "closer", "Cal Closer")
    kind = NotificationKind.SEND_FAILED
    first = _notify(settings, kind, "Send failed", roles=("manager",), names=["Cal Closer"], dedupe_key="send:7")
    assert len(first) == 2  # the manager and the named closer
    again = _notify(settings, kind, "Send failed", roles=("manager",), names=["Cal Closer"], dedupe_key="send:7")
    assert again == []
    assert _count(settings, dedupe_key="send:7") == 2
    # ...and the team webhook posts the event once, not once per person or per call
    assert _count(settings, NotificationDelivery, channel="webhook") == 1
    # a new key is a new event; no key (and no item) never collapses
    assert len(_notify(settings, kind, "x", roles=("manager",), dedupe_key="send:8")) == 1
    assert len(_notify(settings, kind, "x", roles=("manager",))) == 1
    assert len(_notify(settings, kind, "x", roles=("manager",))) == 1
    assert _count(settings) == 5


def test_a_user_added_later_still_gets_a_deduplicated_event(settings):
    factories.user(settings, "manager", "Mia Manager")
    _notify(settings, NotificationKind.INTEGRATION_DOWN, "SMTP down", roles=("manager", "admin"), dedupe_key="d:1")
    factories.user(settings, "admin", "Ada Admin")
    rows = _notify(
        settings, NotificationKind.INTEGRATION_DOWN, "SMTP down", roles=("manager", "admin"), dedupe_key="d:1"
    )
    ada = _user_id(settings, "Ada Admin")
    with session_scope(settings) as session:
        assert [session.get(Notification, r).user_id for r in rows] == [ada]


def test_a_burst_for_one_item_collapses_into_the_row_already_there(settings):
    factories.user(settings, "closer", "Cal Closer")
    cal = _user_id(settings, "Cal Closer")
    first = _notify(
        settings, NotificationKind.SLA_AT_RISK, "Due in 4 min", names=["Cal Closer"], entity=("review_item", 9)
    )
    with session_scope(settings) as session:
        for_user(session, cal)[0].read_at = dt.datetime.now(dt.UTC)
    again = _notify(
        settings, NotificationKind.SLA_AT_RISK, "Due in 2 min", names=["Cal Closer"], entity=("review_item", 9)
    )
    assert again == [] and _count(settings) == 1
    with session_scope(settings) as session:
        [row] = for_user(session, cal)
        # one row, back to unread, saying the latest
        assert row.id == first[0] and row.title == "Due in 2 min" and row.read_at is None
    # another item, or the window passed: a row of its own
    assert (
        len(_notify(settings, NotificationKind.SLA_AT_RISK, "x", names=["Cal Closer"], entity=("review_item", 10))) == 1
    )
    settings.notify_burst_minutes = 0
    assert (
        len(_notify(settings, NotificationKind.SLA_AT_RISK, "x", names=["Cal Closer"], entity=("review_item", 9))) == 1
    )


def test_defaults_email_a_new_a_lead_and_a_breach_but_not_the_rest(settings):
    factories.user(settings, "closer", "Cal Closer")
    [lead_note] = _notify(settings, NotificationKind.NEW_A_LEAD, names=["Cal Closer"], entity=("review_item", 3))
    _notify(settings, NotificationKind.TAKEN_OVER, "Taken over", names=["Cal Closer"], entity=("review_item", 4))
    with session_scope(settings) as session:
        emails = session.scalars(select(NotificationDelivery).where(NotificationDelivery.channel == "email")).all()
        assert [(e.notification_id, e.status) for e in emails] == [(lead_note, DeliveryStatus.PENDING)]
        # each delivery is a job, queued in the same transaction as the notification
        jobs = session.scalars(select(Job).where(Job.kind == JobKind.NOTIFICATION_DELIVER)).all()
        webhooks = session.scalars(select(NotificationDelivery).where(NotificationDelivery.channel == "webhook")).all()
        # the team channel: on for a new A lead, off for a personal "taken over"
        assert [w.kind for w in webhooks] == ["new_a_lead"]
        assert {j.payload["delivery_id"] for j in jobs} == {emails[0].id, webhooks[0].id}


def test_preferences_decide_the_channels(settings):
    factories.user(settings, "closer", "Cal Closer")
    cal = _user_id(settings, "Cal Closer")
    with session_scope(settings) as session:
        set_team_channels(session, {"sla_at_risk": True}, actor="mia")
        set_preferences(
            session,
            cal,
            actor="cal",
            channels={"sla_at_risk": {"in_app": False, "email": True}, "taken_over": {"email": True}},
        )
    _notify(settings, NotificationKind.SLA_AT_RISK, "Due soon", names=["Cal Closer"], entity=("review_item", 1))
    _notify(settings, NotificationKind.TAKEN_OVER, "Taken over", names=["Cal Closer"], entity=("review_item", 2))
    with session_scope(settings) as session:
        # in-app off: the row exists (for the email and the dedupe key) but the page and badge leave it out
        assert [n.kind for n in for_user(session, cal)] == ["taken_over"] and unread_count(session, cal) == 1
    assert _count(settings, NotificationDelivery, channel="email") == 2
    with session_scope(settings) as session:
        set_preferences(session, cal, actor="cal", channels={"sla_at_risk": {"email": False}})
        assert preferences(session, cal)["channels"]["sla_at_risk"] == {"in_app": False, "email": False}
    # nothing chosen for this kind: no row at all, no email; the team still hears
    assert (
        _notify(settings, NotificationKind.SLA_AT_RISK, "Due soon", names=["Cal Closer"], entity=("review_item", 5))
        == []
    )
    assert _count(settings, NotificationDelivery, channel="email") == 2
    assert _count(settings, NotificationDelivery, channel="webhook") == 2


def test_in_app_cannot_be_switched_off_for_what_needs_a_person(settings):
    factories.user(settings, "closer", "Cal Closer")
    cal = _user_id(settings, "Cal Closer")
    with session_scope(settings) as session, pytest.raises(InvalidInput) as refused:
        set_preferences(session, cal, actor="cal", channels={"sla_breached": {"in_app": False}})
    assert refused.value.details == {"field": "channels.sla_breached.in_app"}
    with session_scope(settings) as session:
        set_preferences(session, cal, actor="cal", channels={"sla_breached": {"email": False}})
        assert preferences(session, cal)["channels"]["sla_breached"] == {"in_app": True, "email": False}


def test_inactive_users_get_nothing(settings):
    factories.user(settings, "closer", "Cal Closer")
    factories.user(settings, "manager", "Mia Manager")
    with session_scope(settings) as session:
        session.scalar(select(User).where(User.name == "Cal Closer")).active = False
    rows = _notify(settings, NotificationKind.NEW_A_LEAD, names=["Cal Closer"], roles=("manager",))
    mia = _user_id(settings, "Mia Manager")
    with session_scope(settings) as session:
        assert [session.get(Notification, r).user_id for r in rows] == [mia]
        emailed = session.scalars(select(NotificationDelivery.user_id).where(NotificationDelivery.channel == "email"))
        assert emailed.all() == [mia]


def test_team_webhook_kinds_are_the_managers_choice(settings):
    factories.user(settings, "manager", "Mia Manager")
    with session_scope(settings) as session:
        set_team_channels(session, {"new_a_lead": False, "sla_at_risk": True}, actor="mia")
    _notify(settings, NotificationKind.NEW_A_LEAD, roles=("manager",))
    _notify(settings, NotificationKind.SLA_AT_RISK, "Due soon", roles=("manager",))
    with session_scope(settings) as session:
        kinds = session.scalars(
            select(NotificationDelivery.kind).where(NotificationDelivery.channel == "webhook")
        ).all()
    assert kinds == ["sla_at_risk"]


def test_quiet_hours_end_in_the_users_time_zone():
    quiet = QuietHours(start="22:00", end="07:00", timezone="Europe/Berlin")  # UTC+1 in December
    at = dt.datetime(2026, 12, 3, 22, 30, tzinfo=dt.UTC)  # 23:30 in Berlin: quiet until 07:00 Berlin
    assert quiet_until(quiet, at) == dt.datetime(2026, 12, 4, 6, 0, tzinfo=dt.UTC)
    assert quiet_until(quiet, dt.datetime(2026, 12, 4, 5, 59, tzinfo=dt.UTC)) == dt.datetime(
        2026, 12, 4, 6, 0, tzinfo=dt.UTC
    )
    assert quiet_until(quiet, dt.datetime(2026, 12, 4, 6, 0, tzinfo=dt.UTC)) is None  # 07:00 local: over
    assert quiet_until(quiet, dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)) is None
    lunch = QuietHours(start="12:00", end="13:00", timezone="America/New_York")  # UTC-5
    assert quiet_until(lunch, dt.datetime(2026, 12, 3, 17, 15, tzinfo=dt.UTC)) == dt.datetime(
        2026, 12, 3, 18, 0, tzinfo=dt.UTC
    )
    assert quiet_until(None, at) is None


def test_quiet_hours_hold_email_and_changing_them_releases_it(settings):
    factories.user(settings, "closer", "Cal Closer")
    cal = _user_id(settings, "Cal Closer")
    now = dt.datetime.now(dt.UTC)
    start, end = (now - dt.timedelta(hours=1)).strftime("%H:%M"), (now + dt.timedelta(hours=2)).strftime("%H:%M")
    with session_scope(settings) as session:
        set_preferences(session, cal, actor="cal", quiet_hours={"start": start, "end": end, "timezone": "UTC"})
    [note] = _notify(settings, NotificationKind.NEW_A_LEAD, names=["Cal Closer"], entity=("review_item", 1))
    with session_scope(settings) as session:
        email = session.scalar(select(NotificationDelivery).where(NotificationDelivery.channel == "email"))
        job = session.scalar(select(Job).where(Job.dedupe_key == f"notification.deliver:{email.id}"))
        assert email.status == DeliveryStatus.HELD and email.hold_until > now + dt.timedelta(minutes=100)
        assert job.run_after == email.hold_until  # the worker will not pick it up before
        assert unread_count(session, cal) == 1  # in-app still appears
        set_preferences(session, cal, actor="cal", clear_quiet_hours=True)
    with session_scope(settings) as session:
        email = session.scalar(select(NotificationDelivery).where(NotificationDelivery.channel == "email"))
        job = session.scalar(select(Job).where(Job.dedupe_key == f"notification.deliver:{email.id}"))
        assert email.status == DeliveryStatus.PENDING and job.run_after <= dt.datetime.now(dt.UTC)


def test_the_deep_link_points_at_the_item_in_the_review_app(settings):
    settings.app_url = "https://review.example.com/"
    assert deep_link(settings, "review_item", "42") == "https://review.example.com/?item=42"
    assert deep_link(settings, "integration", "mail") == "https://review.example.com/health"
    assert deep_link(settings, None, None) == "https://review.example.com/notifications"
