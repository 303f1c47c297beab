"""Sales agents are linked to the users who work their leads: the API, the CLI, and a CRM import that links
agents whose name matches an active closer or manager. Routing's side is in tests/agents/test_tools_and_routing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from core.db import session_scope
from core.models import AuditEvent, SalesAgent, User
from crm.imports import import_crm
from tests.factories import auth, sales_agent, user

MAVEN = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "maven-crm-sales-opportunities"


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def _user_id(settings, name: str) -> int:
    with session_scope(settings) as session:
        return session.scalar(select(User.id).where(User.name == name))


def _link_events(settings) -> list[tuple[str, str, dict, dict]]:
    with session_scope(settings) as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.entity_type == "sales_agent").order_by(AuditEvent.id)
        ).all()
        return [(e.action, e.actor, e.before, e.after) for e in events if e.action.startswith("sales_agent.")]


def test_a_manager_links_and_unlinks_an_agent_over_the_api(settings, http):
    agent = sales_agent(settings, "Sasha Patel", region="APAC", account_role=None)
    user(settings, "closer", "Sasha P")
    user(settings, "evaluator", "Eve Evaluator")
    manager = auth(settings, "manager")
    before = http.get("/v1/sales-agents", headers=manager).json()
    assert [(a["name"], a["user_name"], a["routable"]) for a in before] == [("Sasha Patel", None, False)]

    sasha = _user_id(settings, "Sasha P")
    linked = http.post(f"/v1/sales-agents/{agent}/link", json={"user_id": sasha}, headers=manager)
    assert linked.status_code == 200, linked.text
    body = linked.json()
    assert (body["user_id"], body["user_name"], body["user_email"], body["routable"]) == (
        sasha,
        "Sasha P",
        "sasha.p@revloop.test",
        True,
    )
    same = http.post(f"/v1/sales-agents/{agent}/link", json={"user_id": sasha}, headers=manager)
    assert same.status_code == 200  # nothing changed: no second audit event
    unlinked = http.post(f"/v1/sales-agents/{agent}/link", json={"user_id": None}, headers=manager)
    assert unlinked.status_code == 200 and unlinked.json()["user_name"] is None
    events = _link_events(settings)
    assert [(action, before, after["user"]) for action, _, before, after in events] == [
        ("sales_agent.linked", {"user_id": None, "user": None}, "Sasha P"),
        ("sales_agent.unlinked", {"user_id": sasha, "user": "Sasha P"}, None),
    ]
    assert all(actor.startswith("manager:") for _, actor, _, _ in events)

    for body, status, says in (
        ({"user_id": _user_id(settings, "Eve Evaluator")}, 422, "only closers and managers work leads"),
        ({"user_id": 999999}, 404, "user 999999 not found"),
        ({"user_id": 0}, 422, None),
        ({}, 422, None),
        ({"user_id": sasha, "name": "x"}, 422, None),
    ):
        r = http.post(f"/v1/sales-agents/{agent}/link", json=body, headers=manager)
        assert r.status_code == status, (body, r.text)
        assert "user_id" in r.text or "name" in r.text, (body, r.text)  # the answer names the field
        if says:
            assert says in r.json()["message"]
    with session_scope(settings) as session:
        session.scalar(select(User).where(User.name == "Sasha P")).active = False
    gone = http.post(f"/v1/sales-agents/{agent}/link", json={"user_id": sasha}, headers=manager)
    assert gone.status_code == 422 and "deactivated" in gone.json()["message"]
    assert http.post("/v1/sales-agents/999999/link", json={"user_id": None}, headers=manager).status_code == 404
    for role in ("closer", "evaluator", "integration"):
        r = http.post(f"/v1/sales-agents/{agent}/link", json={"user_id": None}, headers=auth(settings, role))
        assert r.status_code == 403, role


def test_cli_links_by_email_or_name_and_lists_who_has_no_account(settings, subprocess_env):
    sales_agent(settings, "Casey Jordan", region="AMER", account_role=None)
    sales_agent(settings, "Robin Lee", region="EMEA", account_role=None)
    user(settings, "closer", "Casey")
    listed = cli(["sales-agents", "list"], subprocess_env)
    assert listed.returncode == 0, listed.stderr
    assert all("no account" in line for line in listed.stdout.splitlines() if line.startswith(("Casey", "Robin")))
    assert "revloop users link" in listed.stdout

    by_email = cli(["users", "link", "casey@revloop.test", "casey jordan"], subprocess_env)
    assert by_email.returncode == 0, by_email.stderr
    assert by_email.stdout.strip() == "sales agent Casey Jordan -> Casey <casey@revloop.test>"
    user(settings, "manager", "Robin Manager")
    by_name = cli(["users", "link", "robin manager", "Robin Lee"], subprocess_env)
    assert by_name.returncode == 0 and "Robin Lee -> Robin Manager" in by_name.stdout
    listed = cli(["sales-agents", "list"], subprocess_env).stdout.splitlines()
    casey = next(line for line in listed if line.startswith("Casey Jordan"))
    assert casey.split()[2] == "Casey" and "no account" not in casey

    unknown_user = cli(["users", "link", "ghost@revloop.test", "Casey Jordan"], subprocess_env)
    assert unknown_user.returncode == 2 and "no user with the email or name 'ghost@revloop.test'" in (
        unknown_user.stderr
    )
    unknown_agent = cli(["users", "link", "casey@revloop.test", "Nobody"], subprocess_env)
    assert unknown_agent.returncode == 2 and "no sales agent named 'Nobody'" in unknown_agent.stderr
    user(settings, "evaluator", "Eve")
    evaluator = cli(["users", "link", "Eve", "Casey Jordan"], subprocess_env)
    assert evaluator.returncode == 2 and "only closers and managers work leads" in evaluator.stderr
    unlinked = cli(["users", "unlink", "Robin Lee"], subprocess_env)
    assert unlinked.returncode == 0 and "no account" in unlinked.stdout
    assert [(action, actor) for action, actor, _, _ in _link_events(settings)] == [
        ("sales_agent.linked", "cli"),
        ("sales_agent.linked", "cli"),
        ("sales_agent.unlinked", "cli"),
    ]


def test_a_crm_import_links_agents_who_are_active_closers_or_managers(settings, tmp_path):
    folder = tmp_path / "maven"
    shutil.copytree(MAVEN, folder)
    pipeline = folder / "sales_pipeline.csv"
    pipeline.write_text("\n".join(pipeline.read_text().splitlines()[:3]) + "\n")  # a few deals are enough
    user(settings, "closer", "moses frase")  # the same name in another case
    user(settings, "manager", "Anna Snelling")
    user(settings, "evaluator", "Darcel Schlecht")  # cannot work leads
    user(settings, "closer", "Cecily Lampkin")
    with session_scope(settings) as session:
        session.scalar(select(User).where(User.name == "Cecily Lampkin")).active = False  # left the company
        import_crm(session, folder, "maven")
    with session_scope(settings) as session:
        links = dict(
            session.execute(
                select(SalesAgent.name, User.name)
                .join(User, User.id == SalesAgent.user_id)
                .where(SalesAgent.user_id.is_not(None))
            ).all()
        )
        assert links == {"Moses Frase": "moses frase", "Anna Snelling": "Anna Snelling"}
        assert session.scalar(select(SalesAgent.user_id).where(SalesAgent.name == "Versie Hillebrand")) is None
    assert {(after["user"], actor) for action, actor, _, after in _link_events(settings)} == {
        ("moses frase", "import"),
        ("Anna Snelling", "import"),
    }
