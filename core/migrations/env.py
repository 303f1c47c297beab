"""Alembic environment: the URL comes from revloop settings unless the caller set one."""

from __future__ import annotations

from alembic import context

from core.db import make_engine
from core.migrate import include_name
from core.models import Base
from core.settings import get_settings

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().resolved_database_url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True, include_name=include_name
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


def _run(connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode recreates tables that others reference; SQLite can only switch foreign-key
        # enforcement off outside a transaction, so do it on the raw connection before ours begins.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
    # batch mode: SQLite cannot ALTER most things in place.
    context.configure(
        connection=connection, target_metadata=target_metadata, render_as_batch=True, include_name=include_name
    )
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        connection.commit()
        raw = connection.connection.driver_connection
        raw.execute("PRAGMA foreign_keys=ON")
        broken = raw.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"migration left rows with broken foreign keys: {broken[:5]}")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
