"""revloop tokens: API tokens for machines and scripts."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import user_errors
from core.schemas import ROLES

tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option(help=" | ".join(ROLES))],
    name: Annotated[str, typer.Option(help="Who or what uses the token, e.g. 'jane' or 'web-form'")],
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from api.auth import create_token
    from core.db import session_scope

    with user_errors():
        with session_scope() as session:
            row, token = create_token(session, role=role, name=name, actor="cli")
    typer.secho(f"token for {row.name} ({row.role}); it is shown only now:", err=True)
    typer.echo(token)
