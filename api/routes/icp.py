"""ICP rubric versions over HTTP: validate, save a draft, backtest, publish (manager)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, status

from api.auth import Principal
from api.deps import ReadSessionDep, SessionDep, SettingsDep, require
from core.enums import Role
from core.errors import InvalidInput
from core.schemas import ActiveRubric, Backtest, BacktestRequest, IcpRubric, Id, RubricContent, RubricValidation
from scoring import icp
from scoring.rubric import RubricError, parse

router = APIRouter(prefix="/v1/icp", tags=["icp"])

Reader = Annotated[Principal, Depends(require(Role.MANAGER, Role.EVALUATOR))]
Manager = Annotated[Principal, Depends(require(Role.MANAGER))]


@router.get("/rubrics", response_model=list[IcpRubric], summary="Rubric versions, newest first")
def list_rubrics(session: ReadSessionDep, _: Reader) -> list[Any]:
    return icp.list_rubrics(session)


@router.get("/rubrics/active", response_model=ActiveRubric, summary="The rubric leads are scored with now")
def active_rubric(session: ReadSessionDep, settings: SettingsDep, _: Reader) -> ActiveRubric:
    row = icp.published(session)
    if row is not None:
        return ActiveRubric(version=row.version, content=row.content, origin="published")
    return ActiveRubric(
        version=icp.active_rubric(session, settings).version,
        content=settings.rubric_path.read_text(encoding="utf-8"),
        origin="file",
    )


@router.post("/rubrics/validate", response_model=RubricValidation, summary="Check a rubric without saving it")
def validate_rubric(data: RubricContent, _: Reader) -> RubricValidation:
    try:
        rubric = parse(data.content)
    except RubricError as exc:
        return RubricValidation(valid=False, errors=exc.errors)
    return RubricValidation(valid=True, errors=[], version=rubric.version)


@router.post(
    "/rubrics/backtest",
    response_model=Backtest,
    summary="Re-score closed deals with a rubric and with the published one",
)
def backtest_rubric(data: BacktestRequest, session: ReadSessionDep, settings: SettingsDep, _: Reader) -> dict[str, Any]:
    return icp.backtest(session, parse(data.content), icp.active_rubric(session, settings), source=data.source)


@router.post(
    "/rubrics",
    response_model=IcpRubric,
    status_code=status.HTTP_201_CREATED,
    summary="Save a draft (422 naming each criterion and field when invalid)",
)
def save_draft(
    data: RubricContent, session: SessionDep, read: ReadSessionDep, settings: SettingsDep, principal: Manager
) -> Any:
    draft = parse(data.content)  # 422 naming each criterion and field, before anything is read or written
    # The backtest re-scores every closed deal: it runs first, through a read-only session, so the write
    # below stays short and the database's write lock is not held while the backtest runs.
    try:
        backtest = icp.backtest(read, draft, icp.active_rubric(read, settings))
    except InvalidInput:  # no closed deals yet: the draft is saved without a backtest
        backtest = None
    row = icp.save_draft(session, data.content, actor=principal.actor)
    row.backtest = backtest
    return row


@router.post("/rubrics/{rubric_id}/publish", response_model=IcpRubric, summary="Publish a draft (manager)")
def publish_rubric(rubric_id: Id, session: SessionDep, principal: Manager) -> Any:
    return icp.publish(session, rubric_id, actor=principal.actor)
