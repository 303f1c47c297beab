"""Follow-up cadences on a clock we control, and the events that stop or change them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select

from core.db import session_scope
from core.errors import Conflict
from core.models import AuditEvent, Contact, Deal, Lead, LeadEvent, Product, ReviewItem
from deals.cadences import scan
from review import decisions
from review.outbox import outbox_files
from tests.factories import captured_lead, review_item_for, session_token, token

T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def _first_touch_sent(settings, worker, **lead) -> int:
    """A lead (grade A by default: fast cadence) whose first email went out at T0."""
    lead_id = captured_lead(settings, **lead)
    worker.run_until_idle()
    item = review_item_for(settings, lead_id)
    with session_scope(settings) as session:
        row = session.get(ReviewItem, item.id)
        row.assignee = "Casey Jordan"
        decisions.approve(
            session,
            item.id,
            actor="closer:Casey Jordan",
            acknowledge_flags=True,
            max_discount_pct=settings.max_discount_pct,
        )
    worker.run_until_idle()
    with session_scope(settings) as session:
        row = session.get(ReviewItem, item.id)
        assert row.status == "sent"
        row.executed_at = T0
    return lead_id


def _followups(settings, lead_id) -> list[ReviewItem]:
    with session_scope(settings) as session:
        return list(
            session.scalars(
                select(ReviewItem)
                .where(ReviewItem.lead_id == lead_id, ReviewItem.thread_id.like("cadence-%"))
                .order_by(ReviewItem.id)
            ).all()
        )


def _day(n: int) -> dt.date:
    return (T0 + dt.timedelta(days=n)).date()


def test_fast_cadence_drafts_each_step_once_with_rising_tone(settings, worker):
    lead_id = _first_touch_sent(settings, worker, custom={"industry": "software", "employees": 250})
    assert scan(settings, _day(1))["drafted"] == 0
    for n in (2, 2, 5, 10, 15, 20):
        scan(settings, _day(n))
    items = _followups(settings, lead_id)
    assert [i.template for i in items] == ["follow_up_light", "follow_up_value", "follow_up_direct", "break_up"]
    assert items[0].draft["subject"].startswith("Re: Acme Software") and "2 days ago" in items[0].draft["body"]
    assert all(i.draft["to"] == "jane.doe@acme-software.com" for i in items)
    assert all("unsubscribe" in i.draft["body"] for i in items)
    # Nobody approved them: each step superseded the one before, so one follow-up is pending at a time.
    assert [i.status for i in items] == ["cancelled", "cancelled", "cancelled", "pending"]
    assert items[2].result == {"reason": f"superseded by the break-up note (#{items[3].id})"}


def test_a_newer_follow_up_supersedes_the_pending_one_with_the_reason_audited(settings, worker):
    lead_id = _first_touch_sent(settings, worker, custom={"industry": "software", "employees": 250})
    scan(settings, _day(2))
    [day2] = _followups(settings, lead_id)
    assert day2.status == "pending" and day2.supersede_key == f"lead:{lead_id}:follow_up"
    scan(settings, _day(5))
    day2, day5 = _followups(settings, lead_id)
    assert (day2.template, day5.template) == ("follow_up_light", "follow_up_value")
    assert day5.status == "pending" and day2.status == "cancelled"
    assert day2.result == {"reason": f"superseded by the day-5 follow-up (#{day5.id})"}
    with session_scope(settings) as session:
        events = {
            (e.action, e.entity_id): e
            for e in session.scalars(select(AuditEvent).where(AuditEvent.entity_type == "review_item"))
        }
    cancelled = events[("review_item.cancelled", str(day2.id))]
    assert cancelled.actor == "agent:cadence" and cancelled.before == {"status": "pending"}
    assert cancelled.after == {"status": "cancelled", "reason": f"superseded by the day-5 follow-up (#{day5.id})"}
    assert events[("review_item.created", str(day5.id))].after["supersedes"] == [day2.id]
    # The withdrawn draft can no longer be approved.
    with pytest.raises(Conflict, match="already cancelled"), session_scope(settings) as session:
        decisions.approve(session, day2.id, actor="closer:Casey Jordan", max_discount_pct=settings.max_discount_pct)


def test_unsubscribe_cancels_the_pending_first_touch_at_once(settings, worker, http):
    lead_id = captured_lead(settings, custom={"industry": "software", "employees": 250})
    worker.run_until_idle()
    first = review_item_for(settings, lead_id)
    assert first.status == "pending" and first.kind == "email" and first.source == "lead"
    integration = {"Authorization": f"Bearer {token(settings, 'integration')}"}
    r = http.post(f"/v1/leads/{lead_id}/events", json={"type": "unsubscribed"}, headers=integration)
    assert r.status_code == 200, r.text
    assert r.json()["cancelled_drafts"] == 1
    after = review_item_for(settings, lead_id)  # at once: no approval, no worker run in between
    assert after.status == "cancelled"
    assert after.result == {"reason": "the lead unsubscribed: no email may be sent to them"}
    manager = {"Authorization": f"Bearer {session_token(settings, 'manager')}"}
    assert http.post(f"/v1/review-items/{first.id}/approve", headers=manager).status_code == 409
    worker.run_until_idle()
    assert outbox_files(settings) == []
    with session_scope(settings) as session:
        [audit] = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "review_item.cancelled", AuditEvent.entity_id == str(first.id)
            )
        ).all()
        assert audit.after["reason"] == "the lead unsubscribed: no email may be sent to them"


def test_an_approved_follow_up_is_sent_once(settings, worker, http):
    lead_id = _first_touch_sent(settings, worker, custom={"industry": "software", "employees": 250})
    scan(settings, _day(2))
    [item] = _followups(settings, lead_id)
    manager = {"Authorization": f"Bearer {session_token(settings, 'manager')}"}
    assert http.post(f"/v1/review-items/{item.id}/approve", headers=manager).status_code == 200
    worker.run_until_idle()
    worker.run_until_idle()
    assert len(outbox_files(settings)) == 2  # the first touch and this follow-up
    assert _followups(settings, lead_id)[0].status == "sent"


def test_a_reply_hands_the_lead_to_its_closer_and_stops_the_cadence(settings, worker, http):
    lead_id = _first_touch_sent(settings, worker, custom={"industry": "software", "employees": 250})
    scan(settings, _day(2))
    integration = {"Authorization": f"Bearer {token(settings, 'integration')}"}
    event = {"type": "reply", "note": "Thursday 3pm works for us.", "event_id": "msg-123"}
    r = http.post(f"/v1/leads/{lead_id}/events", json=event, headers=integration)
    assert r.status_code == 200, r.text
    assert r.json()["cancelled_drafts"] == 1 and r.json()["handoff_item"] is not None
    again = http.post(f"/v1/leads/{lead_id}/events", json=event, headers=integration).json()
    assert again["duplicate"] is True  # the same event delivered twice counts once
    items = _followups(settings, lead_id)
    assert [i.status for i in items] == ["cancelled", "pending"]
    handoff = items[1]
    assert handoff.kind == "call_task" and handoff.assignee == "Casey Jordan"
    assert (
        "Thursday 3pm works for us." in handoff.draft["body"]
        and "Automated follow-ups are stopped" in handoff.draft["body"]
    )
    scan(settings, _day(5))
    assert len(_followups(settings, lead_id)) == 2  # nothing more is drafted


def test_unsubscribe_stops_everything_even_an_approved_follow_up(settings, worker, http):
    lead_id = _first_touch_sent(settings, worker, custom={"industry": "software", "employees": 250})
    scan(settings, _day(2))
    [item] = _followups(settings, lead_id)
    settings.undo_seconds = 60
    manager = {"Authorization": f"Bearer {session_token(settings, 'manager')}"}
    http.post(f"/v1/review-items/{item.id}/approve", headers=manager)
    r = http.post(f"/v1/leads/{lead_id}/events", json={"type": "unsubscribed"}, headers=manager)
    assert r.status_code == 200
    with session_scope(settings) as session:
        from core.models import Job

        session.execute(Job.__table__.update().values(run_after=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)))
        lead = session.get(Lead, lead_id)
        assert lead.consent_email is False and session.get(Contact, lead.contact_id).do_not_email is True
    worker.run_until_idle()
    assert len(outbox_files(settings)) == 1  # only the first touch ever went out
    assert _followups(settings, lead_id)[0].status == "cancelled"


def test_a_bounce_stops_the_cadence_and_marks_the_address(settings, worker, http):
    lead_id = _first_touch_sent(settings, worker, custom={"industry": "software", "employees": 250})
    manager = {"Authorization": f"Bearer {session_token(settings, 'manager')}"}
    assert http.post(f"/v1/leads/{lead_id}/events", json={"type": "bounced"}, headers=manager).status_code == 200
    scan(settings, _day(5))
    assert _followups(settings, lead_id) == []


def _deal_with_proposal(settings, worker, http, lead_id: int, manager: dict[str, str]) -> int:
    """An open deal made from the lead, and a proposal drafted for it by the proposal graph."""
    with session_scope(settings) as session:
        lead = session.get(Lead, lead_id)
        product = Product(name="GTX Pro", price=Decimal("4821.00"))
        session.add(product)
        session.flush()
        deal = Deal(
            name="Acme rollout",
            lead_id=lead_id,
            account_id=lead.account_id,
            contact_id=lead.contact_id,
            stage="proposal",
            product_id=product.id,
        )
        session.add(deal)
        session.flush()
        deal_id = deal.id
    assert http.post(f"/v1/deals/{deal_id}/proposals", json={}, headers=manager).status_code == 202
    worker.run_until_idle()
    return deal_id


def test_an_opened_proposal_gets_a_timely_follow_up(settings, worker, http):
    lead_id = _first_touch_sent(settings, worker, custom={"industry": "software", "employees": 250})
    manager = {"Authorization": f"Bearer {session_token(settings, 'manager')}"}
    _deal_with_proposal(settings, worker, http, lead_id, manager)
    r = http.post(f"/v1/leads/{lead_id}/events", json={"type": "proposal_opened"}, headers=manager)
    assert r.status_code == 200, r.text
    [item] = _followups(settings, lead_id)
    assert item.template == "proposal_follow_up" and item.draft["subject"] == "Questions about the proposal?"
    assert "What they did: proposal opened on" in item.brief["summary"]
    assert r.json()["handoff_item"] == item.id


def test_proposal_opened_is_refused_for_a_lead_without_a_proposal(settings, worker, http):
    lead_id = _first_touch_sent(settings, worker, custom={"industry": "software", "employees": 250})
    integration = {"Authorization": f"Bearer {token(settings, 'integration')}"}
    r = http.post(f"/v1/leads/{lead_id}/events", json={"type": "proposal_opened"}, headers=integration)
    assert r.status_code == 422, r.text
    assert r.json()["details"] == {"field": "type"} and "has no proposal" in r.json()["message"]
    assert _followups(settings, lead_id) == []  # no "questions about the proposal?" to someone who never got one
    with session_scope(settings) as session:
        assert session.scalars(select(LeadEvent).where(LeadEvent.lead_id == lead_id)).all() == []


def test_event_input_errors_name_the_field(settings, http):
    manager = {"Authorization": f"Bearer {session_token(settings, 'manager')}"}
    r = http.post("/v1/leads/1/events", json={"type": "liked_post"}, headers=manager)
    assert r.status_code == 422 and "type" in r.json()["fields"]
    assert http.post("/v1/leads/999/events", json={"type": "reply"}, headers=manager).status_code == 404


def test_a_stale_open_deal_gets_one_reactivation_draft_a_month(settings, worker):
    lead_id = _first_touch_sent(settings, worker, custom={"industry": "software", "employees": 250})
    with session_scope(settings) as session:
        lead = session.get(Lead, lead_id)
        session.add(Deal(name="Acme rollout", lead_id=lead_id, account_id=lead.account_id, stage="proposal"))
        session.flush()
        from core.models import Activity

        for activity in session.scalars(select(Activity).where(Activity.lead_id == lead_id)):
            activity.occurred_at = T0
        for deal in session.scalars(select(Deal)):
            deal.updated_at = T0
    assert scan(settings, _day(10))["reactivations"] == 0
    assert scan(settings, _day(40))["reactivations"] == 1
    assert scan(settings, _day(41))["reactivations"] == 0  # once a month
    reactivation = [i for i in _followups(settings, lead_id) if i.template == "reactivation"]
    assert len(reactivation) == 1 and "40 days since we last spoke" in reactivation[0].draft["body"]


def test_a_bounce_cancels_every_pending_email_of_the_lead_whatever_queued_it(settings, worker, http):
    lead_id = _first_touch_sent(settings, worker, custom={"industry": "software", "employees": 250})
    manager = {"Authorization": f"Bearer {session_token(settings, 'manager')}"}
    _deal_with_proposal(settings, worker, http, lead_id, manager)
    scan(settings, _day(2))
    with session_scope(settings) as session:
        pending = {
            i.source: i.id
            for i in session.scalars(
                select(ReviewItem).where(ReviewItem.lead_id == lead_id, ReviewItem.status == "pending")
            )
        }
    assert set(pending) == {"proposal", "cadence"}  # the proposal's cover email and the day-2 follow-up
    r = http.post(f"/v1/leads/{lead_id}/events", json={"type": "bounced"}, headers=manager)
    assert r.status_code == 200 and r.json()["cancelled_drafts"] == 2
    with session_scope(settings) as session:
        for item_id in pending.values():
            item = session.get(ReviewItem, item_id)
            assert item.status == "cancelled"
            assert item.result == {"reason": "the lead's address bounced: email to it cannot be delivered"}
    worker.run_until_idle()
    assert len(outbox_files(settings)) == 1  # only the first touch, sent before the bounce
