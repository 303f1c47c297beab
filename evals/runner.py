"""Run a suite, store the run (database + files), list runs, compare two runs."""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidInput, NotFound
from core.models import EvalRun, utcnow
from core.settings import PROJECT_ROOT, Settings
from evals.report import render_report
from evals.suites import SUITES, Suite, SuiteResult

ENGINES = ("offline", "llm")


def code_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + ("-dirty" if dirty else "")) if rev else "unknown"


def suite_names(name: str) -> list[str]:
    if name == "all":
        return list(SUITES)
    if name not in SUITES:
        raise InvalidInput(f"unknown suite {name!r}; choose one of {', '.join(SUITES)} or all")
    return [name]


def _context(session: Session, settings: Settings) -> dict[str, Any]:
    from scoring.icp import active_rubric, published
    from scoring.registry import champion

    row = champion(session)
    rubric = published(session)
    return {
        "rubric_version": active_rubric(session, settings).version,
        "rubric_content": rubric.content if rubric else settings.rubric_path.read_text(encoding="utf-8"),
        "model_version": row.version if row else None,
        "champion": row,
    }


def _check(settings: Settings, name: str, engine: str, dataset: Path | None, fmt: str | None) -> None:
    if engine not in ENGINES:
        raise InvalidInput(f"--engine must be offline or llm, got {engine!r}")
    if engine == "llm" and not settings.llm_base_url and not settings.llm_api_key:
        raise InvalidInput(
            "--engine llm needs an endpoint: set OPENAI_BASE_URL (and OPENAI_API_KEY if it asks for one)"
        )
    if (dataset or fmt) and name != "scoring":
        raise InvalidInput("--dataset and --format apply to the scoring suite only")


def run_suite(
    session: Session,
    settings: Settings,
    name: str,
    *,
    engine: str = "offline",
    dataset: Path | None = None,
    fmt: str | None = None,
    out_dir: Path | None = None,
    tick: Callable[[int], Any] = lambda n: None,
) -> EvalRun:
    """Run a suite with the caller's session (context read from it, the run stored in it). The CLI uses
    run_and_store, which holds no transaction on the business's database while the suite runs."""
    _check(settings, name, engine, dataset, fmt)
    values = execute_suite(
        settings, name, _context(session, settings), engine=engine, dataset=dataset, fmt=fmt, out_dir=out_dir, tick=tick
    )
    return store_run(session, values)


def run_and_store(
    settings: Settings,
    name: str,
    *,
    engine: str = "offline",
    dataset: Path | None = None,
    fmt: str | None = None,
    out_dir: Path | None = None,
    tick: Callable[[int], Any] = lambda n: None,
) -> EvalRun:
    """`revloop eval run`: read what the business uses now (rubric, champion) in a short read-only session, run
    the suite in its sandbox with no transaction open on the business's database, then store the run in a
    short write (retried when the database is busy)."""
    from core.db import run_in_transaction, session_scope

    _check(settings, name, engine, dataset, fmt)
    with session_scope(settings, readonly=True) as session:
        context = _context(session, settings)
    values = execute_suite(settings, name, context, engine=engine, dataset=dataset, fmt=fmt, out_dir=out_dir, tick=tick)
    return run_in_transaction(settings, lambda session: store_run(session, values))


def execute_suite(
    settings: Settings,
    name: str,
    context: dict[str, Any],
    *,
    engine: str = "offline",
    dataset: Path | None = None,
    fmt: str | None = None,
    out_dir: Path | None = None,
    tick: Callable[[int], Any] = lambda n: None,
) -> dict[str, Any]:
    """Run the suite (in its sandbox) and write the run's files; the EvalRun's values, not stored yet.
    Touches no database of the business: `context` carries what it needs from there."""
    suite: Suite = SUITES[name]
    context = dict(context)
    champion_row = context.pop("champion")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="revloop-eval-rubric-") as tmp:
        # The sandbox scores with the rubric the business uses now (published, else the rubric file).
        rubric_file = Path(tmp) / "rubric.yaml"
        rubric_file.write_text(context.pop("rubric_content"), encoding="utf-8")
        run_settings = settings.model_copy(update={"rubric_path": rubric_file})
        result: SuiteResult = suite.run(run_settings, engine, dataset, fmt, tick, context={"champion": champion_row})
    duration = round(time.perf_counter() - started, 2)
    failures = [
        {"metric": t.metric, "op": t.op, "threshold": t.value, "actual": result.metrics.get(t.metric)}
        for t in suite.thresholds
        if not t.holds(result.metrics.get(t.metric))
    ]
    meta = {
        "code_revision": code_revision(),
        **context,
        "engine": engine,
        "llm_model": settings.llm_model if engine == "llm" else None,
        "tokens": result.metrics.get("tokens", 0),
        "cost_usd": result.metrics.get("cost_usd", 0.0),
        "duration_s": duration,
        "python": platform.python_version(),
        **result.meta,  # a suite may name what it actually used (e.g. the rubric and model it scored with)
    }
    run_id = f"{utcnow():%Y%m%d-%H%M%S}-{name}-{uuid.uuid4().hex[:6]}"
    values: dict[str, Any] = {
        "run_id": run_id,
        "suite": name,
        "engine": engine,
        "passed": not failures,
        "metrics": _jsonable(result.metrics),
        "thresholds": [
            {"metric": t.metric, "op": t.op, "value": t.value, "regression": t.regression} for t in suite.thresholds
        ],
        "failures": _jsonable(failures),
        "cases": [{"id": c.id, "passed": c.passed, "detail": c.detail} for c in result.cases],
        "meta": _jsonable(meta),
    }
    folder = (out_dir or settings.var_dir / "evals") / run_id
    folder.mkdir(parents=True, exist_ok=True)
    shown = ("run_id", "suite", "engine", "passed", "metrics", "thresholds", "failures", "meta")
    record = {k: values[k] for k in shown}
    (folder / "run.json").write_text(json.dumps(record, indent=2, default=str))
    with (folder / "cases.jsonl").open("w", encoding="utf-8") as fh:
        for case in result.cases:
            fh.write(json.dumps(_jsonable(case.__dict__), ensure_ascii=False, default=str) + "\n")
    report = folder / "report.html"
    report.write_text(render_report(record, suite, result), encoding="utf-8")
    values["report_path"] = str(report.resolve())
    return values


def store_run(session: Session, values: dict[str, Any]) -> EvalRun:
    row = EvalRun(**values)
    session.add(row)
    session.flush()
    return row


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def list_runs(session: Session, suite: str | None = None, limit: int = 50) -> list[EvalRun]:
    stmt = select(EvalRun).order_by(EvalRun.created_at.desc(), EvalRun.id.desc()).limit(limit)
    if suite:
        stmt = stmt.where(EvalRun.suite == suite)
    return list(session.scalars(stmt).all())


def get_run(session: Session, run_id: str) -> EvalRun:
    row = session.scalar(select(EvalRun).where(EvalRun.run_id == run_id))
    if row is None:
        raise NotFound(f"eval run {run_id!r} not found (see `revloop eval list`)")
    return row


def compare(a: EvalRun, b: EvalRun) -> dict[str, Any]:
    """Metric deltas from run A to run B, cases whose verdict changed, and regressions past the thresholds."""
    if a.suite != b.suite:
        raise InvalidInput(f"runs are of different suites ({a.suite} vs {b.suite}); compare runs of one suite")
    suite = SUITES[a.suite]
    metrics = {}
    for key in sorted(set(a.metrics) | set(b.metrics)):
        before, after = a.metrics.get(key), b.metrics.get(key)
        delta = after - before if isinstance(before, int | float) and isinstance(after, int | float) else None
        metrics[key] = {"a": before, "b": after, "delta": delta}
    verdict_a = {c["id"]: c for c in a.cases}
    changed = [
        {"id": c["id"], "a": verdict_a[c["id"]]["passed"], "b": c["passed"], "detail": c["detail"]}
        for c in b.cases
        if c["id"] in verdict_a and verdict_a[c["id"]]["passed"] != c["passed"]
    ]
    regressions = [
        {"metric": t.metric, "a": a.metrics.get(t.metric), "b": b.metrics.get(t.metric), "allowed": t.regression}
        for t in suite.thresholds
        if t.regressed(a.metrics.get(t.metric), b.metrics.get(t.metric))
    ]
    if a.passed and not b.passed:
        regressions.append({"metric": "thresholds", "a": "met", "b": "failed", "allowed": "run B fails a threshold"})
    return {
        "suite": a.suite,
        "a": a.run_id,
        "b": b.run_id,
        "metrics": metrics,
        "changed_cases": changed,
        "regressions": regressions,
        "newly_failing": [c["id"] for c in changed if c["a"] and not c["b"]],
    }


def summary(row: EvalRun) -> dict[str, Any]:
    return {
        "run_id": row.run_id,
        "suite": row.suite,
        "engine": row.engine,
        "passed": row.passed,
        "metrics": row.metrics,
        "failures": row.failures,
        "meta": row.meta,
        "created_at": row.created_at.isoformat() if isinstance(row.created_at, dt.datetime) else row.created_at,
        "report_path": row.report_path,
    }
