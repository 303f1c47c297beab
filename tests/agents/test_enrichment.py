"""Enrichment: company directory (Fortune 1000), fuzzy matching, TTL cache, disposable mail, knowledge base."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from core.db import session_scope
from core.models import EnrichmentCache, ReviewItem
from core.schemas import LeadCreate
from crm.capture import capture_lead
from crm.imports import import_companies
from tests.factories import lead_payload
from tools import kb
from tools.registry import Toolbox, ToolContext

FORTUNE = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "fortune1000-firmographics" / "fortune1000.csv"


def lookup(settings, **query):
    box = Toolbox("test", frozenset({"company_lookup"}), ToolContext(settings), scopes=frozenset({"read_directory"}))
    return box.call("company_lookup", query).data


def test_fortune_1000_directory_matches_by_fuzzy_name_and_domain_with_a_cache(settings, tmp_path):
    with session_scope(settings) as session:
        report = import_companies(session, FORTUNE, "fortune1000")
    assert report.created == {"companies": 1000} and not report.rejected
    exxon = lookup(settings, name="ExxonMobil Corporation")
    assert exxon["found"] and exxon["name"] == "Exxon Mobil" and exxon["match"] == "name"
    assert (exxon["sector"], exxon["employees"], exxon["region"]) == ("Energy", 71200, "TX")
    assert not lookup(settings, name="Tiny Bakery of Nowhere")["found"]
    assert lookup(settings, name="ExxonMobil Corporation")["cached"] is True
    with session_scope(settings) as session:
        assert session.query(EnrichmentCache).count() == 2

    generic = tmp_path / "directory.csv"
    generic.write_text(
        "name,domain,sector,employees\nAcme Robotics,https://www.acme-robotics.example/,Industrials,"
        "450\n,nameless.example,Retail,10\n"
    )
    with session_scope(settings) as session:
        report = import_companies(session, generic, "generic")
    assert report.created == {"companies": 1} and report.rejected[0]["reason"] == "company name is empty"
    by_domain = lookup(settings, domain="acme-robotics.example")
    assert by_domain["match"] == "domain" and by_domain["employees"] == 450
    assert not lookup(settings, domain="gmail.com")["found"]  # free-mail domains identify nobody


def test_directory_cli_is_idempotent(settings, subprocess_env):
    run = [sys.executable, "-m", "api.cli", "import", "companies", str(FORTUNE), "--format", "fortune1000"]
    first = subprocess.run(run, env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0 and "created 1000 companies" in first.stdout
    again = subprocess.run(run, env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert "unchanged 1000 companies" in again.stdout


def test_disposable_addresses_are_flagged_and_go_to_exceptions(settings, worker):
    with session_scope(settings) as session:
        lead, _ = capture_lead(
            session, LeadCreate.model_validate(lead_payload(email="x9@mailinator.com")), actor="test"
        )
    worker.run_until_idle()
    with session_scope(settings) as session:
        item = session.scalars(select(ReviewItem).where(ReviewItem.lead_id == lead.id)).one()
    assert "disposable_email" in item.brief["flags"] and item.queue == "exception"


def test_the_brief_names_the_most_similar_won_case(settings, worker, subprocess_env):
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "kb",
            "add",
            "--title",
            "Cobalt: collections done right",
            "--text",
            "A healthcare provider reduced late invoices and overdue payments with automated collection reminders",
        ],
        env=subprocess_env,
        capture_output=True,
        text=True,
    )
    assert added.returncode == 0, added.stderr
    kb.add(
        settings,
        doc_id="farm",
        kind="case_study",
        title="Farm co-op",
        text="An agricultural cooperative sells tractors",
    )
    with session_scope(settings) as session:
        lead, _ = capture_lead(
            session,
            LeadCreate.model_validate(
                lead_payload(message="Our invoices are paid late and chasing overdue payments takes hours")
            ),
            actor="test",
        )
    worker.run_until_idle()
    with session_scope(settings) as session:
        item = session.scalars(select(ReviewItem).where(ReviewItem.lead_id == lead.id)).one()
    case = item.brief["similar_case"]
    assert case["title"] == "Cobalt: collections done right" and case["similarity"] >= 0.15
    assert "Most similar won case: Cobalt: collections done right" in item.brief["summary"]
    found = subprocess.run(
        [sys.executable, "-m", "api.cli", "kb", "search", "tractors for farms"],
        env=subprocess_env,
        capture_output=True,
        text=True,
    )
    assert found.stdout.splitlines()[0].endswith("Farm co-op  (farm)")


def test_directory_data_fills_the_account_and_reaches_the_rubric_with_its_source(settings, worker):
    from core.models import Account, AuditEvent, Lead

    with session_scope(settings) as session:
        import_companies(session, FORTUNE, "fortune1000")
        lead, _ = capture_lead(
            session,
            LeadCreate.model_validate(
                lead_payload(email="pat@exxonmobil.com", company="Exxon Mobil", website="https://exxonmobil.com")
            ),
            actor="test",
        )
        lead_id = lead.id
    with session_scope(settings) as session:  # capture made a bare account: name and domain, nothing else
        account = session.get(Lead, lead_id).account
        assert account is not None and account.industry is None and account.employees is None
    worker.run_until_idle()
    with session_scope(settings) as session:
        lead = session.get(Lead, lead_id)
        account = session.get(Account, lead.account_id)
        assert (account.industry, account.employees, account.country) == ("Petroleum Refining", 71200, "TX")
        company_record = account.field_sources["industry"]
        assert company_record.startswith("company:") and company_record.endswith("(fortune1000)")
        criteria = {c["id"]: c for c in lead.brief["criteria"]}
        industry, size = criteria["industry"], criteria["company_size"]
        assert "unknown" not in industry["evidence"].lower() and "petroleum refining" in industry["evidence"].lower()
        assert industry["source"] == company_record  # the brief names where the fact came from
        assert size["source"] == company_record and not size["met"]  # 71,200 employees: outside 10-2,000
        assert session.scalars(select(AuditEvent).where(AuditEvent.action == "account.enriched")).one()


def test_typed_in_account_values_are_never_overwritten_by_the_directory(settings, worker):
    from core.models import Account, Lead

    with session_scope(settings) as session:
        import_companies(session, FORTUNE, "fortune1000")
        session.add(Account(name="Exxon Mobil", domain="exxonmobil.com", industry="Energy services"))
        session.flush()
        lead, _ = capture_lead(
            session,
            LeadCreate.model_validate(lead_payload(email="sam@exxonmobil.com", company="Exxon Mobil")),
            actor="test",
        )
        lead_id = lead.id
    worker.run_until_idle()
    with session_scope(settings) as session:
        account = session.get(Account, session.get(Lead, lead_id).account_id)
        assert account.industry == "Energy services" and account.employees == 71200  # only the empty field
        assert set(account.field_sources) == {"employees", "country"}
