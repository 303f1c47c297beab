"""Outcome models over HTTP: list them, see their calibration and lift, promote a challenger (manager)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from api.auth import Principal
from api.deps import ReadSessionDep, SessionDep, require
from core.enums import Role
from core.schemas import ModelCharts, ScoringModel, Text
from scoring import registry

router = APIRouter(prefix="/v1/scoring", tags=["scoring"])
Reader = Annotated[Principal, Depends(require(Role.MANAGER, Role.EVALUATOR))]
Manager = Annotated[Principal, Depends(require(Role.MANAGER))]


@router.get("/models", response_model=list[ScoringModel], summary="Trained models, newest first")
def list_models(session: ReadSessionDep, _: Reader) -> list[Any]:
    return registry.list_models(session)


@router.get(
    "/models/{version}/charts",
    response_model=ModelCharts,
    summary="A model's calibration (reliability bins) and lift by decile on its held-out split",
)
def model_charts(version: Text, session: ReadSessionDep, _: Reader) -> Any:
    return registry.model_charts(session, version)


@router.post("/models/{version}/promote", response_model=ScoringModel, summary="Make a model the champion")
def promote_model(version: Text, session: SessionDep, principal: Manager) -> Any:
    return registry.promote(session, version, actor=principal.actor)
