"""Health: liveness without auth; integrations for managers, with an alert when one goes down and when it
comes back (once each, not on every check)."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage

from core import jobs
from core.db import session_scope
from core.models import utcnow
from review import health, outbox
from tests.conftest import free_port
from tests.factories import auth, session_token
from tests.smtp_server import SmtpServer


def _integrations(http, headers) -> dict[str, dict]:
    r = http.get("/v1/health/integrations", headers=headers)
    assert r.status_code == 200, r.text
    return {i["name"]: i for i in r.json()["integrations"]}


def test_liveness_needs_no_token_and_integrations_need_a_manager(settings, http):
    assert http.get("/v1/health").json() == {"status": "ok"}
    assert http.get("/v1/health/integrations").status_code == 401
    assert http.get("/v1/health/integrations", headers=auth(settings, "closer")).status_code == 403
    body = http.get("/v1/health/integrations", headers=auth(settings, "manager")).json()
    assert body["healthy"] is True
    found = {i["name"]: i for i in body["integrations"]}
    assert set(found) == {"database", "mail", "work_queue", "knowledge_base", "llm", "webhooks"}
    assert found["llm"]["status"] == "not_configured" and "file outbox" in found["mail"]["detail"]
    assert all(i["last_success_at"] for i in body["integrations"])


def test_smtp_down_alerts_managers_once_and_its_recovery_alerts_again(settings, http):
    manager = {"Authorization": f"Bearer {session_token(settings, 'manager', 'Morgan Manager')}"}
    port = free_port()
    settings.smtp_url = f"smtp://127.0.0.1:{port}"
    for _ in range(2):  # two checks while it is down: one alert
        mail = _integrations(http, manager)["mail"]
        assert mail["healthy"] is False and mail["status"] == "down" and "Refused" in mail["detail"]
    notes = http.get("/v1/notifications", headers=manager).json()["items"]
    assert [(n["kind"], n["title"]) for n in notes] == [("integration_down", "mail is down")]
    with SmtpServer(port):
        mail = _integrations(http, manager)["mail"]
        assert mail["healthy"] is True and mail["last_success_at"] == mail["changed_at"]
    notes = http.get("/v1/notifications", headers=manager).json()["items"]
    assert [n["kind"] for n in notes] == ["integration_recovered", "integration_down"]


def test_an_smtp_login_that_a_send_would_fail_marks_mail_down(settings, http):
    """The check logs in as a send does: a server that answers but refuses the configured password is down."""
    manager = auth(settings, "manager")
    with SmtpServer(credentials=("mailer", "right")) as smtp:
        settings.smtp_url = smtp.url.replace("smtp://", "smtp://mailer:wrong@")
        mail = _integrations(http, manager)["mail"]
        assert mail["healthy"] is False and "refused the login (535)" in mail["detail"], mail
        settings.smtp_url = smtp.url.replace("smtp://", "smtp://mailer:right@")
        mail = _integrations(http, manager)["mail"]
        assert mail["healthy"] is True and mail["detail"] == f"SMTP 127.0.0.1:{smtp.port} answers", mail
        # ...and a send logs in the same way.
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "revloop@example.com", "ops@example.com", "probe"
        assert outbox.deliver_message(settings, message, settings.var_dir / "unused.eml") == smtp.url
        assert [to for _, to, _ in smtp.inbox.messages] == [["ops@example.com"]]


def test_a_due_job_nobody_runs_marks_the_work_queue_down(settings, http):
    settings.health_queue_wait_seconds = 60
    with session_scope(settings) as session:
        jobs.enqueue(
            session, "lead.run", {"lead_id": 1}, dedupe_key="stale", run_after=utcnow() - dt.timedelta(minutes=5)
        )
    queue = _integrations(http, auth(settings, "manager"))["work_queue"]
    assert queue["healthy"] is False and "is a worker running" in queue["detail"]


def test_the_worker_schedules_one_check_per_interval_whatever_restarts(settings):
    from sqlalchemy import func, select

    from core.models import Job

    now = utcnow()
    health.schedule(settings, now)
    health.schedule(settings, now)  # a restart in the same interval
    with session_scope(settings) as session:
        assert session.scalar(select(func.count()).where(Job.kind == "health.check")) == 1
        job = session.scalars(select(Job).where(Job.kind == "health.check")).one()
    assert now < job.run_after <= now + dt.timedelta(minutes=settings.health_check_minutes)
