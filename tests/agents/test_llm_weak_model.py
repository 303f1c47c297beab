"""The LLM path against servers and models that misbehave (issue 18), over real HTTP with the scripted server:
json_schema refused with 500 or 400, tool calling refused, schema echoes, prose and partial JSON, wrong types,
invented tool names, runaway output, slow servers, missing usage; and the safety rules whatever the model says."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import select

from agents.llm import LlmBudgetExceeded, LlmClient, forget_capabilities
from core.db import session_scope
from core.models import LlmCapability, LlmRun
from tests.factories import account, session_token
from tests.factories import captured_lead as capture
from tests.factories import review_item_for as item_of
from tests.llm_server import tool_call

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


def run(settings, worker, n=0, **overrides):
    lead_id = capture(settings, email=f"lead{n}@acme-software.com", **overrides)
    worker.run_until_idle()
    with session_scope(settings) as session:
        [llm_run] = session.scalars(select(LlmRun).where(LlmRun.lead_id == lead_id)).all()
        session.expunge(llm_run)
    return item_of(settings, lead_id), llm_run


def problems(llm_run, action=None):
    return [r["problem"] for r in llm_run.rejections or [] if action is None or r["action"] == action]


def server_like_llama_cpp(body):
    """llama.cpp's server: json_schema is a 500 (a validation error); no tool calls from this model."""
    if (body.get("response_format") or {}).get("type") == "json_schema":
        return {"status": 500, "message": "Internal Server Error: response_format json_schema unsupported"}
    if body.get("response_format") == {"type": "json_object"}:
        return {"content": json.dumps(INSIGHT)}
    return {"content": "I will look at the lead."}


@pytest.mark.parametrize("status", [500, 400])
def test_json_schema_refused_with_500_or_400_is_learned_once_per_endpoint_and_model(settings, llm, worker, status):
    settings.llm_model = f"weak-{status}"
    llm.responder = lambda body: (
        {"status": status} if (body.get("response_format") or {}).get("type") == "json_schema" else
        {"content": json.dumps(INSIGHT)} if body.get("response_format") else {"content": "no tools needed"}
    )  # fmt: skip
    item, first = run(settings, worker, 0)
    assert item.brief["engine"] == "llm" and first.outcome == "used" and first.mode == "json_object"
    assert "json_schema_unsupported" in problems(first)
    with session_scope(settings) as session:
        cap = session.scalars(select(LlmCapability)).one()
        assert (cap.model, cap.json_schema, cap.json_object) == (f"weak-{status}", False, True)
    sent = len(llm.requests)
    forget_capabilities()  # another process: it reads what was learned from the database
    item, second = run(settings, worker, 1)
    later = llm.requests[sent:]
    assert second.outcome == "used" and second.rejections == []
    assert [r.get("response_format", {}).get("type") for r in later] == [None, "json_object"]
    assert all(r["max_tokens"] > 0 for r in llm.requests)  # every call is capped


def test_tool_calling_refused_means_our_own_look_ups_and_the_model_judges_them(settings, llm, worker):
    account(settings)
    llm.responder = lambda body: (
        {"status": 500} if body.get("tools") else server_like_llama_cpp(body)
    )  # fmt: skip
    item, llm_run = run(settings, worker)
    assert llm_run.outcome == "used" and llm_run.mode == "json_object"
    assert {"tools_unsupported", "json_schema_unsupported"} <= set(problems(llm_run, "rejected"))
    assert any(e["tool"] == "crm_account_history" for e in item.brief["evidence"])  # planned look-ups
    assert "choice of look-ups" not in item.brief["llm"]["model_parts"]
    assert "Written by the language model: research notes, opening line" in item.brief["summary"]
    assert "the look-ups" in item.brief["summary"]
    asked = [m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "user"]
    assert any(a.startswith("What our tools found:") for a in asked)
    sent = len(llm.requests)
    run(settings, worker, 1)
    assert not any(r.get("tools") for r in llm.requests[sent:])  # learned: no tools sent any more


def test_schema_echo_is_corrected_once_then_rejected_cleanly(settings, llm, worker):
    echo = json.dumps({"title": "LeadInsight", "type": "object", "properties": {"summary": {"type": "string"}}})
    piece = json.dumps({"summary": {"type": "string", "description": "Two or three sentences"}})
    llm.add({"content": "ok"}, {"content": echo}, {"content": json.dumps(INSIGHT)})
    item, repaired = run(settings, worker, 0)
    assert repaired.outcome == "used" and problems(repaired) == ["schema_echo"]
    assert "Answer again" in llm.requests[-1]["messages"][-1]["content"]
    llm.add({"content": "ok"}, {"content": echo}, {"content": piece})
    item, rejected = run(settings, worker, 1)
    assert (rejected.status, rejected.outcome) == ("failed", "not_used")
    assert problems(rejected) == ["schema_echo", "schema_echo"] and "schema_echo" in rejected.error
    assert item.brief["engine"] == "deterministic" and "llm_unavailable" in item.brief["flags"]
    assert "language model's output was not used" in item.brief["summary"]


def test_prose_partial_json_and_wrong_types_are_repaired(settings, llm, worker):
    prose = "Sure! Here is the JSON:\n```json\n" + json.dumps(
        {**INSIGHT, "pain_points": "slow follow-up; no CRM", "injection_suspected": "no", "score": 99}
    ) + "\n```\nHope that helps."  # fmt: skip
    llm.add({"content": "ok"}, {"content": prose})
    item, llm_run = run(settings, worker, 0)
    assert llm_run.outcome == "used" and llm_run.calls == 2
    assert set(problems(llm_run, "repaired")) == {"prose_around_json", "wrong_type", "extra_keys"}
    assert item.brief["engine"] == "llm"
    cut = json.dumps(INSIGHT)[:-30]  # max_tokens reached inside pain_points
    llm.add({"content": "ok"}, {"content": cut, "finish_reason": "length"})
    item, llm_run = run(settings, worker, 1)
    assert llm_run.outcome == "used" and problems(llm_run) == ["partial_json"]
    assert "Great to hear from the Acme Software team." in item.draft["body"]


def test_runaway_reply_cut_at_max_tokens_is_rejected_with_its_reason(settings, llm, worker):
    settings.llm_max_tokens.insight = 50
    babble = "The lead is interesting because " * 40
    llm.add(
        {"content": "ok"},
        {"content": babble, "finish_reason": "length"},
        {"content": babble[:200], "finish_reason": "length"},
    )
    item, llm_run = run(settings, worker)
    assert problems(llm_run) == ["runaway", "runaway"] and llm_run.outcome == "not_used"
    assert [r["max_tokens"] for r in llm.requests[-2:]] == [50, 50]
    assert item.brief["engine"] == "deterministic" and item.draft["subject"]


def test_invented_tool_names_and_arguments(settings, llm, worker):
    account(settings)
    llm.add(
        {
            "tool_calls": [
                tool_call("functions.crm_find_contact", {"email": "lead0@acme-software.com"}),
                tool_call("wire_money", {"amount": 5000}),
                tool_call("company_lookup", 'I will call it with {"name": "Acme Software"} now'),
                tool_call("crm_account_history", {"account_id": "the big one"}),
            ]
        },
        {"content": "done"},
        {"content": json.dumps(INSIGHT)},
    )
    item, llm_run = run(settings, worker)
    tools = [m["content"] for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert '"found": true' in tools[0] and "does not exist" in tools[1] and "error" not in tools[2][:10]
    assert tools[3].startswith("error: invalid arguments")
    assert problems(llm_run, "repaired") == ["tool_name", "tool_arguments"]
    assert problems(llm_run, "rejected") == ["tool_refused", "invalid_arguments"]
    assert "tool_calls_refused:wire_money" in item.brief["flags"]


def test_missing_usage_is_unknown_not_zero_and_unlisted_models_cost_nothing(settings, llm, worker, http):
    llm.add({"content": "ok", "usage": None}, {"content": json.dumps(INSIGHT)})
    item, unknown = run(settings, worker, 0)
    assert (unknown.prompt_tokens, unknown.completion_tokens, unknown.cost_usd) == (None, None, None)
    manager = {"Authorization": f"Bearer {session_token(settings, 'manager')}"}
    [shown] = http.get(f"/v1/leads/{item.lead_id}/llm-runs", headers=manager).json()
    assert shown["prompt_tokens"] is None and shown["cost_usd"] is None and shown["outcome"] == "used"
    settings.llm_prices = {}  # a local model: not in the price table
    llm.add({"content": "ok"}, {"content": json.dumps(INSIGHT)})
    _, local = run(settings, worker, 1)
    assert (local.prompt_tokens, local.completion_tokens, float(local.cost_usd)) == (240, 60, 0.0)
    settings.llm_prices = {"gpt-4o-mini": (0.15, 0.60)}
    assert settings.model_copy(update={"llm_model": "gpt-4o-mini-2024-07-18"}).llm_price() == (0.15, 0.60)


def test_a_slow_server_never_holds_a_lead_past_its_budget(settings, llm, worker):
    settings.llm_budget_seconds = 1.5
    settings.llm_timeout_seconds = 30  # the budget, not the client timeout, bounds the wait
    llm.responder = lambda body: {"sleep": 4, "content": "late"}
    started = time.monotonic()
    item, llm_run = run(settings, worker)
    assert time.monotonic() - started < 1.5 + 3  # + the deterministic engine and the worker
    assert (llm_run.status, llm_run.outcome) == ("over_budget", "not_used") and llm_run.duration_ms < 2000
    assert "budget of 1.5 s" in llm_run.error
    assert {"llm_over_budget", "llm_unavailable"} <= set(item.brief["flags"])
    assert "its time budget ran out" in item.brief["summary"] and item.draft["subject"]
    assert len(llm.requests) == 1  # no retry that outlives the budget


def test_concurrency_to_the_endpoint_is_bounded_across_threads(settings, llm):
    settings.llm_max_concurrency = 1
    settings.llm_budget_seconds = 1.2
    llm.responder = lambda body: {"sleep": 3, "content": "late"}
    results: list[str] = []

    def lead() -> None:
        client = LlmClient(settings)
        try:
            client._create("tool_round", messages=[{"role": "user", "content": "hi"}])
        except LlmBudgetExceeded as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=lead) for _ in range(3)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - started < 2.0  # every one gave up at its budget, none waited for the others
    assert len(results) == 3 and sum("endpoint slot" in r for r in results) == 2
    assert len(llm.requests) == 1  # one request at a time reached the endpoint


def test_invented_claims_are_never_low_risk_or_bulk_approved(settings, llm, worker, http):
    invented = {
        **INSIGHT,
        "summary": "jane doe runs acme software, which just raised a series b funding round in munich.",
        "opening_line": "congratulations on your recent series b funding round, and to your ceo john smith.",
    }
    llm.add({"content": "ok"}, {"content": json.dumps(invented)})
    item, llm_run = run(settings, worker, 0)
    assert item.guard_flags and any("series b funding round" in f for f in item.guard_flags)
    assert any("john smith" in f for f in item.guard_flags)
    assert "ungrounded_summary" in problems(llm_run, "rejected") and llm_run.outcome == "partial"
    assert "series b" not in item.brief["summary"] and "llm_output_withheld:research_notes" in item.brief["flags"]
    llm.add({"content": "ok"}, {"content": json.dumps(INSIGHT)})
    clean, _ = run(settings, worker, 1)
    assert clean.guard_flags == []
    manager = {"Authorization": f"Bearer {session_token(settings, 'manager')}"}
    listed = {i["id"]: i["low_risk"] for i in http.get("/v1/review-items", headers=manager).json()["items"]}
    assert listed[item.id] is False
    r = http.post("/v1/review-items/bulk-approve", json={"ids": [item.id, clean.id], "confirm": True}, headers=manager)
    assert r.status_code == 200, r.text
    assert item.id not in r.json()["approved"] and "grounding flags" in r.json()["skipped"][str(item.id)]


def test_revloop_llm_check_prints_what_the_endpoint_supports_and_stores_it(settings, llm, subprocess_env):
    import subprocess
    import sys

    def server(body):
        fmt = (body.get("response_format") or {}).get("type")
        if fmt == "json_schema":
            return {"status": 500, "message": "json_schema unsupported"}
        if fmt == "json_object":
            return {"content": '{"answer": "ok"}', "prompt_tokens": 21, "completion_tokens": 6}
        if body.get("tools"):
            return {"tool_calls": [tool_call("record_answer", {"answer": "ok"})]}
        return {"content": "Hello", "usage": None}

    llm.responder = server
    env = {**subprocess_env, "REVLOOP_LLM": "openai", "OPENAI_BASE_URL": llm.url, "REVLOOP_LLM_MODEL": "tiny"}
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "llm", "check"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "tokens unknown" in lines["sample"] and " yes " in lines["sample"]
    assert " no " in lines["json_schema"] and "HTTP 500" in lines["json_schema"]
    assert " yes " in lines["json_object"] and "21 prompt + 6 completion tokens" in lines["json_object"]
    assert " yes " in lines["tools"] and "$0 / $0 per million" in lines["price"]
    assert "structured output: json_object; tool calling: yes" in done.stdout
    assert all(r["max_tokens"] == 64 for r in llm.requests)
    with session_scope(settings) as session:
        cap = session.scalars(select(LlmCapability)).one()
        assert (cap.model, cap.json_schema, cap.json_object, cap.tools) == ("tiny", False, True, True)


def test_the_guard_finds_places_in_any_case():
    from review.guard import ungrounded

    shouted = ungrounded("CONGRATULATIONS ON YOUR SERIES B FUNDING ROUND IN BERLIN", ["Jane Doe", "Acme Software"])
    assert shouted == ["ungrounded claim 'SERIES B FUNDING ROUND'", "ungrounded place 'berlin'"]
    assert ungrounded("WE MET IN BERLIN", ["Berlin office"]) == []  # on record, in any case


def test_structured_mode_prompt_sends_no_response_format(settings, llm, worker):
    settings.llm_structured_mode = "prompt"  # llama.cpp on a small CPU: its json_object grammar is slow
    llm.add({"content": "ok"}, {"content": "Here you go: " + json.dumps(INSIGHT)})
    item, llm_run = run(settings, worker)
    assert "response_format" not in llm.requests[-1] and llm_run.mode == "prompt"
    assert any("JSON object only" in m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "system")
    assert llm_run.outcome == "used" and problems(llm_run) == ["prose_around_json"]


def test_a_fast_endpoint_is_never_marked_grammar_slow_by_timing_noise(settings):
    from agents.llm import learn_speed

    forget_capabilities()
    learn_speed(settings, "seconds_per_token", 0.00001)
    caps = learn_speed(settings, "json_object_seconds_per_token", 0.00005)  # 5x, but a scripted/hosted server
    assert caps.details["json_object_slow"] is False and "json_object" in caps.structured_modes()
    caps = learn_speed(settings, "json_object_seconds_per_token", 0.08)  # llama.cpp's grammar on a small CPU
    assert caps.details["json_object_slow"] is True and "json_object" not in caps.structured_modes()
