"""The review queue over HTTP: my/team/exception queues, item pages with a timeline, decisions
(approve with edits, reject with an optional redraft, undo inside the window), assignment, snooze
and bulk approval of low-risk items."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query

from api.auth import Principal
from api.deps import ReadSessionDep, SessionDep, SettingsDep, require
from core.db import session_scope
from core.enums import ItemStatus, ReviewQueue, Role
from core.errors import AppError
from core.schemas import (
    ApproveRequest,
    AssignRequest,
    BulkApproveRequest,
    BulkApproveResult,
    Id,
    NoNul,
    Offset,
    RejectRequest,
    RespondRequest,
    ReviewContext,
    ReviewItem,
    ReviewItemPage,
    SlaState,
    SnoozeRequest,
    TimelineEntry,
)
from core.users import assignable_names
from review import context as item_context
from review import decisions as service
from review import recovery

router = APIRouter(prefix="/v1/review-items", tags=["review"])

Reader = Annotated[Principal, Depends(require(Role.CLOSER, Role.MANAGER, Role.EVALUATOR))]
Decider = Annotated[Principal, Depends(require(Role.CLOSER, Role.MANAGER))]


@router.get(
    "",
    response_model=ReviewItemPage,
    summary="The queue, most urgent first (SLA deadline, then grade, then age)",
)
def list_review_items(
    session: ReadSessionDep,
    settings: SettingsDep,
    principal: Reader,
    status: ItemStatus | None = None,
    view: Annotated[
        Literal["my", "team", "exception"] | None,
        Query(description="my: assigned to me; team: the main queue; exception: the exception queue"),
    ] = None,
    queue: ReviewQueue | None = None,
    kind: Annotated[str | None, Query(max_length=30), NoNul] = None,
    grade: Literal["A", "B", "C", "D"] | None = None,
    sla: SlaState | None = None,
    assignee: Annotated[str | None, Query(max_length=200, description="A name, or 'unassigned'"), NoNul] = None,
    snoozed: Annotated[bool, Query(description="true: list only snoozed items (hidden otherwise)")] = False,
    escalated: Annotated[
        bool | None,
        Query(description="true: only items the SLA watch sent back to the team queue on a breach; false: the others"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> ReviewItemPage:
    items, total, capped = service.list_items(

        session,
        settings,
        status=status,
        limit=limit,
        offset=offset,
        queue=queue,
        view=view,
        me=principal.name,
        kind=kind,
        grade=grade,
        sla=sla,
        assignee=assignee,
        snoozed=snoozed,
        escalated=escalated,
    )
    return ReviewItemPage(
        items=[service.present(i, settings) for i in items],
        total=total,
        total_capped=capped,
        limit=limit,
        offset=offset,
    )


@router.get("/assignees", response_model=list[str], summary="People an item can be assigned to")
def list_assignees(session: ReadSessionDep, _: Reader) -> list[str]:
    return assignable_names(session)


@router.post(
    "/bulk-approve",
    response_model=BulkApproveResult,
    summary="Approve selected low-risk items as drafted (never items with guard flags or unsupported facts)",
)
def bulk_approve(
    data: BulkApproveRequest, session: SessionDep, settings: SettingsDep, principal: Decider
) -> BulkApproveResult:
    approved, skipped = service.bulk_approve(
        session,
        data.ids,
        actor=principal.actor,
        undo_seconds=settings.undo_seconds,
        max_discount_pct=settings.max_discount_pct,
        who=principal.who,
    )
    return BulkApproveResult(approved=approved, skipped=skipped)


@router.get("/{item_id}", response_model=ReviewItem)
def get_review_item(item_id: Id, session: ReadSessionDep, settings: SettingsDep, _: Reader) -> ReviewItem:
    return service.present(service.get_item(session, item_id), settings)


@router.get(
    "/{item_id}/context",
    response_model=ReviewContext,
    summary="What the closer needs beside the draft: the lead's own words (untrusted) and what the injection screen "
    "found in them, the account, its open invoices, deals and the last 10 messages with the same contact or account",
)
def get_review_item_context(item_id: Id, session: ReadSessionDep, _: Reader) -> ReviewContext:
    return item_context.build(session, service.get_item(session, item_id))


@router.get("/{item_id}/timeline", response_model=list[TimelineEntry], summary="The lead's history, oldest first")
def get_timeline(item_id: Id, session: ReadSessionDep, _: Reader) -> list[TimelineEntry]:
    return service.timeline(session, item_id)


@router.post("/{item_id}/open", response_model=ReviewItem, summary="Start the review clock (first open only)")
def open_review_item(item_id: Id, session: SessionDep, settings: SettingsDep, _: Decider) -> ReviewItem:
    item = service.mark_opened(session, item_id)
    return service.present(item, settings)


@router.post(
    "/{item_id}/approve",
    response_model=ReviewItem,
    summary="Approve (optionally edited); it is sent after the undo window, once",
    description="The final subject and body are guarded: a discount above REVLOOP_MAX_DISCOUNT_PCT is refused "
    "(422, `details.field` names subject or body); facts the edit adds that no record or the approved template "
    "supports (prices, discounts, amounts, dates, names, places, phone numbers, email addresses, URLs, claims) "
    "answer 409 with `details.unsupported_facts` until `acknowledge_facts` names each one.",
)
def approve_review_item(
    item_id: Id,
    session: SessionDep,
    settings: SettingsDep,
    principal: Decider,
    edit: Annotated[ApproveRequest | None, Body()] = None,
) -> ReviewItem:
    edit = edit or ApproveRequest()
    item = service.approve(
        session,
        item_id,
        actor=principal.actor,
        subject=edit.subject,
        body=edit.body,
        acknowledge_flags=edit.acknowledge_flags,
        acknowledge_facts=edit.acknowledge_facts,
        max_discount_pct=settings.max_discount_pct,
        undo_seconds=settings.undo_seconds,
        who=principal.who,
    )
    return service.present(item, settings)


@router.post(
    "/{item_id}/undo",
    response_model=ReviewItem,
    summary="Take back an approval inside the undo window; the item is pending again and nothing is sent",
)
def undo_review_item(item_id: Id, session: SessionDep, settings: SettingsDep, principal: Decider) -> ReviewItem:
    item = service.undo(session, settings, item_id, actor=principal.actor, who=principal.who)
    return service.present(item, settings)


@router.post(
    "/{item_id}/reject",
    response_model=ReviewItem,
    summary="Reject with a reason; nothing is sent. redraft=true asks the agent for a new draft",
)
def reject_review_item(
    item_id: Id, data: RejectRequest, session: SessionDep, settings: SettingsDep, principal: Decider
) -> ReviewItem:
    item = service.reject(
        session,
        item_id,
        actor=principal.actor,
        reason=data.reason,
        redraft=data.redraft,
        template=data.template,
        who=principal.who,
    )
    return service.present(item, settings)


@router.post(
    "/{item_id}/respond",
    response_model=ReviewItem,
    status_code=201,
    summary="Answer the draft with an instruction; the agent redrafts with it and the new pending item is returned",
    description="The pending item is rejected with a redraft request carrying the instruction (audited; the new item's "
    "redraft_of links them). The deterministic engine maps the instruction to the template's choices (shorter, more "
    "formal, ask for a call next week, mention the similar won case, leave pricing out, a softer nurture note, a "
    "polite decline, another language when such a template exists) and lists them in the new draft's `changes`, "
    "and what it could not follow in `not_applied`. Recipients and amounts never change. Lead agent first touches "
    "only (409 otherwise); 409 after 3 redrafts.",
)
def respond_to_review_item(item_id: Id, data: RespondRequest, settings: SettingsDep, principal: Decider) -> ReviewItem:
    from agents.runtime import redraft_now  # the graphs load on first use, not when the API starts

    with session_scope(settings) as session:  # committed before the agent reads the decision
        service.respond(session, item_id, instruction=data.instruction, actor=principal.actor, who=principal.who)
    redraft_now(settings, item_id)
    with session_scope(settings, readonly=True) as session:
        new = service.redraft_of(session, item_id)
        if new is None:
            raise AppError(
                f"review item {item_id}: the redraft is still being written; it will appear in the queue as a "
                f"redraft of #{item_id}",
                503,
                details={"redraft_of": item_id},
            )
        return service.present(new, settings)


@router.post(
    "/{item_id}/retry",
    response_model=ReviewItem,
    summary="Retry a send that failed, or send again one whose delivery is unknown (managers and the item's closer)",
    description="send_failed or delivery_unknown -> approved, and the send is queued again with a fresh retry "
    "window. The outbox keeps the message's key, so a late success of an earlier attempt still counts once. "
    "Audited as review_item.send_retried.",
)
def retry_review_item(item_id: Id, session: SessionDep, settings: SettingsDep, principal: Decider) -> ReviewItem:
    item = recovery.retry_send(session, item_id, who=principal.who)
    return service.present(service.get_item(session, item.id), settings)


@router.post(
    "/{item_id}/mark-sent",
    response_model=ReviewItem,
    summary="Confirm that a message whose delivery is unknown did go out (managers and the item's closer)",
    description="delivery_unknown -> sent, with the time it was handed to the mail server; nothing is sent.",
)
def mark_review_item_sent(item_id: Id, session: SessionDep, settings: SettingsDep, principal: Decider) -> ReviewItem:
    recovery.mark_sent(session, item_id, who=principal.who)
    return service.present(service.get_item(session, item_id), settings)


@router.post("/{item_id}/assign", response_model=ReviewItem, summary="Assign, reassign or return to the team queue")
def assign_review_item(
    item_id: Id, data: AssignRequest, session: SessionDep, settings: SettingsDep, principal: Decider
) -> ReviewItem:
    item = service.assign(
        session, item_id, assignee=data.assignee, actor=principal.actor, role=principal.role, me=principal.name
    )
    return service.present(item, settings)


@router.post("/{item_id}/snooze", response_model=ReviewItem, summary="Hide until a time (null wakes it now)")
def snooze_review_item(
    item_id: Id, data: SnoozeRequest, session: SessionDep, settings: SettingsDep, principal: Decider
) -> ReviewItem:
    item = service.snooze(session, item_id, until=data.until, actor=principal.actor, who=principal.who)
    return service.present(item, settings)


@router.post(
    "/{item_id}/take-over",
    response_model=ReviewItem,
    summary="Assign another person's pending item to me (managers; closers when its SLA is breached or its "
    "assignee cannot sign in); audited with the reason",
)
def take_over_review_item(item_id: Id, session: SessionDep, settings: SettingsDep, principal: Decider) -> ReviewItem:
    item = service.take_over(session, item_id, who=principal.who)
    return service.present(item, settings)
