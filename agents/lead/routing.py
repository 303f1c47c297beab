"""Routing: next action by grade, queue (main or exception), SLA deadline, and an assignee by region
with spare capacity. Leads that fit no pattern go to the exception queue for a human."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from core.db import reading
from core.enums import ReviewQueue
from core.models import utcnow
from core.settings import Settings
from crm import records, sales_team
from review import repository

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


def service_type(facts: dict[str, Any]) -> str | None:
    """The service the lead asks for, when the form or import says so (custom.service / service_type)."""
    custom = facts["lead"].get("custom") or {}
    value = custom.get("service") or custom.get("service_type")
    return str(value).strip().lower() if value else None


def industry_without_history(settings: Settings, facts: dict[str, Any], session: Session | None = None) -> str | None:
    """The lead's industry when none of our closed deals is in it, once there is a history to compare with
    (at least REVLOOP_SCORING_MIN_CLOSED_DEALS closed deals; before that every industry would be new)."""
    industry = (facts.get("account") or {}).get("industry") or facts["lead"]["custom"].get("industry")
    if not industry:
        return None
    with reading(settings, session) as session:
        if records.closed_deal_count(session) < settings.scoring_min_closed_deals:
            return None
        seen = records.closed_deal_count(session, industry=str(industry))
    return None if seen else str(industry)


def exception_reasons(
    brief: dict[str, Any],
    facts: dict[str, Any],
    injection: list[str],
    settings: Settings | None = None,
    session: Session | None = None,
) -> list[str]:
    lead = facts["lead"]
    reasons = []
    unusual = industry_without_history(settings, facts, session) if settings is not None else None
    # A strong lead (or one the rubric's adjustments held below B, e.g. outside the ICP) in an industry we have
    # never closed a deal in: a person decides.
    if unusual and (brief["grade"] in ("A", "B") or brief.get("uncapped_grade") in ("A", "B")):
        reasons.append(f"unusual industry: no deal history in {unusual!r}")
    if injection:
        reasons.append("lead text tries to steer the agent")
    if lead.get("disposable_email"):
        reasons.append("disposable email address")
    if brief.get("too_little"):
        reasons.append(brief["too_little"])  # the rubric's words: which essentials are unknown
    elif not lead.get("company") and not lead.get("title") and (lead.get("free_mail") or not lead.get("email")):
        reasons.append("incomplete: no company, no title, no company email")
    if "low_confidence" in brief["flags"] and brief["grade"] in ("A", "B"):
        reasons.append("high grade on little data")
    return reasons


def sla_minutes(settings: Settings, grade: str, queue: str) -> int:
    if queue == ReviewQueue.EXCEPTION:
        return settings.sla_minutes_exception
    return {"A": settings.sla_minutes_a, "B": settings.sla_minutes_b, "C": settings.sla_minutes_c}.get(
        grade, settings.sla_minutes_d
    )


def pick_assignee(
    settings: Settings, region: str | None, service: str | None = None, session: Session | None = None
) -> str | None:
    """The user working the lead's service and region (then service, then region, then anyone) holding the
    fewest pending items, under capacity; None sends the item to the team queue. Only agents linked to an active
    closer or manager are candidates, and the name returned is that user's (what the queue's "mine" and the
    review policy compare with). Loads are counted per candidate up to capacity, never over the whole queue."""
    with reading(settings, session) as session:  # reads only: the caller's session, else a read-only one
        roster = sales_team.routing_roster(session)
        if not roster:
            return None
        load = repository.pending_load(session, [name for name, _, _ in roster], settings.closer_capacity)
    serves = {name for name, _, services in roster if service and service in [s.lower() for s in services or []]}
    local = {name for name, office, _ in roster if region and office == region}
    everyone = {name for name, _, _ in roster}
    for pool in (serves & local, serves, local, everyone):
        free = sorted(a for a in pool if load.get(a, 0) < settings.closer_capacity)
        if free:
            return min(free, key=lambda a: (load.get(a, 0), a))
    return None  # nobody who can act has room: the team queue


def sla_due(settings: Settings, grade: str, queue: str, now: dt.datetime | None = None) -> str:
    return ((now or utcnow()) + dt.timedelta(minutes=sla_minutes(settings, grade, queue))).isoformat()
