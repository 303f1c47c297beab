"""revloop db: the database schema."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import get_settings
from core.files import redact_url

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Apply database migrations (Alembic) up to REVISION."""
    from core.migrate import current_revision, upgrade

    settings = get_settings()
    upgrade(settings, revision)
    typer.echo(f"database {redact_url(settings.resolved_database_url)} at revision {current_revision(settings)}")
