"""Fuzzy company dedupe at capture (issue 17): the domain first, then the normalised name through an indexed
column, then the WordLlama embedding over the few accounts sharing the name's first word; a lead from a company
domain never joins an account with another domain. Real HTTP: POST /v1/leads."""

from __future__ import annotations

from sqlalchemy import select, text

from core.db import make_engine, session_scope
from core.migrate import upgrade
from core.models import Account, AuditEvent, Lead
from core.settings import Settings
from tests.factories import account, auth, lead_payload, pending_item


def capture(settings, http, **fields) -> Lead:
    payload = lead_payload(website=None, phone=None, **fields)
    r = http.post("/v1/leads", json=payload, headers=auth(settings, "integration"))
    assert r.status_code == 202, r.text
    with session_scope(settings) as session:
        lead = session.get(Lead, r.json()["id"])
        session.expunge(lead)
        return lead


def matches(settings) -> list[dict]:
    with session_scope(settings) as session:
        return [
            e.after for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "account.matched_by_name"))
        ]


def test_capture_finds_the_account_a_company_name_means(settings, http):
    acme = account(settings, name="Acme Corp.", domain="acme.com")
    delta = account(settings, name="Delta Air Lines", domain="delta.com", industry="Airlines", employees=90000)
    globex = account(settings, name="Globex", domain=None, industry="Software", employees=300)  # imported, no domain

    # free mail: the normalised name finds "Acme Corp." (suffixes, case and punctuation aside)
    assert capture(settings, http, email="jane@gmail.com", company="ACME Corporation Ltd").account_id == acme
    # a spelling the normalised name does not catch: the embedding does
    assert capture(settings, http, email="bob@yahoo.com", company="Delta Airlines").account_id == delta
    # shares a word, another company: no match
    assert capture(settings, http, email="carol@outlook.com", company="Delta Dental").account_id is None
    # a company domain with an account that has none: joined by name
    assert capture(settings, http, email="ann@globex-corp.com", company="Globex Corporation").account_id == globex
    assert [(m["company"], m["account"], m["match"]) for m in matches(settings)] == [
        ("ACME Corporation Ltd", "Acme Corp.", "name"),
        ("Delta Airlines", "Delta Air Lines", "fuzzy name"),
        ("Globex Corporation", "Globex", "name"),
    ]
    assert matches(settings)[1]["similarity"] >= 0.85


def test_a_lead_from_another_company_domain_gets_its_own_account(settings, http):
    acme = account(settings, name="Acme Corp.", domain="acme.com")
    lead = capture(settings, http, email="dan@acme-plumbing.com", company="Acme Corp")
    with session_scope(settings) as session:
        own = session.get(Account, lead.account_id)
        assert own.id != acme and (own.domain, own.name_key) == ("acme-plumbing.com", "acme")
    assert matches(settings) == []


def test_0021_backfills_the_name_key_of_existing_accounts(scratch_database_url):
    settings = Settings(database_url=scratch_database_url)
    upgrade(settings, "0020")
    engine = make_engine(scratch_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO accounts (name, domain, field_sources, created_at, updated_at) VALUES"
                    " ('ACME Corporation Ltd', 'acme.com', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),"
                    " ('Tallis & Reed Consulting', NULL, '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
        upgrade(settings)
        with engine.connect() as conn:
            keys = conn.execute(text("SELECT name_key FROM accounts ORDER BY id")).scalars().all()
        assert keys == ["acme", "tallis and reed consulting"]
    finally:
        engine.dispose()


def test_a_free_mail_lead_matched_by_name_only_is_flagged_in_its_brief_in_words(settings, http, worker):
    account(settings, name="Acme Corp.", domain="acme.com", industry="Software", employees=250)
    by_name = pending_item(settings, http, worker, email="jane@gmail.com", company="ACME Corporation Ltd", website=None)
    assert "account_matched_by_name" in by_name["brief"]["flags"]
    [words] = [f["words"] for f in by_name["flags_in_words"] if f["code"] == "account_matched_by_name"]
    assert words.startswith("Account matched by company name only (personal email address")
    assert "check before trusting its history" in words
    shown = http.get(f"/v1/review-items/{by_name['id']}", headers=auth(settings, "closer")).json()
    assert words in [f["words"] for f in shown["flags_in_words"]]
    # The same company from its own domain is linked by the domain: nothing to check, no flag.
    by_domain = pending_item(settings, http, worker, email="bob@acme.com", company="Acme Corp.", website=None)
    assert "account_matched_by_name" not in by_domain["brief"]["flags"]
