"""Every lead the server answered is stored, and no client is left without an answer: `revloop serve` as its own
process under more concurrent clients than it has threads, clients that reuse their kept-alive connection after
an idle pause, and a failing request that must not cost the next request on the same connection its answer.

Clients are http.client connections: one socket each, reused as long as the server keeps it open, with no quiet
reconnect, so a connection the server dropped shows up as an error here."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import select

from api.serving import KeepConnectionAfterError, RequestSlots, uvicorn_options
from core.db import session_scope
from core.models import Job, Lead
from core.settings import Settings
from tests.conftest import free_port
from tests.factories import lead_payload, token

REVLOOP = [sys.executable, "-m", "api.cli"]
CLIENTS = 50  # more than the API's threads (40, 8 on SQLite): beyond 40, requests used to deadlock on the database
POSTS_EACH = 3
IDLE_SECONDS = 6  # longer than httpx's idle expiry (5 s), which the server's keep-alive timeout used to equal


@contextmanager
def revloop_serve(env: dict[str, str], log: Path) -> Iterator[int]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([*REVLOOP, "serve", "--port", str(port)], env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "revloop serve did not start:\n" + log.read_text()
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


class Client:
    """One sender with one kept-alive connection; records what each post got (status or error) and the ids."""

    def __init__(self, port: int, bearer: str, answers: Counter, accepted: dict[str, int], lock: threading.Lock):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.bearer, self.answers, self.accepted, self.lock = bearer, answers, accepted, lock
        self.sockets: set[int] = set()

    def post(self, key: str, body: dict) -> None:
        headers = {"Authorization": f"Bearer {self.bearer}", "Content-Type": "application/json", "Idempotency-Key": key}
        try:
            self.conn.request("POST", "/v1/leads", body=json.dumps(body), headers=headers)
            self.sockets.add(id(self.conn.sock))
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()  # the next post opens a new connection
            with self.lock:
                self.answers[type(exc).__name__] += 1
            return
        with self.lock:
            self.answers[response.status] += 1
            if response.status == 202:
                self.accepted[key] = json.loads(data)["id"]


def test_more_clients_than_threads_and_idle_keepalive_every_202_is_stored(settings, subprocess_env, tmp_path):
    bearer = token(settings, "integration")
    run = uuid.uuid4().hex[:8]
    answers: Counter = Counter()
    accepted: dict[str, int] = {}
    lock = threading.Lock()

    def lead(n: int) -> tuple[str, dict]:
        # Company domains shared by several leads, as real traffic has (accounts are linked by domain).
        return f"ka-{run}-{n}", lead_payload(email=f"lead{n}-{run}@company{n % 7}.example", company=f"Co {n % 7}")

    with revloop_serve(subprocess_env, tmp_path / "serve.log") as port:
        clients = [Client(port, bearer, answers, accepted, lock) for _ in range(CLIENTS)]
        start = threading.Barrier(CLIENTS)

        def burst(c: int) -> None:
            start.wait()
            for i in range(POSTS_EACH - 1):
                clients[c].post(*lead(c * POSTS_EACH + i))
            # A repeat (same key and body) of another client's lead, racing it.
            clients[c].post(*lead(((c + 1) % CLIENTS) * POSTS_EACH))

        def after_idle(c: int) -> None:
            clients[c].post(*lead(c * POSTS_EACH + POSTS_EACH - 1))

        for phase in (burst, after_idle):
            threads = [threading.Thread(target=phase, args=(c,)) for c in range(CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=90)
            if phase is burst:
                time.sleep(IDLE_SECONDS)  # every connection idles past httpx's expiry before its next post
        for client in clients:
            client.conn.close()

    posts = CLIENTS * (POSTS_EACH + 1)
    assert sum(answers.values()) == posts
    assert answers == Counter({202: posts}), f"{answers}\n{(tmp_path / 'serve.log').read_text()[-3000:]}"
    # The idle connections were still open: each client used one socket for all its posts.
    assert all(len(client.sockets) == 1 for client in clients)

    unique = CLIENTS * POSTS_EACH
    with session_scope(settings) as session:
        rows = session.execute(select(Lead.id, Lead.idempotency_key).where(Lead.idempotency_key.like(f"ka-{run}-%")))
        stored = {key: lead_id for lead_id, key in rows}
        jobs = {payload["lead_id"] for payload in session.scalars(select(Job.payload).where(Job.kind == "lead.run"))}
    assert len(stored) == unique  # every lead once: no duplicate rows, none missing
    assert set(accepted) == set(stored)
    assert all(stored[key] == lead_id for key, lead_id in accepted.items())  # a repeat answers the same lead
    assert set(stored.values()) <= jobs  # and each has its lead graph job


def test_a_failed_request_does_not_cost_the_next_one_its_connection():
    """Starlette answers an unhandled exception with a 500 and re-raises it; the served app logs it and keeps the
    connection, so the request the client sends next on it is answered."""

    async def app(scope, receive, send):
        failing = scope["path"] == "/fail"
        await send({"type": "http.response.start", "status": 500 if failing else 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        if failing:
            raise RuntimeError("after the answer was sent")

    options = uvicorn_options(Settings(), host="127.0.0.1", port=free_port())
    served = KeepConnectionAfterError(RequestSlots(app, 4))
    options.update(app=served, factory=False, lifespan="off", log_level="critical")
    server = uvicorn.Server(uvicorn.Config(**options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        conn = http.client.HTTPConnection("127.0.0.1", options["port"], timeout=10)
        statuses = []
        for n in range(20):
            conn.request("GET", "/fail" if n % 2 == 0 else "/ok")
            sock = conn.sock
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
            assert conn.sock is sock  # still the same connection
        assert statuses == [500, 200] * 10
        conn.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_served_keepalive_outlasts_client_idle_timeouts():
    options = uvicorn_options(Settings())
    # httpx keeps an idle connection 5 s, load balancers typically 60 s: the server must not close first.
    assert options["timeout_keep_alive"] > max(5, 60)
    assert options["app"] == "api.serving:create_served_app" and options["factory"]


def test_request_slots_size_the_thread_pool():
    import anyio
    import anyio.to_thread

    seen: list[float] = []

    async def app(scope, receive, send):
        seen.append(anyio.to_thread.current_default_thread_limiter().total_tokens)

    async def main():
        await RequestSlots(app, 3)({"type": "http"}, None, None)

    anyio.run(main)
    assert seen == [3]
