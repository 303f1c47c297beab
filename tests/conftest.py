"""Fixtures: every database test runs on SQLite and on a fresh PostgreSQL database.

PostgreSQL: REVLOOP_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test) is the
maintenance connection; each run creates its own database and drops it at the end.
REVLOOP_TEST_BACKENDS=sqlite limits a run to SQLite (e.g. on a laptop without PostgreSQL).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import uvicorn
from sqlalchemy import text

from agents.runtime import lead_worker
from api.app import create_app
from core.db import dispose_engines, get_engine
from core.jobs import Worker
from core.migrate import upgrade
from core.models import Base
from core.settings import Settings

PG_ADMIN_URL = os.environ.get("REVLOOP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = [b.strip() for b in os.environ.get("REVLOOP_TEST_BACKENDS", "sqlite,postgresql").split(",") if b.strip()]


def _pg_database(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def only_on(backend: str):
    """Run a test on one backend only (it tests that backend's own mechanism), instead of skipping it on the other."""
    if backend not in BACKENDS:
        return pytest.mark.skip(reason=f"REVLOOP_TEST_BACKENDS={','.join(BACKENDS)} leaves out {backend}")
    return pytest.mark.parametrize("database", [backend], indirect=True)


@pytest.fixture(scope="session", params=BACKENDS)
def database(request, tmp_path_factory) -> Iterator[dict[str, str]]:
    """A migrated database for the whole run: {'backend', 'url', 'checkpoint_url'}."""
    backend = request.param
    if backend == "sqlite":
        folder = tmp_path_factory.mktemp("sqlite")
        info = {
            "backend": "sqlite",
            "url": f"sqlite:///{folder / 'revloop.db'}",
            "checkpoint_url": f"sqlite:///{folder / 'checkpoints.sqlite'}",
        }
        upgrade(Settings(database_url=info["url"]))
        yield info
        dispose_engines()
        return
    name = f"revloop_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _pg_database(name).replace("postgresql://", "postgresql+psycopg://", 1)
    info = {"backend": "postgresql", "url": url, "checkpoint_url": url}
    try:
        upgrade(Settings(database_url=url))
        yield info
    finally:
        dispose_engines()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def scratch_database_url(database, tmp_path) -> Iterator[str]:
    """An empty database of the same backend, for tests that migrate step by step."""
    if database["backend"] == "sqlite":
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    name = f"revloop_scratch_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_database(name).replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        dispose_engines()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _truncate(settings: Settings) -> None:
    engine = get_engine(settings)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if settings.is_sqlite:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
        else:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


@pytest.fixture
def settings(database, tmp_path) -> Settings:
    s = Settings(
        var_dir=tmp_path / "var",
        database_url=database["url"],
        checkpoint_url=database["checkpoint_url"],
        outbox_dir=tmp_path / "outbox",
        job_lease_seconds=300,
        undo_seconds=0,  # tests of the undo window set their own
    )
    _truncate(s)
    return s


@pytest.fixture
def subprocess_env(settings) -> dict[str, str]:
    """Environment for a revloop process that must see the same database as the test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVLOOP_")}
    env.update(
        REVLOOP_DATABASE_URL=settings.resolved_database_url,
        REVLOOP_CHECKPOINT_URL=settings.resolved_checkpoint_url,
        REVLOOP_OUTBOX_DIR=str(settings.resolved_outbox_dir),
        REVLOOP_VAR_DIR=str(settings.var_dir),
    )
    if settings.smtp_url:
        env["REVLOOP_SMTP_URL"] = settings.smtp_url
    return env


@pytest.fixture
def llm(settings) -> Iterator:
    """A scripted OpenAI-compatible server, and settings that send the lead graph's LLM engine to it."""
    from tests.llm_server import ScriptedLLM

    with ScriptedLLM() as server:
        settings.llm = "openai"
        settings.llm_base_url = server.url
        settings.llm_api_key = "test-key"
        settings.llm_model = "scripted-model"
        settings.llm_timeout_seconds = 2
        settings.llm_max_retries = 1
        settings.llm_prices = {"scripted-model": (0.15, 0.60)}  # priced like a hosted model (unlisted ones cost 0)
        yield server


@pytest.fixture
def worker(settings) -> Iterator[Worker]:
    with lead_worker(settings) as w:
        yield w


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(url: str, proc, what: str, *, seconds: float = 60) -> None:
    """Poll a started process's health URL until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.2)


class LiveServer:
    def __init__(self, settings: Settings):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(settings) -> Iterator[LiveServer]:
    """The real API over a socket."""
    with LiveServer(settings) as server:
        yield server


@pytest.fixture
def http(live_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client
