"""The `revloop` command line."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
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
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")
app.add_typer(tokens_app, name="tokens")


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


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


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option(help="closer | manager | evaluator | admin | integration")],
    name: Annotated[str, typer.Option(help="Who or what uses the token, e.g. 'jane' or 'web-form'")],
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from api.auth import create_token
    from core.db import session_scope
    from core.errors import AppError

    try:
        with session_scope() as session:
            row, token = create_token(session, role=role, name=name, actor="cli")
    except AppError as exc:
        _fail(exc.message, code=2)
    typer.secho(f"token for {row.name} ({row.role}); it is shown only now:", err=True)
    typer.echo(token)


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
) -> None:
    """Run the background worker (lead graphs, resumes after review decisions)."""
    from agents.runtime import lead_worker

    _logging()
    with lead_worker() as w:
        if until_idle:
            typer.echo(f"ran {w.run_until_idle()} job(s)")
            return
        signal.signal(signal.SIGTERM, lambda *_: w.stop())
        signal.signal(signal.SIGINT, lambda *_: w.stop())
        logging.getLogger("revloop.worker").info("worker started (%s)", w.worker_id)
        w.run_forever()


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
        tokens = json.loads(creds.read_text())["tokens"] if creds.exists() else {}
        lines = [
            "",
            "revloop is running:",
            f"  API         {settings.resolved_api_url}  (docs: {settings.resolved_api_url}/docs)",
            "  worker      running (lead graphs and approved sends)",
        ]
        if not no_review_app:
            lines.append(f"  review app  http://127.0.0.1:{settings.review_app_port}")
        lines.append(f"  outbox      {settings.resolved_outbox_dir if not settings.smtp_url else settings.smtp_url}")
        for role, token in tokens.items():
            lines.append(f"  demo {role} token: {token}")
        if tokens:
            lines.append(f"  (stored in {creds}; paste the closer token into the review app)")
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
