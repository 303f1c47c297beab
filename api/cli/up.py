"""revloop up: migrate, seed a demo, then supervise the API, the worker and the review app until Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from api.cli.common import fail, get_settings
from api.cli.demo import seed_if_empty
from api.cli.review_app import review_app_command
from core.files import private_dir, redact_url

if TYPE_CHECKING:
    from core.settings import Settings


def wait_for_api(url: str, procs: list[subprocess.Popen], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            fail("a service exited during start-up; see its output above")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    fail(f"the API did not answer on {url} within {timeout:.0f}s")


def up(
    no_review_app: Annotated[bool, typer.Option("--no-review-app", help="Start only the API and the worker")] = False,
) -> None:
    """Migrate, seed a demo if the database is empty, then run API, worker and review app until Ctrl-C."""
    from core.migrate import upgrade

    settings = get_settings()
    private_dir(settings.var_dir)  # 0700: the database, checkpoints, outbox and credentials live here
    upgrade(settings)
    seeded = seed_if_empty()
    typer.echo(f"database: {redact_url(settings.resolved_database_url)} (migrated)")
    if seeded:
        typer.echo(f"seeded the demo business: {len(seeded['leads'])} incoming leads")
    base = [sys.executable, "-m", "api.cli"]
    procs = [subprocess.Popen(base + ["serve"]), subprocess.Popen(base + ["worker"])]
    if not no_review_app:
        procs.append(subprocess.Popen(review_app_command(settings.review_app_port)))

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
        wait_for_api(settings.resolved_api_url, procs)
        typer.echo(banner(settings, no_review_app=no_review_app))
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        fail("a service stopped unexpectedly; stopping the others")
    except KeyboardInterrupt:
        typer.echo("\nstopping...")
    finally:
        stop()
    typer.echo("stopped.")


def banner(settings: Settings, *, no_review_app: bool = False) -> str:
    """What `revloop up` prints once everything answers: addresses, demo sign-ins; no URL shows a password."""
    from api import demo

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
    outbox = redact_url(settings.smtp_url) if settings.smtp_url else settings.resolved_outbox_dir
    lines.append(f"  outbox      {outbox}")
    for user in demo_users:
        lines.append(f"  demo {user['role']:<10} sign-in: {user['email']} / {user['password']}")
    for role, token in tokens.items():
        lines.append(f"  demo {role} token: {token}")
    if tokens or demo_users:
        lines.append(f"  (stored in {creds}; sign in to the review app as the closer)")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)
