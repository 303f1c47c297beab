from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from core.db import session_scope
from core.errors import InvalidInput
from tests.factories import account, sales_agent, user
from tests.factories import captured_lead as capture
from tests.factories import review_item_for as item
from tools.registry import TOOLS, Toolbox, ToolContext, agent_tool


class Nap(BaseModel):
    seconds: float


@agent_tool(scope="test", timeout=0.2)
def nap_tool(ctx: ToolContext, args: Nap) -> dict:
    """Sleep (a test tool)."""
    time.sleep(args.seconds)
    return {"slept": args.seconds}


def test_toolbox_validates_times_out_and_refuses(settings):
    refusals = []
    box = Toolbox(
        "test",
        frozenset({"nap_tool", "crm_update_contact", "crm_find_contact"}),
        ToolContext(settings),
        scopes=frozenset({"test", "write_crm"}),
        audit=lambda action, details: refusals.append(details),
    )
    assert box.call("nap_tool", {"seconds": 0}).ok
    assert box.call("nap_tool", {"seconds": "long"}).content.startswith("error: invalid arguments: seconds")
    assert box.call("nap_tool", {"seconds": 1}).content == "error: nap_tool timed out after 0.2s"
    write = box.call("crm_update_contact", {"contact_id": 1, "field": "title", "value": "x"})
    assert write.refused and "runs only after an approved review" in write.content
    assert box.call("lead_facts", {}).refused  # domain functions are no tools: never callable by a model
    unscoped = box.call("crm_find_contact", {"email": "a@b.example"})  # on the allowlist, but read_crm not granted
    assert unscoped.refused and "needs the 'read_crm' scope" in unscoped.content
    assert [r["tool"] for r in refusals] == ["crm_update_contact", "lead_facts", "crm_find_contact"]
    schema = TOOLS["crm_find_contact"].openai_schema()
    assert schema["function"]["parameters"]["required"] == ["email"]
    assert "Find the CRM contact" in schema["function"]["description"]


@agent_tool(scope="test", timeout=0.2, inline=lambda ctx: True)
def local_nap_tool(ctx: ToolContext, args: Nap) -> dict:
    """Sleep, then say where it ran and with which session (a test tool that reads our own database)."""
    time.sleep(args.seconds)
    return {"thread": threading.get_ident(), "session": id(ctx.session) if ctx.session is not None else None}


@agent_tool(scope="test", timeout=0.2)
def remote_nap_tool(ctx: ToolContext, args: Nap) -> dict:
    """Say where it ran and with which session (a test tool that calls out)."""
    return {"thread": threading.get_ident(), "session": id(ctx.session) if ctx.session is not None else None}


def test_a_local_read_runs_in_the_callers_thread_and_session_and_keeps_its_timeout(settings):
    with session_scope(settings, readonly=True) as session:
        box = Toolbox(
            "test",
            frozenset({"local_nap_tool", "remote_nap_tool"}),
            ToolContext(settings, session=session),
            scopes=frozenset({"test"}),
        )
        here = box.call("local_nap_tool", {"seconds": 0})
        assert here.ok and here.data == {"thread": threading.get_ident(), "session": id(session)}
        # A tool that is no local read still runs on the tool pool, and never sees the caller's session.
        there = box.call("remote_nap_tool", {"seconds": 0})
        assert there.ok and there.data["thread"] != threading.get_ident() and there.data["session"] is None
        # The limit holds for an inline call too: an answer later than it is dropped, as the pool's would be.
        late = box.call("local_nap_tool", {"seconds": 0.3})
        assert not late.ok and late.content == "error: local_nap_tool timed out after 0.2s" and late.data is None
    # Without a session from the caller, the same tool runs on the pool as before.
    pooled = Toolbox("test", frozenset({"local_nap_tool"}), ToolContext(settings), scopes=frozenset({"test"}))
    assert pooled.call("local_nap_tool", {"seconds": 0}).data["thread"] != threading.get_ident()


def test_sla_by_grade_and_assignee_by_region_and_capacity(settings, worker):
    settings.closer_capacity = 1
    account(settings, country="Germany")
    sales_agent(settings, "Robin", region="EMEA")  # each a closer who can sign in, linked to the agent
    sales_agent(settings, "Casey", region="AMER")
    before = dt.datetime.now(dt.UTC)
    first = capture(settings)
    worker.run_until_idle()
    a = item(settings, first)
    assert a.brief["grade"] == "A" and a.queue == "main" and a.assignee == "Robin"  # EMEA account
    assert dt.timedelta(minutes=4) < a.sla_due_at - before < dt.timedelta(minutes=6)  # A: first touch in 5 min
    second = capture(settings, email="kim@acme-software.com", first_name="Kim")
    third = capture(settings, email="lee@acme-software.com", first_name="Lee")
    worker.run_until_idle()
    assert item(settings, second).assignee == "Casey"  # Robin is at capacity: anyone with room
    assert item(settings, third).assignee is None  # everyone is full: the team queue
    weak = capture(
        settings,
        email="pat@tinyshop.example",
        company="Tiny Shop",
        website=None,
        title="Buyer",
        message="just browsing",
        phone=None,
    )
    worker.run_until_idle()
    c = item(settings, weak)
    assert c.brief["grade"] in ("C", "D") and c.sla_due_at - before > dt.timedelta(hours=20)


def test_routing_assigns_only_to_active_users_with_room_else_the_team_queue(settings, worker):
    """An agent with no account, a deactivated user, an evaluator or a full closer never receives a lead; the
    assignee is the linked user's name, not the CRM agent's."""
    from core.models import User
    from crm.sales_team import link_user

    settings.closer_capacity = 1
    account(settings, country="Germany")  # EMEA: the region every agent below covers
    sales_agent(settings, "Nobody Signs In", region="EMEA", account_role=None)
    sales_agent(settings, "Left The Company", region="EMEA", active=False)
    sales_agent(settings, "Eve Evaluator", region="EMEA", account_role="evaluator")
    crm_name = sales_agent(settings, "Sasha Patel (CRM)", region="EMEA", account_role=None)
    user(settings, "closer", "Sasha Patel")
    with session_scope(settings) as session:
        sasha = session.scalar(select(User).where(User.name == "Sasha Patel"))
        with pytest.raises(InvalidInput, match="evaluator; only closers and managers work leads"):
            link_user(session, crm_name, session.scalar(select(User.id).where(User.name == "Eve Evaluator")), actor="t")
        link_user(session, crm_name, sasha.id, actor="test")
    first = capture(settings)
    worker.run_until_idle()
    assert item(settings, first).assignee == "Sasha Patel"  # the user's name: what "mine" and the policy compare
    second = capture(settings, email="kim@acme-software.com", first_name="Kim")
    worker.run_until_idle()
    assert item(settings, second).assignee is None  # Sasha is at capacity, nobody else can act: the team queue
    settings.closer_capacity = 5  # room again, but Sasha leaves
    with session_scope(settings) as session:
        session.scalar(select(User).where(User.name == "Sasha Patel")).active = False
    third = capture(settings, email="lee@acme-software.com", first_name="Lee")
    worker.run_until_idle()
    assert item(settings, third).assignee is None


def test_leads_that_fit_no_pattern_go_to_the_exception_queue(settings, worker, http):
    from tests.factories import auth

    lead_id = capture(
        settings, email="someone@gmail.com", company=None, title=None, website=None, phone=None, message="hello"
    )
    worker.run_until_idle()
    exc = item(settings, lead_id)
    assert exc.queue == "exception" and exc.assignee is None
    closer = auth(settings, "closer")
    listed = http.get("/v1/review-items", params={"queue": "exception"}, headers=closer).json()
    assert [i["id"] for i in listed["items"]] == [exc.id]
    assert http.get("/v1/review-items", params={"queue": "main"}, headers=closer).json()["total"] == 0


def test_service_type_picks_the_specialist_and_unusual_industries_wait_for_a_human(settings, worker):
    from core.models import Account, Deal

    settings.scoring_min_closed_deals = 3
    sales_agent(settings, "Generalist", region="AMER")
    sales_agent(settings, "Collections Pro", region="EMEA", services=["collections"])
    with session_scope(settings) as session:
        history = Account(name="Old Client", industry="Software")
        session.add(history)
        session.add_all([Deal(name=f"d{i}", account=history, stage="closed", outcome="won") for i in range(3)])
    account(settings)  # Acme Software: an industry with history
    specialist = capture(settings, custom={"service": "Collections"})
    worker.run_until_idle()
    assert item(settings, specialist).assignee == "Collections Pro"  # service beats region
    account(settings, name="Ore Mining Co", domain="oremining.example", industry="Mining")
    unusual = capture(
        settings,
        email="ceo@oremining.example",
        company="Ore Mining Co",
        website=None,
        custom={"industry": "Mining", "employees": 300},
    )
    worker.run_until_idle()
    mined = item(settings, unusual)
    assert mined.queue == "exception" and mined.assignee is None


def test_llm_usage_is_visible_per_lead(settings, llm, worker, http):
    import json

    from tests.factories import auth

    llm.add(
        {"content": "ok"},
        {"content": json.dumps({"summary": "s", "opening_line": "", "pain_points": [], "injection_suspected": False})},
    )
    lead_id = capture(settings)
    worker.run_until_idle()
    runs = http.get(f"/v1/leads/{lead_id}/llm-runs", headers=auth(settings, "manager")).json()
    assert len(runs) == 1 and runs[0]["model"] == "scripted-model" and runs[0]["calls"] == 2
    assert runs[0]["prompt_tokens"] == 240 and float(runs[0]["cost_usd"]) > 0
    assert http.get("/v1/leads/999999/llm-runs", headers=auth(settings, "manager")).status_code == 404


def test_the_queue_lists_the_most_urgent_first(settings, worker, http):
    from tests.factories import auth

    later = capture(
        settings,
        email="pat@tinyshop.example",
        company="Tiny Shop",
        website=None,
        title="Buyer",
        message="just browsing",
        phone=None,
    )  # arrives first, a weak lead: due in a day
    account(settings)
    urgent = capture(settings)  # arrives second, grade A: due in five minutes
    worker.run_until_idle()
    listed = http.get("/v1/review-items", params={"status": "pending"}, headers=auth(settings, "closer")).json()
    order = [i["lead_id"] for i in listed["items"]]
    assert order == [urgent, later]
