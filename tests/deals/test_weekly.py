"""The weekly momentum review over HTTP: deals made and worked through the API, then
GET /v1/reviews/weekly read as a manager walks it (changed, pipeline, stalled, unpaid invoices)."""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal

from core import webhooks
from core.db import session_scope
from core.models import Product, utcnow
from tests.factories import lead_payload, session_token, token, user

PAYMENTS_SECRET = "whsec-weekly-payments"


def _h(bearer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer}"}


def _price_book(settings) -> None:
    # No API writes the price book (it comes with the demo data or an import).
    with session_scope(settings) as session:
        session.add_all(
            [Product(name="GTX Basic", price=Decimal("550.00")), Product(name="GTX Pro", price=Decimal("4821.00"))]
        )


def _deal(http, settings, seller: dict[str, str], n: int, **convert) -> dict:
    """A lead captured over HTTP and converted into a deal."""
    lead = http.post(
        "/v1/leads",
        json=lead_payload(email=f"buyer{n}@company{n}.example", company=f"Company {n}", website=None),
        headers=_h(token(settings, "integration", f"form-{n}")),
    )
    assert lead.status_code == 202, lead.text
    deal = http.post(f"/v1/leads/{lead.json()['id']}/convert", json=convert, headers=seller)
    assert deal.status_code == 201, deal.text
    return deal.json()


def _weekly(http, headers: dict[str, str], as_of: dt.date | None = None) -> dict:
    r = http.get("/v1/reviews/weekly", params={"as_of": as_of.isoformat()} if as_of else {}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def _stage(review: dict, stage: str) -> dict:
    return next(s for s in review["pipeline"]["stages"] if s["stage"] == stage)


def test_a_stalled_deal_shows_with_its_owner_and_next_step_once_quiet_for_n_days(settings, http):
    _price_book(settings)
    user(settings, "closer", name="Casey")
    manager = _h(session_token(settings, "manager", name="Morgan"))
    deal = _deal(http, settings, manager, 1, product="GTX Pro")
    due = utcnow().date() + dt.timedelta(days=3)
    edited = http.patch(
        f"/v1/deals/{deal['id']}",
        json={"owner": "Casey", "next_step": "Call the CFO about budget", "next_step_due": due.isoformat()},
        headers=manager,
    )
    assert edited.status_code == 200, edited.text
    today = utcnow().date()
    n = settings.stale_deal_days

    now = _weekly(http, manager)
    assert now["as_of"] == today.isoformat() and now["stalled"]["after_days"] == n
    assert [a["section"] for a in now["agenda"]] == ["changed", "pipeline", "stalled", "invoices"]
    assert sum(a["minutes"] for a in now["agenda"]) == now["minutes"] == 20
    [row] = _stage(now, "qualified")["items"]
    assert (row["id"], row["owner"], row["next_step"], row["next_step_due"]) == (
        deal["id"],
        "Casey",
        "Call the CFO about budget",
        due.isoformat(),
    )
    assert (row["days_in_stage"], row["amount"], row["product"], row["next_step_overdue"]) == (
        0,
        "4821.00",
        "GTX Pro",
        False,
    )
    assert now["pipeline"]["open_deals"] == 1 and now["pipeline"]["without_next_step"] == 0
    assert now["stalled"]["deals"] == 0 and now["stalled"]["items"] == []

    almost = _weekly(http, manager, today + dt.timedelta(days=n - 1))
    assert almost["stalled"]["deals"] == 0
    later = _weekly(http, manager, today + dt.timedelta(days=n))
    assert later["stalled"]["deals"] == 1
    [stalled] = later["stalled"]["items"]
    assert (stalled["id"], stalled["owner"], stalled["next_step"], stalled["next_step_due"]) == (
        deal["id"],
        "Casey",
        "Call the CFO about budget",
        due.isoformat(),
    )
    assert stalled["days_quiet"] == n and stalled["days_in_stage"] == n and stalled["next_step_overdue"] is True
    assert later["pipeline"]["next_step_overdue"] == 1
    stalled_line = next(a for a in later["agenda"] if a["section"] == "stalled")["headline"]
    assert stalled_line.startswith(f"1 open deal(s) with no activity for {n}+ days")

    # A stage change is activity: the deal is quiet from then on.
    moved = http.post(f"/v1/deals/{deal['id']}/stage", json={"stage": "engaging"}, headers=manager)
    assert moved.status_code == 200, moved.text
    assert _weekly(http, manager, today + dt.timedelta(days=n))["stalled"]["items"][0]["stage"] == "engaging"


def test_what_changed_this_week_created_moved_won_and_lost_with_its_reason(settings, http):
    _price_book(settings)
    closer = _h(session_token(settings, "closer", name="Robin"))
    manager = _h(session_token(settings, "manager"))
    moved = _deal(http, settings, closer, 1, product="GTX Pro", owner="Robin")
    lost = _deal(http, settings, closer, 2, product="GTX Basic", owner="Robin")
    won = _deal(http, settings, closer, 3, product="GTX Basic", value="900.00")
    before = utcnow()
    assert http.post(f"/v1/deals/{moved['id']}/stage", json={"stage": "proposal"}, headers=closer).status_code == 200
    closed = http.post(
        f"/v1/deals/{lost['id']}/close", json={"outcome": "lost", "reason": "Chose a competitor"}, headers=closer
    )
    assert closed.status_code == 200, closed.text
    assert http.post(f"/v1/deals/{won['id']}/close", json={"outcome": "won"}, headers=closer).status_code == 200

    review = _weekly(http, manager)
    changed = review["changed"]
    assert (changed["created"], changed["won"], changed["lost"], changed["stage_moves"]) == (3, 1, 1, 1)
    assert changed["won_amount"] == "900.00" and changed["lost_amount"] == "550.00"
    [move] = changed["moves"]
    assert (move["deal_id"], move["from_stage"], move["to_stage"], move["owner"]) == (
        moved["id"],
        "qualified",
        "proposal",
        "Robin",
    )
    assert move["actor"] == "closer:Robin" and dt.datetime.fromisoformat(move["at"]) >= before
    [lost_row] = changed["lost_deals"]
    assert (lost_row["deal_id"], lost_row["reason"], lost_row["stage"]) == (lost["id"], "Chose a competitor", "lost")
    assert [d["deal_id"] for d in changed["won_deals"]] == [won["id"]]
    assert {d["deal_id"] for d in changed["created_deals"]} == {moved["id"], lost["id"], won["id"]}
    headline = next(a for a in review["agenda"] if a["section"] == "changed")["headline"]
    assert headline.startswith("3 deal(s) created, 1 won (900.00), 1 lost, 1 stage move(s)")
    # Only the open deal is in the pipeline, in the stage it moved to.
    assert review["pipeline"]["open_deals"] == 1
    assert [d["id"] for d in _stage(review, "proposal")["items"]] == [moved["id"]]
    assert _stage(review, "qualified")["deals"] == 0

    # as_of moves the week: a week later nothing changed; the day before, none of these deals existed.
    today = utcnow().date()
    next_week = _weekly(http, manager, today + dt.timedelta(days=7))
    assert (next_week["changed"]["created"], next_week["changed"]["stage_moves"], next_week["changed"]["lost"]) == (
        0,
        0,
        0,
    )
    assert next_week["pipeline"]["open_deals"] == 1
    yesterday = _weekly(http, manager, today - dt.timedelta(days=1))
    assert yesterday["changed"]["created"] == 0 and yesterday["pipeline"]["open_deals"] == 0
    assert dt.datetime.fromisoformat(review["until"]) - dt.datetime.fromisoformat(review["since"]) == dt.timedelta(7)


def test_a_deal_moved_since_is_shown_in_the_stage_it_had_then(settings, http):
    """The pipeline as of a moment before a move or a loss reads the stage back from the audit trail."""
    from deals import weekly

    _price_book(settings)
    closer = _h(session_token(settings, "closer"))
    moved = _deal(http, settings, closer, 1, product="GTX Pro")
    lost = _deal(http, settings, closer, 2, product="GTX Pro")
    between = utcnow()
    time.sleep(0.01)
    assert http.post(f"/v1/deals/{moved['id']}/stage", json={"stage": "proposal"}, headers=closer).status_code == 200
    assert http.post(f"/v1/deals/{moved['id']}/stage", json={"stage": "engaging"}, headers=closer).status_code == 200
    body = {"outcome": "lost", "reason": "No budget"}
    assert http.post(f"/v1/deals/{lost['id']}/close", json=body, headers=closer).status_code == 200
    with session_scope(settings) as session:
        deals = weekly._open_deals(session, between)
        stages = weekly._stages_at(session, deals, between)
        assert {k: v[0] for k, v in stages.items()} == {moved["id"]: "qualified", lost["id"]: "qualified"}
        now = weekly._open_deals(session, utcnow() + dt.timedelta(seconds=1))
        assert [d.id for d in now] == [moved["id"]]


def test_unpaid_invoices_by_age_and_invoices_paid_this_week(settings, http, worker):
    settings.webhook_secret_payments = PAYMENTS_SECRET
    _price_book(settings)
    manager = _h(session_token(settings, "manager"))
    deal = _deal(http, settings, manager, 1, product="GTX Pro")
    assert http.post(f"/v1/deals/{deal['id']}/close", json={"outcome": "won"}, headers=manager).status_code == 200
    assert http.post(f"/v1/deals/{deal['id']}/milestones/1/complete", headers=manager).status_code == 200
    items = http.get("/v1/review-items", params={"kind": "invoice"}, headers=manager).json()["items"]
    [invoice_item] = [i for i in items if i["status"] == "pending"]
    assert http.post(f"/v1/review-items/{invoice_item['id']}/approve", headers=manager).status_code == 200
    worker.run_until_idle()  # the approval issues the invoice
    [invoice] = http.get("/v1/invoices", headers=manager).json()["items"]
    assert invoice["status"] == "issued"
    due = dt.date.fromisoformat(invoice["due_on"])

    def buckets(review: dict) -> dict[str, tuple[int, str]]:
        return {b["bucket"]: (b["invoices"], b["amount"]) for b in review["invoices"]["buckets"]}

    today = _weekly(http, manager)
    assert today["invoices"]["unpaid_invoices"] == 1 and today["invoices"]["overdue"] == 0
    assert buckets(today)["0-30"] == (1, invoice["balance"])
    assert [b["bucket"] for b in today["invoices"]["buckets"]] == ["0-30", "31-60", "61-90", "90+"]

    late = _weekly(http, manager, due + dt.timedelta(days=45))
    assert buckets(late)["31-60"] == (1, invoice["balance"]) and buckets(late)["0-30"] == (0, "0")
    [row] = late["invoices"]["items"]
    assert (row["number"], row["days_past_due"], row["bucket"], row["balance"]) == (
        invoice["number"],
        45,
        "31-60",
        invoice["balance"],
    )
    assert row["account"] == "Company 1"
    assert _weekly(http, manager, due + dt.timedelta(days=100))["invoices"]["buckets"][3]["invoices"] == 1

    raw = json.dumps(
        {
            "payment_id": "pay-weekly-1",
            "amount": invoice["balance"],
            "received_on": utcnow().date().isoformat(),
            "invoice_number": invoice["number"],
        }
    ).encode()
    headers = {"Content-Type": "application/json", **webhooks.signed_headers(PAYMENTS_SECRET, raw, int(time.time()))}
    assert http.post("/v1/webhooks/payments", content=raw, headers=headers).status_code == 200
    paid = _weekly(http, manager)
    assert paid["invoices"]["unpaid_invoices"] == 0
    assert paid["changed"]["invoices_paid"] == 1 and paid["changed"]["paid_amount"] == invoice["balance"]
    [paid_row] = paid["changed"]["paid_invoices"]
    assert (paid_row["number"], paid_row["deal_id"], paid_row["account"]) == (
        invoice["number"],
        deal["id"],
        "Company 1",
    )


def test_who_may_read_the_weekly_review(settings, http):
    for role, expected in (("manager", 200), ("closer", 200), ("admin", 200), ("evaluator", 403)):
        got = http.get("/v1/reviews/weekly", headers=_h(session_token(settings, role, f"Weekly {role}")))
        assert got.status_code == expected, (role, got.text)
    machine = http.get("/v1/reviews/weekly", headers=_h(token(settings, "integration")))
    assert machine.status_code == 403 and machine.json()["error"] == "forbidden"
    assert http.get("/v1/reviews/weekly").status_code == 401
    bad = http.get("/v1/reviews/weekly", params={"as_of": "last week"}, headers=_h(token(settings, "manager")))
    assert bad.status_code == 422 and "as_of" in bad.json()["fields"]
