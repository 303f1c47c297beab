"""Lead ingest under concurrency: every lead the server answered 202 is stored, once, with its job.

    .venv/bin/python bench/bench_ingest.py [--posts 5000] [--clients 50] [--repeats 0.2] [--workers 1]
    .venv/bin/python bench/bench_ingest.py --modes sqlite            # one mode only
    .venv/bin/python bench/bench_ingest.py --database-url postgresql://postgres@127.0.0.1:5432/test

Runs the same load on each mode (--modes, default: sqlite,postgresql) and prints them side by side. Each
mode runs the API the way users do: `revloop db upgrade`, `revloop tokens create --role integration` and
`revloop serve [--workers N]` as their own processes, on a fresh SQLite database in a temporary var dir
(sqlite), or on a new PostgreSQL database created on the --database-url server and dropped afterwards
(postgresql). Then
--clients concurrent clients (one thread and one keep-alive connection each, like separate web
forms or integrations; --client http.client, the default, or httpx) send --posts `POST /v1/leads`, of
which --repeats are repeats (same Idempotency-Key and body as an earlier post, some racing it). --pause
makes each client wait a random 0..PAUSE seconds between its posts (idle keep-alive connections, as real senders have).

Prints accepted/s, p50/p95/p99 latency, the API's CPU ms per post (its processes' user+system time over the
posts), the clients' CPU ms per post (this process's; "client included" in the goal), each status, 5xx,
connection errors, and from the database:
stored (leads of ours), duplicates (rows that should not exist), lost (answered 202 but not stored,
plus posts that got no answer at all) and stored leads without their lead.run job.
Goal: 0 lost, 0 duplicated, 0 5xx.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_speed_to_lead import free_port, percentile  # noqa: E402
from bench.common import scratch_postgres_database  # noqa: E402

DEFAULT_PG = os.environ.get("REVLOOP_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DEFAULT_BROKER = os.environ.get("REVLOOP_BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")


def revloop_command() -> list[str]:
    """The `revloop` console script next to this interpreter (as installed by `make install`)."""
    script = Path(sys.executable).with_name("revloop")
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children that are alive (uvicorn's worker processes)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


@dataclass
class Post:
    key: str
    body: dict


@dataclass
class Results:
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    errors: collections.Counter = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    accepted_keys: set[str] = field(default_factory=set)
    unanswered_keys: set[str] = field(default_factory=set)
    ids_by_key: dict[str, set[int]] = field(default_factory=lambda: collections.defaultdict(set))
    first_5xx: list[str] = field(default_factory=list)


def build_posts(count: int, repeat_share: float, domains: int, rng: random.Random) -> list[Post]:
    """`count` posts; a `repeat_share` of them repeat an earlier post (often a recent one, so some race it)."""
    repeats = round(count * repeat_share)
    uniques = count - repeats
    run = uuid.uuid4().hex[:8]
    posts: list[Post] = []
    for i in range(uniques):
        domain = i % domains
        body = {
            "email": f"lead{i}-{run}@company{domain}.example",
            "first_name": f"Lee{i}",
            "company": f"Company {domain}",
            "title": ["VP Sales", "Head of Ops", "Analyst", "Founder"][i % 4],
            "message": ["Need pricing and a demo", "Just browsing", "Budget approved, quote please"][i % 3],
            "source": "bench",
            "consent": {"email": True, "call": i % 2 == 0},
        }
        posts.append(Post(key=f"bench-{run}-{i}", body=body))
    for _ in range(repeats):
        # Repeat one of the last 100 posts so far: with many clients the two are often in flight together.
        source = posts[max(0, len(posts) - 1 - int(rng.expovariate(1 / 20)) % 100)]
        posts.insert(len(posts) - rng.randint(0, min(10, len(posts) - 1)), Post(source.key, source.body))
    return posts


def client_loop(
    base: str, token: str, posts: list[Post], claim, results: Results, pause: float, timeout: float, seed: int
) -> None:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=timeout) as http:
        while (index := claim()) is not None:
            post = posts[index]
            start = time.perf_counter()
            try:
                r = http.post("/v1/leads", json=post.body, headers={"Idempotency-Key": post.key})
            except httpx.HTTPError as exc:
                with results.lock:
                    results.done += 1
                    results.errors[type(exc).__name__] += 1
                    results.unanswered_keys.add(post.key)
            else:
                elapsed = time.perf_counter() - start
                with results.lock:
                    results.done += 1
                    results.statuses[r.status_code] += 1
                    results.latencies.append(elapsed)
                    if r.status_code == 202:
                        results.accepted_keys.add(post.key)
                        results.ids_by_key[post.key].add(r.json()["id"])
                    elif r.status_code >= 500 and len(results.first_5xx) < 5:
                        results.first_5xx.append(f"{r.status_code} {r.text[:300]}")
            if pause:
                time.sleep(rng.uniform(0, pause))


def raw_client_loop(
    base: str, token: str, posts: list[Post], claim, results: Results, pause: float, timeout: float, seed: int
) -> None:
    """client_loop with the standard library's http.client on one keep-alive connection (reopened after an error):
    a tenth of httpx's CPU per request, so on a 2-core box the client leaves the cores to the server."""
    rng = random.Random(seed)
    host, _, port = base.removeprefix("http://").partition(":")
    conn: http.client.HTTPConnection | None = None
    auth = f"Bearer {token}"
    while (index := claim()) is not None:
        post = posts[index]
        body = json.dumps(post.body).encode()
        headers = {"Authorization": auth, "Content-Type": "application/json", "Idempotency-Key": post.key}
        start = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
            conn.request("POST", "/v1/leads", body, headers)
            response = conn.getresponse()
            status, text = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            if conn is not None:
                conn.close()
            conn = None
            with results.lock:
                results.done += 1
                results.errors[type(exc).__name__] += 1
                results.unanswered_keys.add(post.key)
        else:
            elapsed = time.perf_counter() - start
            if response.will_close:
                conn.close()
                conn = None
            with results.lock:
                results.done += 1
                results.statuses[status] += 1
                results.latencies.append(elapsed)
                if status == 202:
                    results.accepted_keys.add(post.key)
                    results.ids_by_key[post.key].add(json.loads(text)["id"])
                elif status >= 500 and len(results.first_5xx) < 5:
                    results.first_5xx.append(f"{status} {text[:300].decode(errors='replace')}")
        if pause:
            time.sleep(rng.uniform(0, pause))
    if conn is not None:
        conn.close()


CLIENTS = {"http.client": raw_client_loop, "httpx": client_loop}


def wait_healthy(base: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"revloop serve exited during start-up; see {log}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    sys.exit(f"revloop serve did not answer within 60 s; see {log}")


def count_rows(database_url: str, keys: set[str]) -> dict[str, int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, idempotency_key FROM leads WHERE source = 'bench'")).all()
            job_leads = {
                int(json.loads(p)["lead_id"]) if isinstance(p, str) else int(p["lead_id"])
                for (p,) in conn.execute(text("SELECT payload FROM jobs WHERE kind = 'lead.run'"))
            }
    finally:
        engine.dispose()
    ours = [(i, k) for i, k in rows if k in keys]
    distinct = {k for _, k in ours}
    return {
        "rows": len(rows),
        "stored": len(distinct),
        "duplicates": len(rows) - len(distinct),
        "stored_keys": distinct,  # type: ignore[dict-item]
        "without_job": sum(1 for i, _ in ours if i not in job_leads),
    }


def run(args: argparse.Namespace, database_url: str | None, label: str) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="revloop-bench-ingest-"))
    database_url = database_url or f"sqlite:///{folder / 'revloop.db'}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVLOOP_")}
    env.update(REVLOOP_VAR_DIR=str(folder), REVLOOP_DATABASE_URL=database_url, REVLOOP_API_PORT=str(port))
    for item in args.env:
        name, _, value = item.partition("=")
        env[name] = value
    cli = revloop_command()
    subprocess.run([*cli, "db", "upgrade"], env=env, cwd=folder, check=True, stdout=subprocess.DEVNULL)
    token = subprocess.run(
        [*cli, "tokens", "create", "--role", "integration", "--name", "bench-ingest"],
        env=env,
        cwd=folder,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    log = folder / "serve.log"
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(args.seed)
    posts = build_posts(args.posts, args.repeats, args.domains, rng)
    results = Results()
    next_index = iter(range(len(posts)))
    claim_lock = threading.Lock()

    def claim() -> int | None:
        with claim_lock:
            return next(next_index, None)

    with log.open("wb") as log_file:
        serve = [*cli, "serve", "--workers", str(args.workers)]
        server = subprocess.Popen(serve, env=env, cwd=folder, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            wait_healthy(base, server, log)
            print(f"[{label}] {len(posts)} posts from {args.clients} clients to {base} (log: {log})", file=sys.stderr)
            threads = [
                threading.Thread(
                    target=CLIENTS[args.client],
                    args=(base, token, posts, claim, results, args.pause, args.timeout, args.seed + n),
                    daemon=True,
                )
                for n in range(args.clients)
            ]
            if args.workers > 1:
                time.sleep(3)  # the other worker processes finish starting (healthz answered from the first)
            cpu_before = cpu_seconds(server.pid)
            client_cpu_before = time.process_time()
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            every = 1 if args.posts <= 1000 else 2
            next_report = started + every
            # Joined, not slept on: the clock stops when the last client ends, not at the next progress line.
            while alive := [t for t in threads if t.is_alive()]:
                alive[0].join(timeout=max(0.0, next_report - time.perf_counter()))
                if time.perf_counter() < next_report:
                    continue
                next_report += every
                with results.lock:
                    elapsed = time.perf_counter() - started
                    print(
                        f"[{label}] {results.done}/{len(posts)} posted, {elapsed:5.1f} s, "
                        f"{results.statuses[202] / elapsed:6.1f} accepted/s, "
                        f"5xx {sum(c for s, c in results.statuses.items() if s >= 500)}, "
                        f"connection errors {sum(results.errors.values())} {dict(results.errors) or ''}",
                        file=sys.stderr,
                    )
            wall = time.perf_counter() - started
            server_cpu = cpu_seconds(server.pid) - cpu_before
            client_cpu = time.process_time() - client_cpu_before
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    keys = {p.key for p in posts}
    db = count_rows(database_url, keys)
    stored_keys: set[str] = db.pop("stored_keys")  # type: ignore[assignment]
    lost_after_202 = len(results.accepted_keys - stored_keys)
    connection_errors = sum(results.errors.values())
    tracebacks = log.read_text(errors="replace").count("Traceback (most recent call last)")
    return {
        "backend": label,
        "posts": len(posts),
        "unique_leads": len(keys),
        "clients": args.clients,
        "seconds": round(wall, 1),
        "workers": args.workers,
        "accepted_per_s": round(results.statuses[202] / wall, 1),
        "api_cpu_ms_per_post": round(1000 * server_cpu / max(1, results.done), 2),
        "client": args.client,
        "client_cpu_ms_per_post": round(1000 * client_cpu / max(1, results.done), 2),
        "p50_ms": round(1000 * percentile(results.latencies, 0.5), 1) if results.latencies else None,
        "p95_ms": round(1000 * percentile(results.latencies, 0.95), 1) if results.latencies else None,
        "p99_ms": round(1000 * percentile(results.latencies, 0.99), 1) if results.latencies else None,
        "statuses": dict(sorted(results.statuses.items())),
        "5xx": sum(c for s, c in results.statuses.items() if s >= 500),
        "connection_errors": dict(results.errors),
        "stored": db["stored"],
        "duplicates": db["duplicates"],
        "lost": lost_after_202 + connection_errors,
        "lost_after_202": lost_after_202,
        # Leads whose every post went unanswered, stored all the same (the server had committed them).
        "unanswered_but_stored": len((results.unanswered_keys - results.accepted_keys) & stored_keys),
        "answers_with_two_ids": sum(1 for ids in results.ids_by_key.values() if len(ids) > 1),
        "stored_without_job": db["without_job"],
        "server_tracebacks": tracebacks,
        "first_5xx": results.first_5xx,
        "server_log": str(log),
    }


@contextmanager
def sqlite_mode(args: argparse.Namespace) -> Iterator[str | None]:
    yield None  # run() makes a fresh SQLite file in its temporary var dir


@contextmanager
def postgresql_mode(args: argparse.Namespace) -> Iterator[str | None]:
    """A new database on the --database-url server for this run, dropped afterwards."""
    with scratch_postgres_database(args.database_url, "revloop_bench_ingest") as url:
        yield url


@contextmanager
def celery_mode(args: argparse.Namespace) -> Iterator[str | None]:
    """PostgreSQL (a new database, as the postgresql mode) and a Celery broker (--broker-url, a namespace of its
    own): each accepted lead's job is also published to the broker after its commit, as on the scale path. Its
    workers do not run here (no mode runs workers: this measures the API); the messages are counted and removed."""
    from core import broker
    from core.settings import Settings

    namespace = f"bench{uuid.uuid4().hex[:8]}"
    extra = [f"REVLOOP_BROKER_URL={args.broker_url}", f"REVLOOP_BROKER_NAMESPACE={namespace}"]
    args.env = [*args.env, *extra]
    settings = Settings(broker_url=args.broker_url, broker_namespace=namespace)
    try:
        with postgresql_mode(args) as database_url:
            yield database_url
            print(f"[celery] {broker.queue_depth(settings)} task message(s) published", file=sys.stderr)
    finally:
        args.env = [e for e in args.env if e not in extra]
        _drop_broker_namespace(args.broker_url, namespace)


def _drop_broker_namespace(broker_url: str, namespace: str) -> None:
    if broker_url.startswith("redis"):
        import redis

        client = redis.Redis.from_url(broker_url)
        keys = list(client.scan_iter(match=f"{namespace}:*"))
        if keys:
            client.delete(*keys)


# Each mode yields the database URL its run uses (None: a fresh SQLite file). A broker mode (Celery) adds its
# entry here and its own environment.
MODES: dict[str, Callable[[argparse.Namespace], AbstractContextManager[str | None]]] = {
    "sqlite": sqlite_mode,
    "postgresql": postgresql_mode,
    "celery": celery_mode,
}

ROWS = (
    ("accepted/s", lambda r: f"{r['accepted_per_s']}  ({r['seconds']} s)"),
    ("API CPU ms/post", lambda r: r["api_cpu_ms_per_post"]),
    ("client CPU ms/post", lambda r: f"{r['client_cpu_ms_per_post']} ({r['client']})"),
    ("latency p50 ms", lambda r: r["p50_ms"]),
    ("latency p95 ms", lambda r: r["p95_ms"]),
    ("latency p99 ms", lambda r: r["p99_ms"]),
    ("statuses", lambda r: " ".join(f"{k}:{v}" for k, v in r["statuses"].items())),
    ("5xx", lambda r: r["5xx"]),
    ("connection errors", lambda r: sum(r["connection_errors"].values())),
    ("stored", lambda r: f"{r['stored']} of {r['unique_leads']}"),
    ("duplicates", lambda r: r["duplicates"]),
    ("lost", lambda r: r["lost"]),
    ("  202 not stored", lambda r: r["lost_after_202"]),
    ("  no answer, stored", lambda r: r["unanswered_but_stored"]),
    ("without their job", lambda r: r["stored_without_job"]),
    ("two ids for a key", lambda r: r["answers_with_two_ids"]),
    ("server tracebacks", lambda r: r["server_tracebacks"]),
    ("exactly once", lambda r: "yes" if r["lost"] == 0 and r["duplicates"] == 0 and r["5xx"] == 0 else "NO"),
)


def print_table(results: list[dict]) -> None:
    first = results[0]
    print(
        f"\nPOST /v1/leads: {first['posts']} posts ({first['unique_leads']} leads), {first['clients']} clients, "
        f"{first['workers']} API process(es)"
    )
    width = max(22, *(len(r["backend"]) + 2 for r in results))
    print(f"  {'':<20}" + "".join(f"{r['backend']:>{width}}" for r in results))
    for label, value in ROWS:
        print(f"  {label:<20}" + "".join(f"{value(r)!s:>{width}}" for r in results))
    for r in results:
        for line in r["first_5xx"]:
            print(f"  {r['backend']} 5xx: {line}  (see {r['server_log']})")
    ok = all(r["lost"] == 0 and r["duplicates"] == 0 and r["5xx"] == 0 for r in results)
    print(
        f"  goal (0 lost, 0 duplicated, 0 5xx): {'met' if ok else 'NOT met'}; >= 300 accepted/s: "
        + ", ".join(f"{r['backend']} {'met' if r['accepted_per_s'] >= 300 else 'not met'}" for r in results)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=5000, help="POST /v1/leads to send, repeats included")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (threads, one connection each)")
    parser.add_argument("--repeats", type=float, default=0.2, help="share of posts repeating an earlier one")
    parser.add_argument("--domains", type=int, default=500, help="company domains the leads are spread over")
    parser.add_argument("--pause", type=float, default=0.0, help="each client waits 0..PAUSE s between posts")
    parser.add_argument("--timeout", type=float, default=60.0, help="client timeout per request, seconds")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--workers", type=int, default=1, help="API processes (revloop serve --workers)")
    parser.add_argument(
        "--broker-url",
        default=DEFAULT_BROKER,
        help="the Celery broker of the celery mode (its keys get a namespace of their own, removed afterwards)",
    )
    parser.add_argument(
        "--modes",
        default="sqlite,postgresql",
        help=f"comma-separated, run in this order on the same load: {', '.join(MODES)}",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_PG,
        help="the PostgreSQL server of the postgresql mode (a new database is created there and dropped "
        "afterwards); giving it without --modes runs that mode only",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the revloop commands (e.g. REVLOOP_API_KEEP_ALIVE_SECONDS=5)",
    )
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="http.client",
        help="what each client thread posts with: http.client (the default, cheap) or httpx",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if "--database-url" in sys.argv and "--modes" not in sys.argv:
        args.modes = "postgresql"  # as before modes existed: --database-url alone measures PostgreSQL
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        parser.error(f"unknown mode(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(MODES)}")
    # A plain `kill` still stops the server (the finally blocks run).
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    results = []
    for mode in modes:
        with MODES[mode](args) as database_url:
            results.append(run(args, database_url, mode))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print_table(results)


if __name__ == "__main__":
    main()
