"""revloop icp: the ICP rubric (validate, backtest against closed deals, publish, list)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import get_settings, user_errors

icp_app = typer.Typer(help="The ICP rubric: validate, backtest against closed deals, publish.", no_args_is_help=True)


def read_rubric(path: Path):
    from scoring.rubric import RubricError, parse

    try:
        return parse(path.read_text(encoding="utf-8"))
    except RubricError as exc:
        typer.secho(f"{path}: {len(exc.errors)} error(s)", fg=typer.colors.RED, err=True)
        for error in exc.errors:
            typer.echo(f"  - {error}", err=True)
        raise typer.Exit(2) from None


@icp_app.command("validate")
def icp_validate(path: Annotated[Path, typer.Argument(help="Rubric YAML", exists=True, dir_okay=False)]) -> None:
    """Check a rubric: every error names the criterion and the field. Exit 2 when invalid."""
    rubric = read_rubric(path)
    typer.echo(
        f"{path}: valid (version {rubric.version}, {len(rubric.criteria)} criteria, "
        f"{len(rubric.disqualifiers)} disqualifier(s), grades A>={rubric.grades.A:g} B>={rubric.grades.B:g} "
        f"C>={rubric.grades.C:g})"
    )


@icp_app.command("backtest")
def icp_backtest(
    path: Annotated[Path, typer.Argument(help="Draft rubric YAML", exists=True, dir_okay=False)],
    source: Annotated[
        str | None, typer.Option(help="Only closed deals imported from this source, e.g. maven or x-education")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Re-score closed deals with the draft and the published rubric, side by side."""
    from core.db import session_scope
    from scoring.icp import active_rubric, backtest

    draft = read_rubric(path)
    settings = get_settings()
    with user_errors():
        with session_scope(settings, readonly=True) as session:  # reads and re-scores; never holds the write lock
            result = backtest(session, draft, active_rubric(session, settings), source=source)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(
        f"{result['closed_deals']} closed deals{' from ' + source if source else ''}, "
        f"base win rate {result['base_win_rate']:.1%}"
    )
    typer.echo(
        f"{'':<10} {'draft ' + result['draft']['version']:>34} {'published ' + result['published']['version']:>34}"
    )

    def auc(v):
        return "-" if v is None else f"{v:.4f}"

    typer.echo(f"{'AUC':<10} {auc(result['draft']['auc']):>34} {auc(result['published']['auc']):>34}")
    for grade in ("A", "B", "C", "D"):
        cells = []
        for side in ("draft", "published"):
            g = result[side]["grades"][grade]
            rate = "-" if g["win_rate"] is None else f"{g['win_rate']:.1%}"
            lift = "" if g["lift"] is None else f" lift {g['lift']:.2f}"
            cells.append(f"n={g['n']} win {rate}{lift}")
        typer.echo(f"{'grade ' + grade:<10} {cells[0]:>34} {cells[1]:>34}")
    typer.echo(
        f"open leads changing grade: {result['open_leads_changing_grade']} of {result['open_leads']} "
        f"{result['grade_changes'] or ''}"
    )


@icp_app.command("publish")
def icp_publish(path: Annotated[Path, typer.Argument(help="Rubric YAML", exists=True, dir_okay=False)]) -> None:
    """Save a rubric as a new version and publish it (the previous one is archived; audited)."""
    from core.db import session_scope
    from scoring.icp import publish, save_draft

    read_rubric(path)
    with user_errors():
        with session_scope() as session:
            row = publish(session, save_draft(session, path.read_text(encoding="utf-8"), actor="cli").id, actor="cli")
            version = row.version
    typer.echo(f"published rubric {version}")


@icp_app.command("list")
def icp_list() -> None:
    """Rubric versions, newest first."""
    from core.db import session_scope
    from scoring.icp import list_rubrics

    with session_scope(readonly=True) as session:
        rows = list_rubrics(session)
        for r in rows:
            typer.echo(f"{r.id:>4} {r.version:<30} {r.status:<10} by {r.created_by} {r.created_at:%Y-%m-%d %H:%M}")
        if not rows:
            typer.echo(f"no rubric saved yet; leads are scored with {get_settings().rubric_path}")
