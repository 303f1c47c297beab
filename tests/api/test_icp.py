"""ICP rubric over HTTP: validation that names criterion and field, drafts, backtest, publish."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from core.db import session_scope
from core.models import AuditEvent, IcpRubric, ReviewItem
from crm.imports import import_crm
from tests.factories import auth, lead_payload

ROOT = Path(__file__).resolve().parents[2]
MAVEN = ROOT.parent / "shared" / "datasets" / "maven-crm-sales-opportunities"
MAVEN_RUBRIC = (ROOT / "scoring" / "rubrics" / "examples" / "maven-sector-size.yaml").read_text()

BAD = """version: broken
criteria:
  - {id: sector, label: Sector, kind: in_list, field: account.sector, values: [software], weight: 10}
  - {id: intent, label: Intent, kind: pattern, field: lead.message, pattern: "(demo", weight: 5}
  - {id: size, label: Size, kind: range, field: employees, min: 10, weight: heavy}
grades: {A: 75, B: 50, C: 30}
"""


def test_validate_and_draft_name_the_criterion_and_field(settings, http):
    manager = auth(settings, "manager")
    r = http.post("/v1/icp/rubrics/validate", json={"content": BAD}, headers=manager)
    assert r.status_code == 200
    body = r.json()
    assert body["valid"] is False and len(body["errors"]) == 3
    assert body["errors"][0].startswith("criterion 'sector': unknown field 'account.sector'")
    assert body["errors"][1].startswith("criterion 'intent' (field 'lead.message'): bad regex '(demo'")
    assert body["errors"][2] == "criterion 'size' (field 'employees'): weight must be a number >= 0, got 'heavy'"
    saved = http.post("/v1/icp/rubrics", json={"content": BAD}, headers=manager)
    assert saved.status_code == 422
    assert saved.json()["details"]["errors"] == body["errors"]
    with session_scope(settings) as session:
        assert session.scalar(select(func.count(IcpRubric.id))) == 0  # never half-saved
    ok = http.post("/v1/icp/rubrics/validate", json={"content": MAVEN_RUBRIC}, headers=manager).json()
    assert ok == {"valid": True, "errors": [], "version": "maven-sector-size-1"}


def test_active_rubric_is_the_file_until_one_is_published(settings, http):
    active = http.get("/v1/icp/rubrics/active", headers=auth(settings, "manager")).json()
    assert (active["version"], active["origin"]) == ("default-2026.12", "file")
    assert active["content"] == settings.rubric_path.read_text()


def test_only_managers_save_and_publish(settings, http):
    for role, expected in (("closer", 403), ("evaluator", 403), ("integration", 403)):
        r = http.post("/v1/icp/rubrics", json={"content": MAVEN_RUBRIC}, headers=auth(settings, role))
        assert r.status_code == expected, role
    assert http.get("/v1/icp/rubrics", headers=auth(settings, "evaluator")).status_code == 200
    assert http.get("/v1/icp/rubrics", headers=auth(settings, "closer")).status_code == 403
    assert http.post("/v1/icp/rubrics", json={"content": MAVEN_RUBRIC}).status_code == 401


def test_backtest_draft_and_publish_on_maven(settings, http, worker):
    with session_scope(settings) as session:
        import_crm(session, MAVEN, "maven")
    manager = auth(settings, "manager")
    r = http.post("/v1/icp/rubrics/backtest", json={"content": MAVEN_RUBRIC, "source": "maven"}, headers=manager)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["closed_deals"] == 4984 and result["won"] == 3176
    draft, published = result["draft"], result["published"]
    assert draft["version"] == "maven-sector-size-1" and published["version"] == "default-2026.12"
    assert sum(g["n"] for g in draft["grades"].values()) == 4984
    assert draft["grades"]["A"]["win_rate"] > result["base_win_rate"] > draft["grades"]["D"]["win_rate"]
    assert draft["auc"] > 0.5

    saved = http.post("/v1/icp/rubrics", json={"content": MAVEN_RUBRIC}, headers=manager)
    assert saved.status_code == 201
    row = saved.json()
    assert row["status"] == "draft" and row["backtest"]["closed_deals"] == 4984
    again = http.post(
        "/v1/icp/rubrics", json={"content": MAVEN_RUBRIC.replace("weight: 40", "weight: 45")}, headers=manager
    )
    assert again.status_code == 409 and "change 'version'" in again.json()["message"]
    published_row = http.post(f"/v1/icp/rubrics/{row['id']}/publish", headers=manager)
    assert published_row.status_code == 200 and published_row.json()["status"] == "published"
    assert http.post(f"/v1/icp/rubrics/{row['id']}/publish", headers=manager).status_code == 409
    active = http.get("/v1/icp/rubrics/active", headers=manager).json()
    assert (active["version"], active["origin"], active["content"]) == (
        "maven-sector-size-1",
        "published",
        MAVEN_RUBRIC,
    )
    with session_scope(settings) as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "icp_rubric.published")).one()
        assert event.actor == "manager:test-manager" and event.after == {"published": "maven-sector-size-1"}

    # New leads are scored with the published rubric, and the version is stored with the score.
    http.post("/v1/leads", json=lead_payload(email="jo@cancity.example"), headers=auth(settings, "integration"))
    worker.run_until_idle()
    with session_scope(settings) as session:
        item = session.scalars(select(ReviewItem)).one()
        assert item.brief["rubric_version"] == "maven-sector-size-1"
        assert {c["id"] for c in item.brief["criteria"]} == {"sector", "small_company", "revenue_band"}
