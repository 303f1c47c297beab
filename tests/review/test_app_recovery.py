"""The review app when a send fails: the closer sees why and retries; managers are told (a badge, the
Notifications page) and can see every integration's health."""

from __future__ import annotations

from core.db import session_scope
from core.models import ReviewItem
from tests.factories import queued_item
from tests.review.test_app import _button, _open, _queue_a_lead, _signed_in
from tests.smtp_server import SmtpServer


def test_a_refused_send_shows_the_reason_and_retry_sends_it(settings, live_server, http, worker):
    manager = _signed_in(live_server, settings, "manager", "Morgan Manager")
    with SmtpServer() as smtp:
        settings.smtp_url = smtp.url
        smtp.inbox.refuse_recipients = "550 5.1.1 mailbox unavailable"
        _queue_a_lead(settings, http, worker)
        at = _signed_in(live_server, settings, "closer", "Casey Jordan")
        at.radio(key="view").set_value("Everything")
        at.run()
        item_id = at.selectbox(key="selected").value
        at.button(key=f"approve_{item_id}").click()
        at.run()
        worker.run_until_idle()
        at.selectbox(key="status_filter").select("send_failed")
        at.run()
        assert not at.exception, at.exception
        assert any(f"#{item_id} · email · send_failed" in s.value for s in at.subheader)
        assert any("Not sent" in e.value and "550" in e.value for e in at.error)

        manager.run()  # any page: the sidebar badge counts unread notifications
        assert any("1 unread notification" in e.value for e in manager.error)
        _open(manager, "notifications")
        assert any("Send failed" in m.value for m in manager.markdown)
        assert any("a quick call this week" in t.value for t in manager.text)  # the subject, as plain text
        _button(manager, f"Open item #{item_id}").click()  # the manager lands on the item, whoever holds it
        manager.run()
        assert not manager.exception, manager.exception
        assert any(f"#{item_id} · email · send_failed" in s.value for s in manager.subheader), (
            [t.value for t in manager.title],
            [c.value for c in manager.caption],
            [s.value for s in manager.subheader],
        )

        smtp.inbox.refuse_recipients = None
        _button(at, "Retry").click()
        at.run()
        assert not at.exception, at.exception
        assert any(f"#{item_id}: Sending again" in s.value for s in at.success)
        worker.run_until_idle()
        assert len(smtp.inbox.messages) == 1
    with session_scope(settings) as session:
        assert session.get(ReviewItem, item_id).status == "sent"


def test_managers_see_integration_health(settings, live_server):
    at = _open(_signed_in(live_server, settings, "manager"), "health")
    assert at.title[0].value == "Integration health"
    table = at.dataframe[0].value
    assert set(table["integration"]) == {"database", "mail", "work queue", "knowledge base", "llm", "webhooks"}
    assert dict(zip(table["integration"], table["status"], strict=True))["llm"] == "not configured"


def test_an_invoice_the_billing_provider_refused_shows_not_issued_with_the_reason(settings, live_server):
    reason = "Stripe refused the request (HTTP 401): Invalid API Key provided: sk_test_****bad1"
    item_id = queued_item(
        settings,
        kind="invoice",
        source="invoice",
        template=None,
        status="send_failed",
        draft={"subject": "Invoice Initech: Kickoff (2892.60)", "body": "Issue an invoice", "milestone_id": 1},
        result={"reason": reason, "summary": f"Not issued: {reason}"},
    )
    at = _signed_in(live_server, settings, "manager", "Morgan Manager")
    at.radio(key="view").set_value("Everything")
    at.selectbox(key="status_filter").select("send_failed")
    at.run()
    assert not at.exception, at.exception
    assert any(f"#{item_id} · invoice · send_failed" in s.value for s in at.subheader)
    assert any(e.value.startswith("**Not issued:**") and "Invalid API Key provided" in e.value for e in at.error)
    assert not any("Not sent" in e.value for e in at.error)  # no recipient or attempts: nothing was sent
    assert _button(at, "Retry")
