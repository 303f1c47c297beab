"""API schemas (pydantic), separate from the ORM models. The review app imports only these."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from annotated_types import Ge, Le
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from core.enums import OPEN_STAGES, LeadEventType, NotificationKind, ReviewQueue, Role

ROLES: tuple[Role, ...] = tuple(Role)
USER_ROLES: tuple[Role, ...] = tuple(r for r in Role if r is not Role.INTEGRATION)  # integration: API tokens only

CustomValue = str | int | float | bool | None


def one_of(*members: StrEnum) -> Any:
    """A Literal of some members of an enum: the schema lists only these, and a refusal quotes their text."""
    return Literal[tuple(m.value for m in members)]


UserRole = one_of(*USER_ROLES)
OpenStage = one_of(*OPEN_STAGES)  # won and lost come from a signature or an import, not a stage change


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


# --- what every input obeys ----------------------------------------------------------------------------

# The largest row id: ids are INTEGER columns, 32-bit on PostgreSQL (SQLite's are 64-bit), so a larger one cannot
# name a row on either database; refusing it (422) beats PostgreSQL's "integer out of range" (and SQLite's overflow).
ID_MAX = 2**31 - 1
MAX_OFFSET = 1_000_000  # pages start at most this far in: deeper lists are filtered, not paged


def _refuse_nul(value: Any) -> Any:
    """Strings anywhere in `value` (lists, dict keys and values) may not hold NUL: PostgreSQL refuses them."""
    if isinstance(value, str):
        if "\x00" in value:
            raise PydanticCustomError("nul_character", "must not contain NUL (\\x00) characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key)
            _refuse_nul(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _refuse_nul(item)
    return value


def _one_line(value: Any) -> Any:
    """Header-like text (a mail subject, a name that may end up in one): CR or LF would start a new header."""
    if isinstance(value, str) and ("\r" in value or "\n" in value):
        raise PydanticCustomError("multi_line", "must be one line: CR and LF characters are not allowed")
    return value


EARLIEST_DAY, LATEST_DAY = dt.date(1900, 1, 1), dt.date(2999, 12, 31)  # dates outside are typos (and overflow)


def _in_calendar(value: Any) -> Any:
    day = value.date() if isinstance(value, dt.datetime) else value
    if isinstance(day, dt.date) and not EARLIEST_DAY <= day <= LATEST_DAY:
        raise PydanticCustomError(
            "date_out_of_range",
            "must be between {earliest} and {latest}",
            {"earliest": EARLIEST_DAY.isoformat(), "latest": LATEST_DAY.isoformat()},
        )
    return value


Id = Annotated[int, Ge(1), Le(ID_MAX)]  # a row id, in a path, a query or a body
Day = Annotated[dt.date, AfterValidator(_in_calendar)]
Moment = Annotated[dt.datetime, AfterValidator(_in_calendar)]
Offset = Annotated[int, Ge(0), Le(MAX_OFFSET)]
# Path and query strings (bodies are checked by Input): `run_id: Text`, `Annotated[str | None, Query(...), NoNul]`.
NoNul = AfterValidator(_refuse_nul)
Text = Annotated[str, NoNul]


class Input(BaseModel):
    """A request body: no string in it may hold NUL, and the fields named in `one_line` (subjects, names, ids:
    text that may end up in a mail header) no CR or LF either; a refusal names the field (422)."""

    one_line: ClassVar[tuple[str, ...]] = ()

    @field_validator("*", mode="after")
    @classmethod
    def _plain_text(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name in cls.one_line:
            _one_line(value)
        return _refuse_nul(value)


class ErrorIssue(BaseModel):
    loc: list[str | int] = Field(description="Where: body|query|path|header, then the field's path")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer (4xx, 503): a code, a sentence saying what is wrong, and what applies of the rest."""

    error: str = Field(description="A stable code: unauthorized, forbidden, not_found, conflict, validation_error, ...")
    message: str = Field(description="What went wrong, naming the field or the record")
    details: dict[str, Any] | None = Field(None, description="Facts for a client to act on, e.g. field, guard_flags")
    fields: dict[str, str] | None = Field(None, description="422: each invalid field -> what is wrong with it")
    detail: list[ErrorIssue] | None = Field(None, description="422: the validation issues as pydantic reports them")


class Consent(Input):
    model_config = ConfigDict(extra="forbid")
    email: StrictBool = Field(description="May we email this person?")
    call: StrictBool = Field(description="May we call this person?")


class LeadCreate(Input):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    one_line: ClassVar[tuple[str, ...]] = ("first_name", "last_name", "company", "title", "website", "source")
    email: EmailStr = Field(max_length=320)
    first_name: str | None = Field(None, max_length=100)
    last_name: str | None = Field(None, max_length=100)
    company: str | None = Field(None, max_length=200)
    title: str | None = Field(None, max_length=200)
    phone: str | None = Field(None, max_length=50, pattern=r"^[0-9+()./ \-]*(x[0-9]+)?$")
    website: str | None = Field(None, max_length=500)
    message: str | None = Field(None, max_length=10_000)
    source: str | None = Field(None, max_length=100)
    consent: Consent
    custom: dict[str, CustomValue] = Field(default_factory=dict, max_length=50)

    @field_validator("custom")
    @classmethod
    def _short_custom(cls, value: dict[str, CustomValue]) -> dict[str, CustomValue]:
        for key, item in value.items():
            if len(key) > 64:
                raise ValueError(f"custom key {key[:20]!r}... is longer than 64 characters")
            if isinstance(item, str) and len(item) > 1000:
                raise ValueError(f"custom value of {key!r} is longer than 1000 characters")
        return value


class LeadAccepted(BaseModel):
    id: int
    status: str
    duplicate: bool


class ChannelWebhookResult(BaseModel):
    """What one SMS/WhatsApp webhook delivery did: messages captured (each: lead, reply, opted_out, duplicate),
    statuses applied to our messages, and statuses for ids that are not ours."""

    messages: int
    statuses: int
    unknown_statuses: int
    outcomes: list[dict[str, Any]] = []


class ConversationMessage(BaseModel):
    at: dt.datetime
    channel: str  # email | sms | whatsapp
    direction: Literal["in", "out"]
    address: str | None  # the number or address it went to or came from
    subject: str | None
    text: str
    status: str  # received; or ours: sent, delivered, read, failed, send_failed, delivery_unknown ...
    review_item_id: int | None


class Conversation(BaseModel):
    """A contact's messages across email, SMS and WhatsApp, newest first, with consent per text channel."""

    contact_id: int
    email: str | None
    phone: str | None
    consent: dict[str, str | None]  # sms / whatsapp: granted | opted_out | None (never asked)
    messages: list[ConversationMessage]


class Lead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    title: str | None
    source: str | None
    status: str
    score: int | None
    grade: str | None
    brief: dict[str, Any] | None
    consent_email: bool
    consent_call: bool
    duplicate_count: int
    created_at: dt.datetime


class DecisionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    action: str
    actor: str
    reason: str | None
    final_subject: str | None
    final_body: str | None
    edited: bool
    edit_diff: str | None
    decided_at: dt.datetime
    redraft: bool = False
    redraft_template: str | None = None
    instruction: str | None = Field(None, description="Respond: the closer's instruction the agent redrafted with")


class FlagInWords(BaseModel):
    """A flag on a review item as the closer reads it: the stable code and a sentence in plain words."""

    code: str = Field(description="The stable code, e.g. possible_prompt_injection:override_instructions")
    words: str = Field(description="What it means for the closer and what to do, in plain words")


SlaState = Literal["breached", "due_soon", "on_track", "none"]


class ReviewItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: str
    status: str
    lead_id: int | None
    contact_id: int | None = None
    template: str | None
    brief: dict[str, Any]
    draft: dict[str, Any]
    created_at: dt.datetime
    decided_at: dt.datetime | None
    executed_at: dt.datetime | None
    result: dict[str, Any] | None
    decision: DecisionRead | None
    queue: str = ReviewQueue.MAIN
    sla_due_at: dt.datetime | None = None
    assignee: str | None = None
    guard_flags: list[str] = []
    grade: str | None = None
    snoozed_until: dt.datetime | None = None
    first_opened_at: dt.datetime | None = None
    redraft_of: int | None = None
    escalated_from: str | None = Field(
        None, description="Who had the item when its SLA breached and it went back to the team queue"
    )
    escalated_at: dt.datetime | None = Field(None, description="When the SLA watch escalated it (null: never)")
    sla_state: SlaState = Field("none", description="breached | due_soon | on_track | none (no deadline)")
    undo_until: dt.datetime | None = Field(
        None, description="While approved and before this moment, the approval can be undone (nothing sent yet)"
    )
    low_risk: bool = Field(False, description="May be bulk-approved: pending, main queue, no guard flags, not D")
    flags_in_words: list[FlagInWords] = Field(
        default_factory=list, description="The brief's flags and the grounding guard's flags, each in plain words"
    )
    requires_acknowledgement: bool = Field(
        False,
        description="Approving needs acknowledge_flags=true: the draft carries guard flags or the lead's text was "
        "flagged by the injection screen (409 with details.flags otherwise)",
    )


class ReviewItemPage(BaseModel):
    items: list[ReviewItem]
    total: int = Field(description="Matching items; a lower bound when total_capped (show it as '1,000+')")
    total_capped: bool = Field(
        False, description="More items match than were counted (over 1,000): total is a lower bound"
    )
    limit: int
    offset: int


class ApproveRequest(Input):
    model_config = ConfigDict(extra="forbid")
    one_line: ClassVar[tuple[str, ...]] = ("subject",)
    subject: str | None = Field(
        None, min_length=1, max_length=300, description="Edited subject (one line: no CR or LF); omit to keep"
    )
    body: str | None = Field(None, min_length=1, max_length=20_000, description="Edited body; omit to keep")
    acknowledge_flags: bool = Field(
        False, description="Required (true) to approve an item whose draft carries grounding-guard flags"
    )
    acknowledge_facts: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Facts in the edited text that no record or the approved template supports, each named as the "
        "409 answer's details.unsupported_facts lists them, after the reviewer checked them",
    )

    _strip = field_validator("subject", "body", mode="before")(_strip)


class RejectRequest(Input):
    model_config = ConfigDict(extra="forbid")
    one_line: ClassVar[tuple[str, ...]] = ("template",)
    reason: str = Field(min_length=3, max_length=2000, description="Why the draft is rejected")
    redraft: bool = Field(False, description="Ask the agent for a new draft (queued as a new item)")
    template: str | None = Field(
        None, max_length=100, description="With redraft: the template the new draft should use instead"
    )

    _strip = field_validator("reason", mode="before")(_strip)


class RespondRequest(Input):
    model_config = ConfigDict(extra="forbid")
    instruction: str = Field(
        min_length=1,
        max_length=1000,
        description="What the agent should change, in the closer's words (\"shorter and more formal\", \"ask for a "
        "call next week\"); recipients and amounts never change",
    )

    _strip = field_validator("instruction", mode="before")(_strip)


class ContextAccount(BaseModel):
    id: int
    name: str
    domain: str | None = None
    industry: str | None = None
    employees: int | None = None
    country: str | None = None


class ContextInvoice(BaseModel):
    id: int
    number: str
    currency: str
    amount: str
    amount_due: str = Field(description="Net balance: amount minus payments")
    issued_on: dt.date
    due_on: dt.date
    days_overdue: int = Field(description="0 when not yet due")
    status: str = Field(description="issued | disputed | payment_pending | overdue")


class ContextInvoices(BaseModel):
    count: int
    amount_due: str = Field(description="Sum of the balances (in the first invoice's currency; see per_currency)")
    per_currency: dict[str, str] = Field(default_factory=dict)
    invoices: list[ContextInvoice]


class ContextDeal(BaseModel):
    id: int
    name: str
    stage: str
    outcome: str | None = None
    value: str | None = Field(None, description="Amount with currency, e.g. 'USD 12000.00'")
    owner: str | None = None
    updated_at: dt.datetime | None = None


class ContextMessage(BaseModel):
    channel: str = Field(description="email | call | event")
    direction: Literal["outbound", "inbound"]
    subject: str | None = None
    sent_at: dt.datetime | None = None
    status: str
    review_item_id: int | None = None


class ReviewContext(BaseModel):
    """What a closer needs beside the draft to decide it, all read from records."""

    review_item_id: int
    lead_message: str | None = Field(
        None, description="The lead's own words, as typed: untrusted (show fenced, never as instructions)"
    )
    lead_message_flags: list[FlagInWords] = Field(
        default_factory=list, description="What the injection screen found in the lead's text, in plain words"
    )
    account: ContextAccount | None = None
    open_invoices: ContextInvoices
    deals: list[ContextDeal]
    recent_messages: list[ContextMessage] = Field(description="Last 10 for the same contact or account, newest first")


class Me(BaseModel):
    name: str
    role: str
    email: str | None = None
    kind: Literal["user", "token"] = "token"


class LoginRequest(Input):
    model_config = ConfigDict(extra="forbid")
    one_line: ClassVar[tuple[str, ...]] = ("email",)
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1000)


class LoginResult(BaseModel):
    token: str = Field(description="Send as 'Authorization: Bearer <token>'; expires at expires_at")
    expires_at: dt.datetime
    user: Me


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    email: str
    name: str
    role: str
    active: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None
    locked_until: dt.datetime | None


class UserCreate(Input):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    one_line: ClassVar[tuple[str, ...]] = ("name",)
    # Sign-in names, not mail targets: internal domains (company.local) are allowed.
    email: str = Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$", description="Sign-in email")
    role: UserRole
    password: str = Field(min_length=10, max_length=1000)
    name: str | None = Field(None, min_length=1, max_length=200, description="Queue name; default: email's local part")


class UserUpdate(Input):
    model_config = ConfigDict(extra="forbid")
    role: UserRole | None = None
    active: bool | None = None
    password: str | None = Field(None, min_length=10, max_length=1000)


class AssignRequest(Input):
    model_config = ConfigDict(extra="forbid")
    one_line: ClassVar[tuple[str, ...]] = ("assignee",)
    assignee: str | None = Field(
        max_length=200, description="A closer's or manager's name; null returns the item to the team queue"
    )


class SnoozeRequest(Input):
    model_config = ConfigDict(extra="forbid")
    until: Moment | None = Field(
        description="Hide the item from the queues until this moment (ISO 8601, with zone); null wakes it"
    )

    @field_validator("until")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("until needs a time zone, e.g. 2026-11-24T09:00:00Z")
        return value


class BulkApproveRequest(Input):
    model_config = ConfigDict(extra="forbid")
    ids: list[Id] = Field(min_length=1, max_length=200)
    confirm: Literal[True] = Field(description="Must be true: the reviewer confirmed the selection")


class BulkApproveResult(BaseModel):
    approved: list[int]
    skipped: dict[int, str] = Field(description="Item id -> why it was not approved")


class TimelineEntry(BaseModel):
    at: dt.datetime
    kind: str  # captured | activity | message | review_item | decision | audit
    summary: str
    actor: str | None = None
    review_item_id: int | None = None


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: dt.datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEventRead]
    total: int
    limit: int
    offset: int


class LlmRun(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    purpose: str
    model: str
    calls: int
    tool_calls: int
    prompt_tokens: int | None = Field(description="null: unknown (the endpoint did not report usage)")
    completion_tokens: int | None = Field(description="null: unknown (the endpoint did not report usage)")
    cost_usd: Decimal | None = Field(description="From the per-model price table (0 for local models); null: unknown")
    status: str = Field(description="ok | failed | over_budget (the lead's LLM time budget ran out)")
    error: str | None
    outcome: str | None = Field(None, description="used | partial | not_used: whether the model's output was used")
    mode: str | None = Field(None, description="json_schema | json_object | prompt, with +tools when it called tools")
    duration_ms: int | None = None
    rejections: list[dict[str, str]] | None = Field(
        None, description="Replies and tool calls repaired or rejected: call, problem, action, detail"
    )
    created_at: dt.datetime


class LeadEventIn(Input):
    model_config = ConfigDict(extra="forbid")
    one_line: ClassVar[tuple[str, ...]] = ("event_id",)
    type: LeadEventType
    note: str | None = Field(None, max_length=5000, description="e.g. the reply's text, shown to the closer")
    occurred_at: Moment | None = None
    event_id: str | None = Field(
        None, min_length=1, max_length=200, description="The sender's id: a re-delivery counts once"
    )


class LeadEventRecorded(BaseModel):
    lead_id: int
    type: str
    duplicate: bool = Field(description="true: this event_id was received before; nothing changed")
    cancelled_drafts: int = Field(description="Pending follow-ups cancelled because the event stops the cadence")
    handoff_item: int | None = Field(description="The review item queued for a person (reply, opened proposal)")
    conversion_item: int | None = Field(
        None, description="A proposal to make the lead a deal (a reply asking to buy, a booked meeting), to confirm"
    )


# --- deals -------------------------------------------------------------------------------------------


class StageChange(Input):
    model_config = ConfigDict(extra="forbid")
    stage: OpenStage


class ProposalLine(Input):
    model_config = ConfigDict(extra="forbid")
    one_line: ClassVar[tuple[str, ...]] = ("product",)
    product: str = Field(min_length=1, max_length=200, description="A product name from the price book")
    quantity: int = Field(1, ge=1, le=100_000)


class ProposalRequest(Input):
    model_config = ConfigDict(extra="forbid")
    lines: list[ProposalLine] = Field(default_factory=list, max_length=50)
    discount_pct: Decimal = Field(Decimal("0"), ge=0, le=100, decimal_places=2)


class PricedLine(BaseModel):
    product: str
    quantity: int
    unit_price: str = Field(description="Decimal as text")
    amount: str = Field(description="Decimal as text: unit price x quantity")


class ProposalRead(BaseModel):
    id: int
    number: str
    deal_id: int
    lines: list[PricedLine]
    currency: str
    subtotal: str
    discount_pct: str
    total: str
    terms: str
    valid_until: dt.date
    review_item_id: int | None = Field(description="The review item of its cover email")


class ProjectRead(BaseModel):
    brief: dict[str, Any]
    tasks: list[Any]
    kickoff_on: dt.date


class MilestoneRead(BaseModel):
    seq: int
    name: str
    percent: str
    amount: str
    status: str = Field(description="planned | completed | invoiced")
    invoice_id: int | None


class ProductRead(BaseModel):
    """A price-book entry."""

    model_config = ConfigDict(from_attributes=True)
    name: str
    series: str | None = None
    price: Decimal
    currency: str


class DealSummary(BaseModel):
    """A deal as the pipeline lists it."""

    id: int
    name: str
    stage: str
    outcome: str | None = Field(description="won | lost; null while open")
    lost_reason: str | None = None
    amount: str | None
    currency: str = "USD"
    owner: str | None = Field(None, description="The person who works the deal")
    lead_id: int | None = None
    contact_id: int | None = None
    account_id: int | None = None
    product: str | None = None
    expected_close: dt.date | None = None
    next_step: str | None = None
    next_step_due: dt.date | None = None
    stage_changed_at: dt.datetime | None = None


class DealRead(DealSummary):
    proposals: list[ProposalRead]
    project: ProjectRead | None = Field(description="The delivery hand-off, once signed")
    milestones: list[MilestoneRead]


class DealPage(BaseModel):
    items: list[DealSummary]
    total: int


class LeadConvert(Input):
    """Make a deal of a lead: contact and account come from the lead's records, never from this body."""

    model_config = ConfigDict(extra="forbid")
    one_line: ClassVar[tuple[str, ...]] = ("product", "owner", "name")
    product: str | None = Field(None, max_length=200, description="A product name from the price book")
    value: Decimal | None = Field(None, ge=0, max_digits=14, decimal_places=2, description="Default: the price")
    expected_close: Day | None = None
    owner: str | None = Field(None, max_length=200, description="An active closer or manager; default: who worked it")
    name: str | None = Field(None, max_length=200)


class DealCreate(Input):
    """A deal for a contact already on record (no lead behind it); to make a deal of a lead, convert the lead."""

    model_config = ConfigDict(extra="forbid")
    one_line: ClassVar[tuple[str, ...]] = ("name", "product", "owner")
    contact_id: Id
    name: str | None = Field(None, min_length=1, max_length=200)
    product: str | None = Field(None, max_length=200, description="A product name from the price book")
    value: Decimal | None = Field(None, ge=0, max_digits=14, decimal_places=2, description="Default: the price")
    expected_close: Day | None = None
    owner: str | None = Field(None, max_length=200, description="An active closer or manager; default: you")


class DealUpdate(Input):
    model_config = ConfigDict(extra="forbid")
    one_line: ClassVar[tuple[str, ...]] = ("name", "owner", "next_step", "product")
    name: str | None = Field(None, min_length=1, max_length=200)
    amount: Decimal | None = Field(None, ge=0, max_digits=14, decimal_places=2)
    expected_close: Day | None = None
    owner: str | None = Field(None, max_length=200)
    next_step: str | None = Field(None, max_length=300)
    next_step_due: Day | None = None
    product: str | None = Field(None, max_length=200)


class DealClose(Input):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["won", "lost"]
    reason: str | None = Field(None, max_length=500, description="Required for lost: why it was lost")


class DealClosed(BaseModel):
    deal_id: int
    outcome: str | None = None
    reason: str | None = None
    cancelled_drafts: int | None = None
    duplicate: bool | None = None
    milestones: int | None = None
    kickoff_on: str | None = None


class StageChanged(BaseModel):
    deal_id: int
    stage: str
    proposal: str | None = Field(description="The proposal graph's thread, when entering 'proposal' started one")


class ProposalRequested(BaseModel):
    deal_id: int
    thread_id: str = Field(description="The proposal graph's thread; it renders the proposal and queues its review")
    status: Literal["drafting"]
    lines: list[PricedLine]
    currency: str
    subtotal: str
    discount_pct: str
    total: str


class MilestoneCompleted(BaseModel):
    milestone: int
    invoice_item: int = Field(description="The review item that issues the milestone's invoice")
    update_item: int = Field(description="The review item of the client update email")


# --- ICP rubrics -------------------------------------------------------------------------------------


class RubricContent(Input):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, max_length=60_000, description="The rubric as YAML")


class BacktestRequest(RubricContent):
    source: str | None = Field(None, max_length=50, description="Only closed deals imported from this source")


class RubricValidation(BaseModel):
    valid: bool
    errors: list[str]
    version: str | None = None


class ActiveRubric(BaseModel):
    version: str
    content: str
    origin: str = Field(description="'published' (a saved version) or 'file' (REVLOOP_RUBRIC_PATH)")


class IcpRubric(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    version: str
    status: str
    content: str
    created_by: str
    created_at: dt.datetime
    published_by: str | None
    published_at: dt.datetime | None
    backtest: dict[str, Any] | None


class GradeBacktest(BaseModel):
    n: int
    won: int
    win_rate: float | None
    lift: float | None = Field(description="Win rate over the base win rate")


class RubricBacktest(BaseModel):
    version: str
    auc: float | None
    grades: dict[str, GradeBacktest] = Field(description="Grade (A, B, C, D) -> closed deals and win rate")


class Backtest(BaseModel):
    source: str | None
    closed_deals: int
    won: int
    base_win_rate: float
    draft: RubricBacktest
    published: RubricBacktest
    open_leads: int
    open_leads_changing_grade: int
    grade_changes: dict[str, int] = Field(description="'B->A' -> open leads whose grade would change so")


# --- scoring -----------------------------------------------------------------------------------------


class ScoringModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    version: str
    status: str
    algorithm: str
    n_won: int
    n_lost: int
    auc: float
    brier: float
    log_loss: float
    calibration_error: float
    report: dict[str, Any]
    domain: dict[str, Any] | None = Field(
        None, description="The population it learned from: sources, segment values, field coverage, learned_from"
    )
    trained_at: dt.datetime
    promoted_at: dt.datetime | None
    promoted_by: str | None


class ReliabilityBin(BaseModel):
    bin: int
    low: float
    high: float
    n: int
    predicted: float = Field(description="Mean predicted probability in the bin")
    observed: float = Field(description="Observed win rate in the bin")


class LiftDecile(BaseModel):
    decile: int = Field(description="1 = the tenth of held-out deals the model ranked highest")
    n: int
    predicted: float
    win_rate: float
    lift: float | None = Field(description="The decile's win rate over the overall win rate")


class ModelCharts(BaseModel):
    """A model's calibration (reliability bins) and lift by decile on its held-out split."""

    version: str
    status: str
    algorithm: str
    split: dict[str, Any] | None
    auc: float
    brier: float
    ece: float
    n: int = Field(description="Held-out deals the charts are computed on")
    base_rate: float
    reliability: list[ReliabilityBin]
    lift: list[LiftDecile]


# --- message templates -------------------------------------------------------------------------------


class TemplateText(Input):
    model_config = ConfigDict(extra="forbid")
    one_line: ClassVar[tuple[str, ...]] = ("key", "subject")
    key: str = Field(min_length=1, max_length=50, description="Which message, e.g. first_touch_fast, dunning_firm")
    subject: str = Field(max_length=2000, description="One line: no CR or LF")
    body: str = Field(max_length=20_000)


class TemplateVersion(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    key: str
    version: int
    status: str = Field(description="draft | approved | archived")
    subject: str
    body: str
    created_by: str
    created_at: dt.datetime
    approved_by: str | None
    approved_at: dt.datetime | None


class TemplateRead(BaseModel):
    key: str
    in_use: str = Field(description="The version drafts use now: 'v3' (approved) or 'built-in'")
    subject: str
    body: str
    fields: list[str] = Field(description="Merge fields the template may use")
    required: list[str] = Field(description="Merge fields the template must use")
    versions: list[TemplateVersion]


class TemplatePreview(BaseModel):
    valid: bool
    errors: list[str]
    subject: str | None = Field(None, description="Rendered with sample data; only when valid")
    body: str | None = Field(None, description="Rendered with sample data; only when valid")


# --- KPIs --------------------------------------------------------------------------------------------


class KpiFunnelStep(BaseModel):
    stage: str = Field(description="captured | contacted | opportunity | won")
    count: int
    conversion_from_previous: float | None


class KpiStageAging(BaseModel):
    stage: str
    open_deals: int
    dated_deals: int = Field(0, description="Open deals whose records say when they entered the stage (aged ones)")
    median_days: float | None = Field(description="Days in the stage, median of the dated deals; null: none dated")
    max_days: float | None = Field(description="Days in the stage, the longest; never below median_days")


class KpiReviewer(BaseModel):
    reviewer: str
    reviews: int
    median_review_seconds: float | None


class KpiTemplate(BaseModel):
    template: str
    decisions: int
    approval_rate: float | None = Field(description="Approved as drafted")
    edit_rate: float | None = Field(description="Approved with edits")
    reject_rate: float | None


class Kpis(BaseModel):
    median_proposal_turnaround_hours: float | None
    proposals_sent: int
    window_days: int
    since: dt.datetime
    generated_at: dt.datetime
    leads_captured: int = Field(description="Leads captured in the window by their own date (live or dated imports)")
    imported_leads_left_out: int = Field(
        0, description="Leads imported in the window without a capture date of their own: not in the funnel"
    )
    median_minutes_to_first_touch: float | None
    leads_touched: int
    next_action_within_sla: float | None = Field(description="Share of review items decided by their deadline")
    sla_items_judged: int
    funnel: list[KpiFunnelStep]
    stage_aging: list[KpiStageAging]
    reviewers: list[KpiReviewer]
    median_review_seconds: float | None
    templates: list[KpiTemplate] = Field(description="Templates whose drafts are most edited or rejected first")


# --- billing -----------------------------------------------------------------------------------------


class InvoiceRead(BaseModel):
    id: int
    number: str
    account_id: int
    amount: str
    balance: str = Field(description="The amount minus the payments allocated to it")
    currency: str
    issued_on: dt.date
    due_on: dt.date
    status: str = Field(description="issued | paid | void")
    disputed: bool
    paid_on: dt.date | None
    fiscal_status: str | None = Field(
        None, description="E-invoicing: null (no fiscal step) | pending | accepted | rejected; only accepted is sent"
    )
    fiscal_receipt_number: str | None = Field(None, description="The tax authority's control unit receipt number")
    fiscal_error: str | None = Field(None, description="Why the last fiscal submission failed (shown to managers)")


class InvoicePage(BaseModel):
    total: int
    items: list[InvoiceRead]


class ExpectedWeek(BaseModel):
    week_of: dt.date
    amount: str


class UnpaidInvoice(BaseModel):
    id: int
    number: str
    account_id: int
    due_on: dt.date
    days_past_due: int
    balance: str
    disputed: bool
    expected_on: dt.date | None = Field(description="From the customer's average delay; null when disputed")
    late_share: float = Field(description="Share of the customer's invoices paid late")


class OpenDeals(BaseModel):
    stage: str
    deals: int
    amount: str


class CashView(BaseModel):
    as_of: dt.date
    receivable: str
    sales_last_days: str
    dso_days: float | None
    dso_window_days: int
    aging: dict[str, str] = Field(description="Aging bucket -> amount owed")
    expected_by_week: list[ExpectedWeek]
    unpaid: list[UnpaidInvoice]
    open_deals: list[OpenDeals]


# --- weekly momentum review --------------------------------------------------------------------------


class WeeklyAgendaItem(BaseModel):
    section: Literal["changed", "pipeline", "stalled", "invoices"] = Field(description="The section of this review")
    title: str
    minutes: int = Field(description="Time to give it in the meeting")
    headline: str = Field(description="The section's counts in one line")


class WeeklyDeal(BaseModel):
    id: int
    name: str
    stage: str = Field(description="The stage it was in at the end of as_of")
    owner: str | None
    amount: str | None
    currency: str
    product: str | None
    days_in_stage: int
    next_step: str | None
    next_step_due: dt.date | None
    next_step_overdue: bool
    expected_close: dt.date | None
    last_activity_at: dt.datetime = Field(
        description="Latest activity: logged activity, review item sent, stage change, creation"
    )
    days_quiet: int = Field(description="Days from the last activity to as_of")


class WeeklyStage(BaseModel):
    stage: str
    deals: int
    amount: str
    oldest_days_in_stage: int | None
    items: list[WeeklyDeal] = Field(description="Largest value first, cut to `limit`")


class WeeklyPipeline(BaseModel):
    open_deals: int
    amount: str
    without_next_step: int
    next_step_overdue: int
    stages: list[WeeklyStage] = Field(description="Open stages in pipeline order")


class WeeklyStalled(BaseModel):
    after_days: int = Field(description="No activity for this many days (REVLOOP_STALE_DEAL_DAYS)")
    deals: int
    amount: str
    without_next_step: int
    items: list[WeeklyDeal] = Field(description="Quiet longest first, cut to `limit`")


class WeeklyDealChange(BaseModel):
    deal_id: int
    name: str
    owner: str | None
    stage: str = Field(description="Its stage now")
    amount: str | None
    currency: str
    at: dt.datetime | None
    reason: str | None = Field(None, description="Why it was lost")


class WeeklyStageMove(BaseModel):
    deal_id: int
    name: str | None
    owner: str | None
    from_stage: str | None
    to_stage: str | None
    at: dt.datetime
    actor: str


class WeeklyPaidInvoice(BaseModel):
    id: int
    number: str
    account_id: int
    account: str | None
    deal_id: int | None
    amount: str
    currency: str
    paid_on: dt.date


class WeeklyChanges(BaseModel):
    since: dt.datetime
    until: dt.datetime
    created: int = Field(description="Deals made in revloop (imports are counted apart)")
    imported: int
    won: int
    won_amount: str
    lost: int
    lost_amount: str
    stage_moves: int
    invoices_paid: int
    paid_amount: str
    created_deals: list[WeeklyDealChange]
    won_deals: list[WeeklyDealChange]
    lost_deals: list[WeeklyDealChange]
    moves: list[WeeklyStageMove]
    paid_invoices: list[WeeklyPaidInvoice]


class WeeklyAgingBucket(BaseModel):
    bucket: str = Field(description="Days past due")
    invoices: int
    amount: str


class WeeklyUnpaidInvoice(BaseModel):
    id: int
    number: str
    account_id: int
    account: str | None
    due_on: dt.date
    days_past_due: int
    bucket: str
    balance: str
    disputed: bool
    expected_on: dt.date | None


class WeeklyInvoices(BaseModel):
    unpaid_invoices: int
    receivable: str
    overdue: int
    disputed: int
    dso_days: float | None
    buckets: list[WeeklyAgingBucket]
    items: list[WeeklyUnpaidInvoice] = Field(description="Most days past due first, cut to `limit`")


class WeeklyReview(BaseModel):
    """A 20-minute agenda: the sections in the order to walk them, each with its counts, then its lists."""

    as_of: dt.date
    since: dt.datetime = Field(description="Start of the week reviewed (as_of - 6 days, 00:00 UTC)")
    until: dt.datetime = Field(description="End of the week reviewed (the day after as_of, 00:00 UTC)")
    minutes: int
    agenda: list[WeeklyAgendaItem]
    changed: WeeklyChanges
    pipeline: WeeklyPipeline
    stalled: WeeklyStalled
    invoices: WeeklyInvoices


# --- evals -------------------------------------------------------------------------------------------


class EvalFailure(BaseModel):
    metric: str
    op: str | None = None
    threshold: Any = None
    actual: Any = None


class EvalThreshold(BaseModel):
    metric: str
    op: str
    value: Any
    regression: Any = Field(description="How far the metric may move against run A before compare fails")


class EvalCase(BaseModel):
    id: str
    passed: bool
    detail: str


class EvalRunSummary(BaseModel):
    run_id: str
    suite: str
    engine: str
    passed: bool
    metrics: dict[str, Any]
    failures: list[EvalFailure] = Field(description="Thresholds not met")
    meta: dict[str, Any] = Field(description="What the run ran against: revision, rubric, model, engine, cost...")
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    report_path: str | None


class EvalRunRead(EvalRunSummary):
    thresholds: list[EvalThreshold]
    cases: list[EvalCase]


class MetricDelta(BaseModel):
    a: Any
    b: Any
    delta: Any = Field(description="b - a when both are numbers, else null")


class ChangedCase(BaseModel):
    id: str
    a: bool
    b: bool
    detail: str


class Regression(BaseModel):
    metric: str
    a: Any
    b: Any
    allowed: Any


class EvalComparison(BaseModel):
    suite: str
    a: str
    b: str
    metrics: dict[str, MetricDelta]
    changed_cases: list[ChangedCase]
    regressions: list[Regression]
    newly_failing: list[str]


# --- webhooks ----------------------------------------------------------------------------------------


class PaymentNotice(Input):
    """What a payment provider tells us. payment_id makes a re-delivery count once."""

    model_config = ConfigDict(extra="ignore")
    one_line: ClassVar[tuple[str, ...]] = ("payment_id", "currency", "invoice_number")
    payment_id: str = Field(min_length=1, max_length=200)
    amount: Decimal = Field(gt=0, max_digits=14, decimal_places=2)
    currency: str = Field("USD", min_length=3, max_length=3)
    received_on: Day
    invoice_number: str | None = Field(None, max_length=50)
    account_id: Id | None = None


class PaymentRecorded(BaseModel):
    payment_id: str
    duplicate: bool = Field(description="true: this payment_id was recorded before; nothing changed")
    unallocated: str = Field(description="Credit left after paying the customer's open invoices")


class StripeEventResult(BaseModel):
    """What a Stripe event did. A replayed event id answers duplicate=true and changes nothing."""

    event_id: str
    type: str
    duplicate: bool
    status: str = Field(description="applied | held | ignored (or, for a duplicate, what the first delivery did)")
    reason: str | None = None
    payment_id: str | None = Field(None, description="The payment's id in revloop's ledger (stripe:<id>)")
    invoice_number: str | None = None
    unallocated: str | None = Field(None, description="Credit left after paying the customer's open invoices")
    refunded_now: str | None = Field(None, description="charge.refunded: the amount taken back by this event")
    already_recorded: bool | None = Field(None, description="true: the payment was counted before (another event)")


class MpesaAck(BaseModel):
    """Daraja's expected acknowledgement (ResultCode 0 = accepted), plus what revloop did with the payment."""

    ResultCode: int = 0
    ResultDesc: str = "Accepted"
    status: str | None = Field(None, description="applied | held | failed (STK cancelled) | a duplicate's status")
    duplicate: bool | None = None
    transaction: str | None = Field(None, description="The M-Pesa receipt (TransID / MpesaReceiptNumber)")
    checkout_request_id: str | None = None
    invoice_number: str | None = None
    balance: str | None = Field(None, description="The invoice's balance after this payment")
    unallocated: str | None = Field(None, description="Overpayment kept as the customer's credit")
    already_recorded: bool | None = Field(None, description="true: this M-Pesa receipt was counted before")
    reason: str | None = None


class HeldPayment(BaseModel):
    id: int
    provider: str
    event_id: str
    kind: str
    amount: str | None
    currency: str | None
    reference: str | None = Field(description="The account reference / invoice number the payer gave")
    reason: str | None
    received_at: dt.datetime


class HeldPaymentPage(BaseModel):
    total: int
    items: list[HeldPayment]


class HeldPaymentAssign(Input):
    one_line: ClassVar[tuple[str, ...]] = ("invoice_number",)
    invoice_number: str = Field(min_length=1, max_length=50, description="The invoice (ours) this money pays")


class PaymentRequestQueued(BaseModel):
    review_item_id: int
    invoice_number: str
    amount: str = Field(description="The balance asked for (whole shillings); re-read when the item is executed")
    to: str = Field(description="The billing contact's phone number on record")


class FiscalResubmitted(BaseModel):
    invoice_id: int
    number: str
    fiscal_status: str


class SignatureNotice(Input):
    """What the e-signature provider tells us; only a completed envelope acts."""

    model_config = ConfigDict(extra="ignore")
    one_line: ClassVar[tuple[str, ...]] = ("envelope_id",)
    envelope_id: str = Field(min_length=1, max_length=200)
    deal_id: Id
    status: str = Field(max_length=30, description="completed | declined | voided | ...")
    signed_at: Moment


class SignatureRecorded(BaseModel):
    deal_id: int
    duplicate: bool | None = Field(None, description="Completed notices: true when the deal was already won")
    milestones: int | None = Field(None, description="Completed notices acted on: billing milestones created")
    kickoff_on: dt.date | None = Field(None, description="Completed notices acted on: the delivery kickoff day")
    status: str
    acted: bool = Field(description="true: the deal was won now (hand-off, milestones, onboarding drafted)")


class Health(BaseModel):
    status: Literal["ok"]


class SalesAgentRead(BaseModel):
    """A sales agent routing may assign leads to."""

    id: int
    name: str
    manager: str | None
    regional_office: str | None
    services: list[str] = Field(description="Service types routed to this agent first (trimmed, lower-case)")
    user_id: int | None = Field(None, description="The user who works this agent's leads; null: no account")
    user_name: str | None = Field(None, description="That user's name (what routing writes as the assignee)")
    user_email: str | None = None
    routable: bool = Field(
        False, description="Receives leads: linked to an active closer or manager (else its leads go to the team queue)"
    )
    open_deals: int = Field(description="Open deals the agent holds")
    updated_at: dt.datetime


class SalesAgentLink(Input):
    """The user who works this agent's leads; null unlinks the agent (its leads go to the team queue)."""

    model_config = ConfigDict(extra="forbid")
    user_id: Id | None = Field(description="An active closer's or manager's user id, or null to unlink")


class SalesAgentServices(Input):
    """The agent's service types, replacing the ones they have; [] clears them."""

    model_config = ConfigDict(extra="forbid")
    services: list[str] = Field(
        max_length=20,
        description="Service types (a lead's custom.service), e.g. ['collections', 'onboarding']; "
        "stored trimmed, lower-case, each once",
    )

    @field_validator("services")
    @classmethod
    def _each_service(cls, value: list[str]) -> list[str]:
        for position, item in enumerate(value):
            if not item.strip():
                raise ValueError(f"item {position} is blank")
            if len(item.strip()) > 100:
                raise ValueError(f"item {position} is longer than 100 characters")
        return value


class NotificationRead(BaseModel):
    """Something a person must know: a send that failed, an integration that went down or recovered."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    severity: Literal["info", "warning", "critical"]
    title: str
    body: str
    entity_type: str | None
    entity_id: str | None
    created_at: dt.datetime
    read_at: dt.datetime | None
    link: str | None = Field(None, description="The review app's page of what it is about (REVLOOP_APP_URL)")


class NotificationList(BaseModel):
    unread: int
    items: list[NotificationRead]


NotificationKindName = one_of(*NotificationKind)
_HHMM = r"([01]\d|2[0-3]):[0-5]\d"


class ChannelChoice(Input):
    """On/off per channel for one kind; a channel left out keeps its setting."""

    model_config = ConfigDict(extra="forbid")
    in_app: StrictBool | None = Field(None, description="The Notifications page and badge")
    email: StrictBool | None = Field(None, description="Email to your own address")


class QuietHoursSetting(Input):
    """While quiet, notification email waits and goes when they end; in-app still appears."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    start: str = Field(max_length=5, description="Local time HH:MM when quiet begins", examples=["22:00"])
    end: str = Field(max_length=5, description="Local time HH:MM when it ends (before start: over midnight)")
    timezone: str = Field(max_length=64, description="IANA time zone", examples=["Europe/Berlin"])

    @field_validator("start", "end")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        import re

        if not re.fullmatch(_HHMM, value):
            raise ValueError(f"must be a local time HH:MM from 00:00 to 23:59, got {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Europe/Berlin") from None
        return value

    @field_validator("end")
    @classmethod
    def _not_empty_span(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("start"):
            raise ValueError("must differ from start")
        return value


class NotificationPreferences(BaseModel):
    channels: dict[str, dict[str, bool]] = Field(description="kind -> {in_app, email}: on or off")
    required_in_app: list[str] = Field(description="Kinds that always show in the app (someone must act)")
    quiet_hours: QuietHoursSetting | None
    email: str = Field(description="Where notification email goes (your user record's address)")


class NotificationPreferencesUpdate(Input):
    model_config = ConfigDict(extra="forbid")
    channels: dict[NotificationKindName, ChannelChoice] = Field(
        default_factory=dict, description="Only the kinds and channels given change"
    )
    quiet_hours: QuietHoursSetting | None = Field(None, description="Leave out to keep them; null removes them")


class TeamChannels(BaseModel):
    webhook: dict[str, bool] = Field(description="kind -> posted to the team webhook")
    webhook_configured: bool = Field(description="REVLOOP_NOTIFY_WEBHOOK_URL is set")
    webhook_signed: bool = Field(description="REVLOOP_NOTIFY_WEBHOOK_SECRET is set (posts carry an HMAC signature)")


class TeamChannelsUpdate(Input):
    model_config = ConfigDict(extra="forbid")
    webhook: dict[NotificationKindName, StrictBool] = Field(description="Only the kinds given change")


class IntegrationHealth(BaseModel):
    name: str = Field(description="database | mail | work_queue | knowledge_base | llm | webhooks | crm")
    healthy: bool
    status: Literal["ok", "down", "not_configured"]
    detail: str
    latency_ms: float | None = None
    checked_at: dt.datetime | None = None
    last_success_at: dt.datetime | None = Field(None, description="The last check that found it working")
    changed_at: dt.datetime | None = Field(None, description="When it last turned healthy or unhealthy")
    sync: dict[str, Any] | None = Field(
        None,
        description="CRM connectors: the incremental sync's last success, last error and lag (seconds since the "
        "last successful sync), and write-backs pending or failed",
    )


class IntegrationsHealth(BaseModel):
    healthy: bool = Field(description="True when every integration is healthy")
    integrations: list[IntegrationHealth]


class TokenCreate(Input):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Who or what uses it, e.g. 'web-form'")
    role: str = Field(description="closer | manager | evaluator | admin | integration")
    scopes: list[str] | None = Field(
        None, max_length=40, description="e.g. ['leads:write']; <area>:read or <area>:write; none = the role's all"
    )
    expires_in_days: int | None = Field(None, ge=1, le=3650, description="None: never expires")


class TokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: str
    prefix: str = Field(description="The first characters of the token, to recognise it")
    scopes: list[str] | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


class TokenCreated(BaseModel):
    token: str = Field(description="Shown only now: only its hash is stored")
    details: TokenRead
