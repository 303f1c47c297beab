"""Issue 17 end to end over real HTTP: a lead posted to the API is graded the way a sales manager would (negative
intent, too little to judge in words, no "there" or "your company" in the draft), and a rejection reason changes
the next draft in a way the closer can see (deterministic engine and LLM path)."""

from __future__ import annotations

import json

from sqlalchemy import select

from core.db import session_scope
from core.models import ReviewItem
from tests.factories import auth, captured_lead, pending_item, review_item_for


def test_posted_leads_get_a_managers_grade_or_the_exception_queue_with_the_reason(settings, http, worker):
    researching = pending_item(
        settings,
        http,
        worker,
        email="laura.chen@pixelharbor.com",
        first_name="Laura",
        last_name="Chen",
        company="Pixel Harbor",
        title="Marketing Manager",
        message="Just researching options for next year.",
        custom={"industry": "marketing", "employees": 150},
    )
    brief = researching["brief"]
    assert (researching["queue"], brief["grade"], brief["next_action"]) == ("main", "C", "nurture")  # was A, call now
    assert any(line.startswith("Not buying now") and "grade at most C" in line for line in brief["factors"])
    assert "Lowered: no buying intent in the message (at most B); not buying now (just researching" in brief["summary"]
    assert "not now) (-30 points, at most C)." in brief["summary"]

    thin = pending_item(
        settings,
        http,
        worker,
        email="office@kellerandsons.com",
        first_name=None,
        last_name=None,
        company=None,
        title=None,
        phone=None,
        website=None,
        message="Please send a quote.",
    )
    assert thin["queue"] == "exception"
    [reason] = [r for r in thin["brief"]["exception_reasons"] if r.startswith("too little to judge")]
    assert "industry, employees and title unknown" in reason
    assert "too_little_to_judge" in thin["brief"]["flags"]
    draft = thin["draft"]
    assert thin["brief"]["next_action"] == "nurture"  # not a decline of someone who asked for a quote
    assert draft["body"].startswith("Hello,") and "there" not in draft["body"].split("\n")[0]
    text = draft["subject"] + draft["body"]
    assert "your company" not in text and "Hi there" not in text and ", there" not in text
    assert "companies like yours" in draft["body"]


def _redraft_of(settings, item_id: int) -> ReviewItem:
    with session_scope(settings) as session:
        return session.scalars(select(ReviewItem).where(ReviewItem.redraft_of == item_id)).one()


def test_a_rejection_reason_changes_the_redraft_and_says_what_changed(settings, http, worker):
    lead = captured_lead(settings, custom={"industry": "software", "employees": 250})
    worker.run_until_idle()
    first = review_item_for(settings, lead)
    assert first.template == "first_touch_fast" and "We work with" in first.draft["body"]
    r = http.post(
        f"/v1/review-items/{first.id}/reject",
        json={"reason": "Too long and too pushy for a first note", "redraft": True},
        headers=auth(settings, "closer"),
    )
    assert r.status_code == 200, r.text
    worker.run_until_idle()
    new = _redraft_of(settings, first.id)
    assert new.template == "first_touch_nurture"
    assert new.draft["redraft_reason"] == "Too long and too pushy for a first note"
    assert new.draft["instruction"] == "Too long and too pushy for a first note"
    assert new.draft["changes"] == [
        "Template first_touch_fast → first_touch_nurture (a softer note without pushing for a call)",
        "Shorter: the paragraph about how we work is left out",
    ]
    assert "I will send you a short overview" not in new.draft["body"]
    assert len(new.draft["body"]) < len(first.draft["body"]) and new.draft["to"] == first.draft["to"]

    # A reason the engine cannot map is said, not silently ignored.
    r = http.post(
        f"/v1/review-items/{new.id}/reject",
        json={"reason": "Wrong person, call the office instead", "redraft": True},
        headers=auth(settings, "closer"),
    )
    assert r.status_code == 200, r.text
    worker.run_until_idle()
    third = _redraft_of(settings, new.id)
    assert third.draft["not_applied"] and third.draft["not_applied"][0].startswith(
        "“Wrong person”: the deterministic engine only chooses"
    )


def test_the_llm_path_gets_the_rejection_reason_as_the_closers_instruction(settings, llm, worker, http):
    def answer(body):
        if "rewrite the opening line" in body["messages"][0]["content"]:
            return {"content": json.dumps({"opening_line": "Thanks for your note.", "followed": ["softer"]})}
        return {
            "content": json.dumps({"summary": "s", "opening_line": "", "pain_points": [], "injection_suspected": False})
        }

    llm.responder = answer
    lead = captured_lead(settings, custom={"industry": "software", "employees": 250})
    worker.run_until_idle()
    first = review_item_for(settings, lead)
    r = http.post(
        f"/v1/review-items/{first.id}/reject",
        json={"reason": "Make it softer", "redraft": True},
        headers=auth(settings, "closer"),
    )
    assert r.status_code == 200, r.text
    worker.run_until_idle()
    new = _redraft_of(settings, first.id)
    [asked] = [q for q in llm.requests if "rewrite the opening line" in q["messages"][0]["content"]]
    assert "<closer_instruction>\nMake it softer\n</closer_instruction>" in asked["messages"][1]["content"]
    assert "Opening line written by the model for your instruction: Thanks for your note." in new.draft["changes"]
    assert "Thanks for your note." in new.draft["body"] and new.template == "first_touch_nurture"


def test_the_review_app_shows_the_exception_reason_and_one_line_per_factor(settings, live_server, http, worker):
    from tests.review.test_app import _queue_a_lead, _signed_in

    _queue_a_lead(
        settings,
        http,
        worker,
        email="office@kellerandsons.com",
        first_name=None,
        last_name=None,
        company=None,
        title=None,
        phone=None,
        website=None,
        message="Please send a quote.",
    )
    at = _signed_in(live_server, settings, "closer", "Casey Jordan")
    at.radio(key="view").set_value("Everything")
    at.run()
    assert not at.exception, at.exception
    assert any(w.value.startswith("**Exception queue**") and "too little to judge" in w.value for w in at.warning)
    assert any("Industry we serve: unknown (0 of 25): industry is unknown" in t.value for t in at.text)
    assert any(e.label == "Why grade C: one line per factor" for e in at.expander)
