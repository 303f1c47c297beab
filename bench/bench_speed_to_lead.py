"""Speed to lead on the deterministic engine: POST /v1/leads -> review item ready, as users run it.

    .venv/bin/python bench/bench_speed_to_lead.py                       # sqlite and postgres, side by side
    .venv/bin/python bench/bench_speed_to_lead.py --modes sqlite --leads 600 --rate 20 --burst 2000
    .venv/bin/python bench/bench_speed_to_lead.py --concurrency 4 --processes 2

Each mode starts `revloop serve` and --processes x `revloop worker --concurrency N` as their own processes (as
`revloop up` does) with the shipped settings (the worker's poll included), on a fresh database: a SQLite file in
a temporary var dir (sqlite, the embedded default), or a new PostgreSQL database on --database-url, dropped
afterwards, with the built-in worker (postgres). Then two phases:

- trickle: --leads leads posted at a steady --rate per second (4 clients keeping the schedule);
- burst: --burst leads posted as fast as 20 clients can, with one likely-A lead (decision maker, buying intent,
  an industry and size the rubric wants) posted in the middle; every other lead pre-scores B or lower.

For each phase: speed to lead p50/p95/p99 (review item created - lead captured, both stamped by the database's
writers on this machine), leads drained per second (leads / (last review item - first capture)), the workers'
CPU ms per lead (user+system time of the worker processes over the phase), and peak RSS of the worker and API
processes; for the burst, the A lead's speed to lead. Goals: trickle p95 < 1 s at 20 leads/s on sqlite; the
A lead's review item within 2 s of its capture; the burst drained.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import scratch_postgres_database  # noqa: E402

DEFAULT_PG = os.environ.get("REVLOOP_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DEFAULT_BROKER = os.environ.get("REVLOOP_BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")
COLD_TITLES = ["VP Sales", "Head of Ops", "Analyst", "Founder"]
COLD_MESSAGES = ["Need pricing and a demo", "Just browsing", "Budget approved, quote please"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_tree(pid: int) -> list[int]:
    """The process and its live children (uvicorn's workers)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                pids.append(int(stat.parent.name))
        except (OSError, IndexError):
            continue
    return pids


def cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        for p in process_tree(pid):
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def peak_rss_mb(pids: list[int]) -> float:
    """The largest peak resident set (VmHWM) among the processes and their children."""
    peak = 0
    for pid in pids:
        for p in process_tree(pid):
            try:
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except OSError:
                continue
    return round(peak / 1024, 1)


def cold_lead(tag: str, i: int) -> dict:
    return {
        "email": f"lead{i}@{tag}-company{i % 50}.example",
        "first_name": f"Lee{i}",
        "company": f"{tag} Company {i % 50}",
        "title": COLD_TITLES[i % 4],
        "message": COLD_MESSAGES[i % 3],
        "source": "bench",
        "consent": {"email": True, "call": i % 2 == 0},
    }


def hot_lead(tag: str) -> dict:
    return {
        "email": f"ceo@{tag}-hot.example",
        "first_name": "Ada",
        "company": f"{tag} Hot Software",
        "title": "CEO",
        "phone": "+1 415 555 0199",
        "message": "Budget approved: we need pricing and a demo this quarter",
        "source": "bench",
        "consent": {"email": True, "call": True},
        "custom": {"industry": "software", "employees": 250},
    }


def wait_healthy(base: str, procs: list[subprocess.Popen]) -> None:
    for _ in range(600):
        if any(p.poll() is not None for p in procs):
            raise SystemExit("a revloop process exited during start-up")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("the API did not answer /healthz")


def post_all(base: str, token: str, bodies: list[dict], *, rate: float | None, clients: int) -> dict[str, int]:
    """Post the bodies (at `rate` per second, or as fast as `clients` can); returns email -> lead id."""
    ids: dict[str, int] = {}
    lock = threading.Lock()
    local = threading.local()
    started = time.perf_counter()

    def post(i: int) -> None:
        if rate:
            time.sleep(max(0.0, started + i / rate - time.perf_counter()))
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        body = bodies[i]
        for _ in range(5):
            r = local.http.post("/v1/leads", json=body, headers={"Idempotency-Key": body["email"]})
            if r.status_code != 503:
                break
            time.sleep(float(r.json().get("retry_after_seconds", 1)))
        r.raise_for_status()
        with lock:
            ids[body["email"]] = r.json()["id"]

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, range(len(bodies))))
    return ids


def phase_figures(
    settings, lead_ids: list[int], hot_id: int | None, timeout: float, worker_pids: list[int], cpu_before: float
) -> dict:
    """Wait until every lead has its review item (or the timeout), then read the timings from the database."""
    from sqlalchemy import func, select

    from core.db import session_scope
    from core.models import Lead, ReviewItem

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(settings, readonly=True) as session:
            ready = session.scalar(select(func.count(ReviewItem.id)).where(ReviewItem.lead_id.in_(lead_ids)))
        if ready >= len(lead_ids):
            break
        time.sleep(0.2)
    cpu = cpu_seconds(worker_pids) - cpu_before
    with session_scope(settings, readonly=True) as session:
        rows = session.execute(
            select(Lead.id, Lead.captured_at, func.min(ReviewItem.created_at))
            .join(ReviewItem, ReviewItem.lead_id == Lead.id)
            .where(Lead.id.in_(lead_ids))
            .group_by(Lead.id, Lead.captured_at)
        ).all()
        first_capture = session.scalar(select(func.min(Lead.captured_at)).where(Lead.id.in_(lead_ids)))
    latency = {lead_id: (ready_at - captured).total_seconds() for lead_id, captured, ready_at in rows}
    values = list(latency.values())
    last_ready = max((ready_at for _, _, ready_at in rows), default=None)
    span = (last_ready - first_capture).total_seconds() if last_ready else float("nan")
    return {
        "leads": len(lead_ids),
        "ready": len(values),
        "p50": percentile(values, 0.5),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": max(values, default=float("nan")),
        "drained_per_s": len(values) / span if span and span > 0 else float("nan"),
        "drain_seconds": span,
        "worker_cpu_ms_per_lead": 1000 * cpu / max(1, len(values)),
        "hot": latency.get(hot_id) if hot_id is not None else None,
    }


def run_mode(args: argparse.Namespace, label: str, database_url: str | None) -> dict:
    from api.auth import create_token
    from core.db import dispose_engines, session_scope
    from core.migrate import upgrade
    from core.settings import Settings

    folder = Path(tempfile.mkdtemp(prefix=f"revloop-bench-{label}-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVLOOP_")}
    env.update(REVLOOP_VAR_DIR=str(folder), REVLOOP_API_PORT=str(port), REVLOOP_OUTBOX_DIR=str(folder / "outbox"))
    settings_kw: dict = {"var_dir": folder}
    if database_url:
        env.update(REVLOOP_DATABASE_URL=database_url, REVLOOP_CHECKPOINT_URL=database_url)
        settings_kw.update(database_url=database_url, checkpoint_url=database_url)
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    settings = Settings(**settings_kw)
    upgrade(settings)
    with session_scope(settings) as session:
        _, token = create_token(session, role="integration", name="bench", actor="bench")
    cli = [sys.executable, "-m", "api.cli"]
    logs = folder / "logs"
    logs.mkdir()
    api_log = (logs / "api.log").open("w")
    api = subprocess.Popen([*cli, "serve"], env=env, cwd=ROOT, stdout=api_log, stderr=api_log)
    workers = [
        subprocess.Popen(
            [*cli, "worker", "--concurrency", str(args.concurrency)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(logs / f"worker{i}.log").open("w"),
        )
        for i in range(args.processes)
    ]
    worker_pids = [w.pid for w in workers]
    result: dict = {"mode": label, "logs": str(logs)}
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, [api, *workers])
        # Warm up: one lead through every worker process's first run (imports, knowledge base, rubric caches).
        warm_tag = f"w{uuid.uuid4().hex[:6]}"
        warm = post_all(base, token, [cold_lead(warm_tag, i) for i in range(2 * args.processes)], rate=None, clients=1)
        phase_figures(settings, list(warm.values()), None, 300, worker_pids, 0.0)

        if args.leads:
            tag = f"t{uuid.uuid4().hex[:6]}"
            cpu_before = cpu_seconds(worker_pids)
            ids = post_all(base, token, [cold_lead(tag, i) for i in range(args.leads)], rate=args.rate, clients=4)
            result["trickle"] = phase_figures(settings, list(ids.values()), None, args.timeout, worker_pids, cpu_before)

        if args.burst:
            tag = f"b{uuid.uuid4().hex[:6]}"
            bodies = [cold_lead(tag, i) for i in range(args.burst)]
            bodies.insert(args.burst // 2, hot_lead(tag))
            cpu_before = cpu_seconds(worker_pids)
            started = time.perf_counter()
            ids = post_all(base, token, bodies, rate=None, clients=20)
            result["burst_posted_per_s"] = len(bodies) / (time.perf_counter() - started)
            hot_id = ids[hot_lead(tag)["email"]]
            result["burst"] = phase_figures(settings, list(ids.values()), hot_id, args.timeout, worker_pids, cpu_before)
        result["worker_rss_mb"] = peak_rss_mb(worker_pids)
        result["api_rss_mb"] = peak_rss_mb([api.pid])
    finally:
        for proc in [api, *workers]:
            proc.terminate()
        for proc in [api, *workers]:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        dispose_engines(settings)
    return result


@contextmanager
def sqlite_mode(args: argparse.Namespace) -> Iterator[str | None]:
    yield None  # run_mode makes a fresh SQLite file in its temporary var dir


@contextmanager
def postgres_mode(args: argparse.Namespace) -> Iterator[str | None]:
    """A new database on the --database-url server for this run, dropped afterwards."""
    with scratch_postgres_database(args.database_url, "revloop_bench_stl") as url:
        yield url


@contextmanager
def celery_mode(args: argparse.Namespace) -> Iterator[str | None]:
    """PostgreSQL + a Celery broker (--broker-url, under a namespace of its own) + at least 2 worker processes:
    `revloop worker` is a Celery worker when REVLOOP_BROKER_URL is set, and the API publishes each job to it."""
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    extra = [f"REVLOOP_BROKER_URL={args.broker_url}", f"REVLOOP_BROKER_NAMESPACE={namespace}"]
    processes = args.processes
    args.env, args.processes = [*args.env, *extra], max(2, args.processes)
    try:
        with postgres_mode(args) as database_url:
            yield database_url
    finally:
        args.env, args.processes = [e for e in args.env if e not in extra], processes
        if args.broker_url.startswith("redis"):
            import redis

            client = redis.Redis.from_url(args.broker_url)
            keys = list(client.scan_iter(match=f"{namespace}:*"))
            if keys:
                client.delete(*keys)


# Each mode yields the database URL its run uses (None: a fresh SQLite file) around one run of the same load. A
# broker mode (Celery workers) adds its entry here, with its own environment.
MODES: dict[str, Callable[[argparse.Namespace], AbstractContextManager[str | None]]] = {
    "sqlite": sqlite_mode,
    "postgres": postgres_mode,
    "celery": celery_mode,
}


def _s(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.3f} s"


ROWS: tuple[tuple[str, Callable[[dict], str]], ...] = (
    ("trickle: leads, rate", lambda r: f"{r['trickle']['ready']}/{r['trickle']['leads']} at {r['rate']:g}/s"),
    ("trickle: p50", lambda r: _s(r["trickle"]["p50"])),
    ("trickle: p95 (goal < 1 s)", lambda r: _s(r["trickle"]["p95"])),
    ("trickle: p99", lambda r: _s(r["trickle"]["p99"])),
    ("trickle: worker CPU ms/lead", lambda r: f"{r['trickle']['worker_cpu_ms_per_lead']:.1f}"),
    ("burst: leads ready", lambda r: f"{r['burst']['ready']}/{r['burst']['leads']}"),
    ("burst: posted/s", lambda r: f"{r['burst_posted_per_s']:.1f}"),
    ("burst: drained/s", lambda r: f"{r['burst']['drained_per_s']:.1f} ({r['burst']['drain_seconds']:.1f} s)"),
    ("burst: p50", lambda r: _s(r["burst"]["p50"])),
    ("burst: p95", lambda r: _s(r["burst"]["p95"])),
    ("burst: p99", lambda r: _s(r["burst"]["p99"])),
    ("burst: A lead (goal < 2 s)", lambda r: _s(r["burst"]["hot"])),
    ("burst: worker CPU ms/lead", lambda r: f"{r['burst']['worker_cpu_ms_per_lead']:.1f}"),
    ("worker peak RSS MB", lambda r: f"{r['worker_rss_mb']}"),
    ("API peak RSS MB", lambda r: f"{r['api_rss_mb']}"),
)


def print_table(results: list[dict]) -> None:
    width = max(len(name) for name, _ in ROWS)
    cols = [str(r["mode"]) for r in results]
    colw = 24
    print(f"{'':{width}}  " + "".join(f"{c:<{colw}}" for c in cols))
    for name, cell in ROWS:
        values = []
        for r in results:
            try:
                values.append(cell(r))
            except (KeyError, TypeError):
                values.append("-")
        print(f"{name:{width}}  " + "".join(f"{v:<{colw}}" for v in values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--modes", default="sqlite,postgres", help=f"comma-separated, run in this order: {', '.join(MODES)}"
    )
    parser.add_argument("--leads", type=int, default=600, help="trickle: leads posted at --rate (0: no trickle)")
    parser.add_argument("--rate", type=float, default=20.0, help="trickle: leads posted per second")
    parser.add_argument("--burst", type=int, default=2000, help="burst: leads posted at once, an A lead mid-way")
    parser.add_argument("--concurrency", type=int, default=2, help="threads per worker (revloop worker --concurrency)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for a phase's review items")
    parser.add_argument("--database-url", default=DEFAULT_PG, help="PostgreSQL server for the postgres mode")
    parser.add_argument(
        "--broker-url", default=DEFAULT_BROKER, help="Celery broker of the celery mode (a namespace of its own)"
    )
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the revloop processes")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        parser.error(f"unknown mode(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(MODES)}")
    results = []
    for mode in modes:
        with MODES[mode](args) as database_url:
            result = run_mode(args, mode, database_url)
        result["rate"] = args.rate
        results.append(result)
        print(f"[{mode}] done: {result}", file=sys.stderr, flush=True)
    print(
        f"\nspeed to lead, deterministic engine, {args.processes} worker process(es) x {args.concurrency} threads, "
        f"{os.cpu_count()} cores"
    )
    print_table(results)


if __name__ == "__main__":
    main()
