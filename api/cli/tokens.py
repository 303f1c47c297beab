"""revloop tokens: API tokens for machines and scripts (create with scopes and expiry, list, revoke)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from api.cli.common import user_errors
from core.enums import Role

tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option(help=" | ".join(Role))],
    name: Annotated[str, typer.Option(help="Who or what uses the token, e.g. 'jane' or 'web-form'")],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="Limit it, e.g. --scope leads:write (repeatable; <area>:read|write; default: the role's all)"
        ),
    ] = None,
    expires_days: Annotated[int | None, typer.Option(min=1, max=3650, help="Expire after this many days")] = None,
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from api.auth import create_token
    from core.db import session_scope
    from core.models import utcnow

    expires = utcnow() + dt.timedelta(days=expires_days) if expires_days else None
    with user_errors():
        with session_scope() as session:
            row, token = create_token(session, role=role, name=name, actor="cli", scopes=scope, expires_at=expires)
    limits = f"; scopes {', '.join(row.scopes)}" if row.scopes else ""
    limits += f"; expires {expires:%Y-%m-%d %H:%M} UTC" if expires else ""
    typer.secho(f"token {row.id} for {row.name} ({row.role}{limits}); it is shown only now:", err=True)
    typer.echo(token)


@tokens_app.command("list")
def tokens_list() -> None:
    """Every API token: id, name, role, scopes, created, last used, expiry, revoked."""
    from api.auth import list_tokens
    from core.db import session_scope

    def when(value: dt.datetime | None) -> str:
        return f"{value:%Y-%m-%d %H:%M}" if value else "-"

    with session_scope(readonly=True) as session:
        rows = list_tokens(session)
        if not rows:
            typer.echo("no API tokens (revloop tokens create --role integration --name web-form)")
            return
        typer.echo(f"{'id':>4}  {'name':<20} {'role':<12} {'prefix':<11} {'scopes':<20} {'last used':<16} state")
        for t in rows:
            state = (
                f"revoked {when(t.revoked_at)}"
                if t.revoked_at
                else f"expires {when(t.expires_at)}"
                if t.expires_at
                else "active"
            )
            scopes = ",".join(t.scopes) if t.scopes else "(role)"
            typer.echo(
                f"{t.id:>4}  {t.name[:20]:<20} {t.role:<12} {t.prefix:<11} {scopes[:20]:<20} "
                f"{when(t.last_used_at):<16} {state}"
            )


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[int, typer.Argument(help="The id from `revloop tokens list`")]) -> None:
    """Revoke a token: it stops working on its next request."""
    from api.auth import revoke_token
    from core.db import session_scope
    from core.models import ApiToken

    with user_errors():
        with session_scope() as session:
            already = session.get(ApiToken, token_id)
            was_revoked = already.revoked_at if already is not None else None
            row = revoke_token(session, token_id, actor="cli")
            if was_revoked:
                typer.echo(f"token {row.id} ({row.name}) was already revoked at {was_revoked:%Y-%m-%d %H:%M} UTC")
            else:
                typer.echo(f"revoked token {row.id} ({row.name}, {row.prefix}...)")
