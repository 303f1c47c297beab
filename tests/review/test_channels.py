"""SMS and WhatsApp end to end over real HTTP: inbound webhook -> lead -> brief -> draft on that channel ->
approve -> exactly one provider request (a local server speaking Twilio's and the WhatsApp Cloud API's shapes)
-> status callbacks; STOP blocks later drafts; forged signatures are refused and record nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import pytest
from sqlalchemy import func, select, update
from twilio.request_validator import RequestValidator

from core.db import session_scope
from core.enums import ItemKind, ItemSource
from core.models import (
    AuditEvent,
    ChannelConsent,
    ChannelMessage,
    Contact,
    Lead,
    LeadEvent,
    OutboxMessage,
    ReviewItem,
    utcnow,
)
from review import queue as review_queue
from tests.channel_providers import FakeProviders
from tests.factories import auth, lead_payload

PUBLIC_URL = "https://revloop.example.com"  # what Twilio signs: the URL as the provider reaches us
SMS_NUMBER = "+14155552671"
WA_NUMBER = "254712345678"  # WhatsApp sends numbers without the plus


@pytest.fixture
def providers(settings):
    """Provider settings pointing at the local fake; quiet hours far from now in any test number's zone."""
    with FakeProviders() as fake:
        settings.public_url = PUBLIC_URL
        settings.twilio_account_sid = "ACtest"
        settings.twilio_auth_token = "test-auth-token"
        settings.twilio_api_url = fake.url
        settings.sms_from = "+15005550006"
        settings.whatsapp_access_token = "test-wa-token"
        settings.whatsapp_phone_number_id = "1234567890"
        settings.whatsapp_api_url = fake.url + "/v21.0"
        settings.whatsapp_app_secret = "test-app-secret"
        settings.whatsapp_templates = "payment_reminder:en,order_update:en"
        far = utcnow() + dt.timedelta(hours=12)
        settings.channel_quiet_hours = f"{far:%H:%M}-{far + dt.timedelta(minutes=1):%H:%M}"
        yield fake


def post_sms(http, params: dict[str, str], *, token: str = "test-auth-token"):
    signature = RequestValidator(token).compute_signature(f"{PUBLIC_URL}/v1/webhooks/sms", params)
    return http.post("/v1/webhooks/sms", data=params, headers={"X-Twilio-Signature": signature})


def inbound_sms(sid: str, body: str, sender: str = SMS_NUMBER) -> dict[str, str]:
    return {"MessageSid": sid, "AccountSid": "ACtest", "From": sender, "To": "+15005550006", "Body": body}


def post_whatsapp(http, payload: dict, *, secret: str = "test-app-secret"):
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return http.post(
        "/v1/webhooks/whatsapp",
        content=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
    )


def wa_notification(messages=(), statuses=(), name: str = "Amina Otieno") -> dict:
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "1234567890"}}
    if messages:
        value["contacts"] = [{"profile": {"name": name}, "wa_id": WA_NUMBER}]
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}]}],
    }


def wa_text(wamid: str, body: str) -> dict:
    return {
        "from": WA_NUMBER,
        "id": wamid,
        "timestamp": str(int(utcnow().timestamp())),
        "type": "text",
        "text": {"body": body},
    }


def pending_for(http, settings, lead_id: int) -> dict:
    page = http.get("/v1/review-items", params={"status": "pending"}, headers=auth(settings, "closer")).json()
    items = [i for i in page["items"] if i["lead_id"] == lead_id]
    assert len(items) == 1, page
    return http.get(f"/v1/review-items/{items[0]['id']}", headers=auth(settings, "closer")).json()


def the_lead(settings, phone: str) -> Lead:
    with session_scope(settings) as session:
        lead = session.scalars(select(Lead).where(Lead.phone == phone)).one()
        session.expunge(lead)
        return lead


def count(settings, model) -> int:
    with session_scope(settings) as session:
        return session.scalar(select(func.count()).select_from(model))


def test_sms_inbound_to_lead_to_one_approved_text_then_status_and_stop(settings, providers, http, worker):
    r = post_sms(http, inbound_sms("SMin0001", "Hi, do you deliver pallets to Oakland? Need a quote"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/xml") and "<Response>" in r.text
    lead = the_lead(settings, SMS_NUMBER)  # E.164, from the provider's From
    assert lead.email is None and lead.source == "sms"
    worker.run_until_idle()

    item = pending_for(http, settings, lead.id)
    assert item["kind"] == "sms" and item["brief"]["grade"] in "ABCD"
    draft = item["draft"]
    assert draft["to"] == SMS_NUMBER and draft["channel"] == "sms"
    assert draft["characters"] == len(draft["body"]) and draft["segments"] >= 1 and draft["encoding"] == "GSM-7"
    assert "STOP" in draft["body"]
    closer = auth(settings, "closer")
    r = http.post(f"/v1/review-items/{item['id']}/approve", headers=closer)
    assert r.status_code == 200, r.text
    assert providers.requests == []  # nothing leaves before the worker executes the approval
    worker.run_until_idle()
    worker.run_until_idle()  # a second pass sends nothing more

    [sent] = providers.requests
    assert sent.path == "/2010-04-01/Accounts/ACtest/Messages.json"
    assert sent.form["To"] == SMS_NUMBER and sent.form["Body"] == draft["body"]
    assert sent.form["From"] == "+15005550006"
    assert sent.form["StatusCallback"] == f"{PUBLIC_URL}/v1/webhooks/sms"
    final = http.get(f"/v1/review-items/{item['id']}", headers=closer).json()
    assert final["status"] == "sent" and final["result"]["to"] == SMS_NUMBER
    sid = final["result"]["provider_message_id"]
    assert sid.startswith("SM")

    r = post_sms(http, {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "ACtest", "To": SMS_NUMBER})
    assert r.status_code == 200, r.text
    with session_scope(settings) as session:
        row = session.scalars(select(OutboxMessage)).one()
        assert (row.channel, row.transport, row.delivery_status) == ("sms", "twilio", "delivered")

    # STOP: opted out of SMS forever (a later START changes nothing), audited; no later SMS draft is possible.
    assert post_sms(http, inbound_sms("SMin0002", "Stop")).status_code == 200
    assert post_sms(http, inbound_sms("SMin0003", "START")).status_code == 200
    with session_scope(settings) as session:
        consent = session.scalars(select(ChannelConsent).where(ChannelConsent.channel == "sms")).one()
        assert consent.status == "opted_out" and "Stop" in consent.source
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.entity_type == "contact")).all()
        assert "contact.opted_out" in actions and "contact.consent_regrant_refused" in actions
        later = review_queue.Draft(
            source=ItemSource.CADENCE,
            kind=ItemKind.SMS,
            thread_id=f"cadence-{lead.id}",
            dedupe_key="after-stop",
            lead_id=lead.id,
            contact_id=lead.contact_id,
            body="Just checking in",
        )
        with pytest.raises(review_queue.RecipientOptedOut, match="opted out of sms"):
            review_queue.enqueue(session, later, actor="test")
    assert count(settings, ReviewItem) == 2  # the sent text and the hand-off of the START reply; no new SMS
    assert len(providers.requests) == 1


def test_whatsapp_inbound_to_lead_to_one_approved_message_with_delivery_and_read(settings, providers, http, worker):
    r = post_whatsapp(
        http, wa_notification([wa_text("wamid.in1", "Hello, price for 200 chairs delivered to Nairobi?")])
    )
    assert r.status_code == 200, r.text
    assert r.json()["messages"] == 1 and r.json()["outcomes"][0]["outcome"] == "lead"
    # The same notification again (Meta retries) is recorded once.
    assert (
        post_whatsapp(http, wa_notification([wa_text("wamid.in1", "Hello again")])).json()["outcomes"][0]["outcome"]
        == "duplicate"
    )
    lead = the_lead(settings, "+" + WA_NUMBER)
    assert (lead.first_name, lead.source) == ("Amina", "whatsapp")
    worker.run_until_idle()

    item = pending_for(http, settings, lead.id)
    assert item["kind"] == "whatsapp" and item["draft"]["to"] == "+" + WA_NUMBER
    r = http.post(f"/v1/review-items/{item['id']}/approve", headers=auth(settings, "closer"))
    assert r.status_code == 200, r.text
    worker.run_until_idle()

    [sent] = providers.requests
    assert sent.path == "/v21.0/1234567890/messages"
    assert sent.headers["authorization"] == "Bearer test-wa-token"
    assert sent.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": WA_NUMBER,
        "type": "text",
        "text": {"preview_url": False, "body": item["draft"]["body"]},
    }
    final = http.get(f"/v1/review-items/{item['id']}", headers=auth(settings, "closer")).json()
    assert final["status"] == "sent"
    wamid = final["result"]["provider_message_id"]
    statuses = [
        {"id": wamid, "status": s, "timestamp": "1764750100", "recipient_id": WA_NUMBER} for s in ("delivered", "read")
    ]
    assert post_whatsapp(http, wa_notification(statuses=statuses)).json()["statuses"] == 2
    late = [{"id": wamid, "status": "sent", "timestamp": "1764750000", "recipient_id": WA_NUMBER}]
    post_whatsapp(http, wa_notification(statuses=late))  # out of order: never moves the status back
    with session_scope(settings) as session:
        assert session.scalars(select(OutboxMessage.delivery_status)).one() == "read"

    # The review app's conversation thread: newest first, across channels, with the delivery status.
    post_whatsapp(http, wa_notification([wa_text("wamid.in2", "Thanks, Thursday works")]))
    thread = http.get(f"/v1/contacts/{lead.contact_id}/conversation", headers=auth(settings, "closer")).json()
    assert thread["phone"] == "+" + WA_NUMBER and thread["consent"] == {"sms": None, "whatsapp": "granted"}
    assert [(m["direction"], m["channel"], m["status"]) for m in thread["messages"]] == [
        ("in", "whatsapp", "received"),
        ("out", "whatsapp", "read"),
        ("in", "whatsapp", "received"),
    ]
    assert thread["messages"][0]["text"] == "Thanks, Thursday works"
    assert thread["messages"][1]["text"] == item["draft"]["body"]


def test_forged_signatures_are_refused_and_record_nothing(settings, providers, http):
    r = post_sms(http, inbound_sms("SMforged", "Hi"), token="not-the-token")
    assert r.status_code == 401 and "X-Twilio-Signature" in r.json()["message"]
    r = http.post("/v1/webhooks/sms", data=inbound_sms("SMnosig", "Hi"))
    assert r.status_code == 401
    r = post_whatsapp(http, wa_notification([wa_text("wamid.forged", "Hi")]), secret="guessed")
    assert r.status_code == 401 and "X-Hub-Signature-256" in r.json()["message"]
    # The body changed after signing (a tampered number): refused too.
    body = json.dumps(wa_notification([wa_text("wamid.x", "Hi")])).encode()
    signature = "sha256=" + hmac.new(b"test-app-secret", body, hashlib.sha256).hexdigest()
    tampered = body.replace(WA_NUMBER.encode(), b"254700000000")
    r = http.post(
        "/v1/webhooks/whatsapp",
        content=tampered,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
    )
    assert r.status_code == 401
    for model in (Lead, Contact, ChannelMessage, ChannelConsent, AuditEvent):
        assert count(settings, model) == 0, model
    # Meta's subscribe handshake: the challenge is echoed only for the configured verify token.
    settings.whatsapp_verify_token = "verify-me"
    handshake = {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"}
    r = http.get("/v1/webhooks/whatsapp", params=handshake)
    assert (r.status_code, r.text) == (200, "1158201444")
    assert http.get("/v1/webhooks/whatsapp", params={**handshake, "hub.verify_token": "guess"}).status_code == 403


def test_a_text_from_a_known_contact_is_a_reply_that_stops_the_cadence_and_hands_off(settings, providers, http, worker):
    # A form lead gave the number in local format; the contact record keeps it as E.164.
    r = http.post("/v1/leads", json=lead_payload(phone="(415) 555-2671"), headers=auth(settings, "integration"))
    assert r.status_code == 202, r.text
    lead_id = r.json()["id"]
    with session_scope(settings) as session:
        assert session.scalars(select(Contact.phone_e164)).one() == SMS_NUMBER
    assert post_sms(http, inbound_sms("SMreply1", "Yes, call me tomorrow morning")).status_code == 200
    assert count(settings, Lead) == 1  # deduplicated by phone: no second lead
    with session_scope(settings) as session:
        lead = session.get(Lead, lead_id)
        assert lead.cadence_stop_reason == "reply"
        event = session.scalars(select(LeadEvent)).one()
        assert (event.type, event.external_id) == ("reply", "sms:SMreply1")
        handoff = session.scalars(select(ReviewItem).where(ReviewItem.template == "reply_handoff")).one()
        assert handoff.kind == "call_task"
        consent = session.scalars(select(ChannelConsent)).one()
        assert (consent.channel, consent.status) == ("sms", "granted") and "SMreply1" in consent.source
    # A form from the number a WhatsApp-only contact wrote from fills in that contact instead of making another.
    post_whatsapp(http, wa_notification([wa_text("wamid.first", "Hi")]))
    r = http.post(
        "/v1/leads",
        json=lead_payload(email="amina@chairs.co.ke", phone="+254 712 345678", website="https://chairs.co.ke"),
        headers=auth(settings, "integration"),
    )
    assert r.status_code == 202, r.text
    with session_scope(settings) as session:
        contact = session.scalars(select(Contact).where(Contact.phone_e164 == "+" + WA_NUMBER)).one()
        assert contact.email == "amina@chairs.co.ke"
        assert session.scalar(select(func.count()).select_from(Contact)) == 2


def test_whatsapp_outside_the_24_hour_window_only_an_approved_template_goes_out(settings, providers, http, worker):
    post_whatsapp(http, wa_notification([wa_text("wamid.old", "Quote please")]))
    lead = the_lead(settings, "+" + WA_NUMBER)
    worker.run_until_idle()
    item = pending_for(http, settings, lead.id)
    with session_scope(settings) as session:  # the closer approves a day and a half later
        session.execute(update(ChannelMessage).values(received_at=utcnow() - dt.timedelta(hours=36)))
    http.post(f"/v1/review-items/{item['id']}/approve", headers=auth(settings, "closer"))
    worker.run_until_idle()
    final = http.get(f"/v1/review-items/{item['id']}", headers=auth(settings, "closer")).json()
    assert final["status"] == "cancelled" and "24-hour window" in final["result"]["reason"]
    assert providers.requests == []

    # A template message (from records) may go out; a template that is not approved never does.
    ids = {}
    with session_scope(settings) as session:
        for name in ("payment_reminder", "free_text_pretending"):
            draft = review_queue.Draft(
                source=ItemSource.CADENCE,
                kind=ItemKind.WHATSAPP,
                thread_id=f"cadence-{lead.id}",
                dedupe_key=f"cadence-{name}",
                lead_id=lead.id,
                contact_id=lead.contact_id,
                subject=f"WhatsApp reminder ({name})",
                body="Reminder: invoice INV-1 of USD 10.00 is due.",
                refs={"wa_template": {"name": name, "language": "en", "params": ["INV-1", "USD 10.00"]}},
            )
            ids[name] = review_queue.enqueue(session, draft, actor="test").id
    for item_id in ids.values():
        assert http.post(f"/v1/review-items/{item_id}/approve", headers=auth(settings, "closer")).status_code == 200
    worker.run_until_idle()
    [sent] = providers.requests
    assert sent.json["type"] == "template"
    assert sent.json["template"] == {
        "name": "payment_reminder",
        "language": {"code": "en"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "INV-1"}, {"type": "text", "text": "USD 10.00"}]}
        ],
    }
    abuse = http.get(f"/v1/review-items/{ids['free_text_pretending']}", headers=auth(settings, "closer")).json()
    assert abuse["status"] == "cancelled" and "not an approved template" in abuse["result"]["reason"]


def _billing_customer(settings, *, sms_consent: bool) -> int:
    """An account whose billing contact has a number on record (and SMS consent, or none), one invoice due."""
    from decimal import Decimal

    from core.models import Account, Invoice
    from crm.consent import record_consent

    with session_scope(settings) as session:
        account = Account(name="Globex Ltd", domain="globex.example")
        session.add(account)
        session.flush()
        contact = Contact(email="ap@globex.example", first_name="Pat", account_id=account.id, phone_e164=SMS_NUMBER)
        session.add(contact)
        session.flush()
        if sms_consent:
            record_consent(session, contact, "sms", granted=True, source="billing form 2026-11", actor="test")
        due = utcnow().date() - dt.timedelta(days=7)
        invoice = Invoice(
            number="INV-1001",
            account_id=account.id,
            amount=Decimal("1200.00"),
            issued_on=due - dt.timedelta(days=30),
            due_on=due,
        )
        session.add(invoice)
        session.flush()
        return invoice.id


@pytest.mark.parametrize("sms_consent", [True, False])
def test_a_dunning_step_can_choose_sms_following_consent(settings, providers, http, worker, tmp_path, sms_consent):
    from billing.reminders import scan

    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: sms-test\nsteps:\n  - {offset: 1, tone: friendly, channel: email}\n"
        "  - {offset: 7, tone: neutral, channel: sms}\n"
    )
    settings.dunning_policy_path = policy
    _billing_customer(settings, sms_consent=sms_consent)
    assert scan(settings)["drafted"] == 1
    with session_scope(settings) as session:
        item = session.scalars(select(ReviewItem)).one()
        kind, to, body = item.kind, item.draft["to"], item.draft["body"]
    if not sms_consent:  # no consent to texts on record: the step falls back to email
        assert (kind, to) == ("email", "ap@globex.example")
        return
    assert (kind, to) == ("sms", SMS_NUMBER) and "INV-1001" in body and "USD 1,200.00" in body
    assert http.post(f"/v1/review-items/{item.id}/approve", headers=auth(settings, "manager")).status_code == 200
    worker.run_until_idle()
    [sent] = providers.requests
    assert sent.form["To"] == SMS_NUMBER and "USD 1,200.00" in sent.form["Body"]


def test_a_cadence_follows_up_on_the_channel_of_the_first_touch(settings, providers, http, worker):
    from deals import cadences

    post_sms(http, inbound_sms("SMcad1", "Hi, looking for a quote on 12 forklifts"))
    lead = the_lead(settings, SMS_NUMBER)
    worker.run_until_idle()
    item = pending_for(http, settings, lead.id)
    http.post(f"/v1/review-items/{item['id']}/approve", headers=auth(settings, "closer"))
    worker.run_until_idle()
    assert len(providers.requests) == 1
    with session_scope(settings) as session:
        row = session.get(Lead, lead.id)
        row.brief = {**row.brief, "next_action": "nurture"}  # its sequence: a follow-up on day 7
    assert cadences.scan(settings, utcnow().date() + dt.timedelta(days=8))["drafted"] == 1
    with session_scope(settings) as session:
        follow_up = session.scalars(select(ReviewItem).where(ReviewItem.source == "cadence")).one()
        assert (follow_up.kind, follow_up.template, follow_up.draft["to"]) == ("sms", "text_follow_up", SMS_NUMBER)


def test_a_milestone_update_goes_on_the_contacts_preferred_channel_as_an_approved_template(
    settings, providers, http, worker
):
    from crm.consent import record_consent
    from tests.collections.test_deal_flow import SECRET, _deal, _sign

    settings.webhook_secret_esign = SECRET
    manager = auth(settings, "manager")
    deal_id = _deal(settings)
    with session_scope(settings) as session:
        contact = session.scalars(select(Contact)).one()
        contact.phone_e164, contact.preferred_channel = "+" + WA_NUMBER, "whatsapp"
        record_consent(session, contact, "whatsapp", granted=True, source="onboarding form", actor="test")
    http.post(
        f"/v1/deals/{deal_id}/proposals", json={"lines": [{"product": "GTX Pro", "quantity": 1}]}, headers=manager
    )
    worker.run_until_idle()
    assert _sign(http, deal_id).status_code == 200
    assert http.post(f"/v1/deals/{deal_id}/milestones/1/complete", headers=manager).status_code == 200
    with session_scope(settings) as session:
        update_item = session.scalars(select(ReviewItem).where(ReviewItem.source == "client_update")).one()
        assert (update_item.kind, update_item.draft["to"]) == ("whatsapp", "+" + WA_NUMBER)
    # No message from them in 24 hours: only the approved template, its parameters from the records.
    assert http.post(f"/v1/review-items/{update_item.id}/approve", headers=manager).status_code == 200
    worker.run_until_idle()
    sent = [r for r in providers.requests if r.json]
    assert len(sent) == 1 and sent[0].json["template"]["name"] == "order_update"
    params = [p["text"] for p in sent[0].json["template"]["components"][0]["parameters"]]
    assert params == ["Bill", "Kickoff", "Delivery"]


def test_a_contact_with_no_first_name_gets_no_whatsapp_name_template_but_an_email_saying_hello(
    settings, providers, http, worker
):
    from crm.consent import record_consent
    from tests.collections.test_deal_flow import SECRET, _deal, _sign

    settings.webhook_secret_esign = SECRET
    manager = auth(settings, "manager")
    deal_id = _deal(settings)
    with session_scope(settings) as session:
        contact = session.scalars(select(Contact)).one()
        contact.phone_e164, contact.preferred_channel, contact.first_name = "+" + WA_NUMBER, "whatsapp", None
        record_consent(session, contact, "whatsapp", granted=True, source="onboarding form", actor="test")
    assert _sign(http, deal_id).status_code == 200
    assert http.post(f"/v1/deals/{deal_id}/milestones/1/complete", headers=manager).status_code == 200
    with session_scope(settings) as session:
        update_item = session.scalars(select(ReviewItem).where(ReviewItem.source == "client_update")).one()
        # The approved template's first parameter is the first name: never sent as "there" (issue 17).
        assert (update_item.kind, update_item.draft["to"]) == ("email", "bill@initech.example")
        assert update_item.draft["body"].startswith("Hello,\n") and "there" not in update_item.draft["body"]


def test_the_review_app_shows_the_channel_number_length_and_the_conversation(
    settings, providers, live_server, http, worker
):
    from tests.review.test_app import _signed_in

    post_sms(http, inbound_sms("SMui1", "Hi, do you rent scaffolding in Oakland?"))
    worker.run_until_idle()
    at = _signed_in(live_server, settings, "closer", "Casey Jordan")
    at.radio(key="view").set_value("Everything")
    at.run()
    assert not at.exception, at.exception
    assert any("· sms · pending" in s.value for s in at.subheader)
    assert any(m.value.startswith(f"**To:** {SMS_NUMBER}") for m in at.markdown)
    assert any("SMS to the contact record's number" in c.value and "segment" in c.value for c in at.caption)
    thread = next(e for e in at.expander if e.label.startswith("Conversation (1 messages)"))
    assert "SMS granted" in thread.label
    rows = thread.dataframe[0].value
    assert list(rows["channel"]) == ["SMS"] and list(rows[""]) == ["← received"]
    assert "scaffolding" in rows["text"][0]


def test_a_provider_outage_is_retried_once_sent_and_a_refusal_is_send_failed(settings, providers, http, worker):
    import time

    settings.send_retry_base_seconds, settings.send_retry_max_seconds = 0.05, 0.1
    closer = auth(settings, "closer")
    post_sms(http, inbound_sms("SMretry", "Quote for 5 pallets please"))
    post_sms(http, inbound_sms("SMrefuse", "Quote for 9 pallets please", sender="+14155552699"))
    worker.run_until_idle()
    first = pending_for(http, settings, the_lead(settings, SMS_NUMBER).id)
    second = pending_for(http, settings, the_lead(settings, "+14155552699").id)

    providers.statuses.extend([503])  # the provider is down once: retried with backoff, then sent once
    http.post(f"/v1/review-items/{first['id']}/approve", headers=closer)
    worker.run_until_idle()
    assert http.get(f"/v1/review-items/{first['id']}", headers=closer).json()["status"] == "approved"
    time.sleep(0.3)
    worker.run_until_idle()
    final = http.get(f"/v1/review-items/{first['id']}", headers=closer).json()
    assert final["status"] == "sent" and len(providers.requests) == 2

    # The carrier could not deliver it: the status is final, the provider's reason kept, and a manager is told.
    from core.models import Notification
    from tests.factories import user

    user(settings, "manager", "Morgan Manager")
    sid = final["result"]["provider_message_id"]
    callback = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003", "AccountSid": "ACtest"}
    assert post_sms(http, callback).status_code == 200
    assert post_sms(http, {**callback, "MessageStatus": "delivered"}).status_code == 200  # too late to undo it
    with session_scope(settings) as session:
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.provider_message_id == sid)).one()
        assert row.delivery_status == "undelivered" and "30003" in row.last_error
        [told] = session.scalars(select(Notification)).all()
        assert told.title == f"Not delivered: SMS to {SMS_NUMBER}" and "30003" in told.body

    providers.statuses.extend([400])  # a refusal (e.g. an unreachable number): not retried, a person is told
    http.post(f"/v1/review-items/{second['id']}/approve", headers=closer)
    worker.run_until_idle()
    refused = http.get(f"/v1/review-items/{second['id']}", headers=closer).json()
    assert refused["status"] == "send_failed" and "answered 400" in refused["result"]["reason"]
    assert refused["result"]["to"] == "+14155552699" and len(providers.requests) == 3


def test_an_approved_text_waits_for_the_end_of_the_contacts_quiet_hours(settings, providers, http, worker):
    import zoneinfo

    post_whatsapp(http, wa_notification([wa_text("wamid.night", "Quote for 50 chairs?")]))
    lead = the_lead(settings, "+" + WA_NUMBER)
    worker.run_until_idle()
    item = pending_for(http, settings, lead.id)
    local = utcnow().astimezone(zoneinfo.ZoneInfo("Africa/Nairobi"))  # the number's country has one zone
    start, end = local - dt.timedelta(hours=1), local + dt.timedelta(hours=1)
    settings.channel_quiet_hours = f"{start:%H:%M}-{end:%H:%M}"
    assert http.post(f"/v1/review-items/{item['id']}/approve", headers=auth(settings, "closer")).status_code == 200
    worker.run_until_idle()
    assert providers.requests == []
    assert http.get(f"/v1/review-items/{item['id']}", headers=auth(settings, "closer")).json()["status"] == "approved"
    with session_scope(settings) as session:
        from core.models import Job

        waiting = session.scalars(select(Job).where(Job.status == "queued")).all()
        assert any(abs((j.run_after - end.astimezone(dt.UTC)).total_seconds()) < 61 for j in waiting)
