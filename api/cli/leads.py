"""revloop leads: work imported leads through the lead graph (brief, draft, review queue)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from api.cli.common import progress_bar, user_errors

leads_app = typer.Typer(help="Leads: queue imported leads through the lead graph.", no_args_is_help=True)

RateOption = Annotated[
    int, typer.Option("--rate", min=1, help="At most this many lead graph runs start per minute (PER_MINUTE)")
]


def queue_leads(*, status: str, source: str | None, limit: int | None, rate: int):
    """Plan (skip the uncontactable, rank by rubric pre-score) in a read-only session, then queue in short
    batches, with a progress bar: the database's write lock is never held while the plan is made."""
    from core.db import session_scope
    from core.settings import get_settings
    from crm.work import plan_work, queue_plan_in_batches

    settings = get_settings()
    with user_errors():
        with session_scope(settings, readonly=True) as session:
            plan = plan_work(session, settings, status=status, source=source, limit=limit)
        if not plan.queue:
            return queue_plan_in_batches(settings, plan, rate_per_minute=rate, actor="cli")
        progress, advance = progress_bar(len(plan.queue), "queueing leads")
        with progress:
            return queue_plan_in_batches(settings, plan, rate_per_minute=rate, actor="cli", progress=advance)


def print_work(report, as_json: bool) -> None:
    from crm.work import describe

    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    for line in describe(report):
        typer.echo(line)


@leads_app.command("work")
def leads_work(
    status: Annotated[str, typer.Option("--status", help="Which leads: imported")] = "imported",
    source: Annotated[
        str | None,
        typer.Option("--source", help="Only leads of this import (x-education, generic:FILE-STEM) [default: all]"),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Queue at most N, the hottest")] = None,
    rate: RateOption = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Queue imported, open, contactable leads through the lead graph, hottest first (rubric pre-score), at most
    --rate a minute. Leads with a closed deal, without an email address or without consent are skipped and counted.
    Safe to re-run: a lead is queued once."""
    print_work(queue_leads(status=status, source=source, limit=limit, rate=rate), as_json)
