"""revloop import: real data from CSV files (leads with outcomes, a CRM export, companies, billing history)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import progress_bar, user_errors
from api.cli.leads import RateOption, print_work, queue_leads

import_app = typer.Typer(
    help="Import real data (CSV): leads with outcomes, a CRM export, a company directory, billing history.",
    no_args_is_help=True,
)

# Options every import command shares.
StrictOption = Annotated[bool, typer.Option(help="Import nothing if any row is rejected")]
RejectsOption = Annotated[Path | None, typer.Option(help="Write every rejected row with its reason to this CSV")]
ReportJsonOption = Annotated[bool, typer.Option("--json", help="Print the report as JSON")]


def run_import(total: int, name: str, do_import):
    """One import in one transaction, with a progress bar; a user mistake ends it with its message."""
    from core.db import session_scope

    progress, advance = progress_bar(total, f"importing {name}")
    with user_errors(), progress, session_scope() as session:
        return do_import(session, advance)


def report_import(report, as_json: bool, rejects: Path | None, extra: dict | None = None) -> None:
    import csv

    data = {**report.as_dict(), **(extra or {})}
    if rejects is not None:
        with rejects.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["file", "row", "reason"])
            writer.writeheader()
            writer.writerows(report.rejected)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return

    def fmt(counts: dict) -> str:
        return ", ".join(f"{v} {k}" for k, v in counts.items()) or "nothing"

    typer.echo(
        f"read {data['rows']} row(s): created {fmt(data['created'])}; updated {fmt(data['updated'])}; "
        f"unchanged {fmt(data['unchanged'])}; rejected {data['rejected']}"
    )
    for r in report.rejected[:20]:
        typer.echo(f"  rejected {r['file']} row {r['row']}: {r['reason']}", err=True)
    if len(report.rejected) > 20:
        typer.echo(
            f"  ... and {len(report.rejected) - 20} more" + ("" if rejects else " (see --rejects FILE)"), err=True
        )


@import_app.command("leads")
def import_leads_cmd(
    path: Annotated[Path, typer.Argument(help="CSV file", exists=True, dir_okay=False, readable=True)],
    format: Annotated[str, typer.Option("--format", help="x-education | generic")] = "generic",
    map_: Annotated[list[str] | None, typer.Option("--map", help="COLUMN=field (generic format), repeatable")] = None,
    strict: StrictOption = False,
    rejects: RejectsOption = None,
    as_json: ReportJsonOption = False,
    work: Annotated[
        bool,
        typer.Option(
            "--work",
            help="After the import commits, queue its open, contactable leads through the lead graph "
            "(as revloop leads work does)",
        ),
    ] = False,
    rate: RateOption = 20,
) -> None:
    """Import leads; outcomes become closed deals, Do Not Email/Call become consent. Safe to re-run."""
    from core.settings import get_settings
    from crm.imports import count_rows, import_leads_in_batches, lead_source_key, parse_mapping

    with user_errors():
        mapping = parse_mapping(map_ or [])
        # The whole file is validated first; then short transactions of REVLOOP_IMPORT_BATCH_ROWS rows.
        progress, advance = progress_bar(count_rows(path), f"importing {path.name}")
        with progress:
            report = import_leads_in_batches(
                get_settings(), path, format, mapping=mapping, strict=strict, progress=advance
            )
    if not work:
        report_import(report, as_json, rejects)
        return
    if not as_json:
        report_import(report, as_json, rejects)
    worked = queue_leads(status="imported", source=lead_source_key(path, format), limit=None, rate=rate)
    if as_json:
        report_import(report, as_json, rejects, extra={"work": worked.as_dict()})
    else:
        print_work(worked, as_json=False)


@import_app.command("companies")
def import_companies_cmd(
    path: Annotated[Path, typer.Argument(help="CSV file", exists=True, dir_okay=False, readable=True)],
    format: Annotated[
        str, typer.Option("--format", help="fortune1000 | generic (name, domain, sector, ...)")
    ] = "generic",
    strict: StrictOption = False,
    rejects: RejectsOption = None,
    as_json: ReportJsonOption = False,
) -> None:
    """Import firmographics into the offline company directory used to enrich leads. Safe to re-run."""
    from crm.imports import count_rows, import_companies

    report = run_import(
        count_rows(path),
        path.name,
        lambda session, advance: import_companies(session, path, format, strict=strict, progress=advance),
    )
    report_import(report, as_json, rejects)


@import_app.command("crm")
def import_crm_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder of the CRM export", exists=True, file_okay=False)],
    format: Annotated[str, typer.Option("--format", help="maven")] = "maven",
    strict: StrictOption = False,
    rejects: RejectsOption = None,
    as_json: ReportJsonOption = False,
) -> None:
    """Import a CRM export (accounts, products, sales team, pipeline). Safe to re-run."""
    from core.settings import get_settings
    from crm.imports import import_crm_in_batches, maven_row_count

    with user_errors():
        # Every file is validated first; then short transactions (the pipeline REVLOOP_IMPORT_BATCH_ROWS at a time).
        progress, advance = progress_bar(maven_row_count(folder), f"importing {folder.name}")
        with progress:
            report = import_crm_in_batches(get_settings(), folder, format, strict=strict, progress=advance)
    report_import(report, as_json, rejects)


@import_app.command("invoices")
def import_invoices_cmd(
    path: Annotated[Path, typer.Argument(help="Billing history CSV", exists=True, dir_okay=False)],
    format: Annotated[str, typer.Option("--format", help="ibm-ar")] = "ibm-ar",
    strict: StrictOption = False,
    rejects: RejectsOption = None,
    as_json: ReportJsonOption = False,
) -> None:
    """Import billing history (customers, invoices, settled payments). Safe to re-run."""
    from billing.ledger import import_invoices
    from crm.imports import count_rows

    report = run_import(
        count_rows(path),
        path.name,
        lambda session, advance: import_invoices(session, path, format, strict=strict, progress=advance),
    )
    report_import(report, as_json, rejects)
