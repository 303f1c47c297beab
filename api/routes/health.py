"""Health: liveness for load balancers (no auth) and the integrations' state for managers and admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.auth import Principal
from api.deps import SettingsDep, require
from core.enums import Role
from core.schemas import Health, IntegrationHealth, IntegrationsHealth
from review import health

router = APIRouter(prefix="/v1/health", tags=["ops"])


@router.get("", response_model=Health, summary="Liveness: the API process answers (no auth, touches nothing)")
def liveness() -> Health:
    return Health(status="ok")


@router.get(
    "/integrations",
    response_model=IntegrationsHealth,
    summary="Check every integration now: database, mail, work queue, knowledge base, LLM, webhook senders, CRM",
    description="Each answer is recorded; a change between healthy and unhealthy notifies managers and admins.",
)
def integrations(settings: SettingsDep, _: Annotated[Principal, Depends(require(Role.MANAGER))]) -> IntegrationsHealth:
    results = health.check_all(settings)
    return IntegrationsHealth(
        healthy=all(r.healthy for r in results),
        integrations=[IntegrationHealth.model_validate(r, from_attributes=True) for r in results],
    )
