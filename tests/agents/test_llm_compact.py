"""A slow endpoint (a small model on a CPU, issue 18): measured speed switches the lead research to the compact
prompt (our look-ups, one short call, no tool round), and json_object measured slow switches replies to prompt
mode; over real HTTP with the scripted server, whose replies take the time a slow server would."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from agents.lead.prompts import COMPACT_EXAMPLE, COMPACT_SYSTEM
from agents.llm import forget_capabilities, probe
from core.db import session_scope
from core.models import LlmCapability, LlmRun
from tests.factories import account
from tests.factories import captured_lead as capture
from tests.factories import review_item_for as item_of

INSIGHT = {
    "summary": "Jane Doe leads sales at Acme Software.",
    "opening_line": "Great to hear from the Acme Software team.",
    "pain_points": ["slow follow-up"],
    "injection_suspected": False,
}


@pytest.fixture(autouse=True)
def _fresh_capabilities():
    forget_capabilities()
    yield
    forget_capabilities()


def run(settings, worker, n):
    lead_id = capture(settings, email=f"lead{n}@acme-software.com")
    worker.run_until_idle()
    with session_scope(settings) as session:
        [llm_run] = session.scalars(select(LlmRun).where(LlmRun.lead_id == lead_id)).all()
        session.expunge(llm_run)
    return item_of(settings, lead_id), llm_run


def test_an_endpoint_measured_slow_gets_the_compact_prompt(settings, llm, worker):
    account(settings)

    def slow_server(body):
        if (body.get("response_format") or {}).get("type") == "json_schema":
            return {"status": 500}  # like llama.cpp
        if body.get("response_format") or body["messages"][0]["content"] == COMPACT_SYSTEM:
            return {"content": json.dumps(INSIGHT), "prompt_tokens": 140, "completion_tokens": 40}
        # The tool round: 1.2 s for 150 tokens, so a full research (~2,000+ tokens) would not fit half the budget.
        return {"sleep": 1.2, "content": "I will look at the lead.", "prompt_tokens": 140, "completion_tokens": 10}

    llm.responder = slow_server
    first_item, first = run(settings, worker, 0)
    assert first.outcome == "used" and first.mode == "json_object"  # the full research: nothing measured yet
    assert any(r.get("tools") for r in llm.requests)
    sent = len(llm.requests)
    item, second = run(settings, worker, 1)
    [request] = llm.requests[sent:]  # one call: no tool round
    assert "tools" not in request and request["max_tokens"] == settings.llm_max_tokens.insight_compact == 160
    assert [m["role"] for m in request["messages"]] == ["system", "user", "assistant", "user"]
    assert request["messages"][:3] == [{"role": "system", "content": COMPACT_SYSTEM}, *COMPACT_EXAMPLE]  # a worked
    # example instead of a schema, the same for every lead: a prefix the server caches
    assert "response_format" not in request  # prompt mode: the example gives the shape
    user = request["messages"][-1]["content"]
    assert user.startswith("Lead: Jane Doe, VP Sales at Acme Software.") and "<lead_text>" in user
    assert "CRM account: Acme Software, Software, 250 employees." in user
    assert "crm find contact: domain acme-software.com" in user  # what the look-ups added, each fact once
    assert '"type": "object"' not in user and "functions" not in json.dumps(request)  # no schemas
    assert (second.outcome, second.mode, second.calls) == ("used", "prompt+compact", 1)
    assert item.brief["engine"] == "llm" and "Jane Doe leads sales at Acme Software" in item.brief["summary"]
    assert "choice of look-ups" not in item.brief["llm"]["model_parts"]
    assert any(e["tool"] == "crm_account_history" for e in item.brief["evidence"])  # our own look-ups
    with session_scope(settings) as session:
        details = session.scalars(select(LlmCapability)).one().details
    assert 0.006 < details["seconds_per_token"] < 0.02  # learned, kept for the other workers

    settings.llm_prompt = "full"  # forced: the tool round again, however slow
    sent = len(llm.requests)
    _, forced = run(settings, worker, 2)
    assert llm.requests[sent].get("tools") and forced.mode == "json_object"


def test_llm_check_measures_json_object_slow_and_leads_use_prompt_mode(settings, llm, worker):
    settings.llm_timeout_seconds = 5

    def server(body):
        fmt = (body.get("response_format") or {}).get("type")
        system = body["messages"][0]["content"]
        if fmt == "json_schema":
            return {"status": 500}
        if fmt == "json_object":  # grammar decoding: slow per token
            return {"sleep": 2.2, "content": '{"answer": "ok"}', "prompt_tokens": 30, "completion_tokens": 6}
        if system == COMPACT_SYSTEM and "Example Ltd" in body["messages"][-1]["content"]:  # the speed probe
            return {"sleep": 3.0, "content": "{}", "prompt_tokens": 200, "completion_tokens": 40}
        if system == COMPACT_SYSTEM:  # a lead
            return {"content": "Here it is: " + json.dumps(INSIGHT), "prompt_tokens": 200, "completion_tokens": 60}
        return {"content": '{"answer": "ok"}', "prompt_tokens": 30, "completion_tokens": 6}

    llm.responder = server
    found = probe(settings)
    assert found["results"]["json_object"]["ok"] and found["results"]["prompt"]["ok"]
    assert found["json_object_slow"] is True and found["structured_mode"] == "prompt"
    assert found["research_prompt"] == "compact" and found["full_research_seconds"] > settings.llm_budget_seconds / 2
    sent = len(llm.requests)
    item, llm_run = run(settings, worker, 0)
    [request] = llm.requests[sent:]  # json_schema known unsupported, json_object known slow: straight to prompt
    assert "response_format" not in request and request["messages"][0]["content"] == COMPACT_SYSTEM
    assert (llm_run.outcome, llm_run.mode) == ("used", "prompt+compact")
    assert [r["problem"] for r in llm_run.rejections] == ["prose_around_json"]
    assert item.draft["body"].startswith("Hi Jane,\n\nGreat to hear from the Acme Software team.")
