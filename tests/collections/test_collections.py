"""Billing and collections: the IBM AR import, payment history without leakage, the reminder ladder on a
clock we control, paid-just-before-send, disputes, duplicated payment webhooks, the daily scan job, the cash view."""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from billing import ledger
from billing.reminders import scan
from core import webhooks
from core.db import session_scope
from core.models import Account, AuditEvent, Contact, Invoice, Job, Payment, PaymentAllocation, ReviewItem
from deals.daily import DAILY as SCAN
from review.outbox import outbox_files
from tests.factories import session_token

IBM = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "ibm-accounts-receivable"
IBM_FILE = IBM / "WA_Fn-UseC_-Accounts-Receivable.csv"
DUE = dt.date(2026, 12, 1)
SECRET = "whsec-payments"


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _customer(settings, *, amount="1200.00", disputed=False, history=()) -> int:
    """An account with a billing contact and one open invoice due on DUE; history: (due, paid) pairs."""
    with session_scope(settings) as session:
        account = Account(name="Globex Ltd", domain="globex.example")
        session.add(account)
        session.flush()
        session.add(Contact(email="ap@globex.example", first_name="Pat", last_name="Payer", account_id=account.id))
        for n, (due, paid) in enumerate(history):
            session.add(
                Invoice(
                    number=f"OLD-{n}",
                    account_id=account.id,
                    amount=Decimal("100"),
                    issued_on=due - dt.timedelta(30),
                    due_on=due,
                    status="paid",
                    paid_on=paid,
                )
            )
        invoice = Invoice(
            number="INV-1001",
            account_id=account.id,
            amount=Decimal(amount),
            issued_on=DUE - dt.timedelta(days=30),
            due_on=DUE,
            disputed=disputed,
        )
        session.add(invoice)
        session.flush()
        return invoice.id


ZERO = {"drafted": 0, "skipped": 0, "waiting": 0, "already_drafted": 0, "no_contact": 0}


def _items(settings) -> list[ReviewItem]:
    with session_scope(settings) as session:
        return list(session.scalars(select(ReviewItem).order_by(ReviewItem.id)).all())


def _pay(http, body: dict, seconds_ago: int = 0) -> tuple[int, dict]:
    """Deliver a signed payment notice; seconds_ago gives a retry its own timestamp (and signature)."""
    raw = json.dumps(body).encode()
    signed = webhooks.signed_headers(SECRET, raw, int(time.time()) - seconds_ago)
    r = http.post("/v1/webhooks/payments", content=raw, headers={"Content-Type": "application/json", **signed})
    return r.status_code, r.json()


def test_ibm_import_is_idempotent_and_history_never_looks_ahead(settings):
    with session_scope(settings) as session:
        report = ledger.import_invoices(session, IBM_FILE, "ibm-ar")
    assert report.rows == 1930 and report.created == {"accounts": 100, "invoices": 1930, "payments": 1930}
    with session_scope(settings) as session:
        again = ledger.import_invoices(session, IBM_FILE, "ibm-ar")
        assert again.created == {} and again.unchanged == {"invoices": 1930}
        account_id = session.scalar(select(Invoice.account_id).where(Invoice.number == "IBM-0000611365"))
        early = ledger.payment_history(session, account_id, dt.date(2012, 3, 1))
        late = ledger.payment_history(session, account_id, dt.date(2013, 7, 1))
    assert early.invoices < late.invoices  # only invoices paid before the date count: no look-ahead
    assert 0 <= late.late_share <= 1


def test_import_reports_bad_rows_and_strict_imports_nothing(settings, tmp_path):
    bad = tmp_path / "ar.csv"
    lines = IBM_FILE.read_text().splitlines()[:4]
    lines[2] = lines[2].replace("1/26/2013", "2013-01-26")  # not m/d/yyyy
    bad.write_text("\n".join(lines) + "\n")
    with session_scope(settings) as session:
        report = ledger.import_invoices(session, bad, "ibm-ar")
        assert report.rejected == [
            {"file": "ar.csv", "row": 3, "reason": "InvoiceDate is not a m/d/yyyy date: '2013-01-26'"}
        ]
        session.rollback()
    with pytest.raises(Exception, match="--strict imports nothing"), session_scope(settings) as session:
        ledger.import_invoices(session, bad, "ibm-ar", strict=True)
    with session_scope(settings) as session:
        assert session.scalar(select(func.count(Invoice.id))) == 0


def test_the_ladder_on_a_controlled_clock_drafts_each_step_once(settings, worker):
    _customer(settings)
    assert scan(settings, DUE - dt.timedelta(days=5))["waiting"] == 1
    assert scan(settings, DUE - dt.timedelta(days=3))["drafted"] == 1
    assert scan(settings, DUE - dt.timedelta(days=3))["drafted"] == 0  # a second run the same day drafts nothing
    assert len(_items(settings)) == 1
    assert scan(settings, DUE)["waiting"] == 1
    assert scan(settings, DUE + dt.timedelta(days=1))["drafted"] == 1
    assert scan(settings, DUE + dt.timedelta(days=8))["drafted"] == 1
    assert scan(settings, DUE + dt.timedelta(days=14))["drafted"] == 1
    assert scan(settings, DUE + dt.timedelta(days=30))["drafted"] == 1
    items = _items(settings)
    assert [i.template for i in items] == [
        "dunning_friendly",
        "dunning_friendly",
        "dunning_neutral",
        "dunning_firm",
        "dunning_final",
    ]
    assert [i.kind for i in items] == ["email"] * 4 + ["call_task"]
    assert all(i.draft["to"] == "ap@globex.example" and "USD 1,200.00" in i.draft["body"] for i in items[:4])
    assert "INV-1001" in items[2].draft["subject"] and "8 days overdue" in items[2].draft["subject"]
    # Nobody approved the earlier steps: each later one withdrew its predecessor; one reminder is pending.
    assert [i.status for i in items] == ["cancelled"] * 4 + ["pending"]
    assert items[0].result == {"reason": f"superseded by the +1 reminder (#{items[1].id})"}
    assert items[3].result == {"reason": f"superseded by the +30 call task (#{items[4].id})"}
    assert outbox_files(settings) == []  # nothing leaves without approval


def test_the_ladder_runs_forwards_only_over_three_scan_days(settings):
    """Ten days overdue, scanned on three days: only the +7 step is drafted (not +1, then -3 after it); the
    +14 step then supersedes it while it is still pending, with the reason shown and audited."""
    invoice_id = _customer(settings)
    assert scan(settings, DUE + dt.timedelta(days=10))["drafted"] == 1
    assert scan(settings, DUE + dt.timedelta(days=11)) == {**ZERO, "waiting": 1}
    assert scan(settings, DUE + dt.timedelta(days=12)) == {**ZERO, "waiting": 1}
    [seven] = _items(settings)
    assert seven.template == "dunning_neutral" and seven.status == "pending" and seven.draft["invoice_id"] == invoice_id
    assert "10 days overdue" in seven.draft["subject"]
    assert scan(settings, DUE + dt.timedelta(days=14))["drafted"] == 1
    seven, fourteen = _items(settings)
    assert fourteen.template == "dunning_firm" and fourteen.status == "pending"
    assert seven.status == "cancelled" and seven.result == {
        "reason": f"superseded by the +14 reminder (#{fourteen.id})"
    }
    assert seven.supersede_key == fourteen.supersede_key == f"invoice:{invoice_id}:reminder"
    with session_scope(settings) as session:
        [cancelled] = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "review_item.cancelled", AuditEvent.entity_id == str(seven.id)
            )
        ).all()
        assert cancelled.actor == "agent:collections" and cancelled.after["reason"].startswith("superseded by")
    assert scan(settings, DUE + dt.timedelta(days=20)) == {**ZERO, "waiting": 1}  # never back to +1 or -3


def test_a_chronic_late_payer_gets_a_firmer_tone_and_high_priority(settings):
    history = [(dt.date(2026, m, 1), dt.date(2026, m, 25)) for m in range(1, 7)]  # always 24 days late
    _customer(settings, history=history)
    scan(settings, DUE + dt.timedelta(days=1))
    [item] = _items(settings)
    assert item.template == "dunning_neutral" and item.brief["priority"] == "high"
    assert item.brief["history"]["late_share"] == 1.0


def test_approved_reminder_is_sent_with_the_balance_from_the_record(settings, http, worker):
    closer = session_token(settings, "manager")
    _customer(settings)
    scan(settings, DUE + dt.timedelta(days=7))
    [item] = _items(settings)
    r = http.post(f"/v1/review-items/{item.id}/approve", headers=_h(closer))
    assert r.status_code == 200, r.text
    worker.run_until_idle()
    [eml] = outbox_files(settings)
    text = eml.read_text()
    assert "To: ap@globex.example" in text and "USD 1,200.00" in text
    assert _items(settings)[0].status == "sent"


def test_paid_just_before_send_is_not_chased(settings, http, worker):
    settings.webhook_secret_payments = SECRET
    manager = session_token(settings, "manager")
    invoice_id = _customer(settings)
    scan(settings, DUE + dt.timedelta(days=7))
    [item] = _items(settings)
    settings.undo_seconds = 60  # approved, waiting in the undo window...
    assert http.post(f"/v1/review-items/{item.id}/approve", headers=_h(manager)).status_code == 200
    status, body = _pay(
        http, {"payment_id": "pay_1", "amount": "1200.00", "received_on": str(DUE), "invoice_number": "INV-1001"}
    )
    assert status == 200 and body["duplicate"] is False
    with session_scope(settings) as session:  # ...the window passes
        session.execute(Job.__table__.update().values(run_after=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)))
    worker.run_until_idle()
    assert outbox_files(settings) == []
    [after] = _items(settings)
    assert after.status == "cancelled" and "is paid" in after.result["reason"]
    with session_scope(settings) as session:
        assert session.get(Invoice, invoice_id).status == "paid"
    assert scan(settings, DUE + dt.timedelta(days=14))["skipped"] == 0  # a paid invoice is not even scanned


def test_a_payment_stops_pending_reminders_and_partial_payments_change_the_amount(settings, http, worker):
    settings.webhook_secret_payments = SECRET
    manager = session_token(settings, "manager")
    _customer(settings)
    scan(settings, DUE + dt.timedelta(days=1))
    status, _ = _pay(
        http, {"payment_id": "pay_part", "amount": "200.00", "received_on": str(DUE), "invoice_number": "INV-1001"}
    )
    assert status == 200
    [item] = _items(settings)
    http.post(f"/v1/review-items/{item.id}/approve", headers=_h(manager))
    worker.run_until_idle()
    assert outbox_files(settings) == []  # drafted for 1,200; 1,000 is owed now: cancelled, not sent wrong
    assert "balance changed to 1000.00" in _items(settings)[0].result["reason"]
    scan(settings, DUE + dt.timedelta(days=7))
    assert "USD 1,000.00" in _items(settings)[-1].draft["body"]
    status, _ = _pay(
        http, {"payment_id": "pay_rest", "amount": "1000.00", "received_on": str(DUE), "invoice_number": "INV-1001"}
    )
    assert _items(settings)[-1].status == "cancelled"  # the pending +7 draft is withdrawn


def test_a_disputed_invoice_is_skipped(settings):
    _customer(settings, disputed=True)
    counts = scan(settings, DUE + dt.timedelta(days=14))
    assert counts["skipped"] == 1 and _items(settings) == []


def test_a_duplicated_payment_webhook_is_counted_once(settings, http):
    settings.webhook_secret_payments = SECRET
    invoice_id = _customer(settings)
    notice = {"payment_id": "pay_dup", "amount": "500.00", "received_on": str(DUE), "invoice_number": "INV-1001"}
    assert _pay(http, notice) == (200, {"payment_id": "pay_dup", "duplicate": False, "unallocated": "0.00"})
    assert _pay(http, notice, seconds_ago=20)[1]["duplicate"] is True  # a provider retry: new timestamp
    raw = json.dumps(notice).encode()
    headers = {"Content-Type": "application/json", **webhooks.signed_headers(SECRET, raw, int(time.time()) - 40)}
    assert http.post("/v1/webhooks/payments", content=raw, headers=headers).status_code == 200
    assert http.post("/v1/webhooks/payments", content=raw, headers=headers).status_code == 409  # exact replay
    with session_scope(settings) as session:
        assert session.scalar(select(func.count(Payment.id))) == 1
        assert session.scalar(select(func.count(PaymentAllocation.id))) == 1
        assert ledger.balance(session, session.get(Invoice, invoice_id)) == Decimal("700.00")
    bad = _pay(http, {"payment_id": "x", "amount": "-5", "received_on": "someday"})
    assert bad[0] == 422 and {"amount", "received_on"} <= set(bad[1]["fields"])
    unknown = _pay(http, {"payment_id": "y", "amount": "5", "received_on": str(DUE), "invoice_number": "NOPE"})
    assert unknown[0] == 422 and unknown[1]["details"] == {"field": "invoice_number"}


def test_overpayment_is_kept_as_credit_after_paying_oldest_first(settings):
    invoice_id = _customer(settings, amount="100.00")
    with session_scope(settings) as session:
        account_id = session.get(Invoice, invoice_id).account_id
        session.add(
            Invoice(
                number="INV-1002",
                account_id=account_id,
                amount=Decimal("50.00"),
                issued_on=DUE,
                due_on=DUE + dt.timedelta(days=30),
            )
        )
    with session_scope(settings) as session:
        payment, _ = ledger.record_payment(
            session, external_id="p", amount=Decimal("180"), received_on=DUE, account_id=account_id
        )
        assert payment.unallocated == Decimal("30.00")
        assert {i.number: i.status for i in session.scalars(select(Invoice))} == {
            "INV-1001": "paid",
            "INV-1002": "paid",
        }


def test_the_worker_runs_the_daily_scan_and_queues_the_next_one_once(settings, worker):
    from deals.daily import schedule as schedule_scan

    _customer(settings)
    schedule_scan(settings, DUE + dt.timedelta(days=7), at_hour=0)
    schedule_scan(settings, DUE + dt.timedelta(days=7), at_hour=0)  # a restart schedules nothing twice
    with session_scope(settings) as session:  # the clock reaches that day
        session.execute(
            Job.__table__.update().where(Job.kind == SCAN).values(run_after=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        )
    worker.run_until_idle()
    with session_scope(settings) as session:
        scans = {j.dedupe_key: j.status for j in session.scalars(select(Job).where(Job.kind == SCAN))}
    day, next_day = DUE + dt.timedelta(days=7), DUE + dt.timedelta(days=8)
    assert scans == {f"{SCAN}:{day}": "done", f"{SCAN}:{next_day}": "queued"}
    [item] = _items(settings)
    assert item.template == "dunning_neutral"  # the +7 step: the scan's day comes from the job, not the clock


def test_cash_view_on_the_ibm_history(settings, http):
    with session_scope(settings) as session:
        ledger.import_invoices(session, IBM_FILE, "ibm-ar")
    manager = session_token(settings, "manager")
    r = http.get("/v1/cash?as_of=2013-03-31", headers=_h(manager))
    assert r.status_code == 200, r.text
    view = r.json()
    assert 0 < view["dso_days"] < 90
    assert sum(Decimal(v) for v in view["aging"].values()) == Decimal(view["receivable"])
    assert len(view["expected_by_week"]) == 8
    assert all(u["balance"] != "0.00" for u in view["unpaid"]) and len(view["unpaid"]) > 10
    assert http.get("/v1/cash", headers=_h(session_token(settings, "closer"))).status_code == 403


def test_cash_page_shows_dso_aging_and_expected_collections(settings, live_server):
    from tests.review.test_app import _open, _signed_in

    with session_scope(settings) as session:
        ledger.import_invoices(session, IBM_FILE, "ibm-ar")
    at = _signed_in(live_server, settings, "manager")
    _open(at, "cash")
    at.date_input(key="cash_as_of").set_value(dt.date(2013, 3, 31))
    at.run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["DSO"].endswith(" days") and metrics["Receivable"].startswith("USD ")
    assert any("Aging" in s.value for s in at.subheader) and any(
        "Expected collections" in s.value for s in at.subheader
    )
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")
