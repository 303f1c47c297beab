"""Inbound webhook throughput per channel: every SMS and WhatsApp message the server answered 200 is stored, once.

    .venv/bin/python bench/bench_channels.py [--messages 600] [--clients 8] [--repeats 0.1] [--known 0.1]
    .venv/bin/python bench/bench_channels.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Runs `revloop db upgrade` and `revloop serve` as their own processes on a fresh SQLite database in a temporary
var dir (or a new PostgreSQL database on --database-url, dropped afterwards), with the providers' secrets set.
Then, per channel, --clients concurrent clients post --messages signed webhooks: `POST /v1/webhooks/sms` (Twilio
form posts, X-Twilio-Signature) and `POST /v1/webhooks/whatsapp` (Cloud API notifications, X-Hub-Signature-256).
Most come from new numbers (each a new lead), --known from numbers that wrote before (a reply on their lead), and
--repeats are re-deliveries of an earlier message (same provider id: must be recorded once).

Prints per channel: accepted/s, p50/p95 latency, statuses, and from the database: messages stored, lost
(answered 200 but not stored), duplicates (a provider id stored twice, or two leads for one number).
Goal: 0 lost, 0 duplicated, 0 5xx.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import phonenumbers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_ingest import revloop_command, wait_healthy  # noqa: E402
from bench.bench_speed_to_lead import free_port, percentile  # noqa: E402
from bench.common import scratch_postgres_database  # noqa: E402

SMS_TOKEN = "bench-sms-token"
WA_SECRET = "bench-wa-secret"


def numbers(channel: str, count: int, rng: random.Random) -> list[str]:
    """Valid, distinct numbers: US ones for SMS (E.164), Kenyan ones without the plus for WhatsApp."""
    out: set[str] = set()
    while len(out) < count:
        if channel == "sms":
            candidate = f"+1415{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
        else:
            candidate = f"2547{rng.choice('0129')}{rng.randint(0, 9999999):07d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate if channel == "sms" else "+" + candidate)):
            out.add(candidate)
    return sorted(out)


def build(channel: str, args: argparse.Namespace, rng: random.Random) -> list[tuple[str, str, str]]:
    """(provider message id, from, body) per post, in order: first messages, replies of known numbers, repeats."""
    fresh = int(args.messages * (1 - args.repeats - args.known))
    senders = numbers(channel, fresh, rng)
    posts = [(f"{channel}-{n:06d}", sender, "Hi, can I get a quote for 20 units?") for n, sender in enumerate(senders)]
    for n in range(int(args.messages * args.known)):
        posts.append((f"{channel}-reply-{n:06d}", rng.choice(senders), "Thanks, Thursday works"))
    for _ in range(args.messages - len(posts)):
        posts.append(rng.choice(posts))  # a re-delivery: the same provider id
    return posts


def request(channel: str, base: str, post: tuple[str, str, str]) -> tuple[str, dict[str, str], bytes | dict]:
    message_id, sender, body = post
    if channel == "sms":
        from twilio.request_validator import RequestValidator

        params = {"MessageSid": message_id, "AccountSid": "ACbench", "From": sender, "To": "+15005550006", "Body": body}
        signature = RequestValidator(SMS_TOKEN).compute_signature(f"{base}/v1/webhooks/sms", params)
        return "/v1/webhooks/sms", {"X-Twilio-Signature": signature}, params
    message = {"from": sender, "id": message_id, "timestamp": str(int(time.time())), "type": "text"}
    message["text"] = {"body": body}
    value = {"messaging_product": "whatsapp", "contacts": [{"wa_id": sender, "profile": {"name": "Bench"}}]}
    value["messages"] = [message]
    payload = {"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"value": value}]}]}
    raw = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(WA_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return "/v1/webhooks/whatsapp", {"X-Hub-Signature-256": signature, "Content-Type": "application/json"}, raw


def load(channel: str, base: str, posts: list, clients: int) -> dict:
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    accepted: set[str] = set()
    lock = threading.Lock()
    queue = iter(range(len(posts)))

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            while True:
                with lock:
                    n = next(queue, None)
                if n is None:
                    return
                path, headers, body = request(channel, base, posts[n])
                started = time.perf_counter()
                try:
                    if isinstance(body, dict):
                        r = client.post(path, data=body, headers=headers)
                    else:
                        r = client.post(path, content=body, headers=headers)
                    status = r.status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    latencies.append(time.perf_counter() - started)
                    statuses[status] += 1
                    if status == 200:
                        accepted.add(posts[n][0])

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"wall": wall, "statuses": statuses, "latencies": latencies, "accepted": accepted}


def stored(database_url: str, channel: str) -> dict:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            ids = [
                i
                for (i,) in conn.execute(
                    text("SELECT provider_message_id FROM channel_messages WHERE channel = :c"), {"c": channel}
                )
            ]
            per_phone = conn.execute(
                text("SELECT phone, count(*) FROM leads WHERE source = :c GROUP BY phone HAVING count(*) > 1"),
                {"c": channel},
            ).all()
    finally:
        engine.dispose()
    return {"ids": set(ids), "duplicate_ids": len(ids) - len(set(ids)), "numbers_with_two_leads": len(per_phone)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=600, help="posts per channel")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeats", type=float, default=0.1, help="share of re-deliveries (same message id)")
    parser.add_argument("--known", type=float, default=0.1, help="share of messages from numbers that wrote before")
    parser.add_argument("--database-url", default=None, help="PostgreSQL server to make a scratch database on")
    parser.add_argument("--seed", type=int, default=19)
    args = parser.parse_args()
    if args.database_url:
        with scratch_postgres_database(args.database_url, "revloop_bench_channels") as url:
            run(args, url, "postgresql")
    else:
        run(args, None, "sqlite")


def run(args: argparse.Namespace, database_url: str | None, label: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="revloop-bench-channels-"))
    database_url = database_url or f"sqlite:///{folder / 'revloop.db'}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVLOOP_")}
    env.update(
        REVLOOP_VAR_DIR=str(folder),
        REVLOOP_DATABASE_URL=database_url,
        REVLOOP_API_PORT=str(port),
        REVLOOP_PUBLIC_URL=base,
        REVLOOP_TWILIO_AUTH_TOKEN=SMS_TOKEN,
        REVLOOP_WHATSAPP_APP_SECRET=WA_SECRET,
    )
    cli = revloop_command()
    subprocess.run([*cli, "db", "upgrade"], env=env, cwd=folder, check=True, stdout=subprocess.DEVNULL)
    log = folder / "serve.log"
    rng = random.Random(args.seed)
    rows = []
    with log.open("wb") as log_file:
        server = subprocess.Popen([*cli, "serve"], env=env, cwd=folder, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            wait_healthy(base, server, log)
            for channel in ("sms", "whatsapp"):
                posts = build(channel, args, rng)
                print(f"[{label}] {channel}: {len(posts)} posts from {args.clients} clients", file=sys.stderr)
                result = load(channel, base, posts, args.clients)
                db = stored(database_url, channel)
                unique = {p[0] for p in posts}
                lat = result["latencies"]
                rows.append(
                    {
                        "channel": channel,
                        "posts": len(posts),
                        "unique_messages": len(unique),
                        "accepted_per_s": round(result["statuses"][200] / result["wall"], 1),
                        "p50_ms": round(1000 * percentile(lat, 0.5), 1),
                        "p95_ms": round(1000 * percentile(lat, 0.95), 1),
                        "statuses": dict(sorted(result["statuses"].items())),
                        "stored": len(db["ids"] & unique),
                        "lost": len(result["accepted"] - db["ids"]) + result["statuses"][0],
                        "duplicates": db["duplicate_ids"] + db["numbers_with_two_leads"],
                    }
                )
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    tracebacks = log.read_text(errors="replace").count("Traceback (most recent call last)")
    print(f"\n{label}: inbound webhooks, {args.clients} clients (server log: {log}, tracebacks: {tracebacks})")
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))


if __name__ == "__main__":
    main()
