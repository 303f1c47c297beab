"""Long jobs never lock the users out: a training run, a CSV import and an eval run, as real CLI processes, while
leads are posted to the real API over a socket; and, in process, the heavy part of each job runs with no
transaction open on the business's database."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from core.db import get_engine, session_scope
from core.models import AuditEvent, EvalRun, Lead, ScoringModel
from tests.factories import closed_leads, lead_payload, token

REVLOOP = [sys.executable, "-m", "api.cli"]
LEADS, THREADS = 200, 4
IMPORT_ROWS = 300


def assert_database_free(settings) -> None:
    """No unit of work of ours holds a transaction open on the business's database right now: on SQLite another
    process could take the write lock at once; on PostgreSQL no other connection is idle in a transaction."""
    if settings.is_sqlite:
        other = sqlite3.connect(settings.resolved_database_url.split("///", 1)[1], timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # "database is locked" if a writer is in a transaction
            other.execute("ROLLBACK")
        finally:
            other.close()
        return
    with get_engine(settings).connect() as conn:
        open_elsewhere = conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
            )
        )
    assert open_elsewhere == 0


def write_leads_csv(path: Path, rows: int, *, bad_row: int | None = None) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["external_id", "email", "company", "source", "consent_email", "outcome"])
        for i in range(rows):
            outcome = "won" if i % 3 == 0 else "lost" if i % 3 == 1 else ""
            if i == bad_row:
                outcome = "maybe"
            writer.writerow(
                [f"imp-{i}", f"buyer{i}@imported{i}.example", f"Imported {i} Ltd", "import", "yes", outcome]
            )
    return path


def test_train_import_and_eval_while_leads_are_posted(settings, subprocess_env, live_server, tmp_path):
    closed_leads(settings, 80)  # enough closed deals to train (REVLOOP_SCORING_MIN_CLOSED_DEALS below)
    headers = {"Authorization": f"Bearer {token(settings, 'integration')}"}
    csv_file = write_leads_csv(tmp_path / "import.csv", IMPORT_ROWS)
    env = {**subprocess_env, "REVLOOP_IMPORT_BATCH_ROWS": "50", "REVLOOP_SCORING_MIN_CLOSED_DEALS": "50"}
    jobs = {
        "train": ["scoring", "train"],
        "import": ["import", "leads", str(csv_file), "--format", "generic"],
        "eval": ["eval", "run", "collections", "--out", str(tmp_path / "evals")],
    }
    procs = {
        name: subprocess.Popen(REVLOOP + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, args in jobs.items()
    }
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def post(thread: int) -> None:
        with httpx.Client(base_url=live_server.url, timeout=60) as client:
            for n in range(LEADS // THREADS):
                i = thread * 1000 + n
                payload = lead_payload(
                    email=f"fault-{i}@fault{i}.example",
                    company=f"Fault {uuid.uuid4().hex[:10]}",
                    website=f"https://fault{i}.example",
                )
                r = client.post("/v1/leads", json=payload, headers={**headers, "Idempotency-Key": f"fault-{i}"})
                with lock:
                    statuses[r.status_code] += 1
                    if r.status_code // 100 != 2:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                if any(p.poll() is None for p in procs.values()):
                    time.sleep(0.1)  # spread the posts over the jobs' run

    threads = [threading.Thread(target=post, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outputs = {name: p.communicate(timeout=180) for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, f"{name}: {outputs[name][1][-2000:]}"

    assert not failures and statuses == {202: LEADS}, (statuses, failures[:5])
    with session_scope(settings, readonly=True) as session:
        assert session.scalar(select(func.count(Lead.id)).where(Lead.email.like("fault-%"))) == LEADS
        assert session.scalar(select(func.count(Lead.id)).where(Lead.external_source == "generic:import")) == 300
        assert session.scalar(select(func.count(ScoringModel.id))) == 1
        assert session.scalar(select(func.count(EvalRun.id)).where(EvalRun.suite == "collections")) == 1


def test_training_fits_with_no_transaction_open(settings, monkeypatch):
    from scoring import model as outcome_model
    from scoring.features import load_feature_spec
    from scoring.registry import train_and_register

    closed_leads(settings, 80)
    # One quick candidate in this process instead of the pair in worker processes: what matters is where it runs.
    monkeypatch.setattr(outcome_model, "N_JOBS", 1)
    both = outcome_model.candidates
    monkeypatch.setattr(outcome_model, "candidates", lambda spec: {"logistic_splines": both(spec)["logistic_splines"]})
    fit = outcome_model.train
    seen = []

    def checked_fit(*args, **kwargs):
        assert_database_free(settings)
        seen.append(1)
        return fit(*args, **kwargs)

    monkeypatch.setattr(outcome_model, "train", checked_fit)
    result = train_and_register(settings, load_feature_spec(), min_closed=50, actor="test")
    assert seen and result["challenger"]["status"] == "champion"
    with session_scope(settings, readonly=True) as session:
        assert session.scalar(select(func.count(ScoringModel.id))) == 1


def test_an_eval_runs_in_its_sandbox_with_no_transaction_open_on_the_business_database(settings, monkeypatch, tmp_path):
    from evals import harness, suites
    from evals.runner import run_and_store

    cases = suites.load_cases("routing")[:2]
    monkeypatch.setattr(suites, "load_cases", lambda name: cases)
    run_lead = harness.Sandbox.run_lead
    sandboxes = []

    def checked_run_lead(box, payload):
        assert_database_free(settings)
        assert box.settings.resolved_database_url != settings.resolved_database_url
        sandboxes.append(box.settings.resolved_database_url)
        return run_lead(box, payload)

    monkeypatch.setattr(harness.Sandbox, "run_lead", checked_run_lead)
    row = run_and_store(settings, "routing", out_dir=tmp_path / "evals")
    assert len(sandboxes) == 2 and row.metrics["cases"] == 2
    with session_scope(settings, readonly=True) as session:
        assert session.scalar(select(func.count(EvalRun.id))) == 1
        assert session.scalar(select(func.count(Lead.id))) == 0  # the cases' leads stayed in the sandbox


def test_an_import_validates_first_writes_in_short_batches_and_resumes(settings, monkeypatch, tmp_path):
    from crm import imports

    # --strict with one bad row anywhere in the file: nothing is written.
    bad = write_leads_csv(tmp_path / "bad.csv", 120, bad_row=110)
    with pytest.raises(imports.InvalidInput, match="row 112"):
        imports.import_leads_in_batches(settings, bad, "generic", strict=True, batch_rows=50)

    def count() -> int:
        with session_scope(settings, readonly=True) as session:
            return session.scalar(select(func.count(Lead.id)))

    assert count() == 0
    # An import interrupted in its third batch keeps its first two; running it again finishes the job.
    path = write_leads_csv(tmp_path / "leads.csv", IMPORT_ROWS)
    write = imports.write_lead_batch
    batches = []

    def interrupted(session, plan, batch):
        if len(batches) == 2:
            raise KeyboardInterrupt
        batches.append(len(batch))
        return write(session, plan, batch)

    monkeypatch.setattr(imports, "write_lead_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        imports.import_leads_in_batches(settings, path, "generic", batch_rows=50)
    assert count() == 100
    monkeypatch.setattr(imports, "write_lead_batch", write)
    report = imports.import_leads_in_batches(
        settings, path, "generic", batch_rows=50, progress=lambda n: assert_database_free(settings)
    )
    assert report.created["leads"] == 200 and report.unchanged["leads"] == 100 and not report.rejected
    assert count() == IMPORT_ROWS
    with session_scope(settings, readonly=True) as session:
        audits = session.scalars(select(AuditEvent.after).where(AuditEvent.action == "import.leads")).all()
    assert [a["created"]["leads"] for a in audits] == [200]  # one audit event, for the import that finished


def test_a_crm_import_writes_its_pipeline_in_short_batches(settings, tmp_path):
    import shutil

    from core.models import Account, Deal
    from crm import imports

    maven = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "maven-crm-sales-opportunities"
    folder = tmp_path / "maven"
    shutil.copytree(maven, folder)
    pipeline = folder / "sales_pipeline.csv"
    lines = pipeline.read_text().splitlines()[:601]  # the header and 600 opportunities: small and quick
    pipeline.write_text("\n".join([*lines, "BROKEN01,Nobody Known,GTX Basic,Cancity,Won,2017-01-01,2017-02-01,100"]))
    with pytest.raises(imports.InvalidInput, match="unknown sales_agent 'Nobody Known'"):
        imports.import_crm_in_batches(settings, folder, "maven", strict=True, batch_rows=100)
    with session_scope(settings, readonly=True) as session:
        assert session.scalar(select(func.count(Account.id))) == 0  # --strict: nothing written

    report = imports.import_crm_in_batches(
        settings, folder, "maven", batch_rows=100, progress=lambda n: assert_database_free(settings)
    )
    assert report.created["accounts"] == 85 and report.created["sales_agents"] == 35
    assert report.created["deals"] == 600 and [r["row"] for r in report.rejected] == [602]
    with session_scope(settings) as session:  # the one-transaction import finds everything in place
        again = imports.import_crm(session, folder, "maven")
    assert again.created == {} and again.unchanged["deals"] == 600
    with session_scope(settings, readonly=True) as session:
        assert session.scalar(select(func.count(Deal.id))) == 600
