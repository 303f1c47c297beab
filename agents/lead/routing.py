"""Routing: next action by grade, queue (main or exception), SLA deadline, and an assignee by region
with spare capacity. Leads that fit no pattern go to the exception queue for a human."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from core.db import session_scope
from core.models import ReviewItem, SalesAgent, utcnow
from core.settings import Settings

REGION_OF_COUNTRY = {
    **dict.fromkeys(["united states", "usa", "us", "canada", "mexico", "brazil", "panama"], "AMER"),
    **dict.fromkeys(
        [
            "united kingdom",
            "uk",
            "germany",
            "france",
            "ireland",
            "netherlands",
            "belgium",
            "norway",
            "spain",
            "italy",
            "sweden",
            "poland",
            "italy",
            "switzerland",
        ],
        "EMEA",
    ),
    **dict.fromkeys(["india", "china", "japan", "korea", "singapore", "philippines", "australia", "jordan"], "APAC"),
}


def region_of(facts: dict[str, Any]) -> str | None:
    country = (
        (facts.get("account") or {}).get("country")
        or facts["lead"]["custom"].get("country")
        or facts["lead"]["custom"].get("Country")
    )
    return REGION_OF_COUNTRY.get(str(country).strip().lower()) if country else None


def exception_reasons(brief: dict[str, Any], facts: dict[str, Any], injection: list[str]) -> list[str]:
    lead = facts["lead"]
    reasons = []
    if injection:
        reasons.append("lead text tries to steer the agent")
    if lead.get("disposable_email"):
        reasons.append("disposable email address")
    if not lead.get("company") and not lead.get("title") and (lead.get("free_mail") or not lead.get("email")):
        reasons.append("incomplete: no company, no title, no company email")
    if "low_confidence" in brief["flags"] and brief["grade"] in ("A", "B"):
        reasons.append("high grade on little data")
    return reasons


def sla_minutes(settings: Settings, grade: str, queue: str) -> int:
    if queue == "exception":
        return settings.sla_minutes_exception
    return {"A": settings.sla_minutes_a, "B": settings.sla_minutes_b, "C": settings.sla_minutes_c}.get(
        grade, settings.sla_minutes_d
    )


def pick_assignee(settings: Settings, region: str | None) -> str | None:
    """The closer of the lead's region (else anyone) holding the fewest pending items, under capacity."""
    with session_scope(settings) as session:
        agents = session.scalars(select(SalesAgent.name).order_by(SalesAgent.name)).all()
        if not agents:
            return None
        in_region = (
            session.scalars(select(SalesAgent.name).where(SalesAgent.regional_office == region)).all() if region else []
        )
        load = dict(
            session.execute(
                select(ReviewItem.assignee, func.count(ReviewItem.id))
                .where(ReviewItem.status == "pending", ReviewItem.assignee.is_not(None))
                .group_by(ReviewItem.assignee)
            ).all()
        )
    for pool in (in_region, agents):
        free = [a for a in pool if load.get(a, 0) < settings.closer_capacity]
        if free:
            return min(free, key=lambda a: (load.get(a, 0), a))
    return None  # everyone is at capacity: the team queue


def sla_due(settings: Settings, grade: str, queue: str, now: dt.datetime | None = None) -> str:
    return ((now or utcnow()) + dt.timedelta(minutes=sla_minutes(settings, grade, queue))).isoformat()
