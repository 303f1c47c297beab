from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from core.db import get_engine
from core.migrate import current_revision, include_name
from core.models import Base


def test_migrations_reach_head_and_match_the_models(settings):
    from alembic.script import ScriptDirectory

    from core.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config(settings.resolved_database_url)).get_current_head()
    assert head == "0026" and current_revision(settings) == head
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
        "users",
        "user_sessions",
        "webhook_deliveries",
        "eval_runs",
        "invoices",
        "payments",
        "payment_allocations",
        "dunning_touches",
        "message_templates",
        "lead_events",
        "cadence_touches",
        "proposals",
        "projects",
        "milestones",
        "jobs",
    ):
        assert table in tables


def test_upgrading_a_database_with_data_keeps_it(scratch_database_url):
    from sqlalchemy import text

    from core.db import make_engine
    from core.migrate import upgrade
    from core.settings import Settings

    settings = Settings(database_url=scratch_database_url)
    upgrade(settings, "0001")
    engine = make_engine(scratch_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO accounts (name, domain, created_at, updated_at) "
                    "VALUES ('Acme', 'acme.com', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO contacts (email, account_id, do_not_email, do_not_call, created_at, updated_at)"
                    " VALUES ('a@acme.com', 1, false, false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(
                text(
                    """INSERT INTO leads (thread_id, email, consent_email, consent_call, custom, status,
                       duplicate_count, account_id, contact_id, created_at, updated_at)
                       VALUES ('lead-x', 'a@acme.com', true, true, '{}', 'new', 0, 1, 1,
                               '2026-01-02 03:04:05', CURRENT_TIMESTAMP)"""
                )
            )
        upgrade(settings)
        with engine.connect() as conn:
            row = conn.execute(text("SELECT email, account_id, captured_at, capture_features FROM leads")).one()
            assert row.email == "a@acme.com" and row.account_id == 1
            assert str(row.captured_at).startswith("2026-01-02 03:04:05")
            assert row.capture_features in ({}, "{}")
            assert conn.execute(text("SELECT name FROM accounts")).scalar_one() == "Acme"
    finally:
        engine.dispose()


def test_0005_backfills_the_queue_grade_from_each_brief(scratch_database_url):
    from sqlalchemy import text

    from core.db import make_engine
    from core.migrate import upgrade
    from core.settings import Settings

    settings = Settings(database_url=scratch_database_url)
    upgrade(settings, "0004")
    engine = make_engine(scratch_database_url)
    try:
        with engine.begin() as conn:
            for n, brief in enumerate(('{"grade": "B", "score": 61}', "{}")):
                conn.execute(
                    text(
                        "INSERT INTO review_items (kind, status, thread_id, interrupt_id, brief, draft, created_at,"
                        " updated_at) VALUES ('email', 'pending', 't', :iid, :brief, '{}', CURRENT_TIMESTAMP,"
                        " CURRENT_TIMESTAMP)"
                    ),
                    {"iid": f"i{n}", "brief": brief},
                )
        upgrade(settings)
        with engine.connect() as conn:
            grades = conn.execute(text("SELECT grade FROM review_items ORDER BY id")).scalars().all()
        assert grades == ["B", None]
    finally:
        engine.dispose()


def test_0011_gives_each_review_item_its_source_from_the_thread_it_was_queued_on(scratch_database_url):
    from sqlalchemy import text

    from core.db import make_engine
    from core.migrate import upgrade
    from core.settings import Settings

    settings = Settings(database_url=scratch_database_url)
    upgrade(settings, "0010")
    engine = make_engine(scratch_database_url)
    threads = ["lead-1a2b", "proposal-3-ab12", "cadence-4", "dunning-5", "onboarding-6", "update-7", "invoice-8"]
    try:
        with engine.begin() as conn:
            for n, thread in enumerate(threads):
                conn.execute(
                    text(
                        "INSERT INTO review_items (kind, status, thread_id, interrupt_id, brief, draft, queue,"
                        " guard_flags, created_at, updated_at) VALUES ('email', 'pending', :thread, :iid, '{}',"
                        " '{}', 'main', '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    ),
                    {"thread": thread, "iid": f"{thread}-step{n}"},
                )
        upgrade(settings)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT source, dedupe_key FROM review_items ORDER BY id")).all()
        assert [r.source for r in rows] == [
            "lead",
            "proposal",
            "cadence",
            "dunning",
            "onboarding",
            "client_update",
            "invoice",
        ]
        assert rows[1].dedupe_key == "proposal-3-ab12-step1"
    finally:
        engine.dispose()
