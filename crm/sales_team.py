"""The sales team: the sales agents routing assigns leads to, and the service types each one handles.

Routing (agents/lead/routing.pick_assignee) prefers a closer whose services include the lead's service type
(the lead's `custom.service` or `custom.service_type`), then one in the lead's region, then anyone with room.
Service types are free text, stored trimmed and lower-case (routing compares them case-insensitively), each
once, in the order given.

Each agent is linked to the user who works their leads (`revloop users link`, POST /v1/sales-agents/{id}/link,
or automatically on a CRM import when the agent's name or email matches an active closer's or manager's).
Routing assigns only to agents linked to an active closer or manager, and writes that user's name as the review
item's assignee; an agent with no account never receives an item.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core import audit
from core.db import flush_pending
from core.enums import Role
from core.errors import InvalidInput, NotFound
from core.models import Deal, SalesAgent, User

MAX_SERVICES = 20
MAX_SERVICE_LENGTH = 100
# Who can work a lead: the roles a review item can be assigned to (core.users.assignable_names).
WORKING_ROLES = (Role.CLOSER, Role.MANAGER)


def list_agents(session: Session) -> list[dict[str, Any]]:
    """Every sales agent by name, with their services, linked user and how many open deals they hold."""
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(select(SalesAgent.user_id))))}
    return [
        {**_as_dict(agent, users.get(agent.user_id)), "open_deals": _open_deals(session, agent)}
        for agent in session.scalars(select(SalesAgent).order_by(SalesAgent.name))
    ]


_USERS, _AGENTS = User.__table__, SalesAgent.__table__
_ROSTER = (  # built once, Core (rows of three columns): routing runs it for every lead
    select(_USERS.c.name, _AGENTS.c.regional_office, _AGENTS.c.services)
    .join(_USERS, _USERS.c.id == _AGENTS.c.user_id)
    .where(_USERS.c.active.is_(True), _USERS.c.role.in_([str(r) for r in WORKING_ROLES]))
    .order_by(_AGENTS.c.id)
)


def routing_roster(session: Session) -> list[tuple[str, str | None, list[str]]]:
    """(user name, regional office, services) of every agent linked to an active closer or manager: the only
    people routing assigns leads to. A user linked to several agents appears once per agent."""
    flush_pending(session)  # a Core statement does not autoflush
    rows = session.connection().execute(_ROSTER)
    return [(name, office, list(services or [])) for name, office, services in rows]


def find_user(session: Session, who: str) -> User:
    """A user by email, else by exact name, else by a case-insensitive name only one user has."""
    key = who.strip()
    if "@" in key:
        user = session.scalar(select(User).where(func.lower(User.email) == key.lower()))
    else:
        user = session.scalar(select(User).where(User.name == key))
        if user is None:
            matches = session.scalars(select(User).where(func.lower(User.name) == key.lower())).all()
            user = matches[0] if len(matches) == 1 else None
    if user is None:
        raise NotFound(f"no user with the email or name {who!r} (revloop users list shows them)")
    return user


def link_user(session: Session, agent_id: int, user_id: int | None, *, actor: str) -> dict[str, Any]:
    """Link the agent to the user who works their leads (None unlinks: their leads go to the team queue).
    Only an active closer or manager can be linked; audited when it changes."""
    agent = get_agent(session, agent_id)
    user = None
    if user_id is not None:
        user = session.get(User, user_id)
        if user is None:
            raise NotFound(f"user_id: user {user_id} not found", details={"field": "user_id"})
        if not user.active:
            raise InvalidInput(
                f"user_id: {user.name} is deactivated; routing never assigns to a person who cannot sign in",
                details={"field": "user_id"},
            )
        if user.role not in WORKING_ROLES:
            raise InvalidInput(
                f"user_id: {user.name} is {'an' if user.role[0] in 'aeiou' else 'a'} {user.role}; only closers "
                "and managers work leads",
                details={"field": "user_id"},
            )
    _set_link(session, agent, user, actor=actor)
    return {**_as_dict(agent, user), "open_deals": _open_deals(session, agent)}


def _set_link(session: Session, agent: SalesAgent, user: User | None, *, actor: str, why: str | None = None) -> bool:
    before_id = agent.user_id
    after_id = user.id if user is not None else None
    if before_id == after_id:
        return False
    before_name = session.scalar(select(User.name).where(User.id == before_id)) if before_id is not None else None
    agent.user_id = after_id
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="sales_agent.linked" if user is not None else "sales_agent.unlinked",
        entity_type="sales_agent",
        entity_id=agent.id,
        before={"user_id": before_id, "user": before_name},
        after={"user_id": after_id, "user": user.name if user else None, **({"reason": why} if why else {})},
    )
    return True


def link_matching_users(session: Session, *, actor: str) -> list[tuple[str, str]]:
    """Link every unlinked agent whose name (or email, when the CRM names agents by email) matches one active
    closer or manager, case-insensitively; returns (agent, user) pairs linked. What a CRM import and the demo
    seed call, so imported agents with an account receive leads at once."""
    users = session.scalars(
        select(User).where(User.active.is_(True), User.role.in_([str(r) for r in WORKING_ROLES]))
    ).all()
    by_key: dict[str, list[User]] = {}
    for user in users:
        for key in {user.name.strip().lower(), user.email.lower()}:
            by_key.setdefault(key, []).append(user)
    linked = []
    for agent in session.scalars(select(SalesAgent).where(SalesAgent.user_id.is_(None)).order_by(SalesAgent.id)):
        found = by_key.get(agent.name.strip().lower(), [])
        if len(found) == 1:  # two users answering to one agent name: a person decides (revloop users link)
            _set_link(session, agent, found[0], actor=actor, why="name or email matches the user")
            linked.append((agent.name, found[0].name))
    return linked


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
    user = session.get(User, agent.user_id) if agent.user_id is not None else None
    return {**_as_dict(agent, user), "open_deals": _open_deals(session, agent)}


def _as_dict(agent: SalesAgent, user: User | None) -> dict[str, Any]:
    return {
        "id": agent.id,
        "name": agent.name,
        "manager": agent.manager,
        "regional_office": agent.regional_office,
        "services": list(agent.services or []),
        "user_id": agent.user_id,
        "user_name": user.name if user is not None else None,
        "user_email": user.email if user is not None else None,
        # Receives leads only when linked to an active closer or manager.
        "routable": user is not None and user.active and user.role in WORKING_ROLES,
        "updated_at": agent.updated_at,
    }
