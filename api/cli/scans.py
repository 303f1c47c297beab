"""revloop collections scan and revloop cadences scan: the daily scans, on demand."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import fail, get_settings, user_errors

collections_app = typer.Typer(help="Collections: the daily reminder scan.", no_args_is_help=True)
cadences_app = typer.Typer(help="Follow-up cadences: the daily follow-up scan.", no_args_is_help=True)


@collections_app.command("scan")
def collections_scan(
    today: Annotated[str | None, typer.Option(help="Run as of this day (YYYY-MM-DD) [default: today]")] = None,
) -> None:
    """Draft the payment reminders due today into the review queue (the worker also does this daily)."""
    import datetime as dt

    from billing.reminders import scan

    with user_errors():
        try:
            day = dt.date.fromisoformat(today) if today else None
        except ValueError:
            fail(f"--today must be YYYY-MM-DD, got {today!r}", code=2)
        counts = scan(get_settings(), day)
    typer.echo(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))


@cadences_app.command("scan")
def cadences_scan(
    today: Annotated[str | None, typer.Option(help="Run as of this day (YYYY-MM-DD) [default: today]")] = None,
) -> None:
    """Draft the follow-ups (and stale-deal reactivations) due today (the worker also does this daily)."""
    import datetime as dt

    from deals.cadences import scan

    try:
        day = dt.date.fromisoformat(today) if today else None
    except ValueError:
        fail(f"--today must be YYYY-MM-DD, got {today!r}", code=2)
    with user_errors():
        counts = scan(get_settings(), day)
    typer.echo(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
