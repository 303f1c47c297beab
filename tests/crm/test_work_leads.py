"""Imported open leads are worked: queued through the lead graph, hottest first, at a set rate, once."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

import core.jobs
from core.db import session_scope
from core.enums import JobKind, LeadStatus
from core.errors import InvalidInput
from core.models import AuditEvent, Contact, Job, Lead, ReviewItem, utcnow
from crm.imports import import_leads
from crm.work import work_leads

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
XED = DATASETS / "x-education-leads" / "Leads.csv"

HEADER = "external_id,email,first_name,last_name,company,title,phone,website,message,consent_email,consent_call,outcome"
ROWS = {
    # contactable, hottest first by the rubric: a VP asking for a demo and pricing, with a phone
    "hot": "h1,ana@northwind-software.com,Ana,Silva,Northwind Software,VP Sales,+1 415 555 0101,"
    "northwind-software.com,We need a demo and pricing for our team this quarter,yes,yes,",
    "warm": "w1,li@cobalt-retail.com,Li,Wei,Cobalt Retail,Head of Operations,,cobalt-retail.com,"
    "Interested in automating our invoicing,yes,no,",
    "cold": "c1,sam@gmail.com,Sam,Jones,,,,,,yes,no,",
    # may be called, not emailed: queued, the graph drafts a call task
    "call_only": "k1,max@maple-tech.com,Max,Moe,Maple Tech,Director of Sales,+44 20 5555 0102,maple-tech.com,"
    "call me about a demo,no,yes,",
    # may not be contacted
    "no_consent": "n1,jo@juniper-labs.com,Jo,Park,Juniper Labs,CTO,,juniper-labs.com,pricing please,no,no,",
    "closed": "d1,old@closed-deal.com,Old,Customer,Closed Deal Co,CEO,,closed-deal.com,,yes,yes,won",
    "no_email": "e1,,No,Email,Nomail Inc,CEO,+1 212 555 0199,,,yes,yes,",
}
CONTACTABLE = ("hot", "warm", "cold", "call_only")


def write_csv(folder: Path, name: str = "trade-show", rows: dict[str, str] = ROWS) -> Path:
    path = folder / f"{name}.csv"
    path.write_text(HEADER + "\n" + "\n".join(rows.values()) + "\n", encoding="utf-8")
    return path


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def lead_by_external_id(session, external_id: str) -> Lead:
    return session.scalars(select(Lead).where(Lead.external_id == external_id)).one()


def lead_runs(session) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.kind == JobKind.LEAD_RUN).order_by(Job.run_after, Job.id)))


def later(monkeypatch, hours: float = 1) -> None:
    """The worker's clock moves on, so every spread-out run is due (nothing in the database is touched)."""
    real = core.jobs.utcnow
    monkeypatch.setattr(core.jobs, "utcnow", lambda: real() + dt.timedelta(hours=hours))


def test_import_with_work_queues_contactable_leads_hottest_first_and_the_graph_drafts_them(
    settings, subprocess_env, tmp_path, worker, monkeypatch
):
    path = write_csv(tmp_path)
    done = cli(["import", "leads", str(path), "--format", "generic", "--work", "--rate", "1", "--json"], subprocess_env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["created"] == {"leads": 7, "deals": 1} and out["rejected"] == 0
    work = out["work"]
    assert (work["considered"], work["queued"], work["skipped"]) == (7, 4, 3)
    assert work["skipped_by_reason"] == {"closed_deal": 1, "no_email": 1, "no_consent": 1}
    assert work["source"] == "generic:trade-show" and work["rate_per_minute"] == 1
    assert "rubric" in work["prescore"]
    assert "queueing leads" in done.stderr  # the progress bar

    with session_scope(settings) as session:
        by_key = {name: lead_by_external_id(session, row.split(",", 1)[0]) for name, row in ROWS.items()}
        queued_ids = [q["lead_id"] for q in work["leads"]]
        assert set(queued_ids) == {by_key[n].id for n in CONTACTABLE}
        scores = [q["pre_score"] for q in work["leads"]]
        assert scores == sorted(scores, reverse=True) and queued_ids[0] == by_key["hot"].id
        runs = lead_runs(session)
        # the worker takes jobs by run_after: hottest first, a minute apart (--rate 1)
        assert [r.payload["lead_id"] for r in runs] == queued_ids
        gaps = [(b.run_after - a.run_after).total_seconds() for a, b in zip(runs, runs[1:], strict=False)]
        assert gaps == pytest.approx([60.0, 60.0, 60.0], abs=0.01)
        assert runs[0].run_after <= utcnow() + dt.timedelta(seconds=1)
        assert {by_key[n].status for n in CONTACTABLE} == {LeadStatus.NEW}  # waiting for the graph, like a capture
        assert {by_key[n].status for n in ("no_consent", "closed", "no_email")} == {LeadStatus.IMPORTED}

    assert worker.run_until_idle() == 1  # only the first run is due now: the rest are spread out
    later(monkeypatch)
    assert worker.run_until_idle() == 3
    with session_scope(settings) as session:
        items = list(session.scalars(select(ReviewItem).order_by(ReviewItem.id)))
        assert [i.lead_id for i in items] == queued_ids  # drafted in the order they were queued
        assert {i.status for i in items} == {"pending"}
        kinds = {i.lead_id: i.kind for i in items}
        assert kinds[by_key["call_only"].id] == "call_task" and kinds[by_key["hot"].id] == "email"
        for name in CONTACTABLE:
            lead = session.get(Lead, by_key[name].id)
            assert lead.brief and lead.grade and lead.status == LeadStatus.IN_REVIEW
        for name in ("no_consent", "closed", "no_email"):
            lead = session.get(Lead, by_key[name].id)
            assert lead.brief is None and lead.status == LeadStatus.IMPORTED
        statuses = [
            e.after["status"]
            for e in session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "lead.status_changed", AuditEvent.entity_id == str(by_key["hot"].id))
                .order_by(AuditEvent.id)
            )
        ]
        assert statuses == ["new", "scored", "in_review"]  # brief and review item stored in one unit of work

    again = cli(["leads", "work", "--status", "imported"], subprocess_env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == "queued 0 leads"
    assert (
        "skipped 3: 1 with a closed deal (a historical outcome), "
        "1 without an email address, 1 without consent to email or call" in again.stdout
    )
    with session_scope(settings) as session:
        assert len(lead_runs(session)) == 4


def test_later_runs_keep_the_rate_honour_the_limit_and_queue_nothing_twice(settings, tmp_path):
    rows = {
        f"lead{i}": f"x{i},p{i}@firm{i}.example,P{i},Q,Firm {i},{'VP Sales' if i % 2 else 'Analyst'},,firm{i}.example,"
        f"{'demo and pricing please' if i % 3 == 0 else 'hello'},yes,no,"
        for i in range(6)
    }
    path = write_csv(tmp_path, "webinar", rows)
    with session_scope(settings) as session:
        import_leads(session, path, "generic")
        # an opt-out recorded on the contact since the import wins over the file's consent
        session.scalars(select(Contact).where(Contact.email == "p5@firm5.example")).one().do_not_email = True
    now = utcnow()
    with session_scope(settings) as session:
        first = work_leads(session, settings, limit=3, rate_per_minute=2, now=now)
    assert len(first.queued) == 3 and first.plan.left_over == 2 and first.plan.skipped["no_consent"] == 1
    with session_scope(settings) as session:
        second = work_leads(session, settings, source="generic:webinar", rate_per_minute=2, now=now)
        third = work_leads(session, settings, rate_per_minute=2, now=now)
    assert len(second.queued) == 2 and second.plan.left_over == 0
    assert len(third.queued) == 0 and third.plan.skipped["no_consent"] == 1
    with session_scope(settings) as session:
        runs = lead_runs(session)
        assert len(runs) == 5 and len({r.payload["lead_id"] for r in runs}) == 5
        starts = [r.run_after for r in runs]
        # 2 a minute across both batches: the second batch starts 30 s after the first one's last run
        assert [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)] == pytest.approx(
            [30.0] * 4, abs=0.01
        )
        assert abs((starts[0] - now).total_seconds()) < 0.01
        scores = [q["pre_score"] for q in first.queued]
        assert scores == sorted(scores, reverse=True) and min(scores) >= max(q["pre_score"] for q in second.queued)
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "leads.work_queued")).first()
        assert event.after["queued"] == 3 and event.after["skipped_by_reason"]["no_consent"] == 1


def test_historical_imports_without_an_address_are_never_queued(settings, tmp_path):
    import csv

    with XED.open(encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header, records = reader.fieldnames, [row for _, row in zip(range(25), reader, strict=False)]
    sample = tmp_path / "Leads.csv"
    with sample.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(records)
    with session_scope(settings) as session:
        import_leads(session, sample, "x-education")
    with session_scope(settings) as session:
        report = work_leads(session, settings, source="x-education")
    assert report.queued == [] and report.plan.considered == 25
    assert report.plan.skipped == {"closed_deal": 25, "no_email": 0, "no_consent": 0}
    with session_scope(settings) as session:
        assert lead_runs(session) == []


def test_bad_arguments_are_refused_before_anything_is_queued(settings, subprocess_env):
    with session_scope(settings) as session:
        with pytest.raises(InvalidInput, match="status must be one of imported"):
            work_leads(session, settings, status="new")
        with pytest.raises(InvalidInput, match="rate must be at least 1"):
            work_leads(session, settings, rate_per_minute=0)
    bad = cli(["leads", "work", "--status", "scored"], subprocess_env)
    assert bad.returncode == 2 and "status must be one of imported" in bad.stderr
