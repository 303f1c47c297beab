"""The manager dashboard's numbers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.auth import Principal
from api.deps import ReadSessionDep, require
from core.enums import Role
from core.schemas import Kpis
from review import kpis

router = APIRouter(prefix="/v1/kpis", tags=["kpis"])


@router.get("", response_model=Kpis, summary="Speed to lead, SLA, funnel, stage aging, reviewers, template edit rates")
def get_kpis(
    session: ReadSessionDep,
    _: Annotated[Principal, Depends(require(Role.MANAGER))],
    days: Annotated[int, Query(ge=1, le=365, description="Window: the last N days")] = 30,
) -> dict[str, Any]:
    return kpis.compute(session, days=days)
