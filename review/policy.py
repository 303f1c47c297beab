"""Who may act on which review item: one policy function per action, called by every route and by bulk
actions (object-level authorization; the role check happens first, in the API).

Managers and admins act on any item. A closer decides the items assigned to them and the unassigned ones of
the team queue; another closer's item needs a manager, or a take-over (reassign to me first, audited), which a
closer may do when the item's SLA is breached or its assignee cannot sign in."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.enums import Role
from core.errors import Forbidden
from core.models import ReviewItem, User, utcnow

MANAGING = (Role.MANAGER, Role.ADMIN)


@dataclass(frozen=True)
class Who:
    """The person (or machine) acting: their roster name, role, and the actor string audit records use."""

    name: str
    role: str
    actor: str

    @property
    def manages(self) -> bool:
        return self.role in MANAGING


def _owned_by_someone_else(item: ReviewItem, who: Who) -> bool:
    return item.assignee is not None and item.assignee != who.name


def _refuse(item: ReviewItem, verb: str) -> Forbidden:
    return Forbidden(
        f"review item {item.id} is assigned to {item.assignee}: only they or a manager can {verb} it "
        "(take it over first if its SLA is breached or they cannot sign in)",
        details={"assignee": item.assignee},
    )


def check_may_decide(item: ReviewItem, who: Who) -> None:
    """Approve, reject, snooze: the assignee, anyone on an unassigned item, or a manager."""
    if not who.manages and _owned_by_someone_else(item, who):
        raise _refuse(item, "decide")


def check_may_undo(item: ReviewItem, who: Who) -> None:
    """Undo an approval: the person who approved it, or a manager."""
    approver = item.decision.actor if item.decision is not None else None
    if not who.manages and approver != who.actor:
        raise Forbidden(f"review item {item.id} was approved by {approver}: only they or a manager can undo it")


def check_may_recover(item: ReviewItem, who: Who) -> None:
    """Retry a failed send or settle an unknown delivery: the item's closer (assignee or approver) or a manager."""
    approver = item.decision.actor if item.decision is not None else None
    if who.manages or approver == who.actor or item.assignee == who.name:
        return
    raise Forbidden(f"review item {item.id} belongs to {item.assignee or approver}; ask a manager")


def check_may_assign(item: ReviewItem, who: Who) -> None:
    """Managers assign anything; a closer takes unassigned items or hands on their own."""
    if not who.manages and _owned_by_someone_else(item, who):
        raise Forbidden(f"review item {item.id} belongs to {item.assignee}; ask a manager to reassign it")


def take_over_reason(session: Session, item: ReviewItem, who: Who, now: dt.datetime | None = None) -> str:
    """Why `who` may take the item from its assignee (audited), or Forbidden."""
    if not _owned_by_someone_else(item, who):
        return "not assigned to anyone else"
    if who.manages:
        return f"a {who.role} took it over"
    now = now or utcnow()
    if item.sla_due_at is not None and item.sla_due_at <= now:
        return f"the SLA was breached while it was with {item.assignee}"
    active = session.scalar(select(User.id).where(User.name == item.assignee, User.active.is_(True)))
    if active is None:
        return f"{item.assignee} cannot sign in"
    raise Forbidden(
        f"review item {item.id} is with {item.assignee}, who can sign in, and its SLA is not breached: "
        "ask a manager to reassign it",
        details={"assignee": item.assignee},
    )
