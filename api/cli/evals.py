"""revloop eval: the offline eval suites (run, list, compare)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import get_settings, progress_bar, user_errors

eval_app = typer.Typer(
    help="Offline eval suites (scoring, semantic, routing, drafting, grading, safety, collections): run, list, "
    "compare.",
    no_args_is_help=True,
)


def eval_total(name: str, dataset: Path | None) -> int:
    from evals.suites import SUITES, case_count

    if SUITES[name].needs_cases:
        return case_count(name) or 0
    return 7451 if dataset is None else max(1, sum(1 for _ in dataset.open(encoding="utf-8", errors="replace")) - 1)


def confusion_lines(table: dict | None) -> list[str]:
    """A suite's confusion table (grading: the grades written for the cases against the grades given)."""
    if not table:
        return []
    columns = table["columns"]
    lines = ["  confusion (expected down, got across)", "    " + f"{'':<12}" + "".join(f"{c:>11}" for c in columns)]
    for label, counts in table["rows"].items():
        lines.append("    " + f"{label:<12}" + "".join(f"{counts.get(c, 0):>11}" for c in columns))
    return lines


@eval_app.command("run")
def eval_run(
    suite: Annotated[
        str, typer.Argument(help="scoring | semantic | routing | drafting | grading | safety | collections | all")
    ],
    engine: Annotated[
        str, typer.Option("--engine", help="offline (deterministic) or llm (OPENAI_BASE_URL)")
    ] = "offline",
    dataset: Annotated[
        Path | None, typer.Option("--dataset", help="Labelled file for the scoring suite", exists=True, dir_okay=False)
    ] = None,
    format: Annotated[str | None, typer.Option("--format", help="Dataset format: x-education")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for run files [default: var/evals]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with the metrics")] = False,
) -> None:
    """Run a suite (or all) and store the run; exit 1 when a threshold is not met."""
    from core.migrate import upgrade
    from evals.runner import run_and_store, suite_names, summary

    settings = get_settings()
    with user_errors():
        names = suite_names(suite)
        upgrade(settings)
        runs = []
        for name in names:
            progress, tick = progress_bar(eval_total(name, dataset), f"eval {name}")
            # The suite runs in its own sandbox database; the business's database is read briefly before and
            # written briefly after, never held while the suite runs.
            with progress:
                row = run_and_store(
                    settings,
                    name,
                    engine=engine,
                    dataset=dataset if name == "scoring" else None,
                    fmt=format if name == "scoring" else None,
                    out_dir=out,
                    tick=tick,
                )
                runs.append(summary(row))
    passed = all(r["passed"] for r in runs)
    if as_json:
        typer.echo(json.dumps(runs[0] if len(runs) == 1 else {"passed": passed, "runs": runs}, default=str))
    else:
        for r in runs:
            typer.echo(f"{r['run_id']}  {'PASSED' if r['passed'] else 'FAILED'}  ({r['meta']['duration_s']} s)")
            limits = {f["metric"]: f for f in r["failures"]}
            for key, value in r["metrics"].items():
                shown = f"{value:.4f}" if isinstance(value, float) else str(value)
                note = f"  <- needs {limits[key]['op']} {limits[key]['threshold']}" if key in limits else ""
                typer.echo(f"  {key:<32} {shown}{note}")
            for line in confusion_lines((r.get("meta") or {}).get("confusion")):
                typer.echo(line)
            typer.echo(f"  report: {r['report_path']}")
    if not passed:
        raise typer.Exit(1)


@eval_app.command("list")
def eval_list(
    suite: Annotated[str | None, typer.Option("--suite", help="Only this suite")] = None,
    limit: Annotated[int, typer.Option(help="How many runs, newest first")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Stored runs, newest first."""
    from core.db import session_scope
    from evals.runner import list_runs, summary
    from evals.suites import SUITES

    with session_scope(readonly=True) as session:
        runs = [summary(r) for r in list_runs(session, suite, limit)]
    if as_json:
        typer.echo(json.dumps(runs, default=str))
        return
    for r in runs:
        main = SUITES[r["suite"]].thresholds[0].metric if r["suite"] in SUITES else ""
        value = r["metrics"].get(main)
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        typer.echo(
            f"{r['run_id']:<44} {r['engine']:<8} {'passed' if r['passed'] else 'FAILED':<7} {main} {shown}  "
            f"rev {r['meta'].get('code_revision')}"
        )


@eval_app.command("compare")
def eval_compare(
    run_a: Annotated[str, typer.Argument(help="The baseline run id")],
    run_b: Annotated[str, typer.Argument(help="The run to judge")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Metric deltas and changed verdicts from RUN_A to RUN_B; exit 1 on a regression past a threshold."""
    from core.db import session_scope
    from evals.runner import compare, get_run

    with user_errors(), session_scope(readonly=True) as session:
        result = compare(get_run(session, run_a), get_run(session, run_b))
    if as_json:
        typer.echo(json.dumps(result, default=str))
    else:
        typer.echo(f"{result['suite']}: {run_a} -> {run_b}")
        for key, m in result["metrics"].items():
            delta = f"{m['delta']:+.4f}" if m["delta"] is not None else ""
            typer.echo(f"  {key:<32} {m['a']!s:>10} -> {m['b']!s:<10} {delta}")
        for c in result["changed_cases"]:
            typer.echo(
                f"  case {c['id']}: {'pass' if c['a'] else 'fail'} -> {'pass' if c['b'] else 'fail'} ({c['detail']})"
            )
        for r in result["regressions"]:
            typer.secho(f"  REGRESSION {r['metric']}: {r['a']} -> {r['b']} (allowed change {r['allowed']})", err=True)
    if result["regressions"]:
        raise typer.Exit(1)
