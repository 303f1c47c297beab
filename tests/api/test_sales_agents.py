"""Sales agents' services are configurable (API, CLI, the Sales team page), and routing follows them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import select

from core.db import session_scope
from core.models import AuditEvent, Deal, SalesAgent
from tests.factories import account, auth, captured_lead, review_item_for, sales_agent
from tests.review.test_app import _open, _signed_in


def agents(settings) -> dict[str, int]:
    """Robin in EMEA, Casey in AMER, no services yet, each a closer who can sign in (linked); Casey holds one open
    deal and one lost one."""
    ids = {
        "robin": sales_agent(settings, "Robin Ortiz", region="EMEA"),
        "casey": sales_agent(settings, "Casey Jordan", region="AMER"),
    }
    with session_scope(settings) as session:
        robin, casey = session.get(SalesAgent, ids["robin"]), session.get(SalesAgent, ids["casey"])
        robin.manager = casey.manager = "Morgan Lee"
        session.add_all(
            [
                Deal(name="open one", stage="engaging", sales_agent_id=casey.id),
                Deal(name="lost one", stage="closed", outcome="lost", sales_agent_id=casey.id),
                Deal(name="converted", stage="qualified", owner="Robin Ortiz"),  # a revloop deal: by owner
            ]
        )
        return {"robin": robin.id, "casey": casey.id}


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_manager_sets_services_and_a_lead_of_that_service_goes_to_that_agent(settings, http, worker):
    ids = agents(settings)
    manager = auth(settings, "manager")
    listed = http.get("/v1/sales-agents", headers=manager)
    assert listed.status_code == 200
    assert [(a["name"], a["services"], a["open_deals"]) for a in listed.json()] == [
        ("Casey Jordan", [], 1),
        ("Robin Ortiz", [], 1),
    ]
    r = http.put(
        f"/v1/sales-agents/{ids['casey']}/services",
        json={"services": ["Collections", "  onboarding ", "collections"]},
        headers=manager,
    )
    assert r.status_code == 200, r.text
    assert r.json()["services"] == ["collections", "onboarding"]  # trimmed, lower-case, each once
    with session_scope(settings) as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "sales_agent.services_changed"))
        assert (event.entity_id, event.before, event.after) == (
            str(ids["casey"]),
            {"services": []},
            {"services": ["collections", "onboarding"]},
        )
        assert event.actor.startswith("manager:")
    same = http.put(
        f"/v1/sales-agents/{ids['casey']}/services", json={"services": ["collections", "onboarding"]}, headers=manager
    )
    assert same.status_code == 200
    with session_scope(settings) as session:  # nothing changed: no second event
        assert (
            len(session.scalars(select(AuditEvent).where(AuditEvent.action == "sales_agent.services_changed")).all())
            == 1
        )

    account(settings, country="Germany")  # an EMEA account: by region alone the lead would go to Robin
    regional = captured_lead(settings)
    specialist = captured_lead(
        settings, email="kim@acme-software.com", first_name="Kim", custom={"service": "Collections"}
    )
    worker.run_until_idle()
    assert review_item_for(settings, regional).assignee == "Robin Ortiz"
    assert review_item_for(settings, specialist).assignee == "Casey Jordan"  # the service beats the region

    cleared = http.put(f"/v1/sales-agents/{ids['casey']}/services", json={"services": []}, headers=manager)
    assert cleared.status_code == 200 and cleared.json()["services"] == []


def test_closers_may_not_and_bad_input_names_the_field(settings, http):
    ids = agents(settings)
    closer, manager = auth(settings, "closer"), auth(settings, "manager")
    for role in ("closer", "evaluator", "integration"):
        assert http.get("/v1/sales-agents", headers=auth(settings, role)).status_code == 403, role
    assert (
        http.put(f"/v1/sales-agents/{ids['robin']}/services", json={"services": ["x"]}, headers=closer).status_code
        == 403
    )
    assert http.get("/v1/sales-agents").status_code == 401
    assert http.get("/v1/sales-agents", headers=auth(settings, "admin")).status_code == 200

    missing = http.put("/v1/sales-agents/999999/services", json={"services": ["x"]}, headers=manager)
    assert missing.status_code == 404 and "sales agent 999999 not found" in missing.json()["message"]

    for body, field in (
        ({"services": ["collections", "  "]}, "services"),
        ({"services": "collections"}, "services"),
        ({"services": [f"s{i}" for i in range(21)]}, "services"),
        ({"services": ["x" * 101]}, "services"),
        ({}, "services"),
        ({"services": [], "skills": ["x"]}, "skills"),
    ):
        r = http.put(f"/v1/sales-agents/{ids['robin']}/services", json=body, headers=manager)
        assert r.status_code == 422, body
        assert field in r.json()["fields"], (body, r.json())
    blank = http.put(f"/v1/sales-agents/{ids['robin']}/services", json={"services": ["a", " "]}, headers=manager)
    assert "item 1 is blank" in blank.json()["fields"]["services"]
    with session_scope(settings) as session:
        assert session.get(SalesAgent, ids["robin"]).services == []


def test_cli_lists_agents_and_sets_services(settings, subprocess_env):
    agents(settings)
    done = cli(
        ["sales-agents", "set-services", "casey jordan", "--service", "Collections", "--service", "Onboarding"],
        subprocess_env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Casey Jordan: collections, onboarding"
    listed = cli(["sales-agents", "list"], subprocess_env)
    assert listed.returncode == 0, listed.stderr
    casey = next(line for line in listed.stdout.splitlines() if line.startswith("Casey Jordan"))
    assert casey.split()[-2:] == ["collections,", "onboarding"] and " AMER " in casey
    as_json = json.loads(cli(["sales-agents", "list", "--json"], subprocess_env).stdout)
    assert {a["name"]: a["services"] for a in as_json} == {
        "Casey Jordan": ["collections", "onboarding"],
        "Robin Ortiz": [],
    }
    cleared = cli(["sales-agents", "set-services", "Casey Jordan", "--clear"], subprocess_env)
    assert cleared.returncode == 0 and cleared.stdout.strip() == "Casey Jordan: no services"
    unknown = cli(["sales-agents", "set-services", "Nobody", "--service", "x"], subprocess_env)
    assert unknown.returncode == 2 and "no sales agent named 'Nobody'" in unknown.stderr
    nothing = cli(["sales-agents", "set-services", "Robin Ortiz"], subprocess_env)
    assert nothing.returncode == 2 and "give at least one --service" in nothing.stderr
    with session_scope(settings) as session:
        assert [
            e.actor
            for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "sales_agent.services_changed"))
        ] == ["cli", "cli"]


def test_managers_edit_services_on_the_sales_team_page(settings, live_server, http):
    ids = agents(settings)
    at = _open(_signed_in(live_server, settings, "manager"), "team")
    assert at.title[0].value == "Sales team"
    table = at.dataframe[0].value
    assert list(table["name"]) == ["Casey Jordan", "Robin Ortiz"] and list(table["open deals"]) == [1, 1]
    at.selectbox(key="team_agent").select("Robin Ortiz")
    at.run()
    at.multiselect(key=f"team_services_{ids['robin']}").set_value(["onboarding", "collections"])
    at.button(key=f"team_save_{ids['robin']}").click()
    at.run()
    assert not at.exception, at.exception
    assert any("Saved Robin Ortiz: onboarding, collections." in s.value for s in at.success)
    assert list(at.dataframe[0].value["services"]) == ["", "onboarding, collections"]
    listed = http.get("/v1/sales-agents", headers=auth(settings, "manager")).json()
    assert {a["name"]: a["services"] for a in listed}["Robin Ortiz"] == ["onboarding", "collections"]


@pytest.mark.parametrize("role", ["closer", "evaluator"])
def test_the_sales_team_page_is_for_managers_only(settings, live_server, role):
    at = _signed_in(live_server, settings, role)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("ui/team.py")
