"""When jobs reach the broker: after their transaction commits (never for a rolled-back one), on the hot queue for
likely-A leads, later through beat's dispatch when due far ahead or when the broker was down at commit."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import select, update

from core import broker, jobs
from core.db import session_scope
from core.enums import JobPriority
from core.models import Job, utcnow

REDIS_URL = os.environ.get("REVLOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def on_broker(settings) -> Iterator:
    settings.broker_url = REDIS_URL
    settings.broker_namespace = f"t{uuid.uuid4().hex[:10]}"
    yield settings
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{settings.broker_namespace}:*"))
    if keys:
        client.delete(*keys)


def _waiting(settings) -> dict[str, list[int]]:
    """Job ids of the task messages waiting in each queue."""
    client = redis.Redis.from_url(REDIS_URL)
    found = {}
    for name in broker.queue_names(settings):
        bodies = [json.loads(m) for m in client.lrange(f"{settings.broker_namespace}:{name}", 0, -1)]
        found[name.rsplit(".", 1)[1]] = sorted(_job_id(b) for b in bodies)
    return found


def _job_id(message: dict) -> int:
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    return args[0]


def test_a_job_is_published_once_its_transaction_commits_and_never_when_it_rolls_back(on_broker):
    settings = on_broker
    with session_scope(settings) as session:
        cold = jobs.enqueue(session, "lead.run", {"lead_id": 1}, dedupe_key="lead-run:1").id
        hot = jobs.enqueue(session, "lead.run", {"lead_id": 2}, dedupe_key="lead-run:2", priority=JobPriority.LEAD_A).id
        assert _waiting(settings) == {"hot": [], "default": []}  # nothing before the commit
    assert _waiting(settings) == {"hot": [hot], "default": [cold]}
    with pytest.raises(RuntimeError), session_scope(settings) as session:
        jobs.enqueue(session, "lead.run", {"lead_id": 3}, dedupe_key="lead-run:3")
        raise RuntimeError("the request failed")
    with session_scope(settings) as session:  # a replay of a queued job publishes nothing more
        jobs.enqueue(session, "lead.run", {"lead_id": 1}, dedupe_key="lead-run:1")
    assert _waiting(settings) == {"hot": [hot], "default": [cold]}
    assert broker.queue_depth(settings) == 2


def test_a_job_due_far_ahead_waits_for_beats_dispatch_which_publishes_it_when_due(on_broker):
    settings = on_broker
    with session_scope(settings) as session:
        job_id = jobs.enqueue(
            session, "daily.scan", {}, dedupe_key="daily", run_after=utcnow() + dt.timedelta(hours=5)
        ).id
    assert broker.queue_depth(settings) == 0
    assert broker.dispatch(settings) == 0  # not due yet
    with session_scope(settings) as session:
        session.execute(update(Job).where(Job.id == job_id).values(run_after=utcnow() - dt.timedelta(seconds=1)))
    assert broker.dispatch(settings) == 1
    assert _waiting(settings)["default"] == [job_id]
    assert broker.dispatch(settings) == 0  # a message waits: dispatch does not double the queue


def test_a_job_written_while_the_broker_is_down_is_kept_and_published_by_dispatch_later(on_broker):
    settings = on_broker
    down = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with session_scope(down) as session:  # the write succeeds; the publish fails after the commit, quietly
        job_id = jobs.enqueue(session, "lead.run", {"lead_id": 7}, dedupe_key="lead-run:7").id
    with session_scope(settings) as session:
        assert session.scalar(select(Job.status).where(Job.id == job_id)) == "queued"
    assert broker.queue_depth(settings) == 0
    assert broker.dispatch(settings) == 1  # the broker is back
    assert _waiting(settings)["default"] == [job_id]


def test_revloop_worker_beat_needs_a_broker(settings, subprocess_env, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import app as cli
    from core.settings import get_settings

    for key, value in subprocess_env.items():
        if key.startswith("REVLOOP_"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("REVLOOP_BROKER_URL", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["worker", "--beat"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "--beat needs REVLOOP_BROKER_URL" in result.output


def test_celery_beat_alone_finds_its_schedule_folder_on_a_fresh_host(tmp_path, monkeypatch):
    """`celery -A core.broker:app beat` (docs/deploy.md) on a host where no revloop process made REVLOOP_VAR_DIR:
    the schedule file's folder is created (0700), where Celery's shelve would otherwise fail to open it."""
    import shelve

    from core.settings import get_settings

    var = tmp_path / "fresh" / "var"
    monkeypatch.setenv("REVLOOP_BROKER_URL", REDIS_URL)
    monkeypatch.setenv("REVLOOP_VAR_DIR", str(var))
    get_settings.cache_clear()
    try:
        app = broker.app
    finally:
        get_settings.cache_clear()
    assert var.is_dir() and var.stat().st_mode & 0o777 == 0o700
    assert app.conf.beat_schedule_filename == str(var.resolve() / "celerybeat-schedule")
    with shelve.open(app.conf.beat_schedule_filename) as schedule:  # what celery.beat.PersistentScheduler does
        schedule["probe"] = 1
