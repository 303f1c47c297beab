"""Similar won cases with the WordLlama embedding (issue 17): industry and size weigh in, "no similar case" is an
answer (the brief then names none), won deals carry their account's firmographics, and a knowledge base persisted
with the old hashed n-gram vectors is re-embedded (`revloop kb rebuild`, with a progress bar)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import chromadb
from sqlalchemy import select

from agents.runtime import lead_worker
from api.demo import CASE_STUDIES
from core.db import session_scope
from core.models import Deal, ReviewItem
from core.schemas import LeadCreate
from crm.capture import capture_lead
from review.context import flags_in_words
from tests.evals.test_evals import _in_process_cli
from tests.factories import account, lead_payload
from tools import kb
from tools.kb_embedding import HashedNgramEmbedding


def seed_cases(settings) -> None:
    for doc_id, title, (industry, employees), body in CASE_STUDIES:
        kb.add(
            settings, doc_id=doc_id, kind="case_study", title=title, text=body, industry=industry, employees=employees
        )


def brief_for(settings, worker, **fields) -> dict:
    with session_scope(settings) as session:
        lead, _ = capture_lead(session, LeadCreate.model_validate(lead_payload(**fields)), actor="test")
    worker.run_until_idle()
    with session_scope(settings) as session:
        return session.scalars(select(ReviewItem).where(ReviewItem.lead_id == lead.id)).one().brief


def test_an_unrelated_lead_gets_no_similar_case_and_a_related_one_its_industry_s(settings, worker):
    seed_cases(settings)
    pizzeria = brief_for(
        settings,
        worker,
        email="gino@bellanapoli-pizza.it",
        company="Bella Napoli Pizzeria",
        title="Owner",
        website=None,
        message="We need online ordering for our pizza restaurant",
    )
    assert pizzeria["similar_case"] is None
    assert "Most similar won case" not in pizzeria["summary"]

    account(settings, name="Riverside Clinic", domain="riverside-clinic.org", industry="Healthcare", employees=60)
    clinic = brief_for(
        settings,
        worker,
        email="finance@riverside-clinic.org",
        company="Riverside Clinic",
        title="Finance Director",
        website=None,
        message="Patients settle their bills weeks late and we need polite reminders",
    )
    case = clinic["similar_case"]
    assert case["record"] == "cobalt-collections", case
    assert "same industry (healthcare)" in case["why"] and "similar size (85 employees)" in case["why"]
    assert "Most similar won case: Cobalt Health: collections without awkward calls" in clinic["summary"]


def test_industry_and_size_rank_cases_with_the_same_text(settings):
    text = "Automated reminders cut late invoices and days sales outstanding."
    kb.add(settings, doc_id="retail", kind="case_study", title="Retail", text=text, industry="Retail", employees=5000)
    kb.add(settings, doc_id="health", kind="case_study", title="Health", text=text, industry="Healthcare", employees=80)
    query = "Our invoices are paid late and chasing them takes hours"
    assert [m["record"] for m in kb.similar_cases(settings, query, industry="healthcare", employees=70)][0] == "health"
    assert [m["record"] for m in kb.similar_cases(settings, query, industry="Retail", employees=6000)][0] == "retail"
    assert kb.similar_cases(settings, "I would like to learn to play the guitar") == []


def test_won_deals_carry_their_account_s_industry_and_size(settings):
    acme = account(settings)  # Acme Software, Software, 250 employees
    with session_scope(settings) as session:
        session.add(
            Deal(
                name="Acme Software - lead follow-up automation",
                account_id=acme,
                stage="closed",
                outcome="won",
                amount=Decimal("9000"),
                expected_close=dt.date(2026, 1, 1),
            )
        )
    assert kb.index_won_deals(settings) == 1
    [match] = kb.similar_cases(
        settings, "A software company wants lead follow-up automation", industry="Software", employees=300
    )
    assert (match["industry"], match["employees"]) == ("software", 250)
    assert "same industry (software)" in match["why"]


def test_a_knowledge_base_of_the_old_vectors_is_re_embedded(settings, subprocess_env):
    old = chromadb.PersistentClient(
        path=str(settings.var_dir / "kb"), settings=chromadb.Settings(anonymized_telemetry=False)
    ).get_or_create_collection("revloop-kb", embedding_function=HashedNgramEmbedding())
    old.upsert(
        ids=[doc_id for doc_id, *_ in CASE_STUDIES],
        documents=[body for *_, body in CASE_STUDIES],
        metadatas=[{"kind": "case_study", "title": title, "record": doc_id} for doc_id, title, *_ in CASE_STUDIES],
    )
    assert kb.stale_collections(settings) == {"revloop-kb": 3}
    done = _in_process_cli(settings, subprocess_env)(["kb", "rebuild"])
    assert done.exit_code == 0, done.output
    assert f"re-embedded 3 document(s) with {kb.COLLECTION}; 3 in total" in done.stdout
    assert "re-embedding the knowledge base" in done.stderr and "3/3" in done.stderr  # the progress bar
    assert kb.stale_collections(settings) == {}
    [best] = kb.search(settings, "clients pay their bills late", limit=1)
    assert best["record"] == "cobalt-collections"
    assert kb.rebuild_stale(settings) == 0  # nothing left to do


def test_a_knowledge_base_that_is_down_leaves_the_lead_drafted_and_flagged(settings, worker, caplog):
    """A chroma server that does not answer (REVLOOP_KB_URL): the lead still gets its brief and draft, without a
    similar case, and the brief says which look-up failed, in words for the closer; the worker's log names it."""
    from tests.conftest import free_port

    down = settings.model_copy(update={"kb_url": f"http://127.0.0.1:{free_port()}"})
    with lead_worker(down) as down_worker, caplog.at_level("WARNING", logger="revloop.tools"):
        brief = brief_for(
            down,
            down_worker,
            email="finance@riverside-clinic.org",
            company="Riverside Clinic",
            title="Finance Director",
            message="Patients settle their bills weeks late and we need polite reminders",
        )
    assert "tool_calls_failed:similar_won_cases" in brief["flags"]
    assert brief["similar_case"] is None and "Most similar won case" not in brief["summary"]
    assert any("tool similar_won_cases failed" in r.getMessage() for r in caplog.records)
    with session_scope(settings) as session:
        item = session.scalars(select(ReviewItem)).one()
        assert item.draft["body"]  # drafted all the same
        words = {f.code: f.words for f in flags_in_words(item)}
    assert "could not answer (similar_won_cases" in words["tool_calls_failed:similar_won_cases"]

    # With the knowledge base answering again, a lead's brief has no such flag.
    assert (
        "tool_calls_failed:similar_won_cases" not in brief_for(settings, worker, email="ops@other-clinic.org")["flags"]
    )
