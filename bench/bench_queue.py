"""The review queue endpoint under load: 10,000 pending items, pages of 50.

    .venv/bin/python bench/bench_queue.py [--items 10000] [--requests 300] [--backend sqlite|postgresql|both]

Fills a fresh database (SQLite in a temporary folder; PostgreSQL: a new database on
REVLOOP_BENCH_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test, dropped afterwards)
with pending review items of mixed grades, deadlines, assignees and queues, runs `revloop serve` as
its own process, signs a closer in, and times GET /v1/review-items over HTTP for the views a closer
uses (team, my, exception, SLA filters, escalated items, later pages). Reports p50/p95/max per backend.
Goal: p95 under 100 ms for a page of 50.

It also times routing's load count for one lead (agents/lead/routing.pick_assignee: each linked closer's
pending items counted up to REVLOOP_CLOSER_CAPACITY) beside the whole-queue GROUP BY it replaced, on the same
100k items: the first must not grow with the queue.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_speed_to_lead import free_port, percentile  # noqa: E402
from core.db import dispose_engines, get_engine  # noqa: E402
from core.migrate import upgrade  # noqa: E402
from core.models import ReviewItem, SalesAgent  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.users import create_user  # noqa: E402
from crm.sales_team import link_matching_users  # noqa: E402

PG_ADMIN = os.environ.get("REVLOOP_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
CLOSERS = ["Casey Jordan", "Robin Lee", "Sasha Patel", "Dana Closer"]
QUERIES = [
    "status=pending&view=team",
    "status=pending&view=my",
    "status=pending&view=exception",
    "status=pending&sla=breached",
    "status=pending&grade=A",
    "status=pending&view=team&offset={deep}",
    "status=pending&assignee=unassigned",
    "status=pending&escalated=true",
]


def fill(settings: Settings, items: int) -> None:
    rng = random.Random(7)
    now = dt.datetime.now(dt.UTC)
    rows = []
    for n in range(items):
        grade = rng.choice("AABBBCCD")
        escalated = rng.random() < 0.02  # breached and sent back to the team queue by the SLA watch
        rows.append(
            {
                "kind": rng.choice(["email"] * 9 + ["call_task"]),
                "status": "pending",
                "thread_id": f"bench-{n}",
                "dedupe_key": uuid.uuid4().hex,
                "source": "lead",
                "template": "first_touch_fast",
                "brief": {"grade": grade, "score": rng.randint(10, 95), "summary": "x" * 400, "criteria": [{}] * 6},
                "draft": {"subject": f"Subject {n}", "body": "Hi there,\n" + "words " * 150, "to": f"p{n}@x.com"},
                "queue": "exception" if rng.random() < 0.1 else "main",
                "grade": grade,
                "assignee": rng.choice(CLOSERS + [None]),
                "sla_due_at": now + dt.timedelta(minutes=rng.randint(-600, 4000)),
                "guard_flags": [],
                "created_at": now - dt.timedelta(minutes=rng.randint(0, 5000)),
                "escalated_at": now if escalated else None,
                "escalated_from": rng.choice(CLOSERS) if escalated else None,
                "updated_at": now,
            }
        )
    with get_engine(settings).begin() as conn:
        for start in range(0, len(rows), 1000):
            conn.execute(ReviewItem.__table__.insert(), rows[start : start + 1000])
        if not settings.is_sqlite:
            conn.exec_driver_sql("ANALYZE review_items")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_routing(settings: Settings, runs: int = 50) -> tuple[float, float]:
    """p50 ms of routing's capped load count for one lead, and of the whole-queue GROUP BY it replaced."""
    from sqlalchemy import func, select

    from agents.lead.routing import pick_assignee
    from core.db import session_scope

    routing, scan = [], []
    for _ in range(runs):
        start = time.perf_counter()
        pick_assignee(settings, "EMEA")
        routing.append(time.perf_counter() - start)
        start = time.perf_counter()
        with session_scope(settings, readonly=True) as session:
            session.execute(
                select(ReviewItem.assignee, func.count(ReviewItem.id))
                .where(ReviewItem.status == "pending", ReviewItem.assignee.is_not(None))
                .group_by(ReviewItem.assignee)
            ).all()
        scan.append(time.perf_counter() - start)
    return 1000 * percentile(routing, 0.5), 1000 * percentile(scan, 0.5)


def measure(database_url: str, folder: Path, items: int, requests: int) -> dict[str, Any]:
    settings = Settings(var_dir=folder, database_url=database_url)
    upgrade(settings)
    fill(settings, items)
    from core.db import session_scope

    with session_scope(settings) as session:
        for name in CLOSERS:  # each closer can sign in and works the sales agent of the same name
            create_user(
                session,
                email=f"{name.split()[0].lower()}@bench.local",
                name=name,
                role="closer",
                password="bench-password-1",
                actor="bench",
            )
            session.add(SalesAgent(name=name, regional_office="EMEA"))
        session.flush()
        link_matching_users(session, actor="bench")
    routing_ms, scan_ms = time_routing(settings)
    dispose_engines()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVLOOP_")}
    env.update(REVLOOP_VAR_DIR=str(folder), REVLOOP_DATABASE_URL=database_url, REVLOOP_API_PORT=str(port))
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=10) as http:
            token = http.post("/v1/auth/login", json={"email": "casey@bench.local", "password": "bench-password-1"})
            headers = {"Authorization": f"Bearer {token.json()['token']}"}
            queries = [q.format(deep=items // 20) for q in QUERIES]  # a later page, ~5% deep
            for query in queries:  # warm up connections and caches
                assert http.get(f"/v1/review-items?{query}&limit=50", headers=headers).status_code == 200
            cpu_before = cpu_seconds(server.pid)
            latencies = []
            by_view: dict[str, list[float]] = {q: [] for q in QUERIES}
            for n in range(requests):
                query = queries[n % len(queries)]
                start = time.perf_counter()
                r = http.get(f"/v1/review-items?{query}&limit=50", headers=headers)
                latencies.append(time.perf_counter() - start)
                by_view[QUERIES[n % len(queries)]].append(latencies[-1])
                assert r.status_code == 200 and len(r.json()["items"]) > 0, (query, r.text[:200])
            server_cpu_ms = 1000 * (cpu_seconds(server.pid) - cpu_before) / requests
        page = httpx.get(f"{base}/v1/review-items?status=pending&limit=1", headers=headers).json()
        total = f"{page['total']:,}+" if page["total_capped"] else f"{page['total']:,}"  # as the queue shows it
    finally:
        server.terminate()
        server.wait(timeout=20)
    return {
        "routing_ms": routing_ms,
        "scan_ms": scan_ms,
        "pending": f"{items:,}",
        "shown": total,
        "views": {q: 1000 * percentile(v, 0.5) for q, v in by_view.items()},
        "cpu_ms": server_cpu_ms,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p95_ms": 1000 * percentile(latencies, 0.95),
        "max_ms": 1000 * max(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    results = {}
    if args.backend in ("sqlite", "both"):
        folder = Path(tempfile.mkdtemp(prefix="revloop-bench-queue-"))
        results["sqlite"] = measure(f"sqlite:///{folder / 'revloop.db'}", folder, args.items, args.requests)
    if args.backend in ("postgresql", "both"):
        import psycopg

        name = f"revloop_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name
            folder = Path(tempfile.mkdtemp(prefix="revloop-bench-queue-"))
            results["postgresql"] = measure(url, folder, args.items, args.requests)
        finally:
            dispose_engines()
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"queue endpoint, page of 50, {args.requests} requests over {len(QUERIES)} views (goal: p95 < 100 ms)")
    print("(server CPU: the API process's CPU time per request, which a loaded box does not inflate)")
    print(f"{'backend':<12}{'pending':>9}{'shown':>9}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'server CPU ms':>15}")
    for backend, r in results.items():
        print(
            f"{backend:<12}{r['pending']:>9}{r['shown']:>9}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['max_ms']:>9.1f}"
            f"{r['cpu_ms']:>15.1f}"
        )
    print("p50 ms by view: " + "  ".join(f"{b}" for b in results))
    for query in QUERIES:
        print(f"  {query:<42}" + "".join(f"{r['views'][query]:>10.1f}" for r in results.values()))
    print(f"routing's load count for one lead, {len(CLOSERS)} linked closers, p50 of 50 (ms)")
    print(f"{'backend':<12}{'capped':>9}{'scan':>9}   (scan: the whole-queue GROUP BY it replaced)")
    for backend, r in results.items():
        print(f"{backend:<12}{r['routing_ms']:>9.2f}{r['scan_ms']:>9.1f}")


if __name__ == "__main__":
    main()
