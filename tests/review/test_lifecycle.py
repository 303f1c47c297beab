"""The review item's life owned by review/: a Draft queued once, dispatched by its typed source (never by
the text of its thread id), executed by the one executor, cancelled only through the review package, and
superseded by a newer draft with the same supersede key (one pending draft per subject and purpose)."""

from __future__ import annotations

from sqlalchemy import select

from core.db import session_scope
from core.enums import ItemKind, ItemSource, ItemStatus
from core.models import AuditEvent, Contact, OutboxMessage, ReviewItem
from review import decisions, queue
from review.outbox import outbox_files


def _contact(settings) -> int:
    with session_scope(settings) as session:
        contact = Contact(email="dana@client.example", first_name="Dana")
        session.add(contact)
        session.flush()
        return contact.id


def _queue_update(settings, contact_id: int, *, thread_id: str, key: str) -> int:
    with session_scope(settings) as session:
        item = queue.queue_drafted(
            session,
            actor="test",
            template=None,
            slots={"subject": "Milestone done", "body": "Design is complete."},
            source=ItemSource.CLIENT_UPDATE,
            kind=ItemKind.EMAIL,
            thread_id=thread_id,
            dedupe_key=key,
            contact_id=contact_id,
            to="shown-only@elsewhere.example",
            brief={"summary": "Status update", "next_action": "client_update"},
        )
        return item.id


def test_a_draft_is_queued_once_per_key_and_records_its_source(settings):
    contact_id = _contact(settings)
    first = _queue_update(settings, contact_id, thread_id="update-1", key="update-1-design")
    again = _queue_update(settings, contact_id, thread_id="update-1", key="update-1-design")
    assert first == again
    with session_scope(settings) as session:
        item = session.get(ReviewItem, first)
        assert (item.source, item.kind, item.status) == ("client_update", "email", "pending")
        assert item.draft["subject"] == "Milestone done" and item.draft["facts_used"]["body"] == "Design is complete."
        created = session.scalars(
            select(AuditEvent).where(AuditEvent.entity_id == str(first), AuditEvent.action == "review_item.created")
        ).all()
        assert len(created) == 1 and created[0].after["source"] == "client_update"


def test_approved_items_are_dispatched_by_source_not_by_the_thread_ids_text(settings, worker):
    # A thread id that reads like a lead graph's: dispatch by text would resume a lead thread that does not exist.
    contact_id = _contact(settings)
    item_id = _queue_update(settings, contact_id, thread_id="lead-not-a-graph", key="update-9-kickoff")
    with session_scope(settings) as session:
        decisions.approve(session, item_id, actor="Casey", max_discount_pct=settings.max_discount_pct)
    worker.run_until_idle()
    with session_scope(settings) as session:
        item = session.get(ReviewItem, item_id)
        assert item.status == ItemStatus.SENT and item.result["to"] == "dana@client.example"  # the record's address
        sent = session.scalars(select(OutboxMessage).where(OutboxMessage.review_item_id == item_id)).all()
        assert len(sent) == 1
    assert len(outbox_files(settings)) == 1
    worker.run_until_idle()  # nothing left to do: nothing is sent twice
    assert len(outbox_files(settings)) == 1


def test_cancel_pending_touches_only_pending_items_and_audits_each(settings):
    contact_id = _contact(settings)
    pending = _queue_update(settings, contact_id, thread_id="update-2", key="update-2-a")
    approved = _queue_update(settings, contact_id, thread_id="update-2", key="update-2-b")
    with session_scope(settings) as session:
        decisions.approve(session, approved, actor="Casey", max_discount_pct=settings.max_discount_pct)
    with session_scope(settings) as session:
        cancelled = queue.cancel_pending(session, reason="invoice paid", actor="billing", item_ids=[pending, approved])
    assert cancelled == 1
    with session_scope(settings) as session:
        assert session.get(ReviewItem, pending).status == "cancelled"
        assert session.get(ReviewItem, pending).result == {"reason": "invoice paid"}
        assert session.get(ReviewItem, approved).status == "approved"  # an approval is never cancelled behind it
        audits = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "review_item.cancelled", AuditEvent.actor == "billing")
        ).all()
        assert [a.entity_id for a in audits] == [str(pending)]
    with session_scope(settings) as session:  # a second call finds nothing pending
        assert queue.cancel_pending(session, reason="again", actor="billing", item_ids=[pending]) == 0


def _queue_keyed(settings, contact_id: int, key: str, supersede_key: str | None, **fields) -> int:
    with session_scope(settings) as session:
        return queue.enqueue(
            session,
            queue.Draft(
                source=ItemSource.CLIENT_UPDATE,
                kind=ItemKind.EMAIL,
                thread_id="update-7",
                dedupe_key=key,
                supersede_key=supersede_key,
                contact_id=contact_id,
                subject="Update",
                body=key,
                **fields,
            ),
            actor="agent:test",
        ).id


def test_a_draft_supersedes_the_other_pending_items_with_its_key_only(settings):
    contact_id = _contact(settings)
    approved = _queue_keyed(settings, contact_id, "k-approved", "contact:1:update")
    with session_scope(settings) as session:
        decisions.approve(session, approved, actor="Casey", max_discount_pct=settings.max_discount_pct)
    older = _queue_keyed(settings, contact_id, "k-older", "contact:1:update")
    other_key = _queue_keyed(settings, contact_id, "k-other", "contact:1:other")
    no_key = _queue_keyed(settings, contact_id, "k-none", None)
    newer = _queue_keyed(settings, contact_id, "k-newer", "contact:1:update")
    assert _queue_keyed(settings, contact_id, "k-newer", "contact:1:update") == newer  # queued once: no-op
    with session_scope(settings) as session:
        status = {i: session.get(ReviewItem, i).status for i in (approved, older, other_key, no_key, newer)}
        assert status == {
            approved: "approved",  # an approval is never withdrawn behind the reviewer's back
            older: "cancelled",
            other_key: "pending",
            no_key: "pending",
            newer: "pending",
        }
        assert session.get(ReviewItem, older).result == {"reason": f"superseded by #{newer}"}
        assert session.get(ReviewItem, newer).supersede_key == "contact:1:update"
        audits = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "review_item.cancelled").order_by(AuditEvent.id)
        ).all()
        assert [(a.entity_id, a.actor, a.after["reason"]) for a in audits] == [
            (str(older), "agent:test", f"superseded by #{newer}")
        ]


def test_a_superseding_draft_names_itself_in_the_reason(settings):
    contact_id = _contact(settings)
    older = _queue_keyed(settings, contact_id, "k-1", "invoice:9:reminder")
    newer = _queue_keyed(settings, contact_id, "k-2", "invoice:9:reminder", supersede_label="the +7 reminder")
    with session_scope(settings) as session:
        assert session.get(ReviewItem, older).result == {"reason": f"superseded by the +7 reminder (#{newer})"}
