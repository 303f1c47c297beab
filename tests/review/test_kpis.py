"""KPIs on fixed data (issue 16): no NaN anywhere, stage aging from when deals entered their stage (max never below
the median), and imported history counted by its own dates or left out of the window."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

from core import audit
from core.db import session_scope
from core.models import Deal, Lead, ReviewItem
from crm.imports import import_leads
from review import kpis
from tests.factories import session_token

NOW = dt.datetime(2026, 6, 30, 12, 0, tzinfo=dt.UTC)


def _lead(session, captured_at: dt.datetime, **fields) -> Lead:
    lead = Lead(captured_at=captured_at, status="scored", **fields)
    session.add(lead)
    session.flush()
    return lead


def _touched(session, lead: Lead, after_minutes: float) -> None:
    session.add(
        ReviewItem(
            kind="email",
            source="lead",
            status="sent",
            lead_id=lead.id,
            thread_id=f"t-{lead.id}",
            dedupe_key=f"k-{lead.id}",
            executed_at=lead.captured_at + dt.timedelta(minutes=after_minutes),
        )
    )


def _walk_nans(node) -> list:
    if isinstance(node, dict):
        return [n for v in node.values() for n in _walk_nans(v)]
    if isinstance(node, list):
        return [n for v in node for n in _walk_nans(v)]
    return [node] if isinstance(node, float) and math.isnan(node) else []


def test_imported_history_counts_by_its_own_date_or_is_left_out(settings):
    imported_at = NOW - dt.timedelta(hours=1)
    with session_scope(settings) as session:
        live = _lead(session, NOW - dt.timedelta(days=2), email="live@a.test")
        _touched(session, live, 4)
        _lead(session, NOW - dt.timedelta(days=1), email="quiet@a.test")
        old = _lead(session, NOW - dt.timedelta(days=40), email="old@a.test")
        _touched(session, old, 1)
        # One import: two rows without a date (captured "at the import"), one with its own date.
        undated = [_lead(session, imported_at, external_source="csv:x", external_id=f"u{i}") for i in range(2)]
        dated = _lead(session, dt.datetime(2026, 6, 25, tzinfo=dt.UTC), external_source="csv:x", external_id="d1")
        session.add(Deal(name="won from history", lead_id=undated[0].id, stage="won", outcome="won"))
        session.add(Deal(name="dated opportunity", lead_id=dated.id, stage="qualified"))
        audit.record(
            session,
            actor="cli",
            action="import.leads",
            entity_type="import",
            entity_id="generic",
            after={"rows": 3, "imported_at": imported_at.isoformat()},
        )
    with session_scope(settings, readonly=True) as session:
        k = kpis.compute(session, days=30, now=NOW)
    assert k["leads_captured"] == 3  # the two live leads in the window and the dated import
    assert k["imported_leads_left_out"] == 2
    assert k["median_minutes_to_first_touch"] == 4.0 and k["leads_touched"] == 1
    assert k["funnel"] == [
        {"stage": "captured", "count": 3, "conversion_from_previous": None},
        {"stage": "contacted", "count": 1, "conversion_from_previous": 0.3333},
        {"stage": "opportunity", "count": 1, "conversion_from_previous": 1.0},
        {"stage": "won", "count": 0, "conversion_from_previous": 0.0},
    ]
    assert _walk_nans(k) == []


def test_an_empty_window_has_null_rates_not_nan(settings, http):
    with session_scope(settings, readonly=True) as session:
        k = kpis.compute(session, days=7, now=NOW)
    assert k["leads_captured"] == 0 and k["imported_leads_left_out"] == 0
    assert [s["conversion_from_previous"] for s in k["funnel"]] == [None, None, None, None]
    assert k["median_minutes_to_first_touch"] is None and k["next_action_within_sla"] is None
    assert k["stage_aging"] == [] and _walk_nans(k) == []
    r = http.get("/v1/kpis?days=7", headers={"Authorization": f"Bearer {session_token(settings, 'manager')}"})
    assert r.status_code == 200 and "NaN" not in r.text and "nan" not in r.text.lower().replace("nanos", "")
    assert [s["conversion_from_previous"] for s in r.json()["funnel"]] == [None, None, None, None]


def test_stage_aging_is_measured_from_stage_entry_and_max_is_never_below_median(settings):
    with session_scope(settings) as session:
        session.add_all(
            [
                # Seeded or imported without dates: created "now", but nobody knows when it entered the stage.
                Deal(name="undated", stage="prospecting", created_at=NOW),
                Deal(name="engaged 10 days ago", stage="engaging", engaged_at=dt.date(2026, 6, 20), created_at=NOW),
                Deal(name="engaging 3.5 days", stage="engaging", stage_changed_at=NOW - dt.timedelta(days=3.5)),
                Deal(name="proposal 7 days", stage="proposal", stage_changed_at=NOW - dt.timedelta(days=7)),
                Deal(name="proposal 1.2 days", stage="proposal", stage_changed_at=NOW - dt.timedelta(days=1.2)),
                # engaged_at says nothing about when a deal entered a later stage
                Deal(name="qualified, engaged long ago", stage="qualified", engaged_at=dt.date(2025, 1, 1)),
                Deal(name="closed", stage="won", outcome="won", stage_changed_at=NOW - dt.timedelta(days=90)),
            ]
        )
    with session_scope(settings, readonly=True) as session:
        aging = kpis.compute(session, days=30, now=NOW)["stage_aging"]
    assert aging == [
        {"stage": "prospecting", "open_deals": 1, "dated_deals": 0, "median_days": None, "max_days": None},
        {"stage": "engaging", "open_deals": 2, "dated_deals": 2, "median_days": 7.0, "max_days": 10.5},
        {"stage": "qualified", "open_deals": 1, "dated_deals": 0, "median_days": None, "max_days": None},
        {"stage": "proposal", "open_deals": 2, "dated_deals": 2, "median_days": 4.1, "max_days": 7.0},
    ]
    for row in aging:
        if row["median_days"] is not None:
            assert row["max_days"] >= row["median_days"]


def test_a_real_import_without_dates_stays_out_of_the_window_and_one_with_dates_counts(settings, tmp_path):
    undated = Path(tmp_path, "undated.csv")
    undated.write_text("email,company\na@history-example.com,Hist\nb@history-example.com,Hist\n")
    dated = Path(tmp_path, "dated.csv")
    today = dt.datetime.now(dt.UTC).date()
    recent, ancient = today - dt.timedelta(days=3), today - dt.timedelta(days=400)
    dated.write_text(
        f"email,company,captured_at\nc@history-example.com,Hist,{recent}\nd@history-example.com,Hist,{ancient}\n"
    )
    with session_scope(settings) as session:
        import_leads(session, undated, "generic")
        import_leads(session, dated, "generic")
    with session_scope(settings, readonly=True) as session:
        k = kpis.compute(session, days=30)
        captured = {lead.email: lead.captured_at.date() for lead in session.query(Lead).all()}
    assert captured["c@history-example.com"] == recent and captured["d@history-example.com"] == ancient
    assert k["leads_captured"] == 1  # c: its own date is in the window; d is 400 days old
    assert k["imported_leads_left_out"] == 2  # a and b carry only the import's time
    assert json.dumps(k, default=str).count("NaN") == 0


def test_the_kpi_page_shows_a_dash_for_a_rate_over_nothing():
    import pandas as pd

    from review.ui.kpis import _pct

    funnel = pd.DataFrame([{"stage": "captured", "count": 0, "conversion_from_previous": None}] * 2)
    assert [_pct(v) for v in funnel["conversion_from_previous"]] == ["—", "—"]  # NaN inside pandas, never "nan%"
    assert _pct(0.3333) == "33%" and _pct(None) == "—"
