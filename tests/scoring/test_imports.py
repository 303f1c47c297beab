"""Imports of real data: per-row rejections, nothing half-written, re-runs that change nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.db import session_scope
from core.errors import InvalidInput
from core.models import Account, Contact, Deal, Lead, Product
from crm.imports import import_crm, import_leads

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
XED = DATASETS / "x-education-leads" / "Leads.csv"
MAVEN = DATASETS / "maven-crm-sales-opportunities"


def count(settings, model, *where) -> int:
    with session_scope(settings) as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def cli(args, env):
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def read_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def xed_sample(tmp_path: Path, rows: int, broken: dict[int, dict[str, str]] | None = None) -> Path:
    """The first rows of the real file, optionally with some cells broken."""
    import csv

    with XED.open(encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames
        records = [row for _, row in zip(range(rows), reader, strict=False)]
    for index, changes in (broken or {}).items():
        records[index].update(changes)
    out = tmp_path / "leads.csv"
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(records)
    return out


def test_x_education_import_reports_bad_rows_and_maps_consent_and_outcomes(settings, tmp_path):
    path = xed_sample(
        tmp_path,
        40,
        broken={
            1: {"Do Not Email": "Yes", "Do Not Call": "Yes"},
            3: {"Converted": "maybe"},
            7: {"TotalVisits": "lots"},
            9: {"Do Not Email": "perhaps"},
        },
    )
    first_ids = [row["Prospect ID"] for row in read_rows(path)]
    with session_scope(settings) as session:
        report = import_leads(session, path, "x-education")
    assert report.rows == 40
    assert report.created == {"leads": 37, "deals": 37}
    assert [(r["row"], r["reason"]) for r in report.rejected] == [
        (5, "Converted must be 0 or 1, got 'maybe'"),
        (9, "TotalVisits is not a number: 'lots'"),
        (11, "Do Not Email must be Yes or No, got 'perhaps'"),
    ]
    with session_scope(settings) as session:
        lead = session.scalars(select(Lead).where(Lead.external_source == "x-education").order_by(Lead.id)).first()
        assert lead.email is None and lead.status == "imported"
        assert lead.capture_features["custom.lead_origin"] == "API"
        assert lead.custom["Specialization"] is None  # "Select" means not chosen
        opted_out = session.scalars(select(Lead).where(Lead.external_id == first_ids[1])).one()
        assert (opted_out.consent_email, opted_out.consent_call) == (False, False)
        assert opted_out.capture_features["consent_email"] is False
        outcomes = session.scalars(select(Deal.outcome)).all()
        assert set(outcomes) == {"won", "lost"} and len(outcomes) == 37
    # Imported history is not contacted: no lead graph job was queued.
    from core.models import Job

    assert count(settings, Job) == 0


def test_strict_import_writes_nothing_when_a_row_is_bad(settings, tmp_path):
    path = xed_sample(tmp_path, 20, broken={4: {"Prospect ID": ""}})
    with pytest.raises(InvalidInput, match=r"1 row\(s\) rejected \(first: leads.csv row 6: Prospect ID is empty\)"):
        with session_scope(settings) as session:
            import_leads(session, path, "x-education", strict=True)
    assert count(settings, Lead) == 0 and count(settings, Deal) == 0


def test_reimport_changes_nothing_and_updates_what_changed(settings, tmp_path, subprocess_env):
    path = xed_sample(tmp_path, 30)
    first = cli(["import", "leads", str(path), "--format", "x-education", "--json"], subprocess_env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["created"] == {"leads": 30, "deals": 30}
    assert "importing leads.csv" in first.stderr  # the progress bar
    again = cli(["import", "leads", str(path), "--format", "x-education", "--json"], subprocess_env)
    assert json.loads(again.stdout)["unchanged"] == {"leads": 30, "deals": 30}
    assert count(settings, Lead) == 30 and count(settings, Deal) == 30
    flipped = "1" if read_rows(path)[0]["Converted"] == "0" else "0"
    changed = xed_sample(tmp_path, 30, broken={0: {"Converted": flipped}})
    third = json.loads(
        cli(["import", "leads", str(changed), "--format", "x-education", "--json"], subprocess_env).stdout
    )
    assert third["updated"] == {"deals": 1} and third["unchanged"]["leads"] == 30


def test_generic_import_with_column_map(settings, tmp_path, subprocess_env):
    path = tmp_path / "webinar.csv"
    path.write_text(
        "E-mail;Org;Role;Result;Region\n"
        "ana@northwind.example;Northwind;CTO;won;EMEA\n"
        "bad-address;Nobody;CEO;lost;EMEA\n"
        "li@cobalt.example;Cobalt;Head of Ops;;APAC\n"
        "sam@juniper.example;Juniper;Buyer;unknown;AMER\n",
        encoding="utf-8",
    )
    rejects = tmp_path / "rejects.csv"
    done = cli(
        [
            "import",
            "leads",
            str(path),
            "--format",
            "generic",
            "--map",
            "E-mail=email",
            "--map",
            "Org=company",
            "--map",
            "Role=title",
            "--map",
            "Result=outcome",
            "--rejects",
            str(rejects),
        ],
        subprocess_env,
    )
    assert done.returncode == 0, done.stderr
    assert "created 2 leads, 1 deals" in done.stdout and "rejected 2" in done.stdout
    assert "row 3: email 'bad-address' is not valid" in done.stderr
    assert "row 5: outcome must be won or lost, got 'unknown'" in done.stderr
    assert rejects.read_text().count("\n") == 3  # header + 2 rejections
    with session_scope(settings) as session:
        ana = session.scalars(select(Lead).where(Lead.email == "ana@northwind.example")).one()
        assert (ana.company, ana.title, ana.custom) == ("Northwind", "CTO", {"Region": "EMEA"})
        assert ana.consent_email is False  # no consent column: nobody gets emailed by an import
        assert session.scalars(select(Contact)).all()[0].do_not_email is True
    bad_map = cli(["import", "leads", str(path), "--format", "generic", "--map", "E-mail=mail"], subprocess_env)
    assert bad_map.returncode == 2 and "unknown field 'mail'" in bad_map.stderr


def test_maven_import_fixes_quirks_and_is_idempotent(settings, tmp_path):
    folder = tmp_path / "maven"
    shutil.copytree(MAVEN, folder)
    pipeline = folder / "sales_pipeline.csv"
    lines = pipeline.read_text().splitlines()
    lines.append("BROKEN01,Nobody Known,GTX Basic,Cancity,Won,2017-01-01,2017-02-01,100")
    lines.append("BROKEN02,Moses Frase,GTX Basic,Cancity,Won,2017-01-01,,100")
    pipeline.write_text("\n".join(lines) + "\n")
    with session_scope(settings) as session:
        report = import_crm(session, folder, "maven")
    assert report.created == {"accounts": 85, "products": 7, "sales_agents": 35, "deals": 6856}
    assert [r["reason"] for r in report.rejected] == [
        "unknown sales_agent 'Nobody Known'",
        "a Won deal needs a close_date",
    ]
    with session_scope(settings) as session:
        assert "technolgy" not in set(session.scalars(select(Account.industry)))
        assert session.scalar(select(func.count()).where(Account.industry == "technology")) > 0
        gtx_pro = session.scalars(select(Product).where(Product.name == "GTX Pro")).one()
        assert session.scalar(select(func.count()).where(Deal.product_id == gtx_pro.id)) > 0  # "GTXPro" rows
        lost = session.scalars(select(Deal).where(Deal.outcome == "lost")).first()
        assert lost.amount is None and lost.closed_at is not None
        assert session.scalar(select(func.count()).where(Deal.stage == "engaging", Deal.outcome.is_(None))) > 0
    with session_scope(settings) as session:
        again = import_crm(session, folder, "maven")
    assert again.created == {} and again.unchanged["deals"] == 6856
    assert count(settings, Deal) == 6856
