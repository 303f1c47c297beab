"""API schemas (pydantic), separate from the ORM models. The review app imports only these."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StrictBool, field_validator

Role = Literal["closer", "manager", "evaluator", "admin", "integration"]
ROLES: tuple[str, ...] = ("closer", "manager", "evaluator", "admin", "integration")

CustomValue = str | int | float | bool | None


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class Consent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: StrictBool = Field(description="May we email this person?")
    call: StrictBool = Field(description="May we call this person?")


class LeadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
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


SlaState = Literal["breached", "due_soon", "on_track", "none"]


class ReviewItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: str
    status: str
    lead_id: int | None
    template: str | None
    brief: dict[str, Any]
    draft: dict[str, Any]
    created_at: dt.datetime
    decided_at: dt.datetime | None
    executed_at: dt.datetime | None
    result: dict[str, Any] | None
    decision: DecisionRead | None
    queue: str = "main"
    sla_due_at: dt.datetime | None = None
    assignee: str | None = None
    guard_flags: list[str] = []
    grade: str | None = None
    snoozed_until: dt.datetime | None = None
    first_opened_at: dt.datetime | None = None
    redraft_of: int | None = None
    sla_state: SlaState = Field("none", description="breached | due_soon | on_track | none (no deadline)")
    undo_until: dt.datetime | None = Field(
        None, description="While approved and before this moment, the approval can be undone (nothing sent yet)"
    )
    low_risk: bool = Field(False, description="May be bulk-approved: pending, main queue, no guard flags, not D")


class ReviewItemPage(BaseModel):
    items: list[ReviewItem]
    total: int
    limit: int
    offset: int


class ApproveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str | None = Field(None, min_length=1, max_length=300, description="Edited subject; omit to keep")
    body: str | None = Field(None, min_length=1, max_length=20_000, description="Edited body; omit to keep")
    acknowledge_flags: bool = Field(
        False, description="Required (true) to approve an item whose draft carries grounding-guard flags"
    )

    _strip = field_validator("subject", "body", mode="before")(_strip)


class RejectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=3, max_length=2000, description="Why the draft is rejected")
    redraft: bool = Field(False, description="Ask the agent for a new draft (queued as a new item)")
    template: str | None = Field(
        None, max_length=100, description="With redraft: the template the new draft should use instead"
    )

    _strip = field_validator("reason", mode="before")(_strip)


class Me(BaseModel):
    name: str
    role: str
    email: str | None = None
    kind: Literal["user", "token"] = "token"


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1000)


class LoginResult(BaseModel):
    token: str = Field(description="Send as 'Authorization: Bearer <token>'; expires at expires_at")
    expires_at: dt.datetime
    user: Me


UserRole = Literal["closer", "manager", "evaluator", "admin"]


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


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    # Sign-in names, not mail targets: internal domains (company.local) are allowed.
    email: str = Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$", description="Sign-in email")
    role: UserRole
    password: str = Field(min_length=10, max_length=1000)
    name: str | None = Field(None, min_length=1, max_length=200, description="Queue name; default: email's local part")


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: UserRole | None = None
    active: bool | None = None
    password: str | None = Field(None, min_length=10, max_length=1000)


class AssignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee: str | None = Field(description="A closer's or manager's name; null returns the item to the team queue")


class SnoozeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    until: dt.datetime | None = Field(
        description="Hide the item from the queues until this moment (ISO 8601, with zone); null wakes it"
    )

    @field_validator("until")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("until needs a time zone, e.g. 2026-11-24T09:00:00Z")
        return value


class BulkApproveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[int] = Field(min_length=1, max_length=200)
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
