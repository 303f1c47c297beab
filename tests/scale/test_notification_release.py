"""On Celery, email held for quiet hours is released by a message of its own when the quiet hours go: the job's
first message (if any) carries the old end time."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from core import broker
from core.db import session_scope
from core.enums import NotificationKind
from core.models import User
from core.notifications import notify, set_preferences
from tests import factories
from tests.conftest import only_on
from tests.scale.test_celery import celery_settings  # noqa: F401  (the fixture)

pytestmark = only_on("postgresql")  # a Celery deployment runs on PostgreSQL


def test_clearing_quiet_hours_publishes_the_held_email(celery_settings):  # noqa: F811
    settings = celery_settings
    factories.user(settings, "closer", "Cal Closer")
    now = dt.datetime.now(dt.UTC)
    quiet = {
        "start": (now - dt.timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + dt.timedelta(hours=2)).strftime("%H:%M"),
    }
    with session_scope(settings) as session:
        cal = session.scalar(select(User.id).where(User.name == "Cal Closer"))
        set_preferences(session, cal, actor="cal", quiet_hours={**quiet, "timezone": "UTC"})
        set_preferences(session, cal, actor="cal", channels={"new_a_lead": {"email": True}})
    with session_scope(settings) as session:
        notify(session, NotificationKind.NEW_A_LEAD, "New A lead", roles=(), names=["Cal Closer"], settings=settings)
    # the webhook post goes now (one message); the held email is two hours off: beat's dispatch would send it then
    assert broker.queue_depth(settings) == 1
    with session_scope(settings) as session:
        set_preferences(session, cal, actor="cal", clear_quiet_hours=True)
    assert broker.queue_depth(settings) == 2
