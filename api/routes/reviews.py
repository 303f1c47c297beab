"""The weekly momentum review: a 20-minute agenda for the pipeline meeting (deals/weekly.py reads it)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.auth import Principal
from api.deps import ReadSessionDep, SettingsDep, require
from core.enums import Role
from core.models import utcnow
from core.schemas import Day, WeeklyReview
from deals import weekly

router = APIRouter(prefix="/v1/reviews", tags=["reviews"])


@router.get(
    "/weekly",
    response_model=WeeklyReview,
    summary="Weekly momentum review: what changed in the week, the pipeline by stage, stalled deals, unpaid "
    "invoices by age; counts first, then the lists",
)
def weekly_review(
    session: ReadSessionDep,
    settings: SettingsDep,
    _: Annotated[Principal, Depends(require(Role.MANAGER, Role.CLOSER))],
    as_of: Annotated[
        Day | None, Query(description="The review as it stood at the end of this day, UTC (default: today)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Rows per list (counts are never cut)")] = 25,
) -> dict[str, Any]:
    return weekly.weekly_review(session, settings, as_of or utcnow().date(), limit=limit)
