"""revloop scoring: the outcome model (train, promote, list, evaluate)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import get_settings, user_errors
from core.enums import ModelStatus

scoring_app = typer.Typer(help="The outcome model: train, compare, promote, evaluate.", no_args_is_help=True)


@scoring_app.command("train")
def scoring_train(
    spec_path: Annotated[Path | None, typer.Option("--spec", help="Feature spec YAML [default: the built-in]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON")] = False,
) -> None:
    """Train a challenger on closed deals (progress on stderr); compare it with the champion and two baselines on
    a held-out split; record the population it learned from (leads outside it are scored on the rubric alone)."""
    from scoring.features import DEFAULT_FEATURE_SPEC, load_feature_spec
    from scoring.registry import train_and_register

    settings = get_settings()
    with user_errors():
        spec = load_feature_spec(spec_path or DEFAULT_FEATURE_SPEC)
        # Reads, then fits outside any transaction, then stores the model in a short write.
        with _training_progress() as progress:
            result = train_and_register(
                settings, spec, min_closed=settings.scoring_min_closed_deals, actor="cli", progress=progress
            )
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    rows = [("challenger " + result["challenger"]["version"], result["challenger"])]
    if result["champion"]:
        rows.append(("champion " + result["champion"]["version"], result["champion"]))
    rows += [(f"baseline {name}", m) for name, m in result["baselines"].items()]
    typer.echo(
        f"held-out split: {result['split']['kind']}, train {result['split']['train']}, "
        f"test {result['split']['test']}; chosen by CV AUC: {result['challenger']['algorithm']} "
        f"{result['cv_auc']} in {result['seconds']}s ({result['cpu_seconds']} CPU-s)"
    )
    domain = result["domain"]
    typer.echo(
        f"learned from {domain['rows']} leads ({', '.join(f'{k}: {v}' for k, v in domain['sources'].items())}); "
        f"fields it learned from: {len(domain['learned_from'])}; segment values: "
        + (", ".join(f"{k} {v}" for k, v in domain["segments"].items()) or "none recorded")
        + " (leads outside them are scored on the rubric alone)"
    )
    origin = result["rows_by_origin"]
    typer.echo(
        f"training rows: {origin['revloop']} from deals closed in revloop, {origin['imported']} from imports "
        f"({result['challenger']['n_won']} won, {result['challenger']['n_lost']} lost)"
    )
    typer.echo(f"{'model':<44} {'AUC':>7} {'Brier':>7} {'logloss':>8} {'ECE':>7}")
    for name, m in rows:
        typer.echo(f"{name:<44} {m['auc']:>7.4f} {m['brier']:>7.4f} {m['log_loss']:>8.4f} {m['ece']:>7.4f}")
    status = result["challenger"]["status"]
    typer.echo(
        "the first model became the champion"
        if status == ModelStatus.CHAMPION
        else f"promote it with: revloop scoring promote {result['challenger']['version']}"
    )


# reading, features, 3 folds x 2 members, 2 final fits, evaluation, population, champion, saving, storing
TRAINING_STEPS = 15


@contextmanager
def _training_progress() -> Iterator[Callable[[str], None]]:
    """The step being run, a bar and the elapsed time, on stderr (stdout stays the result)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("training: {task.description:<44}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    task = bar.add_task("starting", total=TRAINING_STEPS)
    with bar:
        yield lambda step: bar.update(task, description=step, advance=1)
        bar.update(task, description="stored", completed=TRAINING_STEPS)


@scoring_app.command("promote")
def scoring_promote(
    version: Annotated[str, typer.Argument(help="Model version (see `revloop scoring models`)")],
) -> None:
    """Make a trained model the champion (writes an audit event)."""
    from core.db import session_scope
    from scoring.registry import promote

    with user_errors():
        with session_scope() as session:
            promote(session, version, actor="cli")
    typer.echo(f"{version} is now the champion")


@scoring_app.command("models")
def scoring_models() -> None:
    """List trained models, newest first."""
    from core.db import session_scope
    from scoring.registry import list_models

    with session_scope(readonly=True) as session:
        for m in list_models(session):
            typer.echo(
                f"{m.version:<24} {m.status:<10} {m.algorithm:<18} AUC {m.auc:.4f} Brier {m.brier:.4f} "
                f"ECE {m.calibration_error:.4f} won/lost {m.n_won}/{m.n_lost} trained {m.trained_at:%Y-%m-%d %H:%M}"
            )


@scoring_app.command("evaluate")
def scoring_evaluate(
    dataset: Annotated[Path, typer.Option("--dataset", help="Labelled CSV", exists=True, dir_okay=False)],
    format: Annotated[str, typer.Option("--format", help="x-education")] = "x-education",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Score a labelled file with the champion WITHOUT importing it: n, AUC, Brier, ECE."""
    import numpy as np

    from core.db import session_scope
    from crm.imports import read_labelled
    from scoring.registry import evaluate_snapshots

    with user_errors():
        snapshots, labels, rejected = read_labelled(dataset, format)
        with session_scope(readonly=True) as session:  # scores the file without holding the write lock
            result = evaluate_snapshots(session, snapshots, np.array(labels))
    if rejected:
        typer.echo(
            f"{len(rejected)} row(s) skipped as invalid (first: row {rejected[0]['row']}: {rejected[0]['reason']})",
            err=True,
        )
    if as_json:
        typer.echo(json.dumps({"n": result["n"], "auc": result["auc"], "brier": result["brier"], "ece": result["ece"]}))
        return
    typer.echo(
        f"n={result['n']} AUC={result['auc']:.4f} Brier={result['brier']:.4f} ECE={result['ece']:.4f} "
        f"(model {result['model_version']})"
    )
