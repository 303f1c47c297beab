"""The daily job the worker runs: payment reminders, follow-ups and onboarding steps due that day, then
the next day's job. Each scan reads what is due in a read-only session, then handles one item per short
unit of work, so the worker never holds the database's write lock for a whole scan.

One job per day (dedupe key), so a restart or a second worker schedules nothing twice; the drafts
themselves are unique per (invoice, step) and (lead, step)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from billing import reminders
from core import audit, jobs
from core.db import run_in_transaction, session_scope
from core.enums import JobKind
from core.settings import Settings
from deals import cadences, flow

DAILY = JobKind.DAILY_SCAN


def schedule(settings: Settings, day: dt.date, at_hour: int = 6) -> None:
    run_after = dt.datetime.combine(day, dt.time(at_hour), tzinfo=dt.UTC)
    with session_scope(settings) as session:
        jobs.enqueue(
            session, DAILY, {"day": day.isoformat()}, dedupe_key=f"{DAILY}:{day.isoformat()}", run_after=run_after
        )


def run(settings: Settings, payload: dict[str, Any]) -> None:
    day = dt.date.fromisoformat(payload["day"])
    counts = {"collections": reminders.scan(settings, day), "cadences": cadences.scan(settings, day)}
    # Each project in its own short unit of work (retried when the database is busy): the scan never holds
    # the write lock for all of them at once.
    with session_scope(settings, readonly=True) as session:
        project_ids = flow.kickoffs_due(session, day)
    counts["onboarding"] = sum(
        run_in_transaction(settings, lambda session, pid=pid: flow.onboarding_step(session, settings, pid, day))
        for pid in project_ids
    )
    schedule(settings, day + dt.timedelta(days=1))
    with session_scope(settings) as session:
        audit.record(
            session,
            actor="agent:daily",
            action="daily.scanned",
            entity_type="scan",
            entity_id=day.isoformat(),
            after=counts,
        )
