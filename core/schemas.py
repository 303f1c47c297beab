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

    _strip = field_validator("reason", mode="before")(_strip)


class Me(BaseModel):
    name: str
    role: str
