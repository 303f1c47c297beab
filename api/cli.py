"""The `revloop` command line."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from core.settings import get_settings

app = typer.Typer(
    help="revloop: lead-to-cash with AI agents and a human approving every outbound action.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)
import_app = typer.Typer(
    help="Import real data (CSV): leads with outcomes, a CRM export, a company directory, billing history.",
    no_args_is_help=True,
)
scoring_app = typer.Typer(help="The outcome model: train, compare, promote, evaluate.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")
app.add_typer(tokens_app, name="tokens")
app.add_typer(import_app, name="import")
app.add_typer(scoring_app, name="scoring")
kb_app = typer.Typer(help="Knowledge base: won deals, case studies, product facts (offline).", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
icp_app = typer.Typer(help="The ICP rubric: validate, backtest against closed deals, publish.", no_args_is_help=True)
app.add_typer(icp_app, name="icp")
users_app = typer.Typer(help="People who sign in to the review app (passwords, roles).", no_args_is_help=True)
app.add_typer(users_app, name="users")
collections_app = typer.Typer(help="Collections: the daily reminder scan.", no_args_is_help=True)
app.add_typer(collections_app, name="collections")
cadences_app = typer.Typer(help="Follow-up cadences: the daily follow-up scan.", no_args_is_help=True)
app.add_typer(cadences_app, name="cadences")
eval_app = typer.Typer(
    help="Offline eval suites (scoring, routing, drafting, safety, collections): run, list, compare.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")
webhooks_app = typer.Typer(help="Signed webhooks: sign a payload to test an integration.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


# Options every import command shares.
StrictOption = Annotated[bool, typer.Option(help="Import nothing if any row is rejected")]
RejectsOption = Annotated[Path | None, typer.Option(help="Write every rejected row with its reason to this CSV")]
ReportJsonOption = Annotated[bool, typer.Option("--json", help="Print the report as JSON")]


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@contextmanager
def _user_errors() -> Iterator[None]:
    """A mistake the user can fix (bad input, unknown version...) ends the command with its message, exit 2."""
    from core.errors import AppError

    try:
        yield
    except AppError as exc:
        _fail(exc.message, code=2)


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Apply database migrations (Alembic) up to REVISION."""
    from core.migrate import current_revision, upgrade

    settings = get_settings()
    upgrade(settings, revision)
    typer.echo(f"database {settings.resolved_database_url} at revision {current_revision(settings)}")


def _seed_if_empty() -> dict | None:
    from api import demo
    from core.db import session_scope

    settings = get_settings()
    with session_scope(settings) as session:
        if not demo.is_empty(session):
            return None
        return demo.seed(session, settings)


@demo_app.command("seed")
def demo_seed() -> None:
    """Seed a small demo business (accounts, deals, tokens, five incoming leads) into an empty database."""
    result = _seed_if_empty()
    if result is None:
        _fail("the database already has data; demo seed only fills an empty database", code=2)
    typer.echo(f"seeded {result['accounts']} accounts, {result['deals']} deals, {len(result['leads'])} leads")
    for role, token in result["tokens"].items():
        typer.echo(f"  {role:<12} token: {token}")
    for user in result["users"]:
        typer.echo(f"  {user['role']:<12} sign-in: {user['email']} / {user['password']}")


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option(help="closer | manager | evaluator | admin | integration")],
    name: Annotated[str, typer.Option(help="Who or what uses the token, e.g. 'jane' or 'web-form'")],
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from api.auth import create_token
    from core.db import session_scope

    with _user_errors():
        with session_scope() as session:
            row, token = create_token(session, role=role, name=name, actor="cli")
    typer.secho(f"token for {row.name} ({row.role}); it is shown only now:", err=True)
    typer.echo(token)


def _read_password(password_stdin: bool, generate: bool) -> tuple[str, bool]:
    """The new password and whether it was generated (then it is printed once)."""
    import getpass
    import secrets

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            _fail("--password-stdin: nothing was read from stdin", code=2)
        return password, False
    if generate or not sys.stdin.isatty():
        return secrets.token_urlsafe(15), True
    password = getpass.getpass("Password (at least 10 characters): ")
    if getpass.getpass("Repeat it: ") != password:
        _fail("the two passwords differ; nothing was changed", code=2)
    return password, False


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="Sign-in email")],
    role: Annotated[str, typer.Option("--role", help="closer | manager | evaluator | admin")],
    name: Annotated[
        str | None,
        typer.Option(help="Queue name (routing assigns leads to sales-agent names) [default: email's local part]"),
    ] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
    generate: Annotated[
        bool, typer.Option("--generate-password", help="Generate a password and print it once")
    ] = False,
) -> None:
    """Create a user. Asks for the password on a terminal; without one, generates it and prints it once."""
    from core.db import session_scope
    from core.users import create_user

    password, generated = _read_password(password_stdin, generate)
    with _user_errors():
        with session_scope() as session:
            user = create_user(session, email=email, role=role, password=password, name=name, actor="cli")
            summary = f"created {user.role} {user.name} <{user.email}>"
    typer.echo(summary)
    if generated:
        typer.secho("password (shown only now):", err=True)
        typer.echo(password)


@users_app.command("list")
def users_list() -> None:
    """List users: email, name, role, active, last sign-in."""
    from core.db import session_scope
    from core.users import list_users

    with session_scope() as session:
        for u in list_users(session):
            last = f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "never"
            typer.echo(f"{u.email:<36} {u.name:<24} {u.role:<10} {'active' if u.active else 'inactive':<9} {last}")


@users_app.command("set-password")
def users_set_password(
    email: Annotated[str, typer.Argument(help="Sign-in email")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
    generate: Annotated[
        bool, typer.Option("--generate-password", help="Generate a password and print it once")
    ] = False,
) -> None:
    """Set a new password (signs the user out everywhere and clears a lockout)."""
    from core.db import session_scope
    from core.users import get_user, update_user

    password, generated = _read_password(password_stdin, generate)
    with _user_errors():
        with session_scope() as session:
            update_user(session, get_user(session, email=email).id, actor="cli", password=password)
    typer.echo(f"password of {email} changed")
    if generated:
        typer.secho("password (shown only now):", err=True)
        typer.echo(password)


@users_app.command("deactivate")
def users_deactivate(email: Annotated[str, typer.Argument(help="Sign-in email")]) -> None:
    """Deactivate a user (signs them out; their history stays)."""
    from core.db import session_scope
    from core.users import get_user, update_user

    with _user_errors():
        with session_scope() as session:
            update_user(session, get_user(session, email=email).id, actor="cli", active=False)
    typer.echo(f"{email} deactivated")


@webhooks_app.command("sign")
def webhooks_sign(
    source: Annotated[str, typer.Argument(help="Which webhook: leads | payments | esign")],
    body: Annotated[Path, typer.Argument(help="The JSON body file to sign", exists=True, dir_okay=False)],
) -> None:
    """Print the X-Revloop-Timestamp and X-Revloop-Signature headers for BODY, signed with the source's secret."""
    from core import webhooks

    secret = getattr(get_settings(), f"webhook_secret_{source.replace('-', '_')}", None)
    if not secret:
        _fail(f"no secret for {source!r}: set REVLOOP_WEBHOOK_SECRET_{source.upper()}", code=2)
    for name, value in webhooks.signed_headers(secret, body.read_bytes()).items():
        typer.echo(f"{name}: {value}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [default: REVLOOP_API_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: REVLOOP_API_PORT]")] = None,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_level="info",
    )


@app.command()
def worker(
    until_idle: Annotated[bool, typer.Option("--until-idle", help="Run the due jobs, then exit")] = False,
    concurrency: Annotated[int, typer.Option(min=1, max=16, help="Jobs run at once (threads)")] = 2,
) -> None:
    """Run the background worker: lead and proposal graphs, resumes after review decisions, and the daily
    scan (payment reminders, follow-ups, onboarding)."""
    import threading

    from agents.runtime import lead_worker
    from core.models import utcnow
    from deals import daily

    _logging()
    with lead_worker() as w:
        if until_idle:  # drain what is queued; the daily scans have their own commands (collections/cadences scan)
            typer.echo(f"ran {w.run_until_idle()} job(s)")
            return
        daily.schedule(get_settings(), utcnow().date())  # today's scan, once whatever restarts; each queues the next
        signal.signal(signal.SIGTERM, lambda *_: w.stop())
        signal.signal(signal.SIGINT, lambda *_: w.stop())
        logging.getLogger("revloop.worker").info("worker started (%s, %d threads)", w.worker_id, concurrency)
        threads = [threading.Thread(target=w.run_forever, name=f"worker-{i}") for i in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)


def _review_app_command(port: int) -> list[str]:
    import review

    script = Path(review.__file__).resolve().parent / "app.py"
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.address",
        "127.0.0.1",
        "--client.toolbarMode",
        "viewer",
    ]


@app.command("review-app")
def review_app(
    port: Annotated[int | None, typer.Option(help="Port [default: REVLOOP_REVIEW_APP_PORT]")] = None,
) -> None:
    """Run the Streamlit review app (a client of the HTTP API)."""
    settings = get_settings()
    os.execv(sys.executable, _review_app_command(port or settings.review_app_port))


def _wait_for_api(url: str, procs: list[subprocess.Popen], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            _fail("a service exited during start-up; see its output above")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    _fail(f"the API did not answer on {url} within {timeout:.0f}s")


@app.command()
def up(
    no_review_app: Annotated[bool, typer.Option("--no-review-app", help="Start only the API and the worker")] = False,
) -> None:
    """Migrate, seed a demo if the database is empty, then run API, worker and review app until Ctrl-C."""
    from api import demo
    from core.migrate import upgrade

    settings = get_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings)
    seeded = _seed_if_empty()
    typer.echo(f"database: {settings.resolved_database_url} (migrated)")
    if seeded:
        typer.echo(f"seeded the demo business: {len(seeded['leads'])} incoming leads")
    base = [sys.executable, "-m", "api.cli"]
    procs = [subprocess.Popen(base + ["serve"]), subprocess.Popen(base + ["worker"])]
    if not no_review_app:
        procs.append(subprocess.Popen(_review_app_command(settings.review_app_port)))

    def stop(*_: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    # Ctrl-C must stop us even when started from a shell that ignores SIGINT for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _wait_for_api(settings.resolved_api_url, procs)
        creds = demo.credentials_path(settings)
        stored = json.loads(creds.read_text()) if creds.exists() else {}
        tokens, demo_users = stored.get("tokens", {}), stored.get("users", [])
        lines = [
            "",
            "revloop is running:",
            f"  API         {settings.resolved_api_url}  (docs: {settings.resolved_api_url}/docs)",
            "  worker      running (lead and proposal graphs, approved sends, the daily reminder and follow-up scan)",
        ]
        if not no_review_app:
            lines.append(f"  review app  http://127.0.0.1:{settings.review_app_port}")
        lines.append(f"  outbox      {settings.resolved_outbox_dir if not settings.smtp_url else settings.smtp_url}")
        for user in demo_users:
            lines.append(f"  demo {user['role']:<10} sign-in: {user['email']} / {user['password']}")
        for role, token in tokens.items():
            lines.append(f"  demo {role} token: {token}")
        if tokens or demo_users:
            lines.append(f"  (stored in {creds}; sign in to the review app as the closer)")
        lines.append("Press Ctrl-C to stop.")
        typer.echo("\n".join(lines))
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        _fail("a service stopped unexpectedly; stopping the others")
    except KeyboardInterrupt:
        typer.echo("\nstopping...")
    finally:
        stop()
    typer.echo("stopped.")


def _progress(total: int, label: str):
    """A progress bar on stderr; the returned callback advances it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    task = progress.add_task(label, total=total)
    return progress, lambda n: progress.advance(task, n)


def _run_import(total: int, name: str, do_import):
    """One import in one transaction, with a progress bar; a user mistake ends it with its message."""
    from core.db import session_scope

    progress, advance = _progress(total, f"importing {name}")
    with _user_errors(), progress, session_scope() as session:
        return do_import(session, advance)


def _report_import(report, as_json: bool, rejects: Path | None) -> None:
    import csv

    data = report.as_dict()
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
) -> None:
    """Import leads; outcomes become closed deals, Do Not Email/Call become consent. Safe to re-run."""
    from crm.imports import count_rows, import_leads, parse_mapping

    with _user_errors():
        mapping = parse_mapping(map_ or [])
    report = _run_import(
        count_rows(path),
        path.name,
        lambda session, advance: import_leads(session, path, format, mapping=mapping, strict=strict, progress=advance),
    )
    _report_import(report, as_json, rejects)


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

    report = _run_import(
        count_rows(path),
        path.name,
        lambda session, advance: import_companies(session, path, format, strict=strict, progress=advance),
    )
    _report_import(report, as_json, rejects)


@import_app.command("crm")
def import_crm_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder of the CRM export", exists=True, file_okay=False)],
    format: Annotated[str, typer.Option("--format", help="maven")] = "maven",
    strict: StrictOption = False,
    rejects: RejectsOption = None,
    as_json: ReportJsonOption = False,
) -> None:
    """Import a CRM export (accounts, products, sales team, pipeline). Safe to re-run."""
    from crm.imports import import_crm, maven_row_count

    report = _run_import(
        maven_row_count(folder),
        folder.name,
        lambda session, advance: import_crm(session, folder, format, strict=strict, progress=advance),
    )
    _report_import(report, as_json, rejects)


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

    report = _run_import(
        count_rows(path),
        path.name,
        lambda session, advance: import_invoices(session, path, format, strict=strict, progress=advance),
    )
    _report_import(report, as_json, rejects)


@collections_app.command("scan")
def collections_scan(
    today: Annotated[str | None, typer.Option(help="Run as of this day (YYYY-MM-DD) [default: today]")] = None,
) -> None:
    """Draft the payment reminders due today into the review queue (the worker also does this daily)."""
    import datetime as dt

    from billing.reminders import scan

    with _user_errors():
        try:
            day = dt.date.fromisoformat(today) if today else None
        except ValueError:
            _fail(f"--today must be YYYY-MM-DD, got {today!r}", code=2)
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
        _fail(f"--today must be YYYY-MM-DD, got {today!r}", code=2)
    with _user_errors():
        counts = scan(get_settings(), day)
    typer.echo(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))


@scoring_app.command("train")
def scoring_train(
    spec_path: Annotated[Path | None, typer.Option("--spec", help="Feature spec YAML [default: the built-in]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON")] = False,
) -> None:
    """Train a challenger on closed deals; compare it with the champion and two baselines on a held-out split."""
    from core.db import session_scope
    from scoring.features import DEFAULT_FEATURE_SPEC, load_feature_spec
    from scoring.registry import train_challenger

    settings = get_settings()
    with _user_errors():
        spec = load_feature_spec(spec_path or DEFAULT_FEATURE_SPEC)
        with session_scope(settings) as session:
            result = train_challenger(session, spec, min_closed=settings.scoring_min_closed_deals, actor="cli")
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
        f"{result['cv_auc']} in {result['seconds']}s"
    )
    typer.echo(f"{'model':<44} {'AUC':>7} {'Brier':>7} {'logloss':>8} {'ECE':>7}")
    for name, m in rows:
        typer.echo(f"{name:<44} {m['auc']:>7.4f} {m['brier']:>7.4f} {m['log_loss']:>8.4f} {m['ece']:>7.4f}")
    status = result["challenger"]["status"]
    typer.echo(
        "the first model became the champion"
        if status == "champion"
        else f"promote it with: revloop scoring promote {result['challenger']['version']}"
    )


@scoring_app.command("promote")
def scoring_promote(
    version: Annotated[str, typer.Argument(help="Model version (see `revloop scoring models`)")],
) -> None:
    """Make a trained model the champion (writes an audit event)."""
    from core.db import session_scope
    from scoring.registry import promote

    with _user_errors():
        with session_scope() as session:
            promote(session, version, actor="cli")
    typer.echo(f"{version} is now the champion")


@scoring_app.command("models")
def scoring_models() -> None:
    """List trained models, newest first."""
    from core.db import session_scope
    from scoring.registry import list_models

    with session_scope() as session:
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

    with _user_errors():
        snapshots, labels, rejected = read_labelled(dataset, format)
        with session_scope() as session:
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


def _read_rubric(path: Path):
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
    rubric = _read_rubric(path)
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

    draft = _read_rubric(path)
    settings = get_settings()
    with _user_errors():
        with session_scope(settings) as session:
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

    _read_rubric(path)
    with _user_errors():
        with session_scope() as session:
            row = publish(session, save_draft(session, path.read_text(encoding="utf-8"), actor="cli").id, actor="cli")
            version = row.version
    typer.echo(f"published rubric {version}")


@icp_app.command("list")
def icp_list() -> None:
    """Rubric versions, newest first."""
    from core.db import session_scope
    from scoring.icp import list_rubrics

    with session_scope() as session:
        rows = list_rubrics(session)
        for r in rows:
            typer.echo(f"{r.id:>4} {r.version:<30} {r.status:<10} by {r.created_by} {r.created_at:%Y-%m-%d %H:%M}")
        if not rows:
            typer.echo(f"no rubric saved yet; leads are scored with {get_settings().rubric_path}")


@kb_app.command("add")
def kb_add(
    title: Annotated[str, typer.Option(help="Short title shown in briefs")],
    text: Annotated[str | None, typer.Option(help="The document text")] = None,
    file: Annotated[Path | None, typer.Option(help="Read the text from this file", exists=True, dir_okay=False)] = None,
    kind: Annotated[str, typer.Option(help="case_study | product_fact | won_deal")] = "case_study",
    doc_id: Annotated[str | None, typer.Option("--id", help="Document id (re-adding an id replaces it)")] = None,
) -> None:
    """Add (or replace) a document in the knowledge base."""
    import re

    from tools import kb

    if (text is None) == (file is None):
        _fail("give exactly one of --text or --file", code=2)
    body = text if text is not None else file.read_text(encoding="utf-8")
    identifier = doc_id or re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:80]
    with _user_errors():
        kb.add(get_settings(), doc_id=identifier, kind=kind, title=title, text=body)
    typer.echo(f"added {kind} {identifier!r}")


@kb_app.command("index-deals")
def kb_index_deals() -> None:
    """Put every won deal of the CRM in the knowledge base (safe to re-run)."""
    from tools import kb

    typer.echo(f"indexed {kb.index_won_deals(get_settings())} won deal(s)")


@kb_app.command("search")
def kb_search(text: Annotated[str, typer.Argument(help="What to look for")], limit: int = 3) -> None:
    """The documents most similar to TEXT."""
    from tools import kb

    for match in kb.search(get_settings(), text, limit):
        typer.echo(f"{match['similarity']:.3f}  {match['kind']:<12} {match['title']}  ({match['record']})")


def _eval_total(name: str, dataset: Path | None) -> int:
    from evals.suites import SUITES, case_count

    if SUITES[name].needs_cases:
        return case_count(name) or 0
    return 7451 if dataset is None else max(1, sum(1 for _ in dataset.open(encoding="utf-8", errors="replace")) - 1)


@eval_app.command("run")
def eval_run(
    suite: Annotated[str, typer.Argument(help="scoring | routing | drafting | safety | collections | all")],
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
    from core.db import session_scope
    from core.migrate import upgrade
    from evals.runner import run_suite, suite_names, summary

    settings = get_settings()
    with _user_errors():
        names = suite_names(suite)
        upgrade(settings)
        runs = []
        for name in names:
            progress, tick = _progress(_eval_total(name, dataset), f"eval {name}")
            with progress, session_scope(settings) as session:
                row = run_suite(
                    session,
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

    with session_scope() as session:
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

    with _user_errors(), session_scope() as session:
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
