"""Deals as first-class records over HTTP: a lead becomes a deal, moves through stages whose entry criteria
are checked, closes won or lost with a reason, and closed deals come back as training rows."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

from sqlalchemy import select

from core.db import session_scope
from core.models import Deal, Lead, Product, ReviewItem
from tests.factories import auth, lead_payload, session_token, user


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _price_book(settings) -> None:
    with session_scope(settings) as session:
        session.add_all(
            [Product(name="GTX Basic", price=Decimal("550.00")), Product(name="GTX Pro", price=Decimal("4821.00"))]
        )


def _capture(http, settings, **overrides) -> int:
    r = http.post("/v1/leads", json=lead_payload(**overrides), headers=auth(settings, "integration"))
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_a_lead_becomes_a_deal_with_its_records_and_moves_through_checked_stages(settings, http, worker):
    _price_book(settings)
    closer = _h(session_token(settings, "closer", name="Robin"))
    lead_id = _capture(http, settings)
    worker.run_until_idle()  # brief and first touch drafted

    converted = http.post(f"/v1/leads/{lead_id}/convert", json={"product": "GTX Pro"}, headers=closer)
    assert converted.status_code == 201, converted.text
    deal = converted.json()
    assert converted.headers["Location"] == f"/v1/deals/{deal['id']}"
    with session_scope(settings) as session:
        lead = session.get(Lead, lead_id)
        assert (deal["lead_id"], deal["contact_id"], deal["account_id"]) == (lead.id, lead.contact_id, lead.account_id)
        assert lead.status == "converted"
    assert (deal["stage"], deal["amount"], deal["product"], deal["outcome"]) == (
        "qualified",
        "4821.00",
        "GTX Pro",
        None,
    )

    again = http.post(f"/v1/leads/{lead_id}/convert", json={}, headers=closer)
    assert again.status_code == 409 and f"deal {deal['id']}" in again.json()["message"]

    # Negotiation needs a proposal: refused with what is missing, nothing changes.
    early = http.post(f"/v1/deals/{deal['id']}/stage", json={"stage": "negotiation"}, headers=closer)
    assert early.status_code == 409 and "no proposal" in early.json()["message"]
    assert http.get(f"/v1/deals/{deal['id']}", headers=closer).json()["stage"] == "qualified"

    bad_owner = http.patch(f"/v1/deals/{deal['id']}", json={"owner": "Nobody Here"}, headers=closer)
    assert bad_owner.status_code == 422 and bad_owner.json()["details"]["field"] == "owner"
    user(settings, "closer", name="Casey")
    edited = http.patch(
        f"/v1/deals/{deal['id']}",
        json={"owner": "Casey", "next_step": "Send the proposal", "next_step_due": "2031-01-15", "amount": "5000"},
        headers=closer,
    )
    assert edited.status_code == 200, edited.text
    assert (edited.json()["owner"], edited.json()["amount"], edited.json()["next_step"]) == (
        "Casey",
        "5000.00",
        "Send the proposal",
    )

    proposal = http.post(f"/v1/deals/{deal['id']}/stage", json={"stage": "proposal"}, headers=closer)
    assert proposal.status_code == 200 and proposal.json()["proposal"]  # the proposal graph's thread
    worker.run_until_idle()
    with session_scope(settings) as session:
        covers = session.scalars(select(ReviewItem).where(ReviewItem.source == "proposal")).all()
        assert len(covers) == 1 and covers[0].lead_id == lead_id and covers[0].draft["attachments"]
        assert covers[0].thread_id == proposal.json()["proposal"]
    assert http.post(f"/v1/deals/{deal['id']}/stage", json={"stage": "negotiation"}, headers=closer).status_code == 200

    listed = http.get("/v1/deals", params={"open": True, "owner": "Casey"}, headers=closer).json()
    assert [d["id"] for d in listed["items"]] == [deal["id"]] and listed["total"] == 1


def test_a_lost_deal_needs_a_reason_and_stops_what_was_still_to_go_out(settings, http, worker):
    _price_book(settings)
    closer = _h(session_token(settings, "closer"))
    lead_id = _capture(http, settings)
    worker.run_until_idle()
    deal_id = http.post(f"/v1/leads/{lead_id}/convert", json={}, headers=closer).json()["id"]

    no_reason = http.post(f"/v1/deals/{deal_id}/close", json={"outcome": "lost"}, headers=closer)
    assert no_reason.status_code == 422 and no_reason.json()["details"]["field"] == "reason"
    lost = http.post(
        f"/v1/deals/{deal_id}/close", json={"outcome": "lost", "reason": "Chose a competitor"}, headers=closer
    )
    assert lost.status_code == 200, lost.text
    assert lost.json()["cancelled_drafts"] == 1  # the first touch still waiting for review
    with session_scope(settings) as session:
        first_touch = session.scalars(select(ReviewItem).where(ReviewItem.lead_id == lead_id)).one()
        assert first_touch.status == "cancelled" and "Chose a competitor" in first_touch.result["reason"]
        deal = session.get(Deal, deal_id)
        assert (deal.outcome, deal.stage, deal.lost_reason) == ("lost", "lost", "Chose a competitor")
    reopened = http.post(f"/v1/deals/{deal_id}/stage", json={"stage": "qualified"}, headers=closer)
    assert reopened.status_code == 409


def test_closed_loop_deals_closed_in_revloop_are_the_next_models_training_rows(settings, http, subprocess_env):
    """150 leads captured, converted and closed through the API -> train -> the model's rows include them."""
    _price_book(settings)
    closer = _h(session_token(settings, "closer"))
    won = 0
    for n in range(150):
        # Who wins follows what the lead said at capture (its source), so the model has something to learn.
        source = "referral" if n % 3 == 0 else "web_form"
        lead_id = _capture(
            http,
            settings,
            email=f"buyer{n}@company{n}.example",
            company=f"Company {n}",
            website=None,
            source=source,
            custom={"totalvisits": n % 7},
        )
        deal_id = http.post(f"/v1/leads/{lead_id}/convert", json={"product": "GTX Basic"}, headers=closer).json()["id"]
        wins = source == "referral" if n % 10 else source != "referral"  # a little noise
        body = {"outcome": "won"} if wins else {"outcome": "lost", "reason": "No budget"}
        closed = http.post(f"/v1/deals/{deal_id}/close", json=body, headers=closer)
        assert closed.status_code == 200, closed.text
        won += wins
    trained = subprocess.run(
        [sys.executable, "-m", "api.cli", "scoring", "train"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr
    # What a manager running the command reads (the --json form carries the same rows_by_origin).
    assert f"training rows: 150 from deals closed in revloop, 0 from imports ({won} won, {150 - won} lost)" in (
        trained.stdout
    )
    by_outcome = {
        o: http.get("/v1/deals", params={"stage": o}, headers=closer).json()["total"] for o in ("won", "lost")
    }
    assert by_outcome == {"won": won, "lost": 150 - won}  # the pipeline filters closed deals by their outcome
    models = http.get("/v1/scoring/models", headers=_h(session_token(settings, "manager"))).json()
    assert models[0]["report"]["rows_by_origin"] == {"revloop": 150, "imported": 0}  # what the model page shows
    assert (models[0]["n_won"], models[0]["n_lost"]) == (won, 150 - won)


def test_a_deal_for_a_contact_on_record_has_no_lead_and_is_never_a_training_row(settings, http):
    from core.models import Account, Contact
    from scoring.registry import training_rows_by_origin

    _price_book(settings)
    with session_scope(settings) as session:  # an existing customer, on record
        account = Account(name="Initech", domain="initech.example")
        session.add(account)
        session.flush()
        contact = Contact(email="bill@initech.example", first_name="Bill", account_id=account.id)
        session.add(contact)
        session.flush()
        contact_id, account_id = contact.id, account.id
    closer = _h(session_token(settings, "closer", name="Robin"))
    missing = http.post("/v1/deals", json={"contact_id": 999_999}, headers=closer)
    assert missing.status_code == 422 and missing.json()["details"] == {"field": "contact_id"}
    made = http.post("/v1/deals", json={"contact_id": contact_id, "product": "GTX Basic"}, headers=closer)
    assert made.status_code == 201, made.text
    deal = made.json()
    assert (deal["contact_id"], deal["account_id"], deal["lead_id"], deal["owner"]) == (
        contact_id,
        account_id,
        None,
        "Robin",
    )
    assert (deal["name"], deal["stage"], deal["amount"]) == ("Initech - GTX Basic", "qualified", "550.00")
    lost = http.post(f"/v1/deals/{deal['id']}/close", json={"outcome": "lost", "reason": "Budget cut"}, headers=closer)
    assert lost.status_code == 200
    with session_scope(settings) as session:
        assert training_rows_by_origin(session) == {"revloop": 0, "imported": 0}  # no lead: nothing to learn from
