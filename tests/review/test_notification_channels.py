"""Notification delivery on each channel, by the worker: email to the user's own address (a real SMTP
server, and the file transport), the team webhook (a local HTTP server checking the HMAC signature and the
Slack-compatible body), retries of a dead endpoint, quiet hours, and users who should get nothing."""

from __future__ import annotations

import datetime as dt
import email
import json
import time
from pathlib import Path

from sqlalchemy import select

from core.db import session_scope
from core.enums import DeliveryStatus, JobKind, NotificationKind
from core.jobs import Worker
from core.models import AuditEvent, Job, NotificationDelivery, QuietHours, User
from core.notifications import notify, set_preferences
from core.webhooks import sign
from review.notification_channels import deliver
from review.outbox import outbox_files
from tests import factories
from tests.smtp_server import SmtpServer
from tests.webhook_receiver import WebhookReceiver


def _notify(settings, kind=NotificationKind.NEW_A_LEAD, title="New A lead: Acme Software (score 92)", **kwargs):
    kwargs.setdefault("roles", ())
    kwargs.setdefault("entity", ("review_item", 41))
    with session_scope(settings) as session:
        return [
            n.id for n in notify(session, kind, title, body="Assigned to you; SLA 5 min.", settings=settings, **kwargs)
        ]


def _deliveries(settings, channel: str) -> list[NotificationDelivery]:
    with session_scope(settings) as session:
        rows = session.scalars(
            select(NotificationDelivery)
            .where(NotificationDelivery.channel == channel)
            .order_by(NotificationDelivery.id)
        ).all()
        session.expunge_all()
        return list(rows)


def _deliver_worker(settings) -> Worker:
    return Worker({JobKind.NOTIFICATION_DELIVER: lambda p: deliver(settings, int(p["delivery_id"]))}, settings)


def _drain(worker: Worker, settings, channel: str, seconds: float = 15) -> list[NotificationDelivery]:
    """Run due jobs until every delivery on `channel` is finished (retries wait their backoff)."""
    deadline = time.monotonic() + seconds
    while True:
        worker.run_until_idle()
        rows = _deliveries(settings, channel)
        if all(r.status not in (DeliveryStatus.PENDING, DeliveryStatus.SENDING) for r in rows):
            return rows
        assert time.monotonic() < deadline, [(r.status, r.attempts, r.last_error) for r in rows]
        time.sleep(0.05)


def test_a_new_a_lead_is_emailed_to_the_assignee_once_through_smtp(settings, worker):
    factories.user(settings, "closer", "Cal Closer")
    settings.app_url = "http://review.test:8501"
    with SmtpServer() as smtp:
        settings.smtp_url = smtp.url
        _notify(settings, names=["Cal Closer"])
        worker.run_until_idle()
        worker.run_until_idle()
        assert len(smtp.inbox.messages) == 1
        _, rcpt, raw = smtp.inbox.messages[0]
    assert rcpt == ["cal.closer@revloop.test"]  # the users table's address
    msg = email.message_from_bytes(raw)
    assert msg["Subject"] == "[revloop] New A lead: Acme Software (score 92)"
    text = msg.get_payload(decode=True).decode()
    assert "Assigned to you; SLA 5 min." in text and "Open it: http://review.test:8501/?item=41" in text
    [row] = _deliveries(settings, "email")
    assert row.status == DeliveryStatus.SENT and row.attempts == 1 and row.location.startswith("smtp://127.0.0.1")
    # a second run of the same job (a retried worker) sends nothing more
    deliver(settings, row.id)
    with session_scope(settings) as session:
        audited = session.scalars(select(AuditEvent).where(AuditEvent.action == "notification.email_sent")).all()
        assert [(a.entity_id, a.after["to"]) for a in audited] == [(str(row.id), "cal.closer@revloop.test")]


def test_the_file_transport_keeps_notification_mail_apart_from_customer_mail(settings):
    factories.user(settings, "manager", "Mia Manager")
    _notify(settings, NotificationKind.SLA_BREACHED, "SLA breached: Acme", roles=("manager",))
    [row] = _drain(_deliver_worker(settings), settings, "email")
    assert row.status == DeliveryStatus.SENT
    written = settings.resolved_outbox_dir / "notifications" / f"notification-{row.id}.eml"
    assert row.location == str(written) and b"To: mia.manager@revloop.test" in written.read_bytes()
    assert outbox_files(settings) == []  # the customer outbox lists none of it


def test_a_dead_smtp_server_is_retried_and_the_email_goes_once_it_is_back(settings):
    factories.user(settings, "closer", "Cal Closer")
    smtp = SmtpServer()
    settings.smtp_url = smtp.url  # nothing listens yet
    _notify(settings, names=["Cal Closer"])
    worker = _deliver_worker(settings)
    worker.run_until_idle()
    [row] = _deliveries(settings, "email")
    assert row.status == DeliveryStatus.PENDING and row.attempts == 1 and "refused the connection" in row.last_error
    with session_scope(settings) as session:
        job = session.scalar(select(Job).where(Job.dedupe_key == f"notification.deliver:{row.id}"))
        wait = (job.run_after - dt.datetime.now(dt.UTC)).total_seconds()
        assert job.status == "queued" and 10 < wait <= 30  # backoff: half to all of REVLOOP_NOTIFY_RETRY_BASE_SECONDS
        job.run_after = dt.datetime.now(dt.UTC)  # the backoff has passed
    with smtp:
        [row] = _drain(worker, settings, "email")
        assert row.status == DeliveryStatus.SENT and row.attempts == 2
        assert len(smtp.inbox.messages) == 1


def test_the_team_webhook_gets_signed_slack_json_once_per_event(settings):
    factories.user(settings, "manager", "Mia Manager")
    factories.user(settings, "admin", "Ada Admin")
    settings.notify_webhook_secret = "team-secret"
    settings.app_url = "http://review.test:8501"
    with WebhookReceiver() as hook:
        settings.notify_webhook_url = hook.url
        _notify(settings, NotificationKind.SLA_BREACHED, "SLA breached: <Acme> & co", roles=("manager", "admin"))
        [row] = _drain(_deliver_worker(settings), settings, "webhook")
        [(headers, body)] = hook.posts  # two people told, one post for the team
    assert row.status == DeliveryStatus.SENT and row.attempts == 1
    timestamp = int(headers["x-revloop-timestamp"])
    assert abs(time.time() - timestamp) < 60
    assert headers["x-revloop-signature"] == sign("team-secret", timestamp, body)
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    assert set(payload) == {"text", "blocks"}
    # record text cannot become a Slack link or mention; the link is ours
    link = "<http://review.test:8501/?item=41|Open in revloop>"
    assert payload["text"] == f"SLA breached: &lt;Acme&gt; &amp; co {link}"
    assert [b["type"] for b in payload["blocks"]] == ["section", "section", "context"]
    assert payload["blocks"][0]["text"] == {"type": "mrkdwn", "text": "*SLA breached: &lt;Acme&gt; &amp; co*"}
    assert payload["blocks"][2]["elements"][0]["text"] == f"SLA breached · {link}"


def test_a_dead_webhook_is_retried_with_backoff_then_recorded_failed(settings):
    factories.user(settings, "manager", "Mia Manager")
    settings.notify_retry_base_seconds = 0.05
    settings.notify_max_attempts = 3
    with WebhookReceiver(default_status=503) as hook:
        settings.notify_webhook_url = hook.url
        _notify(
            settings,
            NotificationKind.INTEGRATION_DOWN,
            "mail is down",
            roles=("manager",),
            entity=("integration", "mail"),
        )
        [row] = _drain(_deliver_worker(settings), settings, "webhook")
        assert len(hook.posts) == 3
    assert row.status == DeliveryStatus.FAILED and row.attempts == 3 and "503" in row.last_error
    with session_scope(settings) as session:
        failed = session.scalar(select(AuditEvent).where(AuditEvent.action == "notification.webhook_failed"))
        assert failed.after["attempts"] == 3


def test_a_webhook_that_recovers_between_retries_gets_the_post(settings):
    factories.user(settings, "manager", "Mia Manager")
    settings.notify_retry_base_seconds = 0.05
    with WebhookReceiver(statuses=[500, 502]) as hook:
        settings.notify_webhook_url = hook.url
        _notify(settings, NotificationKind.SEND_FAILED, "Send failed", roles=("manager",))
        [row] = _drain(_deliver_worker(settings), settings, "webhook")
        assert len(hook.posts) == 3 and hook.posts[0][1] == hook.posts[2][1]  # the same body each time
    assert row.status == DeliveryStatus.SENT and row.attempts == 3


def test_a_4xx_from_the_webhook_is_permanent(settings):
    factories.user(settings, "manager", "Mia Manager")
    with WebhookReceiver(default_status=404) as hook:
        settings.notify_webhook_url = hook.url
        _notify(settings, NotificationKind.SEND_FAILED, "Send failed", roles=("manager",))
        [row] = _drain(_deliver_worker(settings), settings, "webhook")
        assert len(hook.posts) == 1
    assert row.status == DeliveryStatus.FAILED and row.attempts == 1 and "404" in row.last_error


def test_no_webhook_configured_skips_the_post(settings):
    factories.user(settings, "manager", "Mia Manager")
    _notify(settings, NotificationKind.SEND_FAILED, "Send failed", roles=("manager",))
    [row] = _drain(_deliver_worker(settings), settings, "webhook")
    assert row.status == DeliveryStatus.SKIPPED and "REVLOOP_NOTIFY_WEBHOOK_URL" in row.last_error


def test_quiet_hours_hold_the_email_and_it_goes_when_they_end(settings):
    factories.user(settings, "closer", "Cal Closer")
    with session_scope(settings) as session:
        cal = session.scalar(select(User.id).where(User.name == "Cal Closer"))
    worker = _deliver_worker(settings)
    now = dt.datetime.now(dt.UTC)
    quiet = {
        "start": (now - dt.timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + dt.timedelta(hours=1)).strftime("%H:%M"),
    }
    with SmtpServer() as smtp:
        settings.smtp_url = smtp.url
        with session_scope(settings) as session:
            set_preferences(session, cal, actor="cal", quiet_hours={**quiet, "timezone": "UTC"})
        _notify(settings, names=["Cal Closer"])
        worker.run_until_idle()
        [row] = _deliveries(settings, "email")
        assert row.status == DeliveryStatus.HELD and smtp.inbox.messages == []
        # the quiet hours end: here, by moving the job's time to the end the worker would wait for
        with session_scope(settings) as session:
            job = session.scalar(select(Job).where(Job.dedupe_key == f"notification.deliver:{row.id}"))
            assert job.run_after == row.hold_until
            job.run_after = now - dt.timedelta(seconds=1)
            session.delete(session.get(QuietHours, cal))
        [row] = _drain(worker, settings, "email")
        assert row.status == DeliveryStatus.SENT and len(smtp.inbox.messages) == 1


def test_quiet_hours_set_after_the_email_was_queued_still_hold_it(settings):
    factories.user(settings, "closer", "Cal Closer")
    with session_scope(settings) as session:
        cal = session.scalar(select(User.id).where(User.name == "Cal Closer"))
    _notify(settings, names=["Cal Closer"])
    now = dt.datetime.now(dt.UTC)
    with session_scope(settings) as session:
        # written straight to the table: set_preferences would reschedule the queued job itself
        session.add(
            QuietHours(
                user_id=cal,
                start=(now - dt.timedelta(hours=1)).strftime("%H:%M"),
                end=(now + dt.timedelta(hours=1)).strftime("%H:%M"),
                timezone="UTC",
            )
        )
    _deliver_worker(settings).run_until_idle()
    [row] = _deliveries(settings, "email")
    assert row.status == DeliveryStatus.HELD and row.attempts == 0
    with session_scope(settings) as session:
        job = session.scalar(select(Job).where(Job.dedupe_key == f"notification.deliver:{row.id}"))
        assert job.status == "queued" and job.run_after > now + dt.timedelta(minutes=50)


def test_a_user_deactivated_before_the_email_goes_gets_nothing(settings):
    factories.user(settings, "closer", "Cal Closer")
    _notify(settings, names=["Cal Closer"])
    with session_scope(settings) as session:
        session.scalar(select(User).where(User.name == "Cal Closer")).active = False
    [row] = _drain(_deliver_worker(settings), settings, "email")
    assert row.status == DeliveryStatus.SKIPPED and row.to_addr is None
    assert not (settings.resolved_outbox_dir / "notifications").exists()


def test_a_user_with_email_off_gets_the_row_but_no_mail(settings):
    factories.user(settings, "closer", "Cal Closer")
    with session_scope(settings) as session:
        cal = session.scalar(select(User.id).where(User.name == "Cal Closer"))
        set_preferences(session, cal, actor="cal", channels={"new_a_lead": {"email": False}})
    assert len(_notify(settings, names=["Cal Closer"])) == 1
    _drain(_deliver_worker(settings), settings, "webhook")
    assert _deliveries(settings, "email") == []
    assert not (settings.resolved_outbox_dir / "notifications").exists()


def test_the_webhooks_health_check_shows_the_team_webhook_failing_and_recovering(settings):
    from review.health import run_check

    factories.user(settings, "manager", "Mia Manager")
    assert "Team notification webhook: not configured" in run_check(settings, "webhooks").detail
    with WebhookReceiver(statuses=[410, 200]) as hook:
        settings.notify_webhook_url = hook.url
        assert "no post yet" in run_check(settings, "webhooks").detail
        _notify(settings, NotificationKind.SEND_FAILED, "Send failed", roles=("manager",), entity=("review_item", 1))
        _drain(_deliver_worker(settings), settings, "webhook")
        check = run_check(settings, "webhooks")
        assert not check.healthy and "the last post failed after 1 attempt(s): the webhook answered 410" in check.detail
        _notify(settings, NotificationKind.SEND_FAILED, "Send failed", roles=("manager",), entity=("review_item", 2))
        _drain(_deliver_worker(settings), settings, "webhook")
        check = run_check(settings, "webhooks")
    assert check.healthy and "went through" in check.detail


def test_an_email_found_sending_after_a_crash_is_never_sent_twice(settings):
    factories.user(settings, "closer", "Cal Closer")
    _notify(settings, names=["Cal Closer"])
    _notify(settings, names=["Cal Closer"], entity=("review_item", 42))
    first, second = _deliveries(settings, "email")
    with session_scope(settings) as session:  # both were handed over, then the worker died before recording it
        for row_id in (first.id, second.id):
            session.get(NotificationDelivery, row_id).status = DeliveryStatus.SENDING
    # the file transport can tell: the first one's file was written
    written = settings.resolved_outbox_dir / "notifications" / f"notification-{first.id}.eml"
    written.parent.mkdir(parents=True)
    written.write_bytes(b"Subject: written before the crash\r\n\r\n")
    deliver(settings, first.id)
    # over SMTP nobody can tell: recorded delivery_unknown, not sent again
    with SmtpServer() as smtp:
        settings.smtp_url = smtp.url
        deliver(settings, second.id)
        assert smtp.inbox.messages == []
    first, second = _deliveries(settings, "email")
    assert first.status == DeliveryStatus.SENT and first.attempts == 0
    assert second.status == DeliveryStatus.DELIVERY_UNKNOWN and "after the hand-off" in second.last_error
    with session_scope(settings) as session:
        unknown = session.scalar(select(AuditEvent).where(AuditEvent.action == "notification.email_delivery_unknown"))
        assert unknown.entity_id == str(second.id)


def test_a_title_with_line_breaks_makes_a_one_line_subject(settings):
    factories.user(settings, "closer", "Cal Closer")
    _notify(settings, title="New A lead:\r\nBcc: someone@example.com", names=["Cal Closer"])
    [row] = _drain(_deliver_worker(settings), settings, "email")
    assert row.status == DeliveryStatus.SENT
    msg = email.message_from_bytes(Path(row.location).read_bytes())
    assert msg["Subject"] == "[revloop] New A lead: Bcc: someone@example.com" and msg["Bcc"] is None
