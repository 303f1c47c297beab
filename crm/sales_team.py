"""The sales team: the sales agents routing assigns leads to, and the service types each one handles.

Routing (agents/lead/routing.pick_assignee) prefers a closer whose services include the lead's service type
(the lead's `custom.service` or `custom.service_type`), then one in the lead's region, then anyone with room.
Service types are free text, stored trimmed and lower-case (routing compares them case-insensitively), each
once, in the order given.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core import audit
from core.errors import InvalidInput, NotFound
from core.models import Deal, SalesAgent

MAX_SERVICES = 20
MAX_SERVICE_LENGTH = 100


def list_agents(session: Session) -> list[dict[str, Any]]:
    """Every sales agent by name, with their services and how many open deals they hold."""
    return [
        {**_as_dict(agent), "open_deals": _open_deals(session, agent)}
        for agent in session.scalars(select(SalesAgent).order_by(SalesAgent.name))
    ]


def _open_deals(session: Session, agent: SalesAgent) -> int:
    """Open deals the agent holds: imported ones by CRM agent, revloop's by owner (a person's name)."""
    return (
        session.scalar(
            select(func.count(Deal.id)).where(
                or_(Deal.sales_agent_id == agent.id, Deal.owner == agent.name), Deal.outcome.is_(None)
            )
        )
        or 0
    )


def get_agent(session: Session, agent_id: int) -> SalesAgent:
    agent = session.get(SalesAgent, agent_id)
    if agent is None:
        raise NotFound(f"sales agent {agent_id} not found")
    return agent


def find_agent(session: Session, name: str) -> SalesAgent:
    """By exact name, else by a case-insensitive match when only one agent has it."""
    agent = session.scalar(select(SalesAgent).where(SalesAgent.name == name.strip()))
    if agent is not None:
        return agent
    matches = session.scalars(
        select(SalesAgent).where(func.lower(SalesAgent.name) == name.strip().lower()).order_by(SalesAgent.id)
    ).all()
    if len(matches) == 1:
        return matches[0]
    raise NotFound(f"no sales agent named {name!r} (revloop sales-agents list shows them)")


def normalise_services(services: list[str]) -> list[str]:
    """Trimmed, lower-case, each once in the order given; a blank or overlong one is refused with its position."""
    out: list[str] = []
    for position, raw in enumerate(services):
        value = " ".join(str(raw).split()).lower()
        if not value:
            raise InvalidInput(
                f"services.{position}: a service type may not be blank",
                details={"fields": {f"services.{position}": "may not be blank"}},
            )
        if len(value) > MAX_SERVICE_LENGTH:
            raise InvalidInput(
                f"services.{position}: at most {MAX_SERVICE_LENGTH} characters",
                details={"fields": {f"services.{position}": f"at most {MAX_SERVICE_LENGTH} characters"}},
            )
        if value not in out:
            out.append(value)
    if len(out) > MAX_SERVICES:
        raise InvalidInput(
            f"services: at most {MAX_SERVICES} service types, got {len(out)}",
            details={"fields": {"services": f"at most {MAX_SERVICES} items"}},
        )
    return out


def set_services(session: Session, agent_id: int, services: list[str], *, actor: str) -> dict[str, Any]:
    """Replace the agent's service types (an empty list clears them); an audit event when they change."""
    agent = get_agent(session, agent_id)
    new = normalise_services(services)
    before = list(agent.services or [])
    if new != before:
        agent.services = new
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="sales_agent.services_changed",
            entity_type="sales_agent",
            entity_id=agent.id,
            before={"services": before},
            after={"services": new},
        )
    return {**_as_dict(agent), "open_deals": _open_deals(session, agent)}


def _as_dict(agent: SalesAgent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "name": agent.name,
        "manager": agent.manager,
        "regional_office": agent.regional_office,
        "services": list(agent.services or []),
        "updated_at": agent.updated_at,
    }
