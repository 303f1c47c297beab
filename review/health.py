"""Integration health: is each system revloop depends on reachable, and when did it last work?

Checks: the database, outbound mail (SMTP, or the file outbox), the background work queue, the knowledge
base, the LLM endpoint, the webhook senders, and, where configured, the CRM, payment (Stripe, M-Pesa) and
e-invoicing (fiscal) connectors. The last known state of each is stored; a change between healthy and unhealthy
notifies managers and admins once (down, then recovered), not on every check. The worker runs the checks every
REVLOOP_HEALTH_CHECK_MINUTES; GET /v1/health/integrations runs them on demand.
(It lives in review/ because review owns the outbound channels, the integrations that matter most.)
"""

from __future__ import annotations

import datetime as dt
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, text

from core import jobs
from core.db import get_engine, insert_once, session_scope
from core.enums import (
    NEEDS_ATTENTION_STATES,
    DeliveryStatus,
    JobKind,
    JobStatus,
    NotificationChannel,
    NotificationKind,
)
from core.files import redact_url
from core.models import (
    CrmSyncState,
    CrmWriteback,
    IntegrationState,
    Invoice,
    Job,
    NotificationDelivery,
    PaymentEvent,
    ReviewItem,
    WebhookDelivery,
    utcnow,
)
from core.notifications import notify
from core.settings import Settings
from review.outbox import smtp_server, smtp_session

WEBHOOK_SOURCES = ("leads", "payments", "esign")


@dataclass
class Result:
    name: str
    healthy: bool
    status: str  # ok | down | not_configured
    detail: str
    latency_ms: float | None = None
    checked_at: dt.datetime | None = None
    last_success_at: dt.datetime | None = None
    changed_at: dt.datetime | None = None
    sync: dict[str, Any] | None = None  # CRM connectors: last success, last error, lag, write-backs


def _database(settings: Settings) -> Result:
    with get_engine(settings).connect() as conn:
        conn.execute(text("SELECT 1"))
    backend = "SQLite" if settings.is_sqlite else "PostgreSQL"
    return Result("database", True, "ok", f"{backend} answers")


def _mail(settings: Settings) -> Result:
    with session_scope(settings) as session:
        waiting = session.scalar(select(func.count()).where(ReviewItem.status.in_(NEEDS_ATTENTION_STATES)))
    note = f"; {waiting} approved email(s) wait for a person (send failed / delivery unknown)" if waiting else ""
    if not settings.smtp_url:
        folder = settings.resolved_outbox_dir
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".health-probe"
        probe.write_bytes(b"")
        probe.unlink()
        return Result("mail", True, "ok", f"file outbox {folder} is writable{note}")
    host, port = smtp_server(settings)
    try:
        with smtp_session(settings, timeout=5) as client:  # TLS and the login too, as a send does
            code, _ = client.noop()
    except smtplib.SMTPAuthenticationError as exc:
        return Result("mail", False, "down", f"SMTP {host}:{port} refused the login ({exc.smtp_code}){note}")
    if code != 250:
        return Result("mail", False, "down", f"SMTP {host}:{port} answered NOOP with {code}{note}")
    return Result("mail", True, "ok", f"SMTP {host}:{port} answers{note}")


def _work_queue(settings: Settings) -> Result:
    """The embedded job table: due jobs waiting long mean no worker is running (or it is stuck)."""
    now = utcnow()
    with session_scope(settings) as session:
        oldest_due = session.scalar(
            select(func.min(Job.run_after)).where(Job.status == JobStatus.QUEUED, Job.run_after <= now)
        )
        failed = session.scalar(select(func.count()).where(Job.status == JobStatus.FAILED))
    waited = (now - oldest_due).total_seconds() if oldest_due else 0.0
    detail = f"embedded job table; oldest due job waits {waited:.0f} s; {failed} failed job(s)"
    if settings.broker_url:  # Celery: the broker must answer; its depth is what the workers have not taken yet
        from core import broker

        depth = broker.queue_depth(settings)
        detail = (
            f"Celery on {redact_url(settings.broker_url)} ({settings.broker_namespace}.*): {depth} message(s) waiting; "
            f"oldest due job waits {waited:.0f} s; {failed} failed job(s)"
        )
    if waited > settings.health_queue_wait_seconds:
        return Result("work_queue", False, "down", f"{detail}: is a worker running? (`revloop worker`)")
    return Result("work_queue", True, "ok", detail)


def _knowledge_base(settings: Settings) -> Result:
    from tools import kb

    count = kb.collection(settings).count()
    where = settings.kb_url or "embedded store"
    return Result("knowledge_base", True, "ok", f"{where}: {count} document(s)")


def _llm(settings: Settings) -> Result:
    if settings.llm != "openai":
        return Result("llm", True, "not_configured", "not used: the deterministic engine drafts and scores")
    import httpx

    base = (settings.llm_base_url or "https://api.openai.com/v1").rstrip("/")
    headers = {"Authorization": f"Bearer {settings.llm_api_key}"} if settings.llm_api_key else {}
    response = httpx.get(f"{base}/models", headers=headers, timeout=5)
    if response.status_code >= 400:
        return Result("llm", False, "down", f"{base}/models answered {response.status_code}")
    return Result("llm", True, "ok", f"{base} answers; model {settings.llm_model}")


def _webhooks(settings: Settings) -> Result:
    """Inbound: when each signed sender last delivered. Outbound: whether the team notification webhook's
    last post went through (a post that failed for good marks it down until one succeeds)."""
    with session_scope(settings) as session:
        last = dict(
            session.execute(
                select(WebhookDelivery.source, func.max(WebhookDelivery.received_at)).group_by(WebhookDelivery.source)
            ).all()
        )
        team = session.scalars(
            select(NotificationDelivery)
            .where(
                NotificationDelivery.channel == NotificationChannel.WEBHOOK,
                NotificationDelivery.status.in_([DeliveryStatus.SENT, DeliveryStatus.FAILED]),
            )
            .order_by(NotificationDelivery.id.desc())
            .limit(1)
        ).first()
    parts = [
        f"{source}: {last[source]:%Y-%m-%d %H:%M} UTC" if last.get(source) else f"{source}: none yet"
        for source in WEBHOOK_SOURCES
    ]
    detail = "last accepted delivery: " + "; ".join(parts)
    if not settings.notify_webhook_url:
        return Result("webhooks", True, "ok", f"{detail}. Team notification webhook: not configured")
    host = urlsplit(settings.notify_webhook_url).hostname
    if team is not None and team.status == DeliveryStatus.FAILED:
        return Result(
            "webhooks",
            False,
            "down",
            f"{detail}. Team notification webhook {host}: the last post failed after {team.attempts} attempt(s): "
            f"{team.last_error}",
        )
    posted = f"last post {team.sent_at:%Y-%m-%d %H:%M} UTC went through" if team else "no post yet"
    return Result("webhooks", True, "ok", f"{detail}. Team notification webhook {host}: {posted}")


def _crm(settings: Settings) -> Result:
    """The configured CRM backend answers an authenticated read; its incremental sync is recent and its write-backs
    went through (REVLOOP_CRM_BACKEND; native = revloop's own tables, nothing to reach)."""
    from crm.connectors import backend
    from crm.connectors.base import CrmError

    name = settings.crm_backend
    now = utcnow()
    with session_scope(settings, readonly=True) as session:
        state = session.get(CrmSyncState, name)
        counts = dict(
            session.execute(
                select(CrmWriteback.status, func.count())
                .where(CrmWriteback.source == name, CrmWriteback.status.in_(["pending", "failed"]))
                .group_by(CrmWriteback.status)
            ).all()
        )
        last_failed = session.scalar(
            select(CrmWriteback.last_error)
            .where(CrmWriteback.source == name, CrmWriteback.status == "failed")
            .order_by(CrmWriteback.id.desc())
            .limit(1)
        )
    lag = (now - state.last_success_at).total_seconds() if state and state.last_success_at else None
    sync = {
        "source": name,
        "last_success_at": state.last_success_at if state else None,
        "last_error_at": state.last_error_at if state else None,
        "last_error": state.last_error if state else None,
        "lag_seconds": round(lag) if lag is not None else None,
        "cursors": dict(state.cursors or {}) if state else {},
        "writebacks_pending": counts.get("pending", 0),
        "writebacks_failed": counts.get("failed", 0),
    }
    problems = []
    try:
        answered = backend(settings).ping()
    except CrmError as exc:
        answered = None
        problems.append(exc.message)
    if state is None or state.last_success_at is None:
        problems.append(f"never synced: run `revloop sync crm --from {name}`")
    elif lag > settings.crm_sync_lag_warn_minutes * 60:
        problems.append(f"last successful sync {lag / 3600:.1f} h ago")
    if state and state.last_error_at and (not state.last_success_at or state.last_error_at > state.last_success_at):
        problems.append(f"the last sync failed: {state.last_error}")
    if sync["writebacks_failed"]:
        problems.append(f"{sync['writebacks_failed']} write-back(s) failed, the last: {last_failed}")
    writes = f"{sync['writebacks_pending']} write-back(s) pending"
    if problems:
        return Result("crm", False, "down", f"{name}: " + "; ".join(problems) + f"; {writes}", sync=sync)
    return Result("crm", True, "ok", f"{answered}; synced {lag:.0f} s ago; {writes}", sync=sync)


def _held(session, provider: str) -> int:
    return session.scalar(
        select(func.count(PaymentEvent.id)).where(PaymentEvent.provider == provider, PaymentEvent.status == "held")
    )


def _last_event(session, provider: str) -> str:
    last = session.scalar(select(func.max(PaymentEvent.received_at)).where(PaymentEvent.provider == provider))
    return f"last event {last:%Y-%m-%d %H:%M} UTC" if last else "no event yet"


def _stripe(settings: Settings) -> Result:
    """Stripe: the API answers (billing backend stripe), when the last webhook event arrived, payments held."""
    if settings.billing_backend != "stripe" and not settings.stripe_webhook_secret:
        return Result("stripe", True, "not_configured", "not used: REVLOOP_BILLING_BACKEND=native, no webhook secret")
    with session_scope(settings, readonly=True) as session:
        detail = f"{_last_event(session, 'stripe')}; {_held(session, 'stripe')} payment(s) held for a person"
    if settings.billing_backend == "stripe":
        from billing import backends

        detail = f"{backends.backend(settings).probe()}; {detail}"
    if not settings.stripe_webhook_secret:
        why = "REVLOOP_STRIPE_WEBHOOK_SECRET is not set: payments stay unseen"
        return Result("stripe", False, "down", f"{detail}; {why}")
    return Result("stripe", True, "ok", detail)


def _mpesa(settings: Settings) -> Result:
    """M-Pesa: callbacks configured, the last one, held payments, STK prompts with no answer, the OAuth login."""
    if not (settings.mpesa_callback_token or settings.mpesa_shortcode):
        return Result("mpesa", True, "not_configured", "not used: no REVLOOP_MPESA_SHORTCODE / CALLBACK_TOKEN")
    with session_scope(settings, readonly=True) as session:
        unanswered = session.scalar(
            select(func.count(PaymentEvent.id)).where(
                PaymentEvent.provider == "mpesa",
                PaymentEvent.status == "requested",
                PaymentEvent.received_at < utcnow() - dt.timedelta(minutes=10),
            )
        )
        detail = (
            f"shortcode {settings.mpesa_shortcode or '?'}; {_last_event(session, 'mpesa')}; "
            f"{_held(session, 'mpesa')} payment(s) held for a person; "
            f"{unanswered} STK prompt(s) unanswered after 10 min"
        )
    if not settings.mpesa_callback_token:
        why = "REVLOOP_MPESA_CALLBACK_TOKEN is not set: callbacks are refused"
        return Result("mpesa", False, "down", f"{detail}; {why}")
    if settings.mpesa_consumer_key:
        from billing import mpesa

        mpesa._token(settings)  # raises when Daraja refuses the app's credentials
        detail += "; Daraja OAuth works"
    return Result("mpesa", True, "ok", detail)


def _fiscal(settings: Settings) -> Result:
    """E-invoicing: invoices waiting for the tax authority (the oldest one's wait is the lag), rejections, the last
    accepted receipt. Down while a submission fails or a rejection waits for a manager."""
    if settings.fiscal_backend == "none":
        return Result("fiscal", True, "not_configured", "not used: REVLOOP_FISCAL_BACKEND=none")
    from billing import fiscal

    with session_scope(settings, readonly=True) as session:
        counts = dict(
            session.execute(
                select(Invoice.fiscal_status, func.count(Invoice.id))
                .where(Invoice.fiscal_status.is_not(None))
                .group_by(Invoice.fiscal_status)
            ).all()
        )
        oldest = session.scalar(select(func.min(Invoice.created_at)).where(Invoice.fiscal_status == fiscal.PENDING))
        failing = session.scalars(
            select(Invoice).where(Invoice.fiscal_status == fiscal.PENDING, Invoice.fiscal_error.is_not(None)).limit(1)
        ).first()
        rejected = session.scalars(select(Invoice).where(Invoice.fiscal_status == fiscal.REJECTED).limit(1)).first()
        lag = (utcnow() - oldest).total_seconds() if oldest else 0.0
        detail = (
            f"{settings.fiscal_base_url}: {counts.get(fiscal.ACCEPTED, 0)} accepted, {counts.get(fiscal.PENDING, 0)} "
            f"pending (oldest waits {lag:.0f} s), {counts.get(fiscal.REJECTED, 0)} rejected"
        )
        if rejected is not None:
            return Result("fiscal", False, "down", f"{detail}; {rejected.number} rejected: {rejected.fiscal_error}")
        if failing is not None:
            return Result("fiscal", False, "down", f"{detail}; {failing.number} retrying: {failing.fiscal_error}")
    detail += "; " + fiscal.backend(settings).probe()
    return Result("fiscal", True, "ok", detail)


CHECKS: dict[str, Callable[[Settings], Result]] = {
    "database": _database,
    "mail": _mail,
    "work_queue": _work_queue,
    "knowledge_base": _knowledge_base,
    "llm": _llm,
    "webhooks": _webhooks,
    "crm": _crm,
    "stripe": _stripe,
    "mpesa": _mpesa,
    "fiscal": _fiscal,
}


# Connectors are checked only where configured (a business without an external CRM has nothing to reach).
CONFIGURED: dict[str, Callable[[Settings], bool]] = {
    "crm": lambda settings: settings.crm_backend != "native",
    "stripe": lambda settings: settings.billing_backend == "stripe" or bool(settings.stripe_webhook_secret),
    "mpesa": lambda settings: bool(settings.mpesa_callback_token or settings.mpesa_shortcode),
    "fiscal": lambda settings: settings.fiscal_backend != "none",
}


def run_check(settings: Settings, name: str) -> Result:
    started = time.perf_counter()
    try:
        result = CHECKS[name](settings)
    except Exception as exc:  # an unreachable integration is the answer, not an error
        result = Result(name, False, "down", f"{type(exc).__name__}: {exc}"[:500])
    result.latency_ms = round((time.perf_counter() - started) * 1000, 1)
    return result


def _record(settings: Settings, result: Result) -> None:
    """Store the state; a change between healthy and unhealthy notifies the operators once."""
    now = utcnow()
    with session_scope(settings) as session:
        state = session.get(IntegrationState, result.name)
        changed = state is None and not result.healthy or state is not None and state.healthy != result.healthy
        if state is None:  # the API and the worker may check at the same moment: one row, the same answer
            state, _ = insert_once(
                session,
                IntegrationState(name=result.name, healthy=result.healthy, changed_at=now),
                select(IntegrationState).where(IntegrationState.name == result.name),
            )
        elif changed:
            state.changed_at = now
        state.healthy, state.detail, state.checked_at = result.healthy, result.detail, now
        if result.healthy:
            state.last_success_at = now
        session.flush()
        if changed:
            kind = NotificationKind.INTEGRATION_RECOVERED if result.healthy else NotificationKind.INTEGRATION_DOWN
            title = f"{result.name.replace('_', ' ')} {'recovered' if result.healthy else 'is down'}"
            notify(
                session,
                kind,
                title,
                body=result.detail,
                severity="info" if result.healthy else "critical",
                entity=("integration", result.name),
            )
        result.checked_at, result.last_success_at, result.changed_at = now, state.last_success_at, state.changed_at


def check_all(settings: Settings, *, record: bool = True) -> list[Result]:
    results = [run_check(settings, name) for name in CHECKS if CONFIGURED.get(name, lambda _: True)(settings)]
    if record:
        for result in results:
            _record(settings, result)
    return results


def schedule(settings: Settings, at: dt.datetime | None = None) -> None:
    """Queue the next periodic check (once per interval, whatever restarts)."""
    with session_scope(settings) as session:
        interval = dt.timedelta(minutes=settings.health_check_minutes)
        jobs.enqueue_next_slot(session, JobKind.HEALTH_CHECK, interval, now=at)


def run_scheduled(settings: Settings, payload: dict[str, Any]) -> None:
    check_all(settings)
    schedule(settings)
