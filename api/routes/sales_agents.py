"""The sales team (managers): who routing assigns leads to, and the service types each agent handles."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from api.auth import Principal
from api.deps import ReadSessionDep, SessionDep, require
from core.enums import Role
from core.schemas import Id, SalesAgentLink, SalesAgentRead, SalesAgentServices
from crm import sales_team

router = APIRouter(prefix="/v1/sales-agents", tags=["sales team"])
Manager = Annotated[Principal, Depends(require(Role.MANAGER))]


@router.get("", response_model=list[SalesAgentRead], summary="The sales agents, with their services and open deals")
def list_sales_agents(session: ReadSessionDep, _: Manager) -> Any:
    return sales_team.list_agents(session)


@router.put(
    "/{agent_id}/services",
    response_model=SalesAgentRead,
    summary="Set the service types routed to this agent first (replaces them; [] clears them)",
)
def set_services(agent_id: Id, data: SalesAgentServices, session: SessionDep, principal: Manager) -> Any:
    return sales_team.set_services(session, agent_id, data.services, actor=principal.actor)


@router.post(
    "/{agent_id}/link",
    response_model=SalesAgentRead,
    summary="Link the agent to the user who works its leads (user_id null unlinks it)",
    description="Routing assigns leads only to agents linked to an active closer or manager; an unlinked agent's "
    "leads go to the team queue. Audited (sales_agent.linked / sales_agent.unlinked).",
)
def link_user(agent_id: Id, data: SalesAgentLink, session: SessionDep, principal: Manager) -> Any:
    return sales_team.link_user(session, agent_id, data.user_id, actor=principal.actor)
