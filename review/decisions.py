"""Review decisions: record who decided what (with the edit diff), once, and resume the thread."""

from __future__ import annotations

import datetime as dt
import difflib
from typing import Any

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from core import audit, jobs, schemas
from core.db import insert_once
from core.enums import (
    MESSAGE_KINDS,
    DecisionAction,
    ItemSource,
    ItemStatus,
    JobKind,
    LeadStatus,
    NotificationKind,
    OutboxStatus,
    ReviewQueue,
)
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.models import (
    Activity,
    AuditEvent,
    Contact,
    Deal,
    Decision,
    Invoice,
    Lead,
    MessageTemplate,
    Milestone,
    OutboxMessage,
    Proposal,
    ReviewItem,
    utcnow,
)
from core.notifications import notify
from core.settings import Settings
from core.users import assignable_names
from crm.records import lead_facts, set_lead_status
from review import context, guard, policy
from review.policy import Who
from review.templates import BUILT_IN, template_words
from review.texts.lead import TEMPLATES as REDRAFT_TEMPLATES

PAST_TENSE = {DecisionAction.APPROVE: ItemStatus.APPROVED, DecisionAction.REJECT: ItemStatus.REJECTED}
STATUSES = tuple(ItemStatus)


GRADE_ORDER = {"A": 0, "B": 1, "C": 2, "D": 3}
VIEWS = ("my", "team", "exception")


def sla_state(item: ReviewItem, settings: Settings, now: dt.datetime) -> str:
    """breached | due_soon | on_track | none. Decided items are judged at their decision time."""
    if item.sla_due_at is None:
        return "none"
    at = now if item.status == ItemStatus.PENDING or item.decided_at is None else item.decided_at
    if at >= item.sla_due_at:
        return "breached"
    if item.status == ItemStatus.PENDING and item.sla_due_at - at <= dt.timedelta(
        minutes=settings.sla_due_soon_minutes
    ):
        return "due_soon"
    return "on_track"


def is_low_risk(item: ReviewItem) -> bool:
    """Bulk approval is for the plain cases only: nothing flagged, nothing exceptional, not a decline."""
    return (
        item.status == ItemStatus.PENDING
        and item.queue == ReviewQueue.MAIN
        and not item.guard_flags
        and item.grade in ("A", "B", "C")
    )


def present(item: ReviewItem, settings: Settings, now: dt.datetime | None = None) -> schemas.ReviewItem:
    now = now or utcnow()
    out = schemas.ReviewItem.model_validate(item)
    out.sla_state = sla_state(item, settings, now)  # type: ignore[assignment]
    out.low_risk = is_low_risk(item)
    if item.status == ItemStatus.APPROVED and item.decided_at is not None:
        until = item.decided_at + dt.timedelta(seconds=settings.undo_seconds)
        out.undo_until = until if until > now else None
    out.flags_in_words = context.flags_in_words(item)
    out.requires_acknowledgement = context.requires_acknowledgement(item)
    return out


# The queue's total is counted up to this many matches; past it the page says "1,000+" (total_capped) instead of
# counting 100,000 rows on every page.
TOTAL_CAP = 1000


def list_items(
    session: Session,
    settings: Settings,
    *,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
    queue: str | None = None,
    view: str | None = None,
    me: str | None = None,
    kind: str | None = None,
    grade: str | None = None,
    sla: str | None = None,
    assignee: str | None = None,
    snoozed: bool = False,
    escalated: bool | None = None,
    now: dt.datetime | None = None,
) -> tuple[list[ReviewItem], int, bool]:
    """The queue, most urgent first: nearest SLA deadline (breaches first; no deadline last), then better grade,
    then oldest. Returns the page, the total and whether the total was capped (more than TOTAL_CAP matches past
    the page: the total is then a lower bound).

    view: my (assigned to `me`), team (main queue), exception. Snoozed items are hidden until their
    time comes, unless snoozed=True (then only snoozed items are listed). escalated: only items the SLA watch
    took back from someone (True) or only the others (False).

    The page is read in index order ((status, queue | assignee, sla_due_at) indexes): dated items first, then the
    undated ones, ids first and rows second, so a page costs the same with 1,000 or 100,000 pending items.
    """
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", details={"status": status})
    if view is not None and view not in VIEWS:
        raise InvalidInput(f"view must be one of {', '.join(VIEWS)}", details={"view": view})
    now = now or utcnow()
    conditions = []
    if status:
        conditions.append(ReviewItem.status == status)
    if queue:
        conditions.append(ReviewItem.queue == queue)
    if view == "my":
        if not me:
            raise InvalidInput("view=my needs a signed-in person", details={"view": view})
        conditions.append(ReviewItem.assignee == me)
    elif view == "team":
        conditions.append(ReviewItem.queue == ReviewQueue.MAIN)
    elif view == "exception":
        conditions.append(ReviewItem.queue == ReviewQueue.EXCEPTION)
    if kind:
        conditions.append(ReviewItem.kind == kind)
    if grade:
        conditions.append(ReviewItem.grade == grade)
    if assignee == "unassigned":
        conditions.append(ReviewItem.assignee.is_(None))
    elif assignee:
        conditions.append(ReviewItem.assignee == assignee)
    if escalated is True:
        conditions.append(ReviewItem.escalated_at.is_not(None))
    elif escalated is False:
        conditions.append(ReviewItem.escalated_at.is_(None))
    soon = now + dt.timedelta(minutes=settings.sla_due_soon_minutes)
    if sla == "breached":
        conditions.append(ReviewItem.sla_due_at <= now)
    elif sla == "due_soon":
        conditions += [ReviewItem.sla_due_at > now, ReviewItem.sla_due_at <= soon]
    elif sla == "on_track":
        conditions.append(ReviewItem.sla_due_at > soon)
    elif sla == "none":
        conditions.append(ReviewItem.sla_due_at.is_(None))
    if snoozed:
        conditions.append(ReviewItem.snoozed_until > now)
    else:
        conditions.append(or_(ReviewItem.snoozed_until.is_(None), ReviewItem.snoozed_until <= now))
    grade_rank = case(GRADE_ORDER, value=ReviewItem.grade, else_=4)
    tail = (grade_rank, ReviewItem.created_at, ReviewItem.id)

    def ids(extra: Any, order: tuple, count: int, skip: int) -> list[int]:
        stmt = select(ReviewItem.id).where(*conditions, extra).order_by(*order).limit(count).offset(skip)
        return list(session.scalars(stmt).all())

    # Two index-ordered reads instead of one "deadline IS NULL" sort key, which no index serves (NULLs sort first
    # on SQLite and last on PostgreSQL): the dated items, then, when the page reaches past them, the undated.
    page = ids(ReviewItem.sla_due_at.is_not(None), (ReviewItem.sla_due_at, *tail), limit, offset)
    if len(page) < limit and sla in (None, "none"):
        if page:
            skip = 0
        else:  # the page starts past every dated item: how many were there?
            dated = select(func.count(ReviewItem.id)).where(*conditions, ReviewItem.sla_due_at.is_not(None))
            skip = max(0, offset - (session.scalar(dated) or 0))
        page += ids(ReviewItem.sla_due_at.is_(None), tail, limit - len(page), skip)
    rows = {
        item.id: item
        for item in session.scalars(
            select(ReviewItem).options(selectinload(ReviewItem.decision)).where(ReviewItem.id.in_(page))
        )
    }
    items = [rows[i] for i in page if i in rows]
    matching = select(ReviewItem.id).where(*conditions).limit(TOTAL_CAP + 1).subquery()
    counted = session.scalar(select(func.count()).select_from(matching)) or 0
    if counted <= TOTAL_CAP:
        return items, counted, False
    return items, max(TOTAL_CAP, offset + len(items)), True


def get_item(session: Session, item_id: int) -> ReviewItem:
    item = session.get(ReviewItem, item_id, options=[selectinload(ReviewItem.decision)])
    if item is None:
        raise NotFound(f"review item {item_id} not found")
    return item


def _edit_diff(old: str, new: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"draft/{name}", f"final/{name}"
        )
    )


def _claim(session: Session, item: ReviewItem, new_status: ItemStatus) -> None:
    """Compare-and-set pending -> new_status; exactly one of any number of racing decisions wins."""
    won = session.execute(
        update(ReviewItem)
        .where(ReviewItem.id == item.id, ReviewItem.status == ItemStatus.PENDING)
        .values(status=new_status, decided_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        session.refresh(item)
        raise Conflict(f"review item {item.id} is already {item.status}; a decision was recorded before this one")
    session.refresh(item)


def _resume_key(item_id: int) -> str:
    return f"{JobKind.REVIEW_RESUME}:{item_id}"


def resume_job_key(item_id: int) -> str:
    """The dedupe key of the job that resumes the item's thread with its decision."""
    return _resume_key(item_id)


def _record(
    session: Session,
    item: ReviewItem,
    decision: Decision,
    before_status: str,
    run_after: dt.datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> ReviewItem:
    decision, created = insert_once(session, decision, select(Decision).where(Decision.review_item_id == item.id))
    if not created:
        raise Conflict(f"review item {item.id} already has a decision")
    after = {"status": item.status, "edited": decision.edited, "reason": decision.reason, "decision_id": decision.id}
    if decision.redraft:
        after.update(redraft=True, template=decision.redraft_template)
    after.update(extra or {})
    audit.record(
        session,
        actor=decision.actor,
        action=f"review_item.{PAST_TENSE[decision.action]}",
        entity_type="review_item",
        entity_id=item.id,
        before={"status": before_status},
        after=after,
    )
    # The resume job is what sends: an approval's job waits out the undo window first.
    jobs.enqueue(
        session,
        JobKind.REVIEW_RESUME,
        {"review_item_id": item.id},
        dedupe_key=_resume_key(item.id),
        run_after=run_after,
    )
    session.refresh(item)
    return item


def _pending(item: ReviewItem, verb: str = "decide") -> None:
    if item.status != ItemStatus.PENDING:
        raise Conflict(f"review item {item.id} is already {item.status}; cannot {verb} it")


# What a customer reads: the guard checks these items' final subject and body at approval.
GUARDED_KINDS = MESSAGE_KINDS  # email, SMS, WhatsApp
# Draft content that is not a record: the text itself, what the app shows, the model's own words, a reason.
NOT_RECORDS = {
    "channel",
    "characters",
    "encoding",
    "segments",
    "subject",
    "body",
    "guard_flags",
    "redraft_reason",
    "kind",
    "template",
    "template_version",
    "as_drafted",
    "edited_by",
    "changes",
    "not_applied",
    "instruction",
}


def as_drafted(item: ReviewItem) -> dict[str, str]:
    """The subject and body as the agent drafted them. After an undo the draft shows the closer's edit and keeps
    the agent's text here: the edit is diffed and guarded against it, never grounded by itself."""
    draft = item.draft or {}
    original = draft.get("as_drafted") or draft
    return {"subject": original.get("subject", ""), "body": original.get("body", "")}


UNTRUSTED_FACTS = {"opening", "summary"}  # model-written slots: never grounds for anything


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list | tuple):
        return [s for value in node for s in _strings(value)]
    return [] if node is None or isinstance(node, bool) else [str(node)]


def _template_parts(session: Session, item: ReviewItem) -> dict[str, str]:
    """The template version the draft was rendered from (its approved text, else the built-in one)."""
    key, version = item.template, str(item.draft.get("template_version") or "")
    if not key:
        return {}
    if version.startswith("v") and version[1:].isdigit():
        row = session.scalar(
            select(MessageTemplate).where(MessageTemplate.key == key, MessageTemplate.version == int(version[1:]))
        )
        if row is not None:
            return {"subject": row.subject, "body": row.body}
    return dict(BUILT_IN.get(key, {}))


def grounding(session: Session, item: ReviewItem, *, with_draft: bool = True) -> guard.Grounding:
    """What the item's final text may say without a reviewer vouching for it: the draft as drafted (its own
    flags were checked when it was drafted), the facts it used, the template's own words and the records it
    references (lead, contact and account, deal, proposal, invoice, milestone). The lead's own message never
    grounds anything, nor does a model-written line."""
    draft = item.draft or {}
    texts: list[str] = list(as_drafted(item).values()) if with_draft else []
    facts = draft.get("facts_used") or {}
    texts += _strings({k: v for k, v in facts.items() if k not in UNTRUSTED_FACTS})
    texts += _strings({k: v for k, v in draft.items() if k not in NOT_RECORDS and k != "facts_used"})
    texts += template_words(_template_parts(session, item))
    if item.lead_id is not None:
        known = lead_facts(session, item.lead_id)
        known["lead"] = {k: v for k, v in known["lead"].items() if k not in ("message", "custom")}
        texts += _strings(known)
    contact = session.get(Contact, item.contact_id) if item.contact_id is not None else None
    if contact is not None:
        texts += _strings([contact.first_name, contact.last_name, contact.email, contact.phone, contact.title])
        if contact.account is not None:
            account = contact.account
            texts += _strings([account.name, account.domain, account.industry, account.country])
    refs = {**draft, **(item.brief or {})}
    for attachment in draft.get("attachments") or []:
        refs.setdefault("proposal_id", attachment.get("proposal_id"))
    if (deal := _get(session, Deal, refs.get("deal_id"))) is not None:
        texts += _strings([deal.name, deal.amount, deal.currency, deal.expected_close, deal.owner, deal.next_step])
    if (proposal := _get(session, Proposal, refs.get("proposal_id"))) is not None:
        texts += _strings([proposal.number, proposal.lines, proposal.subtotal, proposal.total, proposal.terms])
        texts += [f"{proposal.currency} {proposal.total}", str(proposal.valid_until), f"{proposal.discount_pct}%"]
    if (invoice := _get(session, Invoice, refs.get("invoice_id"))) is not None:
        texts += _strings([invoice.number, invoice.payment_link, invoice.issued_on, invoice.due_on])
        texts += [f"{invoice.currency} {invoice.amount}"]
    if (milestone := _get(session, Milestone, refs.get("milestone_id"))) is not None:
        texts += _strings([milestone.name, milestone.amount])
    return guard.Grounding(texts)


def _get(session: Session, model: type, key: Any) -> Any:
    try:
        return session.get(model, int(key)) if key is not None else None
    except (TypeError, ValueError):
        return None


def _pct(value: Any) -> str:
    return format(value, "f") if value is not None else "?"


def check_final_text(
    session: Session,
    item: ReviewItem,
    final: dict[str, str],
    *,
    max_discount_pct: float,
    acknowledged: list[str] | None = None,
) -> list[str]:
    """The guard over the text that will leave: a discount above the cap is refused (422, naming the field);
    every fact no record supports must be named in `acknowledged` (409 listing them). Returns the facts the
    reviewer vouched for."""
    if item.kind not in GUARDED_KINDS:
        return []
    for field, text in final.items():
        over = guard.discounts_over_cap(text, max_discount_pct)
        if over:
            said = ", ".join(f"{f.text!r} ({_pct(f.percent)} %)" for f in over)
            raise InvalidInput(
                f"{field}: {said} is above the {max_discount_pct:g} % discount cap (REVLOOP_MAX_DISCOUNT_PCT); "
                "a discount above the cap cannot be sent, whoever approves it",
                details={"field": field, "discounts": [f.text for f in over], "max_discount_pct": max_discount_pct},
            )
    drafted = as_drafted(item)
    edited = {field: text for field, text in final.items() if text != drafted.get(field)}
    if not edited:
        return []  # as drafted: checked when it was drafted (its flags are acknowledged separately)
    known = grounding(session, item)
    found = [(field, fact) for field, text in edited.items() for fact in guard.unsupported(text, known)]
    unique: dict[str, tuple[str, guard.Fact]] = {}
    for field, fact in found:
        unique.setdefault(fact.text.lower(), (field, fact))
    vouched = [f for _, f in unique.values() if any(guard.same_fact(f, said) for said in acknowledged or [])]
    missing = [(field, f) for field, f in unique.values() if f not in vouched]
    if missing:
        raise Conflict(
            f"review item {item.id}: the final text says things no record or the approved template supports: "
            + ", ".join(repr(f.text) for _, f in missing)
            + "; check each one, then approve with acknowledge_facts naming them",
            details={
                "unsupported_facts": [f.text for _, f in unique.values()],
                "not_acknowledged": [f.text for _, f in missing],
                "facts": [{"fact": f.text, "kind": f.kind, "field": field} for field, f in unique.values()],
            },
        )
    return [f.text for f in vouched]


def approve(
    session: Session,
    item_id: int,
    *,
    actor: str,
    subject: str | None = None,
    body: str | None = None,
    acknowledge_flags: bool = False,
    acknowledge_facts: list[str] | None = None,
    max_discount_pct: float,
    undo_seconds: int = 0,
    who: Who | None = None,
) -> ReviewItem:
    """Approve the draft, or the reviewer's edit of it. The final text is guarded: a discount above the cap is
    refused; facts the edit adds that no record supports must each be named in `acknowledge_facts`; draft-time
    guard flags need `acknowledge_flags`. What was acknowledged is audited with the decision."""
    item = get_item(session, item_id)
    if item.status != ItemStatus.PENDING:
        raise Conflict(f"review item {item_id} is already {item.status}; nothing was changed")
    if who is not None:
        policy.check_may_decide(item, who)
    flags = context.acknowledgement_flags(item)
    if flags and not acknowledge_flags:
        # An injection-flagged lead or a draft with guard flags is never approved in one click: the closer reads
        # the flags (in words) and acknowledges them.
        said = []
        if item.guard_flags:
            said.append(f"has grounding flags ({'; '.join(item.guard_flags)})")
        if context.injection_codes(item):
            said.append("comes from a lead whose text the injection screen flagged")
        raise Conflict(
            f"review item {item_id} {' and '.join(said)}: "
            + " ".join(f.words for f in flags)
            + " Check the draft, then approve with acknowledge_flags=true.",
            details={"guard_flags": item.guard_flags, "flags": [f.model_dump() for f in flags]},
        )
    draft_subject, draft_body = as_drafted(item).values()
    # What the closer sees: the draft, or their own edit restored by an undo.
    final_subject = subject if subject is not None else item.draft.get("subject", "")
    final_body = body if body is not None else item.draft.get("body", "")
    if "\r" in final_subject or "\n" in final_subject:  # a mail header is one line: refused now, not at send
        raise InvalidInput(
            f"review item {item_id}: the subject must be one line (no CR or LF characters)",
            details={"field": "subject"},
        )
    vouched = check_final_text(
        session,
        item,
        {"subject": final_subject, "body": final_body},
        max_discount_pct=max_discount_pct,
        acknowledged=acknowledge_facts,
    )
    diff = _edit_diff(draft_subject + "\n", final_subject + "\n", "subject") + _edit_diff(
        draft_body, final_body, "body"
    )
    _claim(session, item, ItemStatus.APPROVED)
    decision = Decision(
        review_item_id=item.id,
        action=DecisionAction.APPROVE,
        actor=actor,
        final_subject=final_subject,
        final_body=final_body,
        edited=bool(diff),
        edit_diff=diff or None,
    )
    send_at = item.decided_at + dt.timedelta(seconds=undo_seconds) if undo_seconds else None
    extra: dict[str, Any] = {}
    if vouched:
        extra["acknowledged_facts"] = vouched
    if flags:
        extra["acknowledged_flags"] = [f.code for f in flags]
        extra["acknowledged_flags_in_words"] = [f.words for f in flags]
    return _record(session, item, decision, ItemStatus.PENDING, run_after=send_at, extra=extra)


def reject(
    session: Session,
    item_id: int,
    *,
    actor: str,
    reason: str,
    redraft: bool = False,
    template: str | None = None,
    who: Who | None = None,
) -> ReviewItem:
    item = get_item(session, item_id)
    if item.status != ItemStatus.PENDING:
        raise Conflict(f"review item {item_id} is already {item.status}; nothing was changed")
    if who is not None:
        policy.check_may_decide(item, who)
    if template is not None and not redraft:
        raise InvalidInput("template is only used with redraft=true", details={"field": "template"})
    if template is not None and template not in REDRAFT_TEMPLATES:
        raise InvalidInput(
            f"template must be one of {', '.join(sorted(REDRAFT_TEMPLATES))}, got {template!r}",
            details={"field": "template"},
        )
    if redraft and (item.lead_id is None or item.source != ItemSource.LEAD):
        raise InvalidInput("only first-touch drafts of the lead agent can be redrafted", details={"field": "redraft"})
    _claim(session, item, ItemStatus.REJECTED)
    if item.lead_id is not None:
        set_lead_status(session, item.lead_id, LeadStatus.DRAFT_REJECTED, actor=actor)
    decision = Decision(
        review_item_id=item.id,
        action=DecisionAction.REJECT,
        actor=actor,
        reason=reason,
        redraft=redraft,
        redraft_template=template if redraft else None,
    )
    return _record(session, item, decision, ItemStatus.PENDING)


# How many times one lead's first touch may be redrafted (the lead graph stops redrafting after this many).
MAX_REDRAFTS = 3


def redraft_count(session: Session, item: ReviewItem) -> int:
    """How many redrafts led to this item (the chain of redraft_of links)."""
    count, seen, current = 0, {item.id}, item.redraft_of
    while current is not None and current not in seen:
        count, seen = count + 1, seen | {current}
        current = session.scalar(select(ReviewItem.redraft_of).where(ReviewItem.id == current))
    return count


def respond(session: Session, item_id: int, *, instruction: str, actor: str, who: Who | None = None) -> ReviewItem:
    """The closer answers the draft with an instruction ("shorter and more formal"): the item is rejected with a
    redraft request that carries the instruction, exactly as a reject with redraft, so the agent's new draft is
    queued as a new pending item linked by redraft_of. Recipients and amounts come from records as always."""
    item = get_item(session, item_id)
    if item.status != ItemStatus.PENDING:
        raise Conflict(f"review item {item_id} is already {item.status}; nothing was changed")
    if who is not None:
        policy.check_may_decide(item, who)
    if item.lead_id is None or item.source != ItemSource.LEAD:
        raise Conflict(
            f"review item {item_id} is a {item.source} draft: respond redrafts the lead agent's first-touch drafts; "
            "edit this one before approving instead",
            details={"source": item.source},
        )
    if redraft_count(session, item) >= MAX_REDRAFTS:
        raise Conflict(
            f"review item {item_id} has been redrafted {MAX_REDRAFTS} times already: edit it yourself or reject it",
            details={"redrafts": MAX_REDRAFTS},
        )
    _claim(session, item, ItemStatus.REJECTED)
    set_lead_status(session, item.lead_id, LeadStatus.DRAFT_REJECTED, actor=actor)
    decision = Decision(
        review_item_id=item.id,
        action=DecisionAction.REJECT,
        actor=actor,
        reason=f"Redraft asked: {instruction}",
        redraft=True,
        instruction=instruction,
    )
    return _record(session, item, decision, ItemStatus.PENDING, extra={"instruction": instruction})


def redraft_of(session: Session, item_id: int) -> ReviewItem | None:
    """The pending item that redrafts `item_id`, once the agent wrote it."""
    new_id = session.scalar(
        select(ReviewItem.id).where(ReviewItem.redraft_of == item_id).order_by(ReviewItem.id.desc()).limit(1)
    )
    return get_item(session, new_id) if new_id is not None else None


def undo(session: Session, settings: Settings, item_id: int, *, actor: str, who: Who | None = None) -> ReviewItem:
    """Take back an approval inside the undo window: the send is cancelled and the item is pending again."""
    item = get_item(session, item_id)
    if item.status != ItemStatus.APPROVED or item.decision is None:
        raise Conflict(f"review item {item_id} is {item.status}: only an approval waiting to be sent can be undone")
    if who is not None:
        policy.check_may_undo(item, who)
    deadline = item.decided_at + dt.timedelta(seconds=settings.undo_seconds)
    if utcnow() >= deadline or not jobs.cancel_queued(session, _resume_key(item.id)):
        raise Conflict(f"review item {item_id}: the undo window has closed and the message is being sent")
    decision = item.decision
    draft = dict(item.draft or {})
    if decision.edited:
        # The closer's edit stays on the draft (undo takes back the approval, not the work); the agent's text is
        # kept beside it and in the audit event below.
        draft.update(
            as_drafted=as_drafted(item),
            subject=decision.final_subject if decision.final_subject is not None else draft.get("subject", ""),
            body=decision.final_body if decision.final_body is not None else draft.get("body", ""),
            edited_by=decision.actor,
        )
    reverted = session.execute(
        update(ReviewItem)
        .where(ReviewItem.id == item.id, ReviewItem.status == ItemStatus.APPROVED)
        .values(status=ItemStatus.PENDING, decided_at=None, draft=draft)
        .execution_options(synchronize_session=False)
    ).rowcount
    if reverted != 1:
        raise Conflict(f"review item {item_id} changed while undoing; reload it")
    snapshot = {
        "decision_id": decision.id,
        "approved_by": decision.actor,
        "final_subject": decision.final_subject,
        "final_body": decision.final_body,
        "edited": decision.edited,
        "edit_diff": decision.edit_diff,
        "drafted_subject": as_drafted(item)["subject"],
        "drafted_body": as_drafted(item)["body"],
    }
    session.execute(delete(Decision).where(Decision.id == decision.id))
    session.expire(item)
    if item.lead_id is not None:
        set_lead_status(session, item.lead_id, LeadStatus.IN_REVIEW, actor=actor)
    audit.record(
        session,
        actor=actor,
        action="review_item.undone",
        entity_type="review_item",
        entity_id=item.id,
        before={"status": ItemStatus.APPROVED, **snapshot},
        after={"status": ItemStatus.PENDING, "draft_keeps_edit": decision.edited},
    )
    return get_item(session, item_id)


def assign(session: Session, item_id: int, *, assignee: str | None, actor: str, role: str, me: str) -> ReviewItem:
    """Managers assign anything; a closer takes unassigned items or hands on their own."""
    item = get_item(session, item_id)
    _pending(item, "assign")
    if assignee is not None and assignee not in assignable_names(session):
        raise InvalidInput(f"assignee {assignee!r} is not an active closer or manager", details={"field": "assignee"})
    policy.check_may_assign(item, Who(name=me, role=role, actor=actor))
    before = item.assignee
    item.assignee = assignee
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="review_item.assigned",
        entity_type="review_item",
        entity_id=item.id,
        before={"assignee": before},
        after={"assignee": assignee},
    )
    return item


def take_over(session: Session, item_id: int, *, who: Who) -> ReviewItem:
    """Reassign a pending item to `who` so they can decide it: a manager always; a closer when its SLA is
    breached or its assignee cannot sign in. Audited with the reason and who had it."""
    item = get_item(session, item_id)
    _pending(item, "take over")
    if who.name not in assignable_names(session):
        raise Forbidden(f"{who.name!r} is not an active closer or manager: sign in as a person to take items over")
    reason = policy.take_over_reason(session, item, who)
    before = item.assignee
    item.assignee = who.name
    session.flush()
    audit.record(
        session,
        actor=who.actor,
        action="review_item.taken_over",
        entity_type="review_item",
        entity_id=item.id,
        before={"assignee": before},
        after={"assignee": who.name, "reason": reason},
    )
    if before is not None:  # the person it was taken from hears it from us, not from the queue
        notify(
            session,
            NotificationKind.TAKEN_OVER,
            f"{who.name} took over review item #{item.id}",
            body=f"Reason: {reason}.",
            severity="info",
            roles=(),
            names=[before],
            entity=("review_item", item.id),
        )
    return item


def snooze(
    session: Session, item_id: int, *, until: dt.datetime | None, actor: str, who: Who | None = None
) -> ReviewItem:
    item = get_item(session, item_id)
    _pending(item, "snooze")
    if who is not None:
        policy.check_may_decide(item, who)
    now = utcnow()
    until = until.astimezone(dt.UTC) if until is not None else None  # stored as UTC (SQLite keeps no offset)
    if until is not None and until <= now:
        raise InvalidInput("until must be in the future", details={"field": "until"})
    if until is not None and until - now > dt.timedelta(days=30):
        raise InvalidInput("until must be within 30 days", details={"field": "until"})
    before = item.snoozed_until
    item.snoozed_until = until
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="review_item.snoozed" if until else "review_item.unsnoozed",
        entity_type="review_item",
        entity_id=item.id,
        before={"snoozed_until": before.isoformat() if before else None},
        after={"snoozed_until": until.isoformat() if until else None},
    )
    return item


def mark_opened(session: Session, item_id: int) -> ReviewItem:
    """Start the review clock the first time a reviewer opens the item."""
    get_item(session, item_id)
    session.execute(
        update(ReviewItem)
        .where(ReviewItem.id == item_id, ReviewItem.first_opened_at.is_(None))
        .values(first_opened_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    item = get_item(session, item_id)
    session.refresh(item)
    return item


def bulk_approve(
    session: Session,
    ids: list[int],
    *,
    actor: str,
    undo_seconds: int,
    max_discount_pct: float,
    who: Who | None = None,
) -> tuple[list[int], dict[int, str]]:
    """Approve each low-risk item as drafted; anything else is skipped with the reason. Nothing is approved in
    bulk whose text says something no record supports: the draft is guarded again against its records alone
    (not against itself), whatever flags it was queued with."""
    approved: list[int] = []
    skipped: dict[int, str] = {}
    for item_id in dict.fromkeys(ids):
        item = session.get(ReviewItem, item_id)
        if item is None:
            skipped[item_id] = "not found"
            continue
        if item.status != ItemStatus.PENDING:
            skipped[item_id] = f"already {item.status}"
        elif who is not None and not who.manages and item.assignee not in (None, who.name):
            skipped[item_id] = f"assigned to {item.assignee}: only they or a manager can decide it"
        elif item.guard_flags:
            skipped[item_id] = "has grounding flags: open it and check the draft"
        elif context.injection_codes(item):
            skipped[item_id] = (
                "the lead's text was flagged by the injection screen: open it, read the flags and approve it "
                "with an acknowledgement"
            )
        elif item.queue != ReviewQueue.MAIN:
            skipped[item_id] = "exception queue items are reviewed one by one"
        elif not is_low_risk(item):
            skipped[item_id] = f"grade {item.grade or '?'} drafts are reviewed one by one"
        elif item.kind in GUARDED_KINDS and (facts := unsupported_in_draft(session, item)):
            skipped[item_id] = "says things no record supports (" + ", ".join(facts) + "): open it and check"
        if item_id in skipped:
            continue
        try:
            with session.begin_nested():
                approve(
                    session,
                    item_id,
                    actor=actor,
                    undo_seconds=undo_seconds,
                    max_discount_pct=max_discount_pct,
                    who=who,
                )
        except (Conflict, InvalidInput) as exc:
            skipped[item_id] = exc.message
        else:
            approved.append(item_id)
    return approved, skipped


def unsupported_in_draft(session: Session, item: ReviewItem) -> list[str]:
    """The facts in the drafted text that its records, facts and template do not support (the draft itself
    does not count): what keeps an item out of bulk approval even when it carries no flags."""
    known = grounding(session, item, with_draft=False)
    text = item.draft.get("subject", "") + "\n" + item.draft.get("body", "")
    return [fact.text for fact in guard.unsupported(text, known)]


def timeline(session: Session, item_id: int) -> list[schemas.TimelineEntry]:
    """Everything that happened to the item's lead: capture, drafts, decisions, messages, activities."""
    item = get_item(session, item_id)
    entries: list[schemas.TimelineEntry] = []
    lead = session.get(Lead, item.lead_id) if item.lead_id is not None else None
    if lead is not None:
        entries.append(
            schemas.TimelineEntry(
                at=lead.captured_at,
                kind="captured",
                summary=f"Lead captured from {lead.source or lead.external_source or 'unknown source'}",
            )
        )
        items = session.scalars(
            select(ReviewItem).options(selectinload(ReviewItem.decision)).where(ReviewItem.lead_id == lead.id)
        ).all()
    else:
        items = [item]
    item_ids = [i.id for i in items]
    for other in items:
        entries.append(
            schemas.TimelineEntry(
                at=other.created_at,
                kind="review_item",
                summary=f"Draft #{other.id} queued: {other.kind} '{as_drafted(other)['subject']}'"
                + (f" (redraft of #{other.redraft_of})" if other.redraft_of else ""),
                review_item_id=other.id,
            )
        )
    for event in session.scalars(
        select(AuditEvent)
        .where(AuditEvent.entity_type == "review_item", AuditEvent.entity_id.in_([str(i) for i in item_ids]))
        .where(AuditEvent.action != "review_item.created")
        .order_by(AuditEvent.at, AuditEvent.id)
    ).all():
        entries.append(
            schemas.TimelineEntry(
                at=event.at,
                kind="decision" if event.action in DECISION_ACTIONS else "audit",
                summary=_describe(event),
                actor=event.actor,
                review_item_id=int(event.entity_id),
            )
        )
    if item_ids:
        for message in session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.review_item_id.in_(item_ids), OutboxMessage.status == OutboxStatus.SENT
            )
        ).all():
            entries.append(
                schemas.TimelineEntry(
                    at=message.sent_at or message.created_at,
                    kind="message",
                    summary=f"Email '{message.subject}' sent to {message.to_addr}",
                    review_item_id=message.review_item_id,
                )
            )
    if lead is not None:
        for activity in session.scalars(select(Activity).where(Activity.lead_id == lead.id)).all():
            if activity.kind == "email_sent":
                continue  # the outbox message above says it with the recipient
            entries.append(
                schemas.TimelineEntry(
                    at=activity.occurred_at,
                    kind="activity",
                    summary=f"{activity.kind.replace('_', ' ')}: {activity.summary}",
                    review_item_id=activity.review_item_id,
                )
            )
    return sorted(entries, key=lambda e: e.at)


DECISION_ACTIONS = {"review_item.approved", "review_item.rejected", "review_item.undone"}


def _describe(event: AuditEvent) -> str:
    after, before = event.after or {}, event.before or {}
    verb = event.action.removeprefix("review_item.")
    if verb == "approved":
        said = "Approved" + (" with edits" if after.get("edited") else " as drafted")
        if after.get("acknowledged_facts"):
            said += "; the reviewer checked facts no record supports: " + ", ".join(after["acknowledged_facts"])
        if after.get("acknowledged_flags_in_words"):
            said += "; flags acknowledged: " + " ".join(after["acknowledged_flags_in_words"])
        elif after.get("acknowledged_flags"):
            said += "; grounding flags acknowledged: " + "; ".join(after["acknowledged_flags"])
        return said
    if verb == "rejected":
        if after.get("instruction"):
            return f"Responded with an instruction for a redraft: {after['instruction']}"
        return f"Rejected: {after.get('reason')}" + (" (redraft requested)" if after.get("redraft") else "")
    if verb == "undone":
        return "Approval undone before sending" + (
            "; the draft keeps the reviewer's edit" if after.get("draft_keeps_edit") else ""
        )
    if verb == "assigned":
        return f"Assigned to {after.get('assignee') or 'the team queue'} (was {before.get('assignee') or 'unassigned'})"
    if verb == "snoozed":
        return f"Snoozed until {after.get('snoozed_until')}"
    if verb == "unsnoozed":
        return "Snooze cleared"
    if verb == "escalated":
        return f"SLA breached: back in the team queue (was with {before.get('assignee') or 'nobody'})"
    if verb == "sla_warned":
        return f"SLA warning sent to {after.get('assignee')} ({after.get('minutes_left')} min left)"
    if verb in ("sent", "done", "cancelled", "failed"):
        return f"Executed: {verb}" + (f" ({after.get('reason')})" if after.get("reason") else "")
    return verb.replace("_", " ")
