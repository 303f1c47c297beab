"""revloop sync: bring records in from the systems a business already runs (today: its CRM)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import fail, get_settings

sync_app = typer.Typer(help="Sync records from an external system (HubSpot, Pipedrive).", no_args_is_help=True)

OBJECT_NAMES = {"account": "companies/organizations", "contact": "contacts/persons", "deal": "deals"}


@sync_app.command("crm")
def sync_crm_cmd(
    source: Annotated[str, typer.Option("--from", help="hubspot | pipedrive")],
    full: Annotated[
        bool, typer.Option("--full", help="Read everything again instead of what changed since the last run")
    ] = False,
    rejects: Annotated[
        Path | None, typer.Option(help="Write every rejected record with its reason to this CSV")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Import companies, contacts and deals from HubSpot or Pipedrive (first run), then only what changed since
    (updatedAt cursor). Safe to re-run. Conflicts (edited on both sides since the last sync): the later edit wins,
    revloop's last change vs the CRM's updatedAt, a tie goes to the CRM; each is listed. Exit 1 when the CRM fails
    (what was read before is kept and the next run resumes from there)."""
    from crm.connectors.base import CrmError
    from crm.sync import sync_crm

    if source not in ("hubspot", "pipedrive"):
        fail("--from must be hubspot or pipedrive", code=2)
    totals: dict[str, int] = {}

    def progress(object_type: str, n: int) -> None:
        totals[object_type] = totals.get(object_type, 0) + n
        typer.echo(f"  {source} {OBJECT_NAMES[object_type]}: {totals[object_type]} read", err=True)

    try:
        report = sync_crm(get_settings(), source, full=full, progress=progress)
    except CrmError as exc:
        fail(f"{source} sync stopped: {exc.message} (progress so far is kept; run it again to resume)")
    except ValueError as exc:
        fail(str(exc), code=2)
    data = report.as_dict()
    if rejects is not None:
        import csv

        with rejects.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["object", "remote_id", "reason"])
            writer.writeheader()
            writer.writerows(report.rejected)
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return

    def fmt(counts: dict) -> str:
        return ", ".join(f"{v} {k}" for k, v in counts.items()) or "nothing"

    typer.echo(
        f"{source} {data['mode']} sync: read {fmt(data['read'])}; created {fmt(data['created'])}; "
        f"updated {fmt(data['updated'])}; unchanged {fmt(data['unchanged'])}; rejected {data['rejected']}; "
        f"conflicts {len(data['conflicts'])}"
    )
    for r in report.rejected[:20]:
        typer.echo(f"  rejected {source} {r['object']} {r['remote_id']}: {r['reason']}", err=True)
    if len(report.rejected) > 20:
        typer.echo(
            f"  ... and {len(report.rejected) - 20} more" + ("" if rejects else " (see --rejects FILE)"), err=True
        )
    for c in report.conflicts:
        typer.echo(
            f"  conflict {c['object']} {c['id']} ({source} {c['remote_id']}) {c['field']}: revloop "
            f"{c['revloop']!r}, {source} {c[source]!r}; kept {c['kept']} ({data['conflict_rule']})"
        )
