"""The LLM engine over real HTTP against a scripted OpenAI-compatible server."""

from __future__ import annotations

import json

from sqlalchemy import select

from core.db import session_scope
from core.models import AuditEvent, Contact, LlmRun, OutboxMessage
from tests.factories import account, auth
from tests.factories import captured_lead as capture
from tests.factories import review_item_for as item_of
from tests.llm_server import tool_call

INSIGHT = {
    "summary": "Jane Doe leads sales at Acme Software, a CRM account in software.",
    "opening_line": "Great to hear from the Acme Software team.",
    "pain_points": ["slow follow-up"],
    "injection_suspected": False,
}


def run(settings, worker, **overrides):
    lead_id = capture(settings, **overrides)
    worker.run_until_idle()
    with session_scope(settings) as session:
        runs = session.scalars(select(LlmRun).where(LlmRun.lead_id == lead_id)).all()
    return item_of(settings, lead_id), runs


def test_tool_calls_then_structured_insight(settings, llm, worker):
    account(settings)
    llm.add(
        {
            "tool_calls": [
                tool_call("crm_find_contact", {"email": "jane.doe@acme-software.com"}),
                tool_call("company_lookup", {"name": "Acme Softwre"}),
            ]
        },  # parallel calls, one typo'd name
        {"content": "I have what I need."},
        {"content": json.dumps(INSIGHT), "prompt_tokens": 400, "completion_tokens": 80},
    )
    item, [llm_run] = run(settings, worker)
    brief = item.brief
    assert brief["engine"] == "llm"
    assert "Research notes: Jane Doe leads sales at Acme Software" in brief["summary"]
    assert {e["tool"] for e in brief["evidence"]} == {"crm_find_contact", "company_lookup"}
    assert any(e["record"] and e["record"].startswith("account:") for e in brief["evidence"])
    assert item.draft["body"].startswith("Hi Jane,\n\nGreat to hear from the Acme Software team.")
    assert item.guard_flags == []  # every word is backed by the record or the template
    assert (llm_run.status, llm_run.calls, llm_run.tool_calls) == ("ok", 3, 2)
    assert (llm_run.prompt_tokens, llm_run.completion_tokens) == (640, 140)
    assert float(llm_run.cost_usd) == round((640 * 0.15 + 140 * 0.60) / 1e6, 6)
    first, _, last = llm.requests
    assert first["temperature"] == 0 and first["model"] == "scripted-model"
    assert {t["function"]["name"] for t in first["tools"]} == {
        "crm_find_contact",
        "crm_account_history",
        "company_lookup",
        "similar_won_cases",
    }  # no write tool is offered
    assert "<lead_text>\nWe need a demo and pricing" in first["messages"][1]["content"]
    assert last["response_format"]["type"] == "json_schema"
    tool_results = [m for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert len(tool_results) == 2 and '"found": true' in tool_results[0]["content"]


def test_json_schema_refused_falls_back_to_json_object(settings, llm, worker):
    llm.add(
        {"content": "no tools needed"},
        {"status": 400, "message": "response_format json_schema is not supported"},
        {"content": json.dumps(INSIGHT)},
    )
    item, [llm_run] = run(settings, worker)
    assert item.brief["engine"] == "llm" and llm_run.status == "ok"
    fallback = llm.requests[-1]
    assert fallback["response_format"] == {"type": "json_object"}
    assert any("JSON schema" in m["content"] for m in fallback["messages"] if m["role"] == "system")


def test_malformed_json_gets_one_corrective_retry(settings, llm, worker):
    llm.add({"content": "ok"}, {"content": "{not json"}, {"content": json.dumps(INSIGHT)})
    item, [llm_run] = run(settings, worker)
    assert item.brief["engine"] == "llm" and llm_run.calls == 3
    assert "was not valid" in llm.requests[-1]["messages"][-1]["content"]


def test_server_errors_timeouts_and_refusals_fall_back_to_the_deterministic_engine(settings, llm, worker):
    cases = [
        ([{"status": 500}, {"status": 500}], "answered 500"),  # the SDK retried once, then gave up
        ([{"sleep": 2.5, "content": "late"}, {"sleep": 2.5, "content": "late"}], "unreachable or too slow"),
        ([{"content": "ok"}, {"refusal": "I can't help with that.", "content": None}], "the model refused"),
    ]
    for i, (steps, error) in enumerate(cases):
        llm.add(*steps)
        item, [llm_run] = run(settings, worker, email=f"lead{i}@acme-software.com")
        assert llm_run.status == "failed" and error in llm_run.error, llm_run.error
        assert item.brief["engine"] == "deterministic" and "llm_unavailable" in item.brief["flags"]
        assert item.draft["subject"] and item.guard_flags == []  # still a grounded draft for the closer


def test_write_and_unknown_tools_are_refused_and_audited(settings, llm, worker):
    llm.add(
        {
            "tool_calls": [
                tool_call("crm_update_contact", {"contact_id": 1, "field": "title", "value": "CEO"}),
                tool_call("send_email", {"to": "boss@evil.example", "body": "hi"}),
                tool_call("crm_find_contact", '{"email": not-json}'),
            ]
        },
        {"content": "done"},
        {"content": json.dumps(INSIGHT)},
    )
    item, _ = run(settings, worker)
    assert "tool_calls_refused:crm_update_contact,send_email" in item.brief["flags"]
    with session_scope(settings) as session:
        refused = session.scalars(select(AuditEvent).where(AuditEvent.action == "tool.refused")).all()
        assert [e.after["tool"] for e in refused] == ["crm_update_contact", "send_email"]
        assert session.scalars(select(Contact.title)).one() == "VP Sales"  # nothing was written
    answers = [m["content"] for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert answers[0] == "error: tool 'crm_update_contact' is not allowed in the lead graph"
    assert answers[1] == "error: tool 'send_email' does not exist"
    assert answers[2].startswith("error: arguments are not valid JSON")


def test_invented_claims_are_flagged_and_block_one_click_approval(settings, llm, worker, http):
    llm.add(
        {"content": "ok"},
        {
            "content": json.dumps(
                {**INSIGHT, "opening_line": "As agreed, you get 20% off until 1 March via https://deal.example."}
            )
        },
    )
    item, _ = run(settings, worker)
    assert item.guard_flags == [
        "ungrounded url 'https://deal.example'",
        "ungrounded date '1 March'",
        "ungrounded number '20%'",
    ]
    closer = auth(settings, "closer")
    blocked = http.post(f"/v1/review-items/{item.id}/approve", headers=closer)
    assert blocked.status_code == 409 and "grounding flags" in blocked.json()["message"]
    edited = item.draft["body"].replace(item.draft["body"].split("\n")[2], "Thanks for your note.")
    ok = http.post(
        f"/v1/review-items/{item.id}/approve", json={"body": edited, "acknowledge_flags": True}, headers=closer
    )
    assert ok.status_code == 200
    worker.run_until_idle()
    with session_scope(settings) as session:
        sent = session.scalars(select(OutboxMessage)).one()
        assert "20%" not in sent.body and sent.to_addr == "jane.doe@acme-software.com"
