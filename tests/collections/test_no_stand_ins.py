"""Issue 17: drafts never say "there" or "your company". Without a first name or company on record, every built-in
template reads naturally ("Hello,", "teams like yours"), and the follow-up, reminder and deal-flow drafts leave the
slot empty instead of filling in a stand-in; names on record are still used."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from billing.reminders import scan as reminder_scan
from core.db import session_scope
from core.models import Contact, Lead
from deals.cadences import scan as cadence_scan
from evals.graders import no_stand_ins
from review.templates import BUILT_IN, render_parts, sample_facts
from review.texts.cadences import TEMPLATES as CADENCE_TEMPLATES
from review.texts.lead import TEMPLATES as LEAD_TEMPLATES
from tests.collections.test_cadences import _day, _first_touch_sent, _followups
from tests.collections.test_collections import DUE, _customer, _items
from tests.collections.test_deal_flow import SECRET, _deal, _sign
from tests.collections.test_deal_flow import _items as _thread_items

# "Hi ," or "Hi !" (an empty name), or the name slot missing from a greeting
EMPTY_GREETING = re.compile(r"\b(?:hi|dear)\s*[,.!?]", re.IGNORECASE)


def _natural(draft: dict) -> None:
    ok, said = no_stand_ins(draft)
    assert ok, said
    text = f"{draft['subject']}\n{draft['body']}"
    assert not EMPTY_GREETING.search(text), text
    assert "()" not in text and " ," not in text and not re.search(r"\S  +\S", text), text


@pytest.mark.parametrize("key", sorted(BUILT_IN))
def test_every_built_in_template_reads_naturally_without_a_name_or_company(key):
    slots = {**sample_facts(key), "first_name": ""}
    if key in LEAD_TEMPLATES or key in CADENCE_TEMPLATES or key in ("text_first_touch", "text_follow_up"):
        slots["company"] = ""  # a lead's company may be unknown; invoices and deals always name their account
    _natural(render_parts(BUILT_IN[key], slots))
    named = render_parts(BUILT_IN[key], sample_facts(key))
    if "first_name" in BUILT_IN[key]["body"]:
        assert re.search(r"\b(?:Hi|Hello|Dear) (?:Jane|Pat|Bill)\b", named["body"]), named["body"]  # names still used


def test_follow_ups_to_a_lead_with_no_name_or_company_say_hello(settings, worker):
    lead_id = _first_touch_sent(
        settings,
        worker,
        first_name=None,
        last_name=None,
        company=None,
        custom={"industry": "software", "employees": 250},
    )
    with session_scope(settings) as session:
        lead = session.get(Lead, lead_id)
        assert (lead.first_name, lead.company, lead.account_id) == (None, None, None)
    for n in (2, 5, 10, 15):
        cadence_scan(settings, _day(n))
    items = _followups(settings, lead_id)
    assert [i.template for i in items] == ["follow_up_light", "follow_up_value", "follow_up_direct", "break_up"]
    for item in items:
        assert item.draft["body"].startswith("Hello,\n"), item.draft["body"]
        _natural(item.draft)
    assert "Teams like yours" in items[1].draft["body"] and items[1].draft["subject"].startswith("One idea")
    assert items[2].draft["subject"] == "Should I close your file?"


def test_a_reminder_to_a_contact_with_no_first_name_says_hello(settings):
    _customer(settings)
    with session_scope(settings) as session:
        session.scalars(select(Contact)).one().first_name = None
    assert reminder_scan(settings, DUE + dt.timedelta(days=1))["drafted"] == 1
    [reminder] = _items(settings)
    assert reminder.draft["body"].startswith("Hello,\n") and "INV-1001" in reminder.draft["body"]
    _natural(reminder.draft)


def test_the_onboarding_welcome_to_a_contact_with_no_first_name_says_hello(settings, http):
    settings.webhook_secret_esign = SECRET
    deal_id = _deal(settings)
    with session_scope(settings) as session:
        session.scalars(select(Contact)).one().first_name = None
    assert _sign(http, deal_id).status_code == 200
    [welcome] = _thread_items(settings, "onboarding")
    assert welcome.draft["body"].startswith("Hello,\n") and "Thank you for signing" in welcome.draft["body"]
    _natural(welcome.draft)
