"""revloop worker: the background worker (graphs, approved sends, the daily scan)."""

from __future__ import annotations

import logging
import signal
from typing import Annotated

import typer

from api.cli.common import fail, get_settings, setup_logging


def worker(
    until_idle: Annotated[bool, typer.Option("--until-idle", help="Run the due jobs, then exit")] = False,
    concurrency: Annotated[int, typer.Option(min=1, max=16, help="Jobs run at once (threads)")] = 2,
    beat: Annotated[
        bool,
        typer.Option(
            "--beat",
            help="With REVLOOP_BROKER_URL: also run Celery beat in this worker (publishes scheduled scans and jobs "
            "the broker lost, every REVLOOP_BROKER_DISPATCH_SECONDS). Run exactly one beat per deployment.",
        ),
    ] = False,
) -> None:
    """Run the background worker: lead and proposal graphs, resumes after review decisions, and the daily
    scan (payment reminders, follow-ups, onboarding). With REVLOOP_BROKER_URL set it is a Celery worker
    (redis:// or amqp://) consuming the job tasks; otherwise it polls the job table."""
    import threading

    from agents import checkpoints
    from agents.runtime import lead_worker
    from core.models import utcnow
    from crm import sync as crm_sync
    from deals import daily
    from review import health, sla

    setup_logging()
    if beat and not get_settings().broker_url:
        fail("--beat needs REVLOOP_BROKER_URL (the built-in worker runs its scans itself)", code=2)
    with lead_worker() as w:
        if until_idle:  # drain what is queued; the daily scans have their own commands (collections/cadences scan)
            typer.echo(f"ran {w.run_until_idle()} job(s)")
            return
        daily.schedule(get_settings(), utcnow().date())  # today's scan, once whatever restarts; each queues the next
        checkpoints.schedule(get_settings(), utcnow().date())  # prune finished graph threads' checkpoints, daily
        health.schedule(get_settings())  # the integration checks, every REVLOOP_HEALTH_CHECK_MINUTES
        sla.schedule(get_settings())  # the SLA watch, every REVLOOP_SLA_WATCH_SECONDS
        crm_sync.schedule(get_settings())  # incremental CRM sync, every REVLOOP_CRM_SYNC_MINUTES (0: off)
        if get_settings().broker_url:
            from core import broker

            logging.getLogger("revloop.worker").info(
                "celery worker started (%s, %d threads%s)", broker.node_name(), concurrency, ", beat" if beat else ""
            )
            broker.run_worker(w, concurrency=concurrency, beat=beat)  # SIGTERM: warm shutdown, running jobs finish
            return
        signal.signal(signal.SIGTERM, lambda *_: w.stop())
        signal.signal(signal.SIGINT, lambda *_: w.stop())
        logging.getLogger("revloop.worker").info("worker started (%s, %d threads)", w.worker_id, concurrency)
        threads = [threading.Thread(target=w.run_forever, name=f"worker-{i}") for i in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)
