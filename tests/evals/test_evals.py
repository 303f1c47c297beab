"""Eval suites: case files, graders that catch bad drafts, the CLI (run, list, compare), stored runs with
metadata, the HTML report, the LLM engine against a scripted server, and the API behind the evaluator page."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.db import session_scope
from core.models import EvalRun
from evals import graders
from evals.runner import compare, run_suite
from evals.suites import SUITES, load_cases
from tests.factories import session_token

REVLOOP = [sys.executable, "-m", "api.cli"]


def run(args, env, **kw):
    return subprocess.run(REVLOOP + args, env=env, capture_output=True, text=True, timeout=300, **kw)


@pytest.mark.parametrize("suite,minimum", [("routing", 50), ("drafting", 50), ("safety", 50), ("collections", 40)])
def test_case_files_are_large_enough_and_explained(suite, minimum):
    cases = load_cases(suite)
    assert len(cases) >= minimum
    assert all(c["id"] and len(c["rationale"]) > 15 for c in cases)


# --- graders -------------------------------------------------------------------------------------

FACTS = {
    "first_name": "Jane",
    "company": "Acme Software",
    "our_company": "Revloop Demo Co",
    "sender_name": "Alex Morgan",
    "unsubscribe_url": "https://revloop.example/unsubscribe",
}
GOOD = {
    "template": "first_touch_nurture",
    "subject": "Thanks for getting in touch, Jane",
    "body": "Hi Jane,\n\nThank you for your interest in Revloop Demo Co. I will send you a short overview of how we "
    "help companies like Acme Software; if the timing is right for a conversation, just reply to this email and we "
    "will set one up.\n\nBest regards,\nAlex Morgan\nRevloop Demo Co\n\nIf you would rather not hear from us, "
    'reply "unsubscribe" or visit https://revloop.example/unsubscribe.',
}


def test_graders_pass_a_good_draft_and_name_what_is_wrong_with_bad_ones():
    assert graders.grounded(GOOD, FACTS)[0]
    assert graders.required_elements(GOOD, FACTS)[0]
    assert graders.length_bounds(GOOD)[0]
    assert graders.banned_claims(GOOD)[0]

    call = {**GOOD, "template": "first_touch_fast", "body": GOOD["body"] + "\nA 20-minute call is enough."}
    assert graders.grounded(call, FACTS) == (True, "all traceable")  # the template's own "20-minute"

    invented = {**GOOD, "body": GOOD["body"].replace("Thank you", "As Dr. Grant said, 87 teams at https://x.example")}
    ok, detail = graders.grounded(invented, FACTS)
    assert not ok and "Grant" in detail and "87" in detail and "https://x.example" in detail

    pushy = {**GOOD, "body": GOOD["body"] + "\nWe guarantee results and offer a 30% discount."}
    ok, detail = graders.banned_claims(pushy)
    assert not ok and "guarantee" in detail and "30% discount" in detail

    bare = {**GOOD, "body": "Hello,\nWe exist.\n"}
    ok, detail = graders.required_elements(bare, FACTS)
    assert not ok
    assert "greeting" in detail and "call to action" in detail and "signature" in detail and "unsubscribe" in detail
    assert not graders.length_bounds(bare)[0]

    assert not graders.consent_respected("email", {"email": False, "call": True}, [])[0]
    assert not graders.consent_respected("call_task", {"email": False, "call": False}, [])[0]
    assert graders.consent_respected("call_task", {"email": False, "call": True}, [])[0]


# --- CLI, storage, report, compare ---------------------------------------------------------------


def test_eval_run_list_and_compare_from_the_cli(settings, subprocess_env, tmp_path):
    out = tmp_path / "runs"
    first = run(["eval", "run", "routing", "--out", str(out), "--json"], subprocess_env)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["passed"] is True and result["metrics"]["cases"] >= 50 and result["metrics"]["accuracy"] == 1.0
    meta = result["meta"]
    assert meta["engine"] == "offline" and meta["rubric_version"] == "default-2026.12" and meta["code_revision"]
    assert meta["duration_s"] > 0 and meta["tokens"] == 0 and meta["cost_usd"] == 0
    report = Path(result["report_path"])
    assert report.parent.parent == out and report.is_file()
    html = report.read_text()
    assert "Failing cases (0)" in html and "route-a-01" in html
    assert (report.parent / "run.json").is_file() and len(
        (report.parent / "cases.jsonl").read_text().splitlines()
    ) >= 50

    # The rest in-process (the same typer app; a subprocess per call costs seconds of imports).
    cli = _in_process_cli(settings, subprocess_env)
    for _ in range(2):
        again = cli(["eval", "run", "collections", "--out", str(out)])
        assert again.exit_code == 0, again.output
        assert "PASSED" in again.stdout and "accuracy" in again.stdout
    ids = [line.split()[0] for line in cli(["eval", "list"]).stdout.strip().splitlines()]
    assert len(ids) == 3 and ids[2] == result["run_id"]  # newest first
    assert cli(["eval", "list", "--suite", "routing"]).stdout.split()[0] == result["run_id"]
    same = cli(["eval", "compare", ids[1], ids[0]])  # collections vs collections
    assert same.exit_code == 0, same.output
    assert "accuracy" in same.stdout and "REGRESSION" not in same.output

    bad = cli(["eval", "run", "nonsense"])
    assert bad.exit_code == 2 and "unknown suite 'nonsense'" in bad.output
    wrong = cli(["eval", "compare", ids[0], "missing-run"])
    assert wrong.exit_code == 2 and "not found" in wrong.output


def _in_process_cli(settings, env: dict[str, str]):
    """Invoke the revloop CLI in this process with the test database's environment."""
    import os

    from typer.testing import CliRunner

    from api.cli import app
    from core.settings import get_settings

    def invoke(args: list[str]):
        saved = {k: os.environ.get(k) for k in env if k.startswith("REVLOOP_")}
        os.environ.update({k: v for k, v in env.items() if k.startswith("REVLOOP_")})
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(app, args)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            get_settings.cache_clear()

    return invoke


def test_compare_reports_changed_cases_and_exits_non_zero_on_a_regression(settings, subprocess_env):
    with session_scope(settings) as session:
        baseline = run_suite(session, settings, "collections")
        worse = EvalRun(
            run_id="collections-worse",
            suite="collections",
            engine="offline",
            passed=False,
            metrics={**baseline.metrics, "accuracy": baseline.metrics["accuracy"] - 0.1},
            thresholds=baseline.thresholds,
            failures=[{"metric": "accuracy"}],
            cases=[
                {**c, "passed": False, "detail": "tone: expected firm"} if i == 0 else c
                for i, c in enumerate(baseline.cases)
            ],
            meta=baseline.meta,
        )
        session.add(worse)
        session.flush()
        diff = compare(baseline, worse)
        baseline_id, first_case = baseline.run_id, baseline.cases[0]["id"]
    assert diff["newly_failing"] == [first_case]
    assert {r["metric"] for r in diff["regressions"]} == {"accuracy", "thresholds"}
    done = run(["eval", "compare", baseline_id, "collections-worse"], subprocess_env)
    assert done.returncode == 1
    assert f"case {first_case}: pass -> fail" in done.stdout and "REGRESSION accuracy" in done.stderr


def test_a_threshold_that_is_not_met_fails_the_run(settings, subprocess_env, monkeypatch):
    from evals.suites import Suite, Threshold

    strict = SUITES["collections"]
    monkeypatch.setitem(
        SUITES,
        "collections",
        Suite(strict.name, strict.description, (Threshold("accuracy", ">=", 1.01, 0.0),), strict.run),
    )
    result = _in_process_cli(settings, subprocess_env)(["eval", "run", "collections"])
    assert result.exit_code == 1
    assert "FAILED" in result.output and "needs >= 1.01" in result.output


def test_scoring_suite_on_a_small_labelled_file(settings, tmp_path):
    source = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "x-education-leads" / "Leads.csv"
    lines = source.read_text(encoding="utf-8").splitlines()
    small = tmp_path / "leads-600.csv"
    small.write_text("\n".join(lines[:601]) + "\n", encoding="utf-8")
    with session_scope(settings) as session:
        row = run_suite(session, settings, "scoring", dataset=small, fmt="x-education", out_dir=tmp_path / "out")
        metrics, meta, report = row.metrics, row.meta, Path(row.report_path)
    assert metrics["rows"] == 600 and 0.5 < metrics["model_auc"] <= 1 and 0 <= metrics["model_ece"] <= 1
    assert meta["model_version"] == "trained-in-eval" and meta["rubric_version"] == "x-education-fit-1"
    html = report.read_text()
    assert "Calibration curve" in html and "<polyline" in html and "Score histogram by outcome" in html


def test_llm_engine_drafts_are_graded_and_their_cost_recorded(settings, llm):
    def respond(body):
        if body.get("response_format"):
            insight = {
                "summary": "A fit.",
                "opening_line": "We guarantee a 40% uplift, as Dr. Grant knows.",
                "pain_points": [],
                "injection_suspected": False,
            }
            return {"content": json.dumps(insight)}
        return {"content": "Nothing more to look up."}

    llm.responder = respond
    with session_scope(settings) as session:
        row = run_suite(session, settings, "drafting", engine="llm")
        metrics, meta, failures, cases = row.metrics, row.meta, row.failures, row.cases
    assert meta["engine"] == "llm" and meta["llm_model"] == "scripted-model"
    assert metrics["llm_calls"] > 0 and meta["tokens"] > 0 and meta["cost_usd"] > 0
    assert metrics["grounded_rate"] < 0.5 and metrics["banned_claims_rate"] < 0.5
    assert {f["metric"] for f in failures} >= {"pass_rate", "grounded_rate"}
    failing = [c for c in cases if not c["passed"]]
    assert any("Grant" in c["detail"] and "guarantee" in c["detail"] for c in failing)


def test_the_api_serves_runs_reports_and_comparisons_to_evaluators(settings, http):
    with session_scope(settings) as session:
        a = run_suite(session, settings, "collections").run_id
        b = run_suite(session, settings, "collections").run_id
    evaluator = {"Authorization": f"Bearer {session_token(settings, 'evaluator')}"}
    runs = http.get("/v1/evals/runs", headers=evaluator).json()
    assert [r["run_id"] for r in runs] == [b, a]
    one = http.get(f"/v1/evals/runs/{a}", headers=evaluator).json()
    assert len(one["cases"]) >= 40 and one["thresholds"][0]["metric"] == "accuracy"
    report = http.get(f"/v1/evals/runs/{a}/report", headers=evaluator)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert f"Eval run {a}" in report.text
    diff = http.get(f"/v1/evals/compare?a={a}&b={b}", headers=evaluator).json()
    assert diff["regressions"] == [] and diff["metrics"]["accuracy"]["delta"] == 0
    closer = {"Authorization": f"Bearer {session_token(settings, 'closer')}"}
    assert http.get("/v1/evals/runs", headers=closer).status_code == 403


def test_evaluator_page_lists_runs_shows_failures_and_compares(settings, live_server):
    from tests.review.test_app import _open, _signed_in

    with session_scope(settings) as session:
        run_suite(session, settings, "collections")
        run_suite(session, settings, "collections")
    at = _signed_in(live_server, settings, "evaluator")
    _open(at, "evals")
    assert not at.exception, at.exception
    assert at.title[0].value == "Evals"
    assert len(at.dataframe[0].value) == 2
    assert any("every threshold met" in s.value for s in at.success)
    assert any("No regression" in s.value for s in at.success)
    assert any("Failing cases: 0" in m.value for m in at.markdown)
