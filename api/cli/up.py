"""revloop up: migrate, seed a demo, then supervise the API, the worker and the review app until Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from api.cli.common import fail, get_settings
from api.cli.demo import seed_if_empty
from api.cli.review_app import review_app_command
from core.files import private_dir, redact_url

if TYPE_CHECKING:
    from core.settings import Settings


def wait_for_api(url: str, procs: dict[str, subprocess.Popen], logs: dict[str, Path], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                fail(f"the {name} exited during start-up; its log ends:\n{log_tail(logs[name])}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    fail(f"the API did not answer on {url} within {timeout:.0f}s; see {logs['API']}")


def log_tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join("  " + line for line in text[-lines:]) or "  (empty)"


def up(
    no_review_app: Annotated[bool, typer.Option("--no-review-app", help="Start only the API and the worker")] = False,
    api_port: Annotated[
        int | None,
        typer.Option("--api-port", min=1, max=65535, help="The API's port (default: REVLOOP_API_PORT, else 8000)"),
    ] = None,
    app_port: Annotated[
        int | None,
        typer.Option(
            "--app-port", min=1, max=65535, help="The review app's port (default: REVLOOP_REVIEW_APP_PORT, else 8501)"
        ),
    ] = None,
) -> None:
    """Migrate, seed a demo if the database is empty, then run API, worker and review app until Ctrl-C. Their
    output goes to var/log/api.log, worker.log and review-app.log; the terminal shows one banner."""
    import os

    from core.migrate import upgrade

    # The children (and the review app's API client) read their ports from the environment: one source.
    if api_port is not None:
        os.environ["REVLOOP_API_PORT"] = str(api_port)
    if app_port is not None:
        os.environ["REVLOOP_REVIEW_APP_PORT"] = str(app_port)
    settings = get_settings()
    if api_port is not None or app_port is not None:
        update = {"api_port": api_port, "review_app_port": app_port}
        settings = settings.model_copy(update={k: v for k, v in update.items() if v is not None})
    private_dir(settings.var_dir)  # 0700: the database, checkpoints, outbox and credentials live here
    log_dir = private_dir(settings.var_dir / "log")
    upgrade(settings)
    seeded = seed_if_empty()
    base = [sys.executable, "-m", "api.cli"]
    # With a broker the one worker is a Celery worker and runs beat too (the scheduled scans).
    worker = base + ["worker"] + (["--beat"] if settings.broker_url else [])
    commands = {"API": base + ["serve", "--port", str(settings.api_port)], "worker": worker}
    if not no_review_app:
        commands["review app"] = review_app_command(settings.review_app_port)
    logs = {name: log_dir / f"{name.replace(' ', '-').lower()}.log" for name in commands}
    procs: dict[str, subprocess.Popen] = {}
    for name, command in commands.items():
        with logs[name].open("ab") as log:  # the child keeps its own descriptor
            log.write(f"--- revloop up started the {name} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            log.flush()
            procs[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(*_: object) -> None:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    # Ctrl-C must stop us even when started from a shell that ignores SIGINT for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        wait_for_api(settings.resolved_api_url, procs, logs)
        typer.echo(banner(settings, no_review_app=no_review_app, seeded=seeded, logs=logs))
        while True:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    fail(
                        f"the {name} stopped unexpectedly (stopping the others); its log ends:\n{log_tail(logs[name])}"
                    )
            time.sleep(0.5)
    except KeyboardInterrupt:
        typer.echo("\nstopping...")
    finally:
        stop()
    typer.echo("stopped.")


def banner(
    settings: Settings,
    *,
    no_review_app: bool = False,
    seeded: dict | None = None,
    logs: dict[str, Path] | None = None,
) -> str:
    """What `revloop up` prints once everything answers: addresses, where logs go, demo sign-ins; no URL shows a
    password."""
    from api import demo

    creds = demo.credentials_path(settings)
    stored = json.loads(creds.read_text()) if creds.exists() else {}
    tokens, demo_users = stored.get("tokens", {}), stored.get("users", [])
    api = settings.resolved_api_url
    lines = [
        "",
        "revloop is running",
        f"  API         {api}",
        f"  API docs    {api}/docs  (ReDoc: {api}/redoc)",
    ]
    if not no_review_app:
        lines.append(f"  review app  http://127.0.0.1:{settings.review_app_port}")
    lines.append("  worker      lead and proposal graphs, approved sends, the daily reminder and follow-up scan")
    lines.append(f"  database    {redact_url(settings.resolved_database_url)} (migrated)")
    if seeded:
        lines.append(f"  demo        seeded: {len(seeded['leads'])} incoming leads, being drafted now")
    outbox = redact_url(settings.smtp_url) if settings.smtp_url else settings.resolved_outbox_dir
    lines.append(f"  outbox      {outbox}")
    if logs:
        folder = next(iter(logs.values())).parent
        lines.append(f"  logs        {folder}/  ({', '.join(p.name for p in logs.values())})")
    if tokens or demo_users:
        lines.append("")
        lines.append(f"Demo sign-ins (stored in {creds}; sign in to the review app as the closer):")
    for user in demo_users:
        lines.append(f"  demo {user['role']:<10} sign-in: {user['email']} / {user['password']}")
    for role, token in tokens.items():
        lines.append(f"  demo {role} token: {token}")
    lines.append("")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)
