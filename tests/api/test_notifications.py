"""The notifications API over HTTP: my list (with deep links), my preferences (validation names the field),
and the team webhook's kinds (managers only)."""

from __future__ import annotations

from sqlalchemy import select

from core.db import session_scope
from core.enums import NotificationKind
from core.models import AuditEvent
from core.notifications import notify
from tests.factories import session_token, token


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_my_notifications_carry_a_link_to_the_item(settings, http):
    settings.app_url = "http://review.test:8501"
    closer = _bearer(session_token(settings, "closer", "Cal Closer"))
    with session_scope(settings) as session:
        notify(
            session,
            NotificationKind.NEW_A_LEAD,
            "New A lead: Acme",
            roles=(),
            names=["Cal Closer"],
            entity=("review_item", 7),
            settings=settings,
        )
    body = http.get("/v1/notifications", headers=closer).json()
    assert body["unread"] == 1
    [note] = body["items"]
    assert note["kind"] == "new_a_lead" and note["link"] == "http://review.test:8501/?item=7"


def test_preferences_defaults_then_my_changes(settings, http):
    closer = _bearer(session_token(settings, "closer", "Cal Closer"))
    prefs = http.get("/v1/notifications/preferences", headers=closer).json()
    assert prefs["email"] == "cal.closer@revloop.test" and prefs["quiet_hours"] is None
    assert prefs["channels"]["new_a_lead"] == {"in_app": True, "email": True}
    assert prefs["channels"]["sla_breached"] == {"in_app": True, "email": True}
    assert prefs["channels"]["send_failed"] == {"in_app": True, "email": False}
    assert {"new_a_lead", "sla_breached"} <= set(prefs["required_in_app"]) and "sla_at_risk" not in prefs[
        "required_in_app"
    ]

    changed = http.put(
        "/v1/notifications/preferences",
        headers=closer,
        json={
            "channels": {"new_a_lead": {"email": False}, "sla_at_risk": {"email": True, "in_app": True}},
            "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"},
        },
    )
    assert changed.status_code == 200, changed.text
    prefs = changed.json()
    assert prefs["channels"]["new_a_lead"] == {"in_app": True, "email": False}
    assert prefs["channels"]["sla_at_risk"] == {"in_app": True, "email": True}
    assert prefs["quiet_hours"] == {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"}
    # leaving quiet_hours out keeps them; null removes them
    kept = http.put("/v1/notifications/preferences", headers=closer, json={"channels": {}}).json()
    assert kept["quiet_hours"]["timezone"] == "Europe/Berlin"
    cleared = http.put("/v1/notifications/preferences", headers=closer, json={"quiet_hours": None}).json()
    assert cleared["quiet_hours"] is None and cleared["channels"]["new_a_lead"]["email"] is False
    # someone else's preferences are their own
    other = _bearer(session_token(settings, "closer", "Other Closer"))
    assert http.get("/v1/notifications/preferences", headers=other).json()["channels"]["new_a_lead"]["email"] is True
    with session_scope(settings) as session:
        changes = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "notification_preferences.updated").order_by(AuditEvent.id)
        ).all()
    assert [c.actor for c in changes] == ["Cal Closer", "Cal Closer"]  # the no-op PUT is not a change
    assert changes[0].before["quiet_hours"] is None and changes[0].after["quiet_hours"]["start"] == "22:00"


def test_bad_preferences_are_refused_naming_the_field(settings, http):
    closer = _bearer(session_token(settings, "closer", "Cal Closer"))

    def refused(body: dict) -> dict:
        r = http.put("/v1/notifications/preferences", headers=closer, json=body)
        assert r.status_code == 422, r.text
        return r.json()

    assert "channels.bogus" in refused({"channels": {"bogus": {"email": True}}})["message"]
    assert "channels.new_a_lead.sms" in refused({"channels": {"new_a_lead": {"sms": True}}})["fields"]
    assert "channels.new_a_lead.email" in refused({"channels": {"new_a_lead": {"email": "yes"}}})["fields"]
    quiet = {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"}
    assert "HH:MM" in refused({"quiet_hours": {**quiet, "start": "25:00"}})["fields"]["quiet_hours.start"]
    assert "quiet_hours.end" in refused({"quiet_hours": {**quiet, "end": "22:00"}})["fields"]
    body = refused({"quiet_hours": {**quiet, "timezone": "Mars/Olympus"}})
    assert "unknown time zone 'Mars/Olympus'" in body["fields"]["quiet_hours.timezone"]
    body = refused({"channels": {"integration_down": {"in_app": False}}})
    assert body["details"] == {"field": "channels.integration_down.in_app"} and "always shows" in body["message"]
    # nothing of a refused request was kept
    prefs = http.get("/v1/notifications/preferences", headers=closer).json()
    assert prefs["quiet_hours"] is None and prefs["channels"]["integration_down"]["in_app"] is True


def test_an_api_token_has_no_preferences(settings, http):
    machine = _bearer(token(settings, "manager", "a-script"))
    r = http.get("/v1/notifications/preferences", headers=machine)
    assert r.status_code == 403 and "sign in as a user" in r.json()["message"]


def test_managers_choose_the_team_webhook_kinds(settings, http):
    manager = _bearer(session_token(settings, "manager", "Mia Manager"))
    closer = _bearer(session_token(settings, "closer", "Cal Closer"))
    team = http.get("/v1/notifications/team", headers=manager).json()
    assert team["webhook_configured"] is False and team["webhook_signed"] is False
    assert team["webhook"]["new_a_lead"] is True and team["webhook"]["taken_over"] is False
    r = http.put("/v1/notifications/team", headers=manager, json={"webhook": {"taken_over": True, "new_a_lead": False}})
    assert r.status_code == 200 and r.json()["webhook"]["taken_over"] is True and not r.json()["webhook"]["new_a_lead"]
    assert http.put("/v1/notifications/team", headers=closer, json={"webhook": {}}).status_code == 403
    bad = http.put("/v1/notifications/team", headers=manager, json={"webhook": {"nope": True}})
    assert bad.status_code == 422 and "webhook.nope" in bad.json()["message"]
    with session_scope(settings) as session:
        audited = session.scalar(select(AuditEvent).where(AuditEvent.action == "notification_team_channels.updated"))
    assert audited.actor == "Mia Manager" and audited.after["taken_over"] is True
