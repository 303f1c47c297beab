"""The SLA watch (review/sla.py) and who hears about a lead: a new A lead notifies its assignee once, an item about
to breach warns its assignee once, a breach sends the item back to the team queue (escalated_from says who had it),
tells the previous assignee and the managers once, and any closer can then take it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from core import jobs
from core.db import session_scope
from core.enums import JobKind
from core.models import AuditEvent, Job, Notification, ReviewItem, User, utcnow
from review import sla
from tests.factories import account, captured_lead, queued_item, review_item_for, sales_agent, session_token


def _h(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def _notes(settings, name: str, kind: str | None = None) -> list[Notification]:
    with session_scope(settings) as session:
        query = select(Notification).join(User, User.id == Notification.user_id).where(User.name == name)
        if kind is not None:
            query = query.where(Notification.kind == kind)
        return list(session.scalars(query.order_by(Notification.id)).all())


def _move_deadline(settings, item_id: int, when: dt.datetime) -> None:
    """The clock moves: the item's deadline is now `when` (a factory's shortcut for waiting)."""
    with session_scope(settings) as session:
        session.get(ReviewItem, item_id).sla_due_at = when


def test_an_item_due_soon_warns_its_assignee_once(settings, http):
    now = utcnow()
    casey = session_token(settings, "closer", "Casey Jordan")
    session_token(settings, "manager", "Morgan Demo")
    soon = queued_item(settings, assignee="Casey Jordan", sla_due_at=now + dt.timedelta(minutes=5))
    later = queued_item(settings, assignee="Casey Jordan", sla_due_at=now + dt.timedelta(hours=3))
    snoozed = queued_item(
        settings,
        assignee="Casey Jordan",
        sla_due_at=now + dt.timedelta(minutes=5),
        snoozed_until=now + dt.timedelta(hours=1),
    )
    first = sla.watch(settings)
    second = sla.watch(settings)
    assert first.warned == [soon] and first.escalated == []
    assert second.warned == [] and second.escalated == []  # a second pass repeats nothing
    listed = http.get("/v1/notifications", headers=_h(casey)).json()["items"]
    at_risk = [n for n in listed if n["kind"] == "sla_at_risk"]
    assert [(n["entity_type"], n["entity_id"]) for n in at_risk] == [("review_item", str(soon))]
    assert at_risk[0]["title"].startswith("SLA in ") and at_risk[0]["severity"] == "warning"
    assert _notes(settings, "Morgan Demo") == []  # a warning is the assignee's business
    assert later not in first.warned and snoozed not in first.warned
    with session_scope(settings) as session:
        warned = session.scalars(select(AuditEvent).where(AuditEvent.action == "review_item.sla_warned")).all()
        assert [(e.entity_id, e.after["assignee"]) for e in warned] == [(str(soon), "Casey Jordan")]


def test_a_breach_escalates_once_tells_who_had_it_and_the_managers_and_any_closer_can_take_it(settings, http, worker):
    casey = session_token(settings, "closer", "Casey Jordan")
    robin = session_token(settings, "closer", "Robin Lee")
    manager = session_token(settings, "manager", "Morgan Demo")
    item = queued_item(settings, assignee="Casey Jordan", grade="A", sla_due_at=utcnow() + dt.timedelta(hours=1))
    other = queued_item(settings, assignee="Casey Jordan", sla_due_at=utcnow() + dt.timedelta(hours=4))
    early = http.post(f"/v1/review-items/{item}/take-over", headers=_h(robin))
    assert early.status_code == 403  # Casey can sign in and the SLA holds: not Robin's to take

    _move_deadline(settings, item, utcnow() - dt.timedelta(minutes=3))
    sla.schedule(settings, at=utcnow() - dt.timedelta(minutes=1))  # the periodic job, due now
    worker.run_until_idle()

    shown = http.get(f"/v1/review-items/{item}", headers=_h(robin)).json()
    assert shown["assignee"] is None and shown["escalated_from"] == "Casey Jordan"
    assert shown["escalated_at"] is not None and shown["sla_state"] == "breached"
    assert http.get(f"/v1/review-items/{other}", headers=_h(robin)).json()["assignee"] == "Casey Jordan"
    escalated = http.get("/v1/review-items?status=pending&escalated=true", headers=_h(robin)).json()
    assert [i["id"] for i in escalated["items"]] == [item] and escalated["total"] == 1
    rest = http.get("/v1/review-items?status=pending&escalated=false", headers=_h(robin)).json()
    assert [i["id"] for i in rest["items"]] == [other]
    with session_scope(settings) as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "review_item.escalated")).all()
        assert (event.entity_id, event.actor, event.before, event.after["assignee"]) == (
            str(item),
            "system:sla_watch",
            {"assignee": "Casey Jordan"},
            None,
        )
        assert event.after["escalated_from"] == "Casey Jordan"
        next_pass = session.scalars(select(Job).where(Job.kind == JobKind.SLA_WATCH)).all()
        assert len(next_pass) == 2 and sorted(j.status for j in next_pass) == ["done", "queued"]  # it rescheduled
    for token, name in ((casey, "Casey Jordan"), (manager, "Morgan Demo")):
        listed = http.get("/v1/notifications", headers=_h(token)).json()["items"]
        breached = [n for n in listed if n["kind"] == "sla_breached"]
        assert [(n["entity_id"], n["severity"]) for n in breached] == [(str(item), "critical")], name
        assert "back in the team queue" in breached[0]["title"]
    assert _notes(settings, "Robin Lee", "sla_breached") == []

    again = sla.watch(settings)  # the next pass: nothing new, nobody told twice
    assert again.escalated == [] and again.warned == []
    assert len(_notes(settings, "Casey Jordan", "sla_breached")) == 1
    assert len(_notes(settings, "Morgan Demo", "sla_breached")) == 1

    taken = http.post(f"/v1/review-items/{item}/take-over", headers=_h(robin))
    assert taken.status_code == 200, taken.text
    assert taken.json()["assignee"] == "Robin Lee" and taken.json()["escalated_from"] == "Casey Jordan"
    rejected = http.post(f"/v1/review-items/{item}/reject", json={"reason": "wrong contact"}, headers=_h(robin))
    assert rejected.status_code == 200, rejected.text
    timeline = [e["summary"] for e in http.get(f"/v1/review-items/{item}/timeline", headers=_h(robin)).json()]
    assert "SLA breached: back in the team queue (was with Casey Jordan)" in timeline


def test_a_snoozed_breach_waits_for_its_snooze_and_an_unassigned_one_tells_the_managers(settings):
    now = utcnow()
    session_token(settings, "manager", "Morgan Demo")
    snoozed = queued_item(
        settings,
        assignee="Casey Jordan",
        sla_due_at=now - dt.timedelta(minutes=1),
        snoozed_until=now + dt.timedelta(minutes=30),
    )
    team = queued_item(settings, sla_due_at=now - dt.timedelta(minutes=1))
    assert sla.watch(settings).escalated == [team]
    [note] = _notes(settings, "Morgan Demo", "sla_breached")
    assert note.entity_id == str(team) and "was unassigned" in note.body
    later = sla.watch(settings, now=now + dt.timedelta(minutes=31))  # the snooze is over
    assert later.escalated == [snoozed]


def test_a_new_a_lead_notifies_its_assignee_once(settings, worker):
    account(settings, country="Germany")
    sales_agent(settings, "Robin Lee", region="EMEA")
    lead_id = captured_lead(settings)
    worker.run_until_idle()
    item = review_item_for(settings, lead_id)
    assert item.grade == "A" and item.assignee == "Robin Lee"
    [note] = _notes(settings, "Robin Lee", "new_a_lead")
    assert (note.entity_type, note.entity_id, note.severity) == ("review_item", str(item.id), "critical")
    assert note.title.startswith(f"New A lead for you: review item #{item.id}")
    with session_scope(settings) as session:  # the graph runs again for the same lead (a retried job)
        jobs.enqueue(session, JobKind.LEAD_RUN, {"lead_id": lead_id}, dedupe_key=f"rerun-{lead_id}")
    worker.run_until_idle()
    assert len(_notes(settings, "Robin Lee", "new_a_lead")) == 1
    weak = captured_lead(
        settings, email="pat@tinyshop.example", company="Tiny Shop", website=None, title="Buyer", message="hi"
    )
    worker.run_until_idle()
    assert review_item_for(settings, weak).grade != "A"
    assert len(_notes(settings, "Robin Lee", "new_a_lead")) == 1  # only A leads interrupt a closer
