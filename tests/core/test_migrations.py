from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from core.db import get_engine
from core.migrate import current_revision, include_name
from core.models import Base


def test_migrations_reach_head_and_match_the_models(settings):
    assert current_revision(settings) == "0001"
    engine = get_engine(settings)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"include_name": include_name}), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    tables = set(inspect(engine).get_table_names())
    for table in (
        "leads",
        "accounts",
        "contacts",
        "deals",
        "activities",
        "review_items",
        "decisions",
        "outbox_messages",
        "audit_events",
        "api_tokens",
        "jobs",
    ):
        assert table in tables
