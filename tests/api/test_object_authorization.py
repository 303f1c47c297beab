"""Role x ownership: who may decide which review item, over the real API. A closer decides their own items and
unassigned ones; another closer's item needs a manager, or a take-over (SLA breached or its assignee cannot
sign in), which is audited."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from core.db import session_scope
from core.models import AuditEvent, ReviewItem, utcnow
from tests.factories import PASSWORD, queued_item, token, user

CASEY, ROBIN = "Casey Jordan", "Robin Lee"


@pytest.fixture
def people(settings) -> dict[str, dict[str, str]]:
    # API tokens named like the people (cheap: no password hashing); the policy reads the name and role.
    return {
        who: {"Authorization": f"Bearer {token(settings, role, name)}"}
        for who, role, name in (
            ("casey", "closer", CASEY),
            ("robin", "closer", ROBIN),
            ("manager", "manager", "Morgan Manager"),
        )
    }


# Each decision route with a body that is valid for a pending item.
DECISIONS = {
    "approve": None,
    "reject": {"reason": "not a fit"},
    "snooze": {"until": None},
    "assign": {"assignee": None},
}


@pytest.mark.parametrize("action", list(DECISIONS))
@pytest.mark.parametrize(
    ("owner", "actor", "allowed"),
    [
        (CASEY, "casey", True),  # my own item
        (CASEY, "robin", False),  # someone else's
        (CASEY, "manager", True),  # a manager decides anything
        (None, "robin", True),  # the team queue: anyone
    ],
)
def test_role_x_ownership_for_every_decision(settings, http, people, action, owner, actor, allowed):
    item_id = queued_item(settings, assignee=owner)
    r = http.post(f"/v1/review-items/{item_id}/{action}", json=DECISIONS[action], headers=people[actor])
    if allowed:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 403 and CASEY in r.json()["message"], r.text
        with session_scope(settings) as session:
            item = session.get(ReviewItem, item_id)
            assert (item.status, item.assignee, item.snoozed_until) == ("pending", CASEY, None)  # unchanged


def test_bulk_approve_skips_items_of_other_closers(settings, http, people):
    mine, theirs, team = (queued_item(settings, assignee=a, grade="C") for a in (ROBIN, CASEY, None))
    r = http.post(
        "/v1/review-items/bulk-approve", json={"ids": [mine, theirs, team], "confirm": True}, headers=people["robin"]
    )
    assert r.status_code == 200, r.text
    assert sorted(r.json()["approved"]) == sorted([mine, team])
    assert "assigned to Casey Jordan" in r.json()["skipped"][str(theirs)]


def test_only_the_approver_or_a_manager_can_undo(settings, http, people):
    settings.undo_seconds = 300
    item_id = queued_item(settings, assignee=None)
    assert http.post(f"/v1/review-items/{item_id}/approve", headers=people["casey"]).status_code == 200
    r = http.post(f"/v1/review-items/{item_id}/undo", headers=people["robin"])
    assert r.status_code == 403 and "approved by closer:Casey Jordan" in r.json()["message"]
    assert http.post(f"/v1/review-items/{item_id}/undo", headers=people["manager"]).status_code == 200


def test_take_over_needs_a_breached_sla_or_an_assignee_who_cannot_sign_in(settings, http, people):
    for role, name in (("closer", CASEY), ("closer", ROBIN), ("manager", "Morgan Manager")):  # can sign in
        user(settings, role, name)
    on_time = queued_item(settings, assignee=CASEY, sla_due_at=utcnow() + dt.timedelta(hours=1))
    r = http.post(f"/v1/review-items/{on_time}/take-over", headers=people["robin"])
    assert r.status_code == 403 and "ask a manager" in r.json()["message"]

    breached = queued_item(settings, assignee=CASEY, sla_due_at=utcnow() - dt.timedelta(minutes=1))
    r = http.post(f"/v1/review-items/{breached}/take-over", headers=people["robin"])
    assert r.status_code == 200 and r.json()["assignee"] == ROBIN, r.text
    assert http.post(f"/v1/review-items/{breached}/approve", headers=people["robin"]).status_code == 200

    nobody = queued_item(settings, assignee="Sasha Patel")  # a roster name without an account
    r = http.post(f"/v1/review-items/{nobody}/take-over", headers=people["robin"])
    assert r.status_code == 200 and r.json()["assignee"] == ROBIN
    assert http.post(f"/v1/review-items/{on_time}/take-over", headers=people["manager"]).status_code == 200

    with session_scope(settings) as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "review_item.taken_over").order_by(AuditEvent.id)
        ).all()
    assert [(e.before["assignee"], e.after["reason"]) for e in events] == [
        (CASEY, "the SLA was breached while it was with Casey Jordan"),
        ("Sasha Patel", "Sasha Patel cannot sign in"),
        (CASEY, "a manager took it over"),
    ]
    assert all(e.actor for e in events)
    # Casey is told her item was taken over, with the reason.
    signed_in = http.post("/v1/auth/login", json={"email": "casey.jordan@revloop.test", "password": PASSWORD})
    casey = {"Authorization": f"Bearer {signed_in.json()['token']}"}
    notes = http.get("/v1/notifications", headers=casey).json()["items"]
    # newest first: the manager's take-over, then Robin's after the breach
    assert [(n["kind"], n["entity_id"]) for n in notes] == [("taken_over", str(on_time)), ("taken_over", str(breached))]
    assert "a manager took it over" in notes[0]["body"] and "SLA was breached" in notes[1]["body"]
