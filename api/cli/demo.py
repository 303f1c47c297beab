"""revloop demo: the demo business (also seeded by `revloop up` into an empty database)."""

from __future__ import annotations

import typer

from api.cli.common import fail, get_settings

demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)


def seed_if_empty() -> dict | None:
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
    result = seed_if_empty()
    if result is None:
        fail("the database already has data; demo seed only fills an empty database", code=2)
    typer.echo(f"seeded {result['accounts']} accounts, {result['deals']} deals, {len(result['leads'])} leads")
    for role, token in result["tokens"].items():
        typer.echo(f"  {role:<12} token: {token}")
    for user in result["users"]:
        typer.echo(f"  {user['role']:<12} sign-in: {user['email']} / {user['password']}")
