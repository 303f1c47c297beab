"""The queue over HTTP: priority order, views and filters, SLA states, assignment, snooze, bulk
approval, the undo window, redrafts, the timeline, KPIs and the audit trail."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import select

from core.db import session_scope
from core.models import AuditEvent, Decision, Job, ReviewItem
from review.outbox import outbox_files
from tests.factories import captured_lead, queued_item, review_item_for, session_token, user


def _h(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.text
    return [i["id"] for i in response.json()["items"]]


def test_priority_breaches_first_then_deadline_then_grade(settings, http):
    NOW = dt.datetime.now(dt.UTC)  # per test: the PostgreSQL run starts minutes later
    closer = session_token(settings, "closer")
    later_a = queued_item(settings, grade="A", sla_due_at=NOW + dt.timedelta(hours=2))
    breached_c = queued_item(settings, grade="C", sla_due_at=NOW - dt.timedelta(minutes=5))
    soon_b = queued_item(settings, grade="B", sla_due_at=NOW + dt.timedelta(minutes=10))
    same_deadline_a = queued_item(settings, grade="A", sla_due_at=NOW + dt.timedelta(minutes=10))
    no_sla = queued_item(settings, grade="A", sla_due_at=None)
    r = http.get("/v1/review-items?status=pending", headers=_h(closer))
    assert _ids(r) == [breached_c, same_deadline_a, soon_b, later_a, no_sla]
    states = {i["id"]: i["sla_state"] for i in r.json()["items"]}
    assert states == {
        breached_c: "breached",
        same_deadline_a: "due_soon",
        soon_b: "due_soon",
        later_a: "on_track",
        no_sla: "none",
    }


def test_views_and_filters(settings, http):
    NOW = dt.datetime.now(dt.UTC)  # per test: the PostgreSQL run starts minutes later
    closer = session_token(settings, "closer", "Casey Jordan")
    mine = queued_item(settings, assignee="Casey Jordan", grade="A", sla_due_at=NOW + dt.timedelta(hours=3))
    theirs = queued_item(settings, assignee="Robin Lee", kind="call_task", sla_due_at=NOW - dt.timedelta(hours=1))
    unassigned = queued_item(settings, grade="D", sla_due_at=NOW + dt.timedelta(minutes=3))
    exception = queued_item(settings, queue="exception", grade=None)
    get = lambda q: _ids(http.get(f"/v1/review-items?{q}", headers=_h(closer)))  # noqa: E731
    assert get("view=my") == [mine]
    assert get("view=team") == [theirs, unassigned, mine]
    assert get("view=exception") == [exception]
    assert get("kind=call_task") == [theirs]
    assert get("grade=D") == [unassigned]
    assert get("sla=breached") == [theirs]
    assert get("sla=due_soon") == [unassigned]
    assert get("sla=on_track") == [mine]
    assert get("sla=none") == [exception]
    assert get("assignee=unassigned") == [unassigned, exception]
    assert get("assignee=Robin%20Lee") == [theirs]
    bad = http.get("/v1/review-items?view=mine&grade=E", headers=_h(closer))
    assert bad.status_code == 422 and {"view", "grade"} <= set(bad.json()["fields"])


def test_assignment_rules_and_audit(settings, http):
    casey = session_token(settings, "closer", "Casey Jordan")
    robin = session_token(settings, "closer", "Robin Lee")
    manager = session_token(settings, "manager", "Morgan Demo")
    item = queued_item(settings)
    take = http.post(f"/v1/review-items/{item}/assign", json={"assignee": "Casey Jordan"}, headers=_h(casey))
    assert take.status_code == 200 and take.json()["assignee"] == "Casey Jordan"
    steal = http.post(f"/v1/review-items/{item}/assign", json={"assignee": "Robin Lee"}, headers=_h(robin))
    assert steal.status_code == 403 and "belongs to Casey Jordan" in steal.json()["message"]
    handoff = http.post(f"/v1/review-items/{item}/assign", json={"assignee": "Robin Lee"}, headers=_h(casey))
    assert handoff.json()["assignee"] == "Robin Lee"
    back = http.post(f"/v1/review-items/{item}/assign", json={"assignee": None}, headers=_h(manager))
    assert back.json()["assignee"] is None
    unknown = http.post(f"/v1/review-items/{item}/assign", json={"assignee": "Ghost"}, headers=_h(manager))
    assert unknown.status_code == 422 and unknown.json()["details"] == {"field": "assignee"}
    with session_scope(settings) as session:
        trail = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "review_item.assigned").order_by(AuditEvent.id)
        ).all()
        assert [(e.actor, e.after["assignee"]) for e in trail] == [
            ("closer:Casey Jordan", "Casey Jordan"),
            ("closer:Casey Jordan", "Robin Lee"),
            ("manager:Morgan Demo", None),
        ]


def test_snooze_hides_until_the_time_and_rejects_bad_times(settings, http):
    NOW = dt.datetime.now(dt.UTC)  # per test: the PostgreSQL run starts minutes later
    closer = session_token(settings, "closer")
    item = queued_item(settings)
    until = (NOW + dt.timedelta(hours=1)).isoformat()
    r = http.post(f"/v1/review-items/{item}/snooze", json={"until": until}, headers=_h(closer))
    assert r.status_code == 200
    assert _ids(http.get("/v1/review-items", headers=_h(closer))) == []
    assert _ids(http.get("/v1/review-items?snoozed=true", headers=_h(closer))) == [item]
    with session_scope(settings) as session:  # the time comes
        session.get(ReviewItem, item).snoozed_until = NOW - dt.timedelta(seconds=1)
    assert _ids(http.get("/v1/review-items", headers=_h(closer))) == [item]
    past = http.post(f"/v1/review-items/{item}/snooze", json={"until": "2020-01-01T00:00:00Z"}, headers=_h(closer))
    assert past.status_code == 422 and "future" in past.json()["message"]
    naive = http.post(f"/v1/review-items/{item}/snooze", json={"until": "2030-01-01T09:00:00"}, headers=_h(closer))
    assert naive.status_code == 422 and "until" in naive.json()["fields"]
    offset = http.post(
        f"/v1/review-items/{item}/snooze",
        json={"until": (NOW + dt.timedelta(hours=2)).astimezone(dt.timezone(dt.timedelta(hours=5))).isoformat()},
        headers=_h(closer),
    )
    assert dt.datetime.fromisoformat(offset.json()["snoozed_until"]) == pytest.approx(
        NOW + dt.timedelta(hours=2), abs=dt.timedelta(seconds=1)
    )


def test_bulk_approve_only_low_risk_and_needs_confirmation(settings, http, worker):
    manager = session_token(settings, "manager")
    leads = [captured_lead(settings, email=f"b{n}@acme-software.com") for n in range(4)]
    worker.run_until_idle()
    items = [review_item_for(settings, lead).id for lead in leads]
    with session_scope(settings) as session:
        for item_id, (queue, grade, flags) in zip(
            items,
            [("main", "A", []), ("main", "B", []), ("main", "B", ["ungrounded name 'Bob'"]), ("main", "D", [])],
            strict=True,
        ):
            row = session.get(ReviewItem, item_id)
            row.queue, row.grade, row.guard_flags = queue, grade, flags
    exception = queued_item(settings, queue="exception")
    unconfirmed = http.post("/v1/review-items/bulk-approve", json={"ids": items}, headers=_h(manager))
    assert unconfirmed.status_code == 422 and "confirm" in unconfirmed.json()["fields"]
    listed = {i["id"]: i["low_risk"] for i in http.get("/v1/review-items", headers=_h(manager)).json()["items"]}
    assert [listed[i] for i in items] == [True, True, False, False] and listed[exception] is False
    r = http.post(
        "/v1/review-items/bulk-approve", json={"ids": [*items, exception, 424242], "confirm": True}, headers=_h(manager)
    )
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["approved"] == items[:2]
    assert "grounding flags" in result["skipped"][str(items[2])]
    assert "grade D" in result["skipped"][str(items[3])]
    assert "exception queue" in result["skipped"][str(exception)]
    assert result["skipped"]["424242"] == "not found"
    worker.run_until_idle()
    assert len(outbox_files(settings)) == 2


def test_undo_inside_the_window_cancels_the_send_and_reapproval_sends_once(settings, http, worker):
    settings.undo_seconds = 30
    closer = session_token(settings, "closer")
    lead = captured_lead(settings)
    worker.run_until_idle()
    item = review_item_for(settings, lead).id
    r = http.post(f"/v1/review-items/{item}/approve", json={"body": "Edited body"}, headers=_h(closer))
    assert r.status_code == 200
    undo_until = dt.datetime.fromisoformat(r.json()["undo_until"])
    assert dt.timedelta(seconds=28) < undo_until - dt.datetime.now(dt.UTC) <= dt.timedelta(seconds=30)
    worker.run_until_idle()
    assert outbox_files(settings) == []  # the send waits out the window
    undone = http.post(f"/v1/review-items/{item}/undo", headers=_h(closer))
    assert undone.status_code == 200 and undone.json()["status"] == "pending" and undone.json()["decision"] is None
    with session_scope(settings) as session:
        assert session.scalars(select(Job).where(Job.kind == "review.resume")).all() == []
        assert session.scalars(select(Decision)).all() == []
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "review_item.undone")).one()
        assert event.before["final_body"] == "Edited body"
    assert http.post(f"/v1/review-items/{item}/undo", headers=_h(closer)).status_code == 409

    settings.undo_seconds = 1
    assert http.post(f"/v1/review-items/{item}/approve", headers=_h(closer)).status_code == 200
    time.sleep(1.2)
    worker.run_until_idle()
    [eml] = outbox_files(settings)
    assert "Edited body" in eml.read_text()  # the undo kept the edit on the draft, so it was approved again
    late = http.post(f"/v1/review-items/{item}/undo", headers=_h(closer))
    assert late.status_code == 409 and "sent" in late.json()["message"]


def test_undo_is_refused_once_a_worker_has_claimed_the_send(settings, http, worker):
    settings.undo_seconds = 30
    closer = session_token(settings, "closer")
    lead = captured_lead(settings)
    worker.run_until_idle()
    item = review_item_for(settings, lead).id
    http.post(f"/v1/review-items/{item}/approve", headers=_h(closer))
    with session_scope(settings) as session:  # a worker took the job (e.g. the clocks differ)
        session.scalars(select(Job).where(Job.kind == "review.resume")).one().status = "running"
    r = http.post(f"/v1/review-items/{item}/undo", headers=_h(closer))
    assert r.status_code == 409 and "being sent" in r.json()["message"]
    assert http.get(f"/v1/review-items/{item}", headers=_h(closer)).json()["status"] == "approved"


def test_reject_with_redraft_queues_a_new_draft_with_the_chosen_template(settings, http, worker):
    closer = session_token(settings, "closer")
    lead = captured_lead(settings)
    worker.run_until_idle()
    first = review_item_for(settings, lead)
    bad = http.post(
        f"/v1/review-items/{first.id}/reject",
        json={"reason": "wrong tone", "redraft": True, "template": "no_such_template"},
        headers=_h(closer),
    )
    assert bad.status_code == 422 and bad.json()["details"] == {"field": "template"}
    r = http.post(
        f"/v1/review-items/{first.id}/reject",
        json={"reason": "Too pushy for this lead", "redraft": True, "template": "first_touch_nurture"},
        headers=_h(closer),
    )
    assert r.status_code == 200 and r.json()["decision"]["redraft"] is True
    worker.run_until_idle()
    with session_scope(settings) as session:
        items = session.scalars(select(ReviewItem).where(ReviewItem.lead_id == lead).order_by(ReviewItem.id)).all()
        assert [i.status for i in items] == ["rejected", "pending"]
        second = items[1]
        assert second.redraft_of == first.id and second.template == "first_touch_nurture"
        assert second.draft["redraft_reason"] == "Too pushy for this lead"
        assert second.draft["subject"] != first.draft["subject"]
    assert outbox_files(settings) == []
    timeline = http.get(f"/v1/review-items/{second.id}/timeline", headers=_h(closer)).json()
    summaries = [e["summary"] for e in timeline]
    assert any("Rejected: Too pushy for this lead (redraft requested)" in s for s in summaries)
    assert any(f"(redraft of #{first.id})" in s for s in summaries)


def test_a_redraft_never_turns_a_call_only_contact_into_an_email(settings, http, worker):
    closer = session_token(settings, "closer")
    lead = captured_lead(settings, consent={"email": False, "call": True})
    worker.run_until_idle()
    first = review_item_for(settings, lead)
    assert first.kind == "call_task"
    http.post(
        f"/v1/review-items/{first.id}/reject",
        json={"reason": "email them instead", "redraft": True, "template": "first_touch_fast"},
        headers=_h(closer),
    )
    worker.run_until_idle()
    with session_scope(settings) as session:
        second = session.scalars(select(ReviewItem).where(ReviewItem.redraft_of == first.id)).one()
        assert second.kind == "call_task" and second.template == "call_task"


def test_kpis_from_a_known_history(settings, http, worker):
    NOW = dt.datetime.now(dt.UTC)  # per test: the PostgreSQL run starts minutes later
    manager = session_token(settings, "manager")
    user(settings, "closer", "Casey Jordan")
    lead = captured_lead(settings)
    worker.run_until_idle()
    item = review_item_for(settings, lead)
    casey = session_token(settings, "closer", "Casey Two")
    http.post(f"/v1/review-items/{item.id}/open", headers=_h(casey))
    r = http.post(f"/v1/review-items/{item.id}/approve", json={"body": "Edited"}, headers=_h(casey))
    assert r.status_code == 200
    worker.run_until_idle()
    rejected = queued_item(settings, template="polite_decline", sla_due_at=NOW - dt.timedelta(minutes=1))
    http.post(f"/v1/review-items/{rejected}/reject", json={"reason": "not now"}, headers=_h(casey))
    with session_scope(settings) as session:
        from core.models import Deal, Lead

        row = session.get(ReviewItem, item.id)
        captured = session.get(Lead, lead).captured_at
        row.first_opened_at = row.decided_at - dt.timedelta(seconds=90)
        session.get(Decision, row.decision.id).decided_at = row.decided_at
        row.executed_at = captured + dt.timedelta(minutes=3)
        session.add(Deal(name="Acme deal", lead_id=lead, stage="proposal", stage_changed_at=NOW - dt.timedelta(days=4)))
        session.add(Deal(name="Old deal", stage="proposal", stage_changed_at=NOW - dt.timedelta(days=10)))
    k = http.get("/v1/kpis?days=30", headers=_h(manager)).json()
    assert k["leads_captured"] == 1
    assert k["median_minutes_to_first_touch"] == pytest.approx(3.0, abs=0.01)
    # The drafted item was decided inside its SLA; the second was past its deadline when rejected.
    assert k["next_action_within_sla"] == 0.5 and k["sla_items_judged"] == 2
    assert [(s["stage"], s["count"]) for s in k["funnel"]] == [
        ("captured", 1),
        ("contacted", 1),
        ("opportunity", 1),
        ("won", 0),
    ]
    assert k["stage_aging"] == [
        {"stage": "proposal", "open_deals": 2, "dated_deals": 2, "median_days": 7.0, "max_days": 10.0}
    ]
    assert k["reviewers"] == [{"reviewer": "closer:Casey Two", "reviews": 2, "median_review_seconds": 90.0}]
    templates = {t["template"]: t for t in k["templates"]}
    assert templates[item.template]["edit_rate"] == 1.0
    assert templates["polite_decline"]["reject_rate"] == 1.0


def test_audit_events_filter_by_actor_action_entity_and_time(settings, http):
    admin = session_token(settings, "admin", "Root")
    casey = session_token(settings, "closer", "Casey Jordan")
    item = queued_item(settings)
    r = http.post(f"/v1/review-items/{item}/reject", json={"reason": "not a fit"}, headers=_h(casey))
    assert r.status_code == 200, r.text
    get = lambda q: http.get(f"/v1/audit-events?{q}", headers=_h(admin)).json()  # noqa: E731
    by_actor = get("actor=closer:Casey%20Jordan")
    assert {e["actor"] for e in by_actor["items"]} == {"closer:Casey Jordan"}
    assert "review_item.rejected" in {e["action"] for e in by_actor["items"]}
    assert [e["action"] for e in get(f"entity_type=review_item&entity_id={item}")["items"]] == ["review_item.rejected"]
    assert {e["action"] for e in get("action=user.")["items"]} == {"user.created", "user.login"}
    assert get("since=2999-01-01T00:00:00Z")["total"] == 0
    assert get("until=2000-01-01")["total"] == 0
