"""The scale path on this machine's real Redis and PostgreSQL: the API publishes each committed job to Celery,
two `revloop worker` processes (Celery, threads pool) run them; a lead goes to one review item and an approval
to exactly one email, also when a worker is killed mid-graph and when approvals and task messages are doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from sqlalchemy import select

from core import broker
from core.db import session_scope
from core.models import Job, OutboxMessage, ReviewItem
from review.outbox import outbox_files
from tests.conftest import LiveServer, only_on
from tests.factories import auth, lead_payload
from tests.llm_server import ScriptedLLM

REDIS_URL = os.environ.get("REVLOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
pytestmark = only_on("postgresql")  # a Celery deployment runs on PostgreSQL (and the checkpointer's pool)


@pytest.fixture
def celery_settings(settings) -> Iterator:
    """The test's settings on a broker namespace of its own (every Redis key prefixed), removed afterwards."""
    settings.broker_url = REDIS_URL
    settings.broker_namespace = f"t{uuid.uuid4().hex[:10]}"
    settings.broker_dispatch_seconds = 1
    yield settings
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{settings.broker_namespace}:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def worker_env(celery_settings, subprocess_env) -> dict[str, str]:
    return {
        **subprocess_env,
        "REVLOOP_BROKER_URL": celery_settings.broker_url,
        "REVLOOP_BROKER_NAMESPACE": celery_settings.broker_namespace,
        "REVLOOP_BROKER_DISPATCH_SECONDS": "1",
        "REVLOOP_UNDO_SECONDS": "0",
        "REVLOOP_JOB_LEASE_SECONDS": "4",  # heartbeat and sweep every second
    }


class Workers:
    """`revloop worker` processes in Celery mode, killed at the end."""

    def __init__(self, env: dict[str, str], log_dir):
        self.env = env
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(self.log_dir / f"worker-{len(self.procs)}.log", "w") as log:  # read when a wait times out
            proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "worker", "--concurrency", "2", *args],
                env=env or self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        # The test is over: no need for a warm shutdown (its namespace and database are dropped).
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()

    def logs(self) -> str:
        return "\n".join(f.read_text()[-2000:] for f in sorted(self.log_dir.glob("worker-*.log")))


@pytest.fixture
def workers(worker_env, tmp_path) -> Iterator[Workers]:
    group = Workers(worker_env, tmp_path)
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture
def api(celery_settings) -> Iterator[LiveServer]:
    with LiveServer(celery_settings) as server:
        yield server


def _wait(condition: Callable[[], bool], seconds: float, what: str, state: Callable[[], object] = lambda: "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}: {state()}")
        time.sleep(0.1)


def _items(settings, lead_id: int) -> list[tuple[int, str]]:
    with session_scope(settings, readonly=True) as session:
        return list(session.execute(select(ReviewItem.id, ReviewItem.status).where(ReviewItem.lead_id == lead_id)))


def _jobs(settings) -> list[tuple[str, str, int, str | None]]:
    with session_scope(settings, readonly=True) as session:
        return list(session.execute(select(Job.kind, Job.status, Job.attempts, Job.locked_by).order_by(Job.id)))


def _post_lead(settings, url: str, **overrides) -> int:
    r = httpx.post(f"{url}/v1/leads", json=lead_payload(**overrides), headers=auth(settings, "integration"), timeout=60)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _resume_job(settings, item_id: int) -> int | None:
    with session_scope(settings, readonly=True) as session:
        jobs = session.execute(select(Job.id, Job.payload).where(Job.kind == "review.resume")).all()
    return next((job_id for job_id, payload in jobs if payload.get("review_item_id") == item_id), None)


def _sent_rows(settings) -> list[OutboxMessage]:
    with session_scope(settings, readonly=True) as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


@pytest.mark.timeout(300)  # outlasts its own waits, so a stall ends with the jobs' states and the workers' logs
def test_two_celery_workers_take_a_lead_to_one_email_even_with_ten_concurrent_approvals_and_doubled_messages(
    celery_settings, api, workers
):
    settings = celery_settings
    workers.start("--beat")
    workers.start()
    lead_id = _post_lead(settings, api.url)
    _wait(
        lambda: len(_items(settings, lead_id)) == 1,
        120,
        "the lead's review item",
        lambda: (_jobs(settings), workers.logs()),
    )
    [(item_id, status)] = _items(settings, lead_id)
    assert status == "pending"
    r = httpx.post(f"{api.url}/v1/review-items/{item_id}/approve", headers=auth(settings, "closer"), timeout=60)
    assert r.status_code == 200, r.text
    _wait(
        lambda: _items(settings, lead_id) == [(item_id, "sent")],
        30,
        "the send",
        lambda: (_jobs(settings), workers.logs()),
    )
    time.sleep(1)  # room for a wrong second send
    assert [f.name for f in outbox_files(settings)] == [f"review-item-{item_id}.eml"]
    assert [(r.review_item_id, r.status) for r in _sent_rows(settings)] == [(item_id, "sent")]
    graph_jobs = {(kind, status, attempts) for kind, status, attempts, _ in _jobs(settings) if kind != "health.check"}
    assert {("lead.run", "done", 1), ("review.resume", "done", 1)} <= graph_jobs
    _wait(lambda: broker.queue_depth(settings) == 0, 10, "an empty queue (beat's dispatch passes through it)")

    # A second lead: ten closers approve its item at once, and the resume job's task is sent ten more times, so
    # both workers try to claim it together.
    first_item = item_id
    lead_id = _post_lead(
        settings, api.url, email="sam@second-firm.example", company="Second Firm", website="https://second-firm.example"
    )
    _wait(
        lambda: len(_items(settings, lead_id)) == 1,
        120,
        "the lead's review item",
        lambda: (_jobs(settings), workers.logs()),
    )
    [(item_id, _)] = _items(settings, lead_id)
    closer = auth(settings, "closer")
    answers: list[int] = []
    barrier = threading.Barrier(10)

    def approve() -> None:
        with httpx.Client(base_url=api.url, timeout=60) as client:
            barrier.wait()
            answers.append(client.post(f"/v1/review-items/{item_id}/approve", headers=closer).status_code)

    threads = [threading.Thread(target=approve) for _ in range(10)]
    for t in threads:
        t.start()
    _wait(lambda: _resume_job(settings, item_id) is not None, 30, "the resume job")
    resume_id = _resume_job(settings, item_id)
    for _ in range(10):
        assert broker.publish(settings, resume_id)
    for t in threads:
        t.join()
    assert sorted(answers) == [200] + [409] * 9
    _wait(
        lambda: _items(settings, lead_id) == [(item_id, "sent")],
        30,
        "the send",
        lambda: (_jobs(settings), workers.logs()),
    )
    _wait(lambda: broker.queue_depth(settings) == 0, 30, "the doubled messages to be consumed")
    time.sleep(1)
    assert sorted(f.name for f in outbox_files(settings)) == sorted(
        f"review-item-{i}.eml" for i in (first_item, item_id)
    )
    assert [(r.review_item_id, r.status, r.attempts) for r in _sent_rows(settings)] == [
        (first_item, "sent", 1),
        (item_id, "sent", 1),
    ]
    assert [(k, s, a) for k, s, a, _ in _jobs(settings) if k == "review.resume"] == [("review.resume", "done", 1)] * 2


@pytest.mark.timeout(300)
def test_kill_9_of_a_celery_worker_mid_graph_still_gives_one_review_item(celery_settings, api, workers, worker_env):
    settings = celery_settings
    with ScriptedLLM() as llm:
        # The first model call of the lead graph hangs, so the first worker is inside the graph when it is killed.
        llm.add({"sleep": 4, "content": "{}"})
        llm.responder = lambda body: {"content": "{}"}
        env = {
            **worker_env,
            "REVLOOP_LLM": "openai",
            "REVLOOP_LLM_BASE_URL": llm.url,
            "REVLOOP_LLM_API_KEY": "test-key",
            "REVLOOP_LLM_MODEL": "scripted-model",
            "REVLOOP_LLM_TIMEOUT_SECONDS": "30",
            "REVLOOP_LLM_MAX_RETRIES": "0",
        }
        first = workers.start(env=env)
        lead_id = _post_lead(settings, api.url)
        _wait(
            lambda: len(llm.requests) >= 1,
            120,
            "the first worker in the lead graph",
            lambda: (_jobs(settings), workers.logs()),
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert [j[:2] for j in _jobs(settings) if j[0] == "lead.run"] == [("lead.run", "running")]  # left behind
        started = time.monotonic()
        workers.start("--beat", env=env)
        _wait(
            lambda: len(_items(settings, lead_id)) == 1,
            120,
            "the item after the kill",
            lambda: (_jobs(settings), workers.logs()),
        )
        recovered_in = time.monotonic() - started
        time.sleep(1.5)  # room for a second run to queue a second item
    assert len(_items(settings, lead_id)) == 1
    [(kind, status, attempts, locked_by)] = [j for j in _jobs(settings) if j[0] == "lead.run"]
    assert (status, attempts, locked_by) == ("done", 2, None)
    print(f"the second worker finished the lead {recovered_in:.1f} s after it started")
