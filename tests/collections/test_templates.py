"""Template governance: merge fields checked at save, preview with sample data, approval before use."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from core.db import session_scope
from core.models import ReviewItem
from tests.collections.test_collections import DUE, _customer
from tests.factories import captured_lead, review_item_for, session_token

NURTURE_SUBJECT = "Hello {{ first_name }}"


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_template_with_an_unknown_merge_field_is_refused_at_save(settings, http):
    manager = _h(session_token(settings, "manager"))
    body = "Hi {{ first_name }}, your discount code is {{ discount_code }}.\n{{ sender_name }} {{ unsubscribe_url }}"
    r = http.post(
        "/v1/templates", json={"key": "first_touch_nurture", "subject": NURTURE_SUBJECT, "body": body}, headers=manager
    )
    assert r.status_code == 422
    assert "unknown merge field 'discount_code'" in r.json()["message"]
    assert http.get("/v1/templates", headers=manager).json()[1]["versions"] == []  # nothing was saved


def test_syntax_errors_and_missing_required_fields_are_refused(settings, http):
    manager = _h(session_token(settings, "manager"))
    broken = http.post(
        "/v1/templates/preview",
        headers=manager,
        json={"key": "dunning_firm", "subject": "{{ number", "body": "{{ amount }}"},
    )
    assert broken.json()["valid"] is False and "subject: line 1" in broken.json()["errors"][0]
    no_link = http.post(
        "/v1/templates/preview",
        headers=manager,
        json={"key": "dunning_firm", "subject": "Invoice {{ number }}", "body": "Pay {{ amount }}."},
    )
    assert no_link.json()["errors"] == ["missing required merge field 'payment_link'"]
    unknown_key = http.post("/v1/templates/preview", headers=manager, json={"key": "nope", "subject": "x", "body": "y"})
    assert unknown_key.status_code == 404


def test_preview_renders_sample_data_and_an_approved_version_is_used_by_new_drafts(settings, http, worker):
    manager = _h(session_token(settings, "manager", "Morgan Demo"))
    body = (
        "Hi {{ first_name }},\n\nThanks for writing to {{ our_company }}. Reply to this email when you want to talk."
        "\n\n{{ sender_name }}\n\nUnsubscribe: {{ unsubscribe_url }}"
    )
    text = {"key": "first_touch_nurture", "subject": NURTURE_SUBJECT, "body": body}
    preview = http.post("/v1/templates/preview", json=text, headers=manager).json()
    assert preview["valid"] and preview["subject"] == "Hello Jane" and "Revloop Demo Co" in preview["body"]
    saved = http.post("/v1/templates", json=text, headers=manager)
    assert saved.status_code == 201 and saved.json()["version"] == 1 and saved.json()["status"] == "draft"

    lead = captured_lead(settings, title=None, custom={"industry": "mining", "employees": 5})  # a C lead: nurture
    worker.run_until_idle()
    before = review_item_for(settings, lead)
    assert before.template == "first_touch_nurture" and before.draft["template_version"] == "built-in"

    approved = http.post(f"/v1/templates/{saved.json()['id']}/approve", headers=manager)
    assert approved.status_code == 200 and approved.json()["approved_by"] == "manager:Morgan Demo"
    assert http.post(f"/v1/templates/{saved.json()['id']}/approve", headers=manager).status_code == 409
    lead2 = captured_lead(
        settings, email="two@acme-software.com", title=None, custom={"industry": "mining", "employees": 5}
    )
    worker.run_until_idle()
    after = review_item_for(settings, lead2)
    assert after.draft["template_version"] == "v1" and after.draft["subject"] == "Hello Jane"
    assert after.guard_flags == []  # the approved template's own words count as grounded


def test_reminders_use_the_approved_dunning_template(settings, http):
    from billing.reminders import scan

    manager = _h(session_token(settings, "manager"))
    text = {
        "key": "dunning_neutral",
        "subject": "Open: {{ number }}",
        "body": "Hi {{ first_name }}, {{ amount }} is open. Pay at {{ payment_link }}.\n{{ sender_name }}",
    }
    saved = http.post("/v1/templates", json=text, headers=manager).json()
    http.post(f"/v1/templates/{saved['id']}/approve", headers=manager)
    _customer(settings)
    scan(settings, DUE + dt.timedelta(days=7))
    with session_scope(settings) as session:
        [item] = session.scalars(select(ReviewItem)).all()
        assert item.draft["subject"] == "Open: INV-1001" and item.draft["template_version"] == "v1"
        assert "USD 1,200.00 is open" in item.draft["body"]


def test_templates_page_refuses_an_unknown_field_then_saves_and_approves(settings, live_server):
    from tests.review.test_app import _open, _signed_in

    at = _signed_in(live_server, settings, "manager")
    _open(at, "templates")
    at.selectbox(key="template_key").select("dunning_firm")
    at.run()
    assert at.text_input(key="template_subject_dunning_firm").value.startswith("Action needed")
    at.text_area(key="template_body_dunning_firm").input("Pay {{ amount }} for {{ number }} at {{ pay_url }}.")
    at.button(key="template_preview").click()
    at.run()
    assert any("unknown merge field 'pay_url'" in e.value for e in at.error)
    at.button(key="template_save").click()
    at.run()
    assert any("Not saved" in e.value for e in at.error)
    at.text_area(key="template_body_dunning_firm").input("Pay {{ amount }} for {{ number }} at {{ payment_link }}.")
    at.button(key="template_preview").click()
    at.run()
    assert any("Pay USD 1,200.00 for INV-1001" in t.value for t in at.text)
    at.button(key="template_save").click()
    at.run()
    assert any("Saved dunning_firm v1 as a draft" in s.value for s in at.success)
    at.button(key="template_approve").click()
    at.run()
    assert any("dunning_firm v1 approved" in s.value for s in at.success)
    assert "In use: **v1**" in at.caption[0].value
