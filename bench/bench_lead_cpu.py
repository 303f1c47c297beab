"""Worker CPU per lead on the deterministic engine: one in-process worker draining captured leads.

    .venv/bin/python bench/bench_lead_cpu.py                      # 300 leads, SQLite, this checkout
    .venv/bin/python bench/bench_lead_cpu.py --leads 300 --before /path/to/another/checkout
    .venv/bin/python bench/bench_lead_cpu.py --profile 25         # and the top 25 functions by cumulative time

Captures --leads leads (the speed-to-lead bench's cold leads over 50 companies, as `POST /v1/leads` stores them)
into a fresh SQLite database in a temporary var dir, then one worker in this process (`agents.runtime.lead_worker`,
`run_until_idle`, one thread) drains their `lead.run` jobs. Prints the process CPU time (`time.process_time`, user +
system of this process; what a loaded shared box inflates least) per lead, the wall time and the commits. A first
lead per company is drained before the clock starts (it fills what is cached per company and per process).
A run in which a lead did not get its review item (and the lead is not in review) fails instead of printing.

With --before PATH the same run is made with that checkout's code (a subprocess with PYTHONPATH=PATH) and then with
this one, alternating --repeats times, and both are printed side by side. --database-url runs on PostgreSQL
instead (a new database on that server, dropped afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cold_lead(i: int) -> dict:
    # The speed-to-lead bench's cold leads (bench_speed_to_lead.cold_lead), tagged for this run.
    titles = ["VP Sales", "Head of Ops", "Analyst", "Founder"]
    messages = ["Need pricing and a demo", "Just browsing", "Budget approved, quote please"]
    return {
        "email": f"lead{i}@cpu-company{i % 50}.example",
        "first_name": f"Lee{i}",
        "company": f"cpu Company {i % 50}",
        "title": titles[i % 4],
        "message": messages[i % 3],
        "source": "bench",
        "consent": {"email": True, "call": i % 2 == 0},
    }


def one_run(leads: int, database_url: str | None, profile: int) -> dict:
    """Runs in the process whose code is measured (its PYTHONPATH)."""
    from sqlalchemy import event, func, select

    from agents.runtime import lead_worker
    from core import migrate
    from core.db import get_engine, session_scope
    from core.enums import LeadStatus
    from core.models import Lead, ReviewItem
    from core.schemas import LeadCreate
    from core.settings import Settings
    from crm.capture import capture_lead

    with tempfile.TemporaryDirectory(prefix="revloop-cpu-") as tmp:
        settings = Settings(var_dir=Path(tmp) / "var", outbox_dir=Path(tmp) / "outbox", database_url=database_url)
        migrate.upgrade(settings)

        def capture(numbers: range) -> None:
            for i in numbers:
                with session_scope(settings) as session:
                    capture_lead(session, LeadCreate.model_validate(cold_lead(i)), actor="bench")

        commits: list[int] = []
        engine = get_engine(settings)
        event.listen(engine, "commit", lambda _conn: commits.append(1))
        with lead_worker(settings) as worker:
            capture(range(50))  # a first lead per company: warms the per-company cache and the process
            worker.run_until_idle()
            capture(range(50, 50 + leads))
            commits.clear()
            profiler = None
            if profile:
                import cProfile

                profiler = cProfile.Profile(time.process_time)  # CPU time: waiting for a lock or a disk is not counted
                profiler.enable()
            cpu, wall = time.process_time(), time.perf_counter()
            done = worker.run_until_idle()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if profiler is not None:
                import pstats

                profiler.disable()
                if os.environ.get("REVLOOP_BENCH_PROFILE_OUT"):  # for pstats / snakeviz
                    profiler.dump_stats(os.environ["REVLOOP_BENCH_PROFILE_OUT"])
                pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(profile)
            # The figure counts only if every lead went the whole way: its review item queued, the lead in review.
            with session_scope(settings, readonly=True) as session:
                queued = session.scalar(select(func.count(ReviewItem.id)).where(ReviewItem.lead_id > 50))
                in_review = session.scalar(select(func.count(Lead.id)).where(Lead.status == LeadStatus.IN_REVIEW))
    if queued != leads or in_review != leads + 50:
        raise SystemExit(f"only {queued} of {leads} leads got a review item ({in_review} in review): not measured")
    return {
        "leads": done,
        "review_items": queued,
        "cpu_ms_per_lead": round(cpu * 1000 / max(done, 1), 2),
        "wall_ms_per_lead": round(wall * 1000 / max(done, 1), 2),
        "commits_per_lead": round(len(commits) / max(done, 1), 2),
    }


def measured(checkout: Path, args: argparse.Namespace, database_url: str | None) -> dict:
    # The measured code's settings are its defaults; the bench's own (REVLOOP_BENCH_*) pass through.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVLOOP_") or k.startswith("REVLOOP_BENCH_")}
    env.update(PYTHONPATH=str(checkout), REVLOOP_LLM="none")
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--leads", str(args.leads)]
    if database_url:
        command += ["--database-url", database_url]
    if args.profile:
        command += ["--profile", str(args.profile)]
    # The figures come back on stdout; the profile (stderr) goes straight to the terminal.
    out = subprocess.run(command, env=env, cwd=checkout, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=300, help="leads drained while the clock runs")
    parser.add_argument("--before", type=Path, help="another checkout to measure the same way, side by side")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each checkout (alternating)")
    parser.add_argument("--database-url", help="a PostgreSQL server: a new database there instead of SQLite")
    parser.add_argument("--profile", type=int, default=0, help="print cProfile's top N (doubles the figures)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        database_url = args.database_url
        print(json.dumps(one_run(args.leads, database_url, args.profile)), flush=True)
        return
    sys.path.insert(0, str(ROOT))
    from contextlib import nullcontext

    from bench.common import scratch_postgres_database

    checkouts = [("before", args.before)] if args.before else []
    checkouts.append(("after" if args.before else "this", ROOT))
    results: dict[str, list[dict]] = {label: [] for label, _ in checkouts}
    for _ in range(args.repeats):
        for label, checkout in checkouts:
            scratch = (
                scratch_postgres_database(args.database_url, "revloop_cpu") if args.database_url else nullcontext(None)
            )
            with scratch as url:
                figures = measured(checkout, args, url)
            results[label].append(figures)
            print(f"{label}: {figures}", file=sys.stderr, flush=True)
    print(f"\nWorker CPU per lead, one in-process worker draining {args.leads} leads (deterministic engine):")
    for label, runs in results.items():
        cpu = " / ".join(f"{r['cpu_ms_per_lead']:.1f}" for r in runs)
        wall = " / ".join(f"{r['wall_ms_per_lead']:.1f}" for r in runs)
        commits = runs[-1]["commits_per_lead"] if runs else "-"
        print(f"  {label:7s} CPU {cpu} ms a lead; wall {wall} ms; commits {commits} a lead")


if __name__ == "__main__":
    main()
