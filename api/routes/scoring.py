"""Outcome models over HTTP: list them and promote a challenger (manager)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from api.auth import Principal
from api.deps import SessionDep, require
from scoring import registry

router = APIRouter(prefix="/v1/scoring", tags=["scoring"])


class ScoringModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    version: str
    status: str
    algorithm: str
    n_won: int
    n_lost: int
    auc: float
    brier: float
    log_loss: float
    calibration_error: float
    report: dict[str, Any]
    trained_at: dt.datetime
    promoted_at: dt.datetime | None
    promoted_by: str | None


@router.get("/models", response_model=list[ScoringModel], summary="Trained models, newest first")
def list_models(session: SessionDep, _: Annotated[Principal, Depends(require("manager", "evaluator"))]) -> list[Any]:
    return registry.list_models(session)


@router.post("/models/{version}/promote", response_model=ScoringModel, summary="Make a model the champion")
def promote_model(
    version: str, session: SessionDep, principal: Annotated[Principal, Depends(require("manager"))]
) -> Any:
    row = registry.promote(session, version, actor=principal.actor)
    return row
