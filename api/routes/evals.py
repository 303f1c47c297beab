"""Eval runs for evaluators: list, one run with its cases, its HTML report, and a comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from api.auth import Principal
from api.deps import ReadSessionDep, require
from core.enums import Role
from core.errors import NotFound
from core.schemas import EvalComparison, EvalRunRead, EvalRunSummary, NoNul, Text
from evals import runner

router = APIRouter(prefix="/v1/evals", tags=["evals"])
Reader = Annotated[Principal, Depends(require(Role.EVALUATOR, Role.MANAGER))]


@router.get("/runs", response_model=list[EvalRunSummary], summary="Stored eval runs, newest first")
def list_runs(
    session: ReadSessionDep,
    _: Reader,
    suite: Annotated[str | None, Query(max_length=30), NoNul] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    return [runner.summary(r) for r in runner.list_runs(session, suite, limit)]


@router.get("/compare", response_model=EvalComparison, summary="Metric deltas and changed verdicts from run a to run b")
def compare_runs(
    session: ReadSessionDep,
    _: Reader,
    a: Annotated[str, Query(max_length=80), NoNul],
    b: Annotated[str, Query(max_length=80), NoNul],
) -> dict[str, Any]:
    return runner.compare(runner.get_run(session, a), runner.get_run(session, b))


@router.get("/runs/{run_id}", response_model=EvalRunRead, summary="One run with every case verdict")
def get_run(run_id: Text, session: ReadSessionDep, _: Reader) -> dict[str, Any]:
    row = runner.get_run(session, run_id)
    return {**runner.summary(row), "thresholds": row.thresholds, "cases": row.cases}


@router.get("/runs/{run_id}/report", response_class=HTMLResponse, summary="The run's self-contained HTML report")
def get_report(run_id: Text, session: ReadSessionDep, _: Reader) -> HTMLResponse:
    row = runner.get_run(session, run_id)
    path = Path(row.report_path or "")
    if not row.report_path or not path.is_file():
        raise NotFound(f"the report of {run_id} is no longer on disk ({row.report_path})")
    return HTMLResponse(path.read_text(encoding="utf-8"))
