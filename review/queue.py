"""The review queue's writes: a `Draft` becomes a review item (once), an approval is read back from the
records, an executed item reaches its final state, and pending items are cancelled when the world moved
on. Only this package changes a review item's status."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from core import audit
from core.db import insert_ignore
from core.enums import (
    APPROVED_STATES,
    PHONE_KINDS,
    DecisionAction,
    ItemKind,
    ItemSource,
    ItemStatus,
    LeadStatus,
    NotificationKind,
    ReviewQueue,
)
from core.errors import Conflict
from core.models import Activity, Contact, Decision, ReviewItem, utcnow
from core.notifications import notify
from crm.consent import may_message
from crm.records import set_lead_status
from review import templates
from review.segments import text_stats


class NotApproved(Conflict):
    """Raised when an execute step finds no approval record for its review item."""


class RecipientOptedOut(Conflict):
    """The contact withdrew consent after the draft was approved: the action is cancelled, not retried."""


class Draft(BaseModel):
    """One drafted outbound action waiting for a person: what the graphs' interrupts carry and what the
    daily scans queue. Recipients are references to records (`contact_id`); `to` is only shown."""

    source: ItemSource
    kind: ItemKind
    thread_id: str  # the graph thread, or the domain record's thread ("dunning-12", "cadence-7")
    # Unique per item: the LangGraph Interrupt.id for graph items (filled in when the interrupt is queued),
    # a step key for the scans ("dunning-12-+7"), so a re-run never queues the same step twice.
    dedupe_key: str | None = None
    # One pending draft per subject and purpose ("lead:12:follow_up", "invoice:5:reminder"): queueing this
    # draft cancels any other pending item with the same key. None: nothing is superseded.
    supersede_key: str | None = None
    # How the cancelled items name this one ("the +7 reminder"): "superseded by the +7 reminder (#42)".
    supersede_label: str | None = None
    lead_id: int | None = None
    contact_id: int | None = None
    to: str | None = None
    subject: str = ""
    body: str = ""
    template: str | None = None
    template_version: str | None = None  # the approved version's label, or "built-in"
    facts_used: dict[str, Any] = Field(default_factory=dict)
    attachments: list[dict[str, Any]] = Field(default_factory=list)
    guard_flags: list[str] = Field(default_factory=list)
    # Record references the executor re-reads (invoice_id, milestone_id, amount, step ...).
    refs: dict[str, Any] = Field(default_factory=dict)
    brief: dict[str, Any] = Field(default_factory=dict)
    queue: ReviewQueue = ReviewQueue.MAIN
    sla_due_at: dt.datetime | None = None
    assignee: str | None = None
    redraft_of: int | None = None
    redraft_reason: str | None = None
    # A redraft made from a closer's instruction (respond): the instruction, what the agent changed and what it
    # could not follow, in words the closer reads beside the new draft.
    instruction: str | None = None
    changes: list[str] = Field(default_factory=list)
    not_applied: list[str] = Field(default_factory=list)

    def content(self) -> dict[str, Any]:
        """What the review item's `draft` column holds (and the review app shows)."""
        return {
            "kind": self.kind.value,
            "template": self.template,
            "template_version": self.template_version,
            "to": self.to,
            "subject": self.subject,
            "body": self.body,
            "facts_used": self.facts_used,
            "guard_flags": self.guard_flags,
            "redraft_of": self.redraft_of,
            "redraft_reason": self.redraft_reason,
            **(
                {"instruction": self.instruction, "changes": self.changes, "not_applied": self.not_applied}
                if self.instruction
                else {}
            ),
            **({"attachments": self.attachments} if self.attachments else {}),
            **(self.text_facts() if self.kind in PHONE_KINDS else {}),
            **self.refs,
        }

    def text_facts(self) -> dict[str, Any]:
        """What the closer sees beside an SMS or WhatsApp text: its channel, length and SMS segments."""
        stats = text_stats(self.body)
        return {
            "channel": self.kind.value,
            "characters": stats.characters,
            "encoding": stats.encoding,
            "segments": stats.segments,
        }


def compose(session: Session, *, template: str, slots: dict[str, Any], **fields: Any) -> tuple[Draft, dict[str, str]]:
    """A draft rendered from the approved version of `template` (else the built-in text), recording the
    version and the facts it used; also returns the template's parts for the grounding guard."""
    parts, version = templates.active(session, template)
    rendered = templates.render_parts(parts, slots)
    draft = Draft(
        template=template,
        template_version=version,
        subject=rendered["subject"],
        body=rendered["body"],
        facts_used=fields.pop("facts_used", None) or {k: str(v) for k, v in slots.items()},
        **fields,
    )
    return draft, parts


def queue_drafted(
    session: Session,
    *,
    actor: str,
    template: str | None,
    slots: dict[str, Any],
    sla_hours: float = 24,
    **fields: Any,
) -> ReviewItem:
    """Compose a draft from the approved template (or from the slots' own subject and body when there is no
    template, e.g. an invoice to issue) and queue it once: what the scans and the deal flow call."""
    fields.setdefault("sla_due_at", utcnow() + dt.timedelta(hours=sla_hours))
    if template is None:
        facts = {k: str(v) for k, v in slots.items()}
        draft = Draft(subject=slots["subject"], body=slots["body"], facts_used=facts, **fields)
    else:
        draft, _ = compose(session, template=template, slots=slots, **fields)
    return enqueue(session, draft, actor=actor)


def enqueue(session: Session, draft: Draft, *, actor: str) -> ReviewItem:
    """Create the review item for a draft, once (keyed by its dedupe key). A draft with a supersede key
    cancels the other pending items with that key in the same transaction, each audited with the reason."""
    return enqueue_once(session, draft, actor=actor)[0]


def enqueue_once(session: Session, draft: Draft, *, actor: str, lead_status: bool = True) -> tuple[ReviewItem, bool]:
    """enqueue, returning (item, created). lead_status=False leaves moving the draft's lead to in_review to the
    caller (agents.runtime: with the lead's brief and score, one UPDATE of the lead row instead of two)."""
    item_id, created = queue_item(session, draft, actor=actor, lead_status=lead_status)
    return session.get(ReviewItem, item_id), created


_ITEMS = ReviewItem.__table__
_FIND_ITEM = select(_ITEMS.c.id).where(_ITEMS.c.dedupe_key == bindparam("dedupe_key"))


def queue_item(session: Session, draft: Draft, *, actor: str, lead_status: bool = True) -> tuple[int, bool]:
    """enqueue_once without loading the item back: (its id, created). Queued once by its dedupe key: the insert
    does nothing when the key is taken (a replay, or a concurrent insert, which PostgreSQL makes it wait for until
    the winner commits) and the existing item's id is returned; any other integrity error is raised as it is."""
    if not draft.dedupe_key:
        raise ValueError("a draft needs its dedupe_key before it is queued")
    if draft.kind in PHONE_KINDS:
        # No draft on a channel the contact may not get: no number, no consent, or an opt-out (forever).
        refused = may_message(session, session.get(Contact, draft.contact_id) if draft.contact_id else None, draft.kind)
        if refused:
            raise RecipientOptedOut(f"no {draft.kind} draft: {refused}")
    values = {
        "source": draft.source,
        "kind": draft.kind,
        "thread_id": draft.thread_id,
        "dedupe_key": draft.dedupe_key,
        "supersede_key": draft.supersede_key,
        "lead_id": draft.lead_id,
        "contact_id": draft.contact_id,
        "template": draft.template,
        "brief": draft.brief,
        "draft": draft.content(),
        "queue": draft.queue,
        "sla_due_at": draft.sla_due_at,
        "assignee": draft.assignee,
        "guard_flags": list(draft.guard_flags),
        "grade": (str(draft.brief.get("grade") or "")[:1] or None),
        "redraft_of": draft.redraft_of,
    }
    inserted = insert_ignore(session, ReviewItem, values)  # flushes the unit of work's pending changes first
    item_id = inserted.id if inserted is not None else None
    if item_id is None:
        item_id = session.connection().execute(_FIND_ITEM, {"dedupe_key": draft.dedupe_key}).scalar()
        if item_id is None:  # pragma: no cover - the key's row was deleted in between
            raise LookupError(f"review item {draft.dedupe_key} neither inserted nor found")
        return item_id, False
    superseded = _older_pending(session, item_id, draft.supersede_key) if draft.supersede_key else []
    audit.record(
        session,
        actor=actor,
        action="review_item.created",
        entity_type="review_item",
        entity_id=item_id,
        after={
            "kind": draft.kind,
            "source": draft.source,
            "status": ItemStatus.PENDING,
            "lead_id": draft.lead_id,
            **({"supersede_key": draft.supersede_key, "supersedes": superseded} if draft.supersede_key else {}),
        },
    )
    if superseded:
        by = f"{draft.supersede_label} (#{item_id})" if draft.supersede_label else f"#{item_id}"
        cancel_pending(session, reason=f"superseded by {by}", actor=actor, item_ids=superseded)
    if draft.lead_id is not None and lead_status:
        set_lead_status(session, draft.lead_id, LeadStatus.IN_REVIEW, actor=actor)
    _tell_assignee_of_hot_lead(session, item_id, values)
    return item_id, True


def _tell_assignee_of_hot_lead(session: Session, item_id: int, item: dict[str, Any]) -> None:
    """A new A lead's first draft, routed to someone: they hear it now, not when the SLA breaches. Once per
    item, since only the insert that created the item gets here (a graph re-run finds it and returns above).
    `item`: the values the item was inserted with."""
    if (
        item["source"] != ItemSource.LEAD
        or item["grade"] != "A"
        or item["assignee"] is None
        or item["redraft_of"] is not None
    ):
        return
    brief, draft = item["brief"] or {}, item["draft"] or {}
    company = str(brief.get("company") or draft.get("facts_used", {}).get("company") or "").strip()
    due = f" (SLA {item['sla_due_at']:%H:%M} UTC)" if item["sla_due_at"] is not None else ""
    notify(
        session,
        NotificationKind.NEW_A_LEAD,
        f"New A lead for you: review item #{item_id}" + (f" · {company}" if company else "") + due,
        body=str(brief.get("next_action") or "").replace("_", " "),
        severity="critical",
        roles=(),
        names=[item["assignee"]],
        entity=("review_item", item_id),
        dedupe_key=f"new_a_lead:{item_id}",
    )


def _older_pending(session: Session, item_id: int, supersede_key: str) -> list[int]:
    """The other pending items with the new item's supersede key: the ones it replaces."""
    return list(
        session.scalars(
            select(ReviewItem.id)
            .where(
                ReviewItem.supersede_key == supersede_key,
                ReviewItem.status == ItemStatus.PENDING,
                ReviewItem.id != item_id,
            )
            .order_by(ReviewItem.id)
        ).all()
    )


def approved_action(session: Session, review_item_id: int) -> tuple[ReviewItem, Decision]:
    """The item and its approve decision, read from the database (never from graph state)."""
    item = session.get(ReviewItem, review_item_id)
    decision = session.scalar(select(Decision).where(Decision.review_item_id == review_item_id))
    if (
        item is None
        or decision is None
        or decision.action != DecisionAction.APPROVE
        or item.status not in APPROVED_STATES
    ):
        raise NotApproved(f"review item {review_item_id} has no approval record; nothing is executed")
    return item, decision


def mark_executed(
    session: Session,
    item: ReviewItem,
    *,
    status: ItemStatus,
    result: dict[str, Any],
    actor: str,
    also_from: tuple[ItemStatus, ...] = (),
) -> bool:
    """Move an approved item (or one in `also_from`) to its final state once; False if it was already there."""
    before = item.status
    done = session.execute(
        update(ReviewItem)
        .where(ReviewItem.id == item.id, ReviewItem.status.in_((ItemStatus.APPROVED, *also_from)))
        .values(status=status, executed_at=utcnow(), result=result)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        return False
    session.refresh(item)
    audit.record(
        session,
        actor=actor,
        action=f"review_item.{status}",
        entity_type="review_item",
        entity_id=item.id,
        before={"status": before},
        after={"status": status, **result},
    )
    if item.lead_id is not None and status in (ItemStatus.SENT, ItemStatus.DONE):
        set_lead_status(session, item.lead_id, LeadStatus.CONTACTED, actor=actor)
    return True


def cancel_pending(
    session: Session,
    *,
    reason: str,
    actor: str,
    lead_id: int | None = None,
    item_ids: list[int] | None = None,
    sources: tuple[ItemSource, ...] | None = None,
    kinds: tuple[ItemKind, ...] | None = None,
) -> int:
    """Cancel the pending items that match (the world changed: the lead replied, the invoice was paid),
    each once and audited; returns how many were cancelled."""
    if lead_id is None and not item_ids:
        return 0
    conditions = [ReviewItem.status == ItemStatus.PENDING]
    if lead_id is not None:
        conditions.append(ReviewItem.lead_id == lead_id)
    if item_ids is not None:
        conditions.append(ReviewItem.id.in_(item_ids))
    if sources:
        conditions.append(ReviewItem.source.in_(sources))
    if kinds:
        conditions.append(ReviewItem.kind.in_(kinds))
    cancelled = 0
    for item_id in session.scalars(select(ReviewItem.id).where(*conditions).order_by(ReviewItem.id)).all():
        cancelled += session.execute(
            update(ReviewItem)
            .where(ReviewItem.id == item_id, ReviewItem.status == ItemStatus.PENDING)
            .values(status=ItemStatus.CANCELLED, result={"reason": reason}, executed_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
        audit.record(
            session,
            actor=actor,
            action="review_item.cancelled",
            entity_type="review_item",
            entity_id=item_id,
            before={"status": ItemStatus.PENDING},
            after={"status": ItemStatus.CANCELLED, "reason": reason},
        )
    return cancelled


def log_activity(session: Session, item: ReviewItem, *, kind: str, summary: str) -> Activity:
    """Record an activity for an executed review item, once per item."""
    existing = session.scalar(select(Activity).where(Activity.review_item_id == item.id))
    if existing is not None:
        return existing
    activity = Activity(
        kind=kind, summary=summary, lead_id=item.lead_id, contact_id=item.contact_id, review_item_id=item.id
    )
    session.add(activity)
    session.flush()
    return activity
