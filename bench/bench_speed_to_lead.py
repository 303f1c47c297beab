"""Speed to lead on the deterministic engine: POST /v1/leads -> review item ready.

    .venv/bin/python bench/bench_speed_to_lead.py [--leads 500] [--rate 10] [--concurrency 2]

Runs the API (`revloop serve`) and the worker (`revloop worker`) as separate processes, as
`revloop up` does, on a fresh SQLite database in a temporary folder; posts leads over HTTP at a
steady arrival rate and reports p50/p95/max of (review item created - lead captured).
Goal: p95 under 1 second.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.auth import create_token  # noqa: E402
from core.db import session_scope  # noqa: E402
from core.migrate import upgrade  # noqa: E402
from core.models import Lead, ReviewItem  # noqa: E402
from core.settings import Settings  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=500)
    parser.add_argument("--rate", type=float, default=10.0, help="leads posted per second")
    parser.add_argument("--concurrency", type=int, default=2, help="worker threads (revloop worker --concurrency)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="revloop-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVLOOP_")}
    env.update(REVLOOP_VAR_DIR=str(folder), REVLOOP_API_PORT=str(port), REVLOOP_WORKER_POLL_SECONDS="0.02")
    settings = Settings(var_dir=folder)
    upgrade(settings)
    with session_scope(settings) as session:
        _, token = create_token(session, role="integration", name="bench", actor="bench")
    cli = [sys.executable, "-m", "api.cli"]
    procs = [
        subprocess.Popen([*cli, "serve"], env=env, cwd=ROOT, stderr=subprocess.DEVNULL),
        subprocess.Popen(
            [*cli, "worker", "--concurrency", str(args.concurrency)], env=env, cwd=ROOT, stderr=subprocess.DEVNULL
        ),
    ]
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        started = time.perf_counter()
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
            for i in range(args.leads):
                time.sleep(max(0.0, started + i / args.rate - time.perf_counter()))
                http.post(
                    "/v1/leads",
                    json={
                        "email": f"lead{i}@company{i % 50}.example",
                        "first_name": f"Lee{i}",
                        "company": f"Company {i % 50}",
                        "title": ["VP Sales", "Head of Ops", "Analyst", "Founder"][i % 4],
                        "message": ["Need pricing and a demo", "Just browsing", "Budget approved, quote please"][i % 3],
                        "source": "bench",
                        "consent": {"email": True, "call": i % 2 == 0},
                    },
                ).raise_for_status()
        deadline = time.perf_counter() + 180
        while time.perf_counter() < deadline:
            with session_scope(settings) as session:
                if session.query(ReviewItem).count() >= args.leads:
                    break
            time.sleep(0.2)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)

    with session_scope(settings) as session:
        pairs = session.execute(
            ReviewItem.__table__.select()
            .with_only_columns(ReviewItem.created_at, Lead.captured_at)
            .join_from(ReviewItem, Lead, ReviewItem.lead_id == Lead.id)
        ).all()
    latencies = [(item - captured).total_seconds() for item, captured in pairs]
    print(
        json.dumps(
            {
                "database": "sqlite (embedded default)",
                "leads": args.leads,
                "review_items": len(latencies),
                "arrival_rate_per_s": args.rate,
                "worker_threads": args.concurrency,
                "p50_seconds": round(percentile(latencies, 0.5), 3),
                "p95_seconds": round(percentile(latencies, 0.95), 3),
                "max_seconds": round(max(latencies), 3),
                "goal_p95_seconds": 1.0,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
