"""revloop worker: the background worker (graphs, approved sends, the daily scan)."""

from __future__ import annotations

import logging
import signal
from typing import Annotated

import typer

from api.cli.common import get_settings, setup_logging


def worker(
    until_idle: Annotated[bool, typer.Option("--until-idle", help="Run the due jobs, then exit")] = False,
    concurrency: Annotated[int, typer.Option(min=1, max=16, help="Jobs run at once (threads)")] = 2,
) -> None:
    """Run the background worker: lead and proposal graphs, resumes after review decisions, and the daily
    scan (payment reminders, follow-ups, onboarding)."""
    import threading

    from agents import checkpoints
    from agents.runtime import lead_worker
    from core.models import utcnow
    from deals import daily
    from review import health, sla

    setup_logging()
    with lead_worker() as w:
        if until_idle:  # drain what is queued; the daily scans have their own commands (collections/cadences scan)
            typer.echo(f"ran {w.run_until_idle()} job(s)")
            return
        daily.schedule(get_settings(), utcnow().date())  # today's scan, once whatever restarts; each queues the next
        checkpoints.schedule(get_settings(), utcnow().date())  # prune finished graph threads' checkpoints, daily
        health.schedule(get_settings())  # the integration checks, every REVLOOP_HEALTH_CHECK_MINUTES
        sla.schedule(get_settings())  # the SLA watch, every REVLOOP_SLA_WATCH_SECONDS
        signal.signal(signal.SIGTERM, lambda *_: w.stop())
        signal.signal(signal.SIGINT, lambda *_: w.stop())
        logging.getLogger("revloop.worker").info("worker started (%s, %d threads)", w.worker_id, concurrency)
        threads = [threading.Thread(target=w.run_forever, name=f"worker-{i}") for i in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)
