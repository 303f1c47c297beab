"""The Notifications page (AppTest against the real API): a new A lead shows with a link to its item, and the
preferences form saves channels and quiet hours, keeping what was typed when the API refuses it."""

from __future__ import annotations

import datetime as dt

from core.db import session_scope
from core.enums import NotificationKind
from core.notifications import notify
from tests.review.test_app import _api, _button, _open, _signed_in


def test_a_closer_sees_a_new_a_lead_and_sets_preferences(settings, live_server, http):
    at = _signed_in(live_server, settings, "closer", "Cal Closer")
    with session_scope(settings) as session:
        notify(
            session,
            NotificationKind.NEW_A_LEAD,
            "New A lead: Acme Software (score 92)",
            roles=(),
            names=["Cal Closer"],
            entity=("review_item", 12),
            settings=settings,
        )
    _open(at, "notifications")
    assert any("New A lead for you" in m.value for m in at.markdown)
    assert any("Acme Software (score 92)" in t.value for t in at.text)
    assert _button(at, "Open item #12")
    assert [t.label for t in at.tabs] == ["Inbox", "My preferences"]  # no team tab for a closer
    # an always-on kind cannot be unticked in the app
    assert at.checkbox(key="pref_sla_breached_in_app").disabled

    at.checkbox(key="pref_new_a_lead_email").uncheck()
    at.checkbox(key="pref_sla_at_risk_email").check()
    at.toggle(key="pref_quiet_on").set_value(True)
    at.selectbox(key="pref_qz").select("Europe/Berlin")
    _button(at, "Save preferences").click()
    at.run()
    assert not at.exception, at.exception
    assert any(s.value == "Saved." for s in at.success)
    prefs = http.get("/v1/notifications/preferences", headers=_api(at)).json()
    assert prefs["channels"]["new_a_lead"]["email"] is False and prefs["channels"]["sla_at_risk"]["email"] is True
    assert prefs["quiet_hours"] == {"start": "20:00", "end": "08:00", "timezone": "Europe/Berlin"}

    # the same start and end are refused by the API: one message naming the field, the form keeps its values
    at.time_input(key="pref_qe").set_value(dt.time(20, 0))
    _button(at, "Save preferences").click()
    at.run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error if "Not saved" in e.value]
    assert errors == ["Not saved: quiet_hours.end: must differ from start"], errors
    assert at.checkbox(key="pref_new_a_lead_email").value is False
    assert at.selectbox(key="pref_qz").value == "Europe/Berlin"


def test_a_manager_chooses_the_team_webhook_kinds(settings, live_server, http):
    at = _open(_signed_in(live_server, settings, "manager", "Mia Manager"), "notifications")
    assert [t.label for t in at.tabs] == ["Inbox", "My preferences", "Team webhook"]
    assert any("REVLOOP_NOTIFY_WEBHOOK_URL" in i.value for i in at.info)
    at.checkbox(key="team_taken_over").check()
    _button(at, "Save team channel").click()
    at.run()
    assert not at.exception, at.exception
    assert http.get("/v1/notifications/team", headers=_api(at)).json()["webhook"]["taken_over"] is True
