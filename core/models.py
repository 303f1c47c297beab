"""ORM models (SQLAlchemy 2 typed). Schemas for the API live elsewhere."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates
from sqlalchemy.types import TypeDecorator

# Stable constraint names so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TZDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware in Python on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, dt.datetime: TZDateTime, Decimal: Numeric(14, 2)}


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Account(TimestampMixin, Base):
    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("external_source", "external_id", name="uq_accounts_external"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # The name without legal suffixes, case and punctuation ("ACME Corporation Ltd" -> "acme"), kept in step with
    # the name: capture and imports find an account by it when the domain does not (crm.dedupe).
    name_key: Mapped[str | None] = mapped_column(String(200), index=True)
    domain: Mapped[str | None] = mapped_column(String(253), unique=True)
    industry: Mapped[str | None] = mapped_column(String(100))
    employees: Mapped[int | None] = mapped_column(Integer)
    country: Mapped[str | None] = mapped_column(String(100))
    revenue_musd: Mapped[Decimal | None] = mapped_column()
    year_established: Mapped[int | None] = mapped_column(Integer)
    subsidiary_of: Mapped[str | None] = mapped_column(String(200))
    # Where each enriched field came from ({"industry": "directory:fortune1000"}); empty for typed-in values.
    field_sources: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")
    # Imported records remember where they came from, so a re-run updates instead of duplicating.
    external_source: Mapped[str | None] = mapped_column(String(50))
    external_id: Mapped[str | None] = mapped_column(String(200))
    # The customer's id at Stripe once revloop created it there (REVLOOP_BILLING_BACKEND=stripe).
    stripe_customer_id: Mapped[str | None] = mapped_column(String(100))

    contacts: Mapped[list[Contact]] = relationship(back_populates="account")

    @validates("name")
    def _keep_name_key(self, _key: str, name: str) -> str:
        from core.names import company_key

        self.name_key = company_key(name)[:200] or None
        return name


class Contact(TimestampMixin, Base):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    # Nullable: a contact who first wrote on SMS or WhatsApp is known by number only until they give an address.
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    title: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(50))
    do_not_email: Mapped[bool] = mapped_column(Boolean, default=False)
    do_not_call: Mapped[bool] = mapped_column(Boolean, default=False)
    lawful_basis: Mapped[str | None] = mapped_column(String(50))
    # The number SMS and WhatsApp messages go to (E.164, "+14155550100"): the only recipient those channels use.
    phone_e164: Mapped[str | None] = mapped_column(String(16), index=True)
    # IANA zone ("Africa/Nairobi") for quiet hours; None: the number's country's zone when it has one.
    time_zone: Mapped[str | None] = mapped_column(String(64))
    preferred_channel: Mapped[str | None] = mapped_column(String(10))  # email | sms | whatsapp

    account: Mapped[Account | None] = relationship(back_populates="contacts")


class Lead(TimestampMixin, Base):
    __tablename__ = "leads"
    __table_args__ = (UniqueConstraint("external_source", "external_id", name="uq_leads_external"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    # LangGraph thread of this lead; a uuid so it never collides with an old thread.
    thread_id: Mapped[str] = mapped_column(String(64), unique=True, default=lambda: f"lead-{uuid.uuid4()}")
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    # Nullable: historical imports (e.g. X Education) carry no address; they are never contacted.
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    company: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(50))
    website: Mapped[str | None] = mapped_column(String(500))
    message: Mapped[str | None] = mapped_column(Text)
    external_source: Mapped[str | None] = mapped_column(String(50))
    external_id: Mapped[str | None] = mapped_column(String(200))
    captured_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The features as they were when the lead arrived; training reads these, never later edits.
    capture_features: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str | None] = mapped_column(String(100))
    consent_email: Mapped[bool] = mapped_column(Boolean, default=True)
    consent_call: Mapped[bool] = mapped_column(Boolean, default=True)
    custom: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(30), default="new", index=True)
    duplicate_count: Mapped[int] = mapped_column(Integer, default=0)
    # Automated follow-ups stop for good on a reply, a booked meeting, an unsubscribe or a bounce.
    cadence_stopped_at: Mapped[dt.datetime | None] = mapped_column()
    cadence_stop_reason: Mapped[str | None] = mapped_column(String(100))
    score: Mapped[int | None] = mapped_column(Integer)
    grade: Mapped[str | None] = mapped_column(String(1))
    brief: Mapped[dict[str, Any] | None] = mapped_column()
    rubric_version: Mapped[str | None] = mapped_column(String(100))
    rubric_score: Mapped[int | None] = mapped_column(Integer)
    model_version: Mapped[str | None] = mapped_column(String(100))
    model_probability: Mapped[float | None] = mapped_column(Float)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)

    contact: Mapped[Contact | None] = relationship()
    account: Mapped[Account | None] = relationship()


class Deal(TimestampMixin, Base):
    __tablename__ = "deals"
    __table_args__ = (UniqueConstraint("external_source", "external_id", name="uq_deals_external"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)
    stage: Mapped[str] = mapped_column(String(30), default="prospecting")
    amount: Mapped[Decimal | None] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    expected_close: Mapped[dt.date | None] = mapped_column(Date)
    outcome: Mapped[str | None] = mapped_column(String(10))  # won | lost | None while open
    closed_at: Mapped[dt.datetime | None] = mapped_column()
    engaged_at: Mapped[dt.date | None] = mapped_column(Date)
    stage_changed_at: Mapped[dt.datetime | None] = mapped_column()  # for stage aging
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"), index=True)
    sales_agent_id: Mapped[int | None] = mapped_column(ForeignKey("sales_agents.id"), index=True)
    # The person who works the deal (a user's name, like a review item's assignee).
    owner: Mapped[str | None] = mapped_column(String(200), index=True)
    lost_reason: Mapped[str | None] = mapped_column(String(500))
    next_step: Mapped[str | None] = mapped_column(String(300))
    next_step_due: Mapped[dt.date | None] = mapped_column(Date)
    external_source: Mapped[str | None] = mapped_column(String(50))
    external_id: Mapped[str | None] = mapped_column(String(200))

    lead: Mapped[Lead | None] = relationship()
    account: Mapped[Account | None] = relationship()


class Company(TimestampMixin, Base):
    """The offline company directory used for enrichment (firmographics), separate from CRM accounts."""

    __tablename__ = "companies"
    __table_args__ = (UniqueConstraint("source", "name", name="uq_companies_source_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(50))  # fortune1000 | generic:<file>
    name: Mapped[str] = mapped_column(String(200), index=True)
    domain: Mapped[str | None] = mapped_column(String(253), index=True)
    sector: Mapped[str | None] = mapped_column(String(100))
    industry: Mapped[str | None] = mapped_column(String(100))
    employees: Mapped[int | None] = mapped_column(Integer)
    revenue_musd: Mapped[Decimal | None] = mapped_column()
    region: Mapped[str | None] = mapped_column(String(100))  # state or country


class EnrichmentCache(Base):
    """Lookup results kept for a while, so a burst of leads from one company costs one lookup."""

    __tablename__ = "enrichment_cache"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column()
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class Product(TimestampMixin, Base):
    """The price book: proposals and invoices take prices from here, never from text."""

    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    series: Mapped[str | None] = mapped_column(String(100))
    price: Mapped[Decimal] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3), default="USD")


class SalesAgent(TimestampMixin, Base):
    __tablename__ = "sales_agents"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    manager: Mapped[str | None] = mapped_column(String(200))
    regional_office: Mapped[str | None] = mapped_column(String(100))
    services: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")  # service types handled
    # The person who works this agent's leads: routing assigns only to agents linked to an active user.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)


class IcpRubric(Base):
    """A version of the written ICP: draft -> published (one published at a time) -> archived."""

    __tablename__ = "icp_rubrics"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="draft", index=True)
    content: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    published_by: Mapped[str | None] = mapped_column(String(200))
    published_at: Mapped[dt.datetime | None] = mapped_column()
    backtest: Mapped[dict[str, Any] | None] = mapped_column()


class ScoringModel(Base):
    """A trained outcome model. The artifact is a skops file (no pickle of untrusted bytes)."""

    __tablename__ = "scoring_models"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="challenger", index=True)  # challenger|champion|retired
    algorithm: Mapped[str] = mapped_column(String(50))
    data_window_start: Mapped[dt.datetime | None] = mapped_column()
    data_window_end: Mapped[dt.datetime | None] = mapped_column()
    n_won: Mapped[int] = mapped_column(Integer)
    n_lost: Mapped[int] = mapped_column(Integer)
    feature_spec: Mapped[dict[str, Any]] = mapped_column()
    auc: Mapped[float] = mapped_column(Float)
    brier: Mapped[float] = mapped_column(Float)
    log_loss: Mapped[float] = mapped_column(Float)
    calibration_error: Mapped[float] = mapped_column(Float)
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)  # CV scores, baselines, split, charts
    # The population it learned from (sources, segment values, field coverage): scoring.model.learn_domain.
    domain: Mapped[dict[str, Any] | None] = mapped_column()
    artifact: Mapped[bytes] = mapped_column(LargeBinary)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64))  # checked before the artifact is loaded
    trained_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    promoted_at: Mapped[dt.datetime | None] = mapped_column()
    promoted_by: Mapped[str | None] = mapped_column(String(200))


class Activity(Base):
    __tablename__ = "activities"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))  # email_sent, call_task, note, ...
    summary: Mapped[str] = mapped_column(Text)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    deal_id: Mapped[int | None] = mapped_column(ForeignKey("deals.id"), index=True)
    review_item_id: Mapped[int | None] = mapped_column(ForeignKey("review_items.id"), unique=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# The queue's order and its snooze and escalated filters, after status (and queue or assignee) in its indexes.
QUEUE_ORDER = ("sla_due_at", "snoozed_until", "grade", "created_at", "escalated_at")


class ReviewItem(TimestampMixin, Base):
    __tablename__ = "review_items"
    # The queue page: pending items by deadline, in all, per queue and per assignee (routing's capped load counts
    # too). Each index also holds what the page filters and sorts by after the deadline (snooze, grade, age,
    # escalated), so a page, a later page and the capped total read the index alone, never 100k rows. The SLA watch
    # finds breached items not yet escalated without reading the escalated ones.
    __table_args__ = (
        Index("ix_review_items_status_sla_due_at", "status", *QUEUE_ORDER),
        Index("ix_review_items_status_queue_sla_due_at", "status", "queue", *QUEUE_ORDER),
        Index("ix_review_items_status_assignee_sla_due_at", "status", "assignee", *QUEUE_ORDER),
        Index("ix_review_items_status_escalated_at_sla_due_at", "status", "escalated_at", "sla_due_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))  # ItemKind: email | call_task | invoice
    # ItemSource: who queued it (lead graph, proposal graph, dunning, cadence, ...); dispatch reads this.
    source: Mapped[str] = mapped_column(String(20), index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)  # ItemStatus
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    thread_id: Mapped[str] = mapped_column(String(64), index=True)
    # Unique, so a re-run never queues the same item twice: for graph items the LangGraph Interrupt.id the
    # resume answers; for items of the scans and the deal flow a step key ("dunning-12-+7").
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    template: Mapped[str | None] = mapped_column(String(100))
    brief: Mapped[dict[str, Any]] = mapped_column(default=dict)
    draft: Mapped[dict[str, Any]] = mapped_column(default=dict)
    decided_at: Mapped[dt.datetime | None] = mapped_column()
    executed_at: Mapped[dt.datetime | None] = mapped_column()
    result: Mapped[dict[str, Any] | None] = mapped_column()
    # main | exception (leads that fit no pattern wait for a human, not a cadence)
    queue: Mapped[str] = mapped_column(String(20), default="main", server_default="main", index=True)
    sla_due_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    assignee: Mapped[str | None] = mapped_column(String(200), index=True)
    # Copied from the brief at queue time so the queue filters and sorts by it without a join.
    grade: Mapped[str | None] = mapped_column(String(1), index=True)
    snoozed_until: Mapped[dt.datetime | None] = mapped_column()
    # When a reviewer first opened the item: review time is measured from here to the decision.
    first_opened_at: Mapped[dt.datetime | None] = mapped_column()
    # The rejected item this one redrafts (reject with redraft=true), so the timeline links them.
    redraft_of: Mapped[int | None] = mapped_column(ForeignKey("review_items.id"))
    # One pending outbound draft per subject and purpose ("lead:12:follow_up", "invoice:5:reminder"): a newer
    # draft with the same key supersedes (cancels) the older pending one.
    supersede_key: Mapped[str | None] = mapped_column(String(100), index=True)
    # Grounding-guard findings: anything in the draft no fact supports. Blocks one-click approval.
    guard_flags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    # SLA watch: when the assignee was told the deadline is near (once), and when a breached item went back to
    # the team queue and from whom (None: it was already unassigned).
    sla_warned_at: Mapped[dt.datetime | None] = mapped_column()
    escalated_at: Mapped[dt.datetime | None] = mapped_column()
    escalated_from: Mapped[str | None] = mapped_column(String(200))

    decision: Mapped[Decision | None] = relationship(back_populates="review_item", uselist=False)
    lead: Mapped[Lead | None] = relationship()


class Decision(Base):
    __tablename__ = "decisions"
    id: Mapped[int] = mapped_column(primary_key=True)
    # One decision per item, enforced by the database whatever the race.
    review_item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id"), unique=True)
    action: Mapped[str] = mapped_column(String(20))  # approve | reject
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    final_subject: Mapped[str | None] = mapped_column(String(300))
    final_body: Mapped[str | None] = mapped_column(Text)
    edited: Mapped[bool] = mapped_column(Boolean, default=False)
    edit_diff: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Reject only: ask the agent for a new draft, optionally with another template.
    redraft: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    redraft_template: Mapped[str | None] = mapped_column(String(100))
    # Respond only: the closer's instruction the agent redrafts with (a reject with redraft, in the closer's words).
    instruction: Mapped[str | None] = mapped_column(Text)

    review_item: Mapped[ReviewItem] = relationship(back_populates="decision")


class OutboxMessage(Base):
    __tablename__ = "outbox_messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    review_item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id"), index=True)
    message_id: Mapped[str] = mapped_column(String(300))
    to_addr: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    transport: Mapped[str] = mapped_column(String(10))  # file | smtp
    status: Mapped[str] = mapped_column(String(20), default="pending")  # OutboxStatus
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    location: Mapped[str | None] = mapped_column(String(500))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column()
    # Transient failures are retried until this plus REVLOOP_SEND_RETRY_HOURS; a manual retry restarts it.
    retry_window_started_at: Mapped[dt.datetime | None] = mapped_column()
    # When the last attempt handed the message to the transport: the fact a closer needs when delivery is unknown.
    handed_at: Mapped[dt.datetime | None] = mapped_column()
    channel: Mapped[str] = mapped_column(String(10), default="email", server_default="email")  # email | sms | whatsapp
    # The provider's id of the message (Twilio MessageSid, WhatsApp wamid): status callbacks find the row by it.
    provider_message_id: Mapped[str | None] = mapped_column(String(200), index=True)
    delivery_status: Mapped[str | None] = mapped_column(String(20))  # the provider's: sent, delivered, read, failed
    delivery_updated_at: Mapped[dt.datetime | None] = mapped_column()


class ChannelConsent(Base):
    """A contact's consent on one messaging channel (sms, whatsapp), with where and when it was recorded. An
    opt-out (STOP) is forever: nothing turns an opted_out row back to granted."""

    __tablename__ = "channel_consents"
    __table_args__ = (UniqueConstraint("contact_id", "channel", name="uq_channel_consents_contact_channel"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    channel: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20))  # ConsentStatus: granted | opted_out
    source: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ChannelMessage(Base):
    """An inbound SMS or WhatsApp message, once per provider message id (a re-delivery is recorded once)."""

    __tablename__ = "channel_messages"
    __table_args__ = (
        UniqueConstraint("channel", "provider_message_id", name="uq_channel_messages_channel_provider_id"),
        Index("ix_channel_messages_contact_id_received_at", "contact_id", "received_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(10))
    provider_message_id: Mapped[str] = mapped_column(String(200))
    from_number: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LlmRun(Base):
    """One LLM engine run for a lead: calls, tokens and cost, or the error that ended it."""

    __tablename__ = "llm_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(200))
    calls: Mapped[int] = mapped_column(Integer, default=0)
    tool_calls: Mapped[int] = mapped_column(Integer, default=0)
    # NULL = unknown: the endpoint did not report usage for every call (never recorded as 0 tokens).
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(12, 6))
    status: Mapped[str] = mapped_column(String(20), default="ok")  # ok | failed | over_budget
    error: Mapped[str | None] = mapped_column(Text)
    # used: the model's output is in the brief/draft; partial: some of it; not_used: the deterministic engine's only.
    outcome: Mapped[str | None] = mapped_column(String(20))
    # How the endpoint was asked for structure: json_schema | json_object | prompt, "+tools" when it called tools.
    mode: Mapped[str | None] = mapped_column(String(40))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    # Every reply (or tool call) repaired or rejected: [{"call", "problem", "action", "detail"}].
    rejections: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LlmCapability(Base):
    """What an OpenAI-compatible endpoint supports for one model, learned on first use or by `revloop llm check`."""

    __tablename__ = "llm_capabilities"
    __table_args__ = (UniqueConstraint("base_url", "model"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    base_url: Mapped[str] = mapped_column(String(500))
    model: Mapped[str] = mapped_column(String(200))
    # NULL = not known yet; False = the endpoint refused it (HTTP 4xx/5xx) or the model could not use it.
    json_schema: Mapped[bool | None] = mapped_column(Boolean)
    json_object: Mapped[bool | None] = mapped_column(Boolean)
    tools: Mapped[bool | None] = mapped_column(Boolean)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    checked_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_entity", "entity_type", "entity_id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(100))
    entity_type: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column()
    after: Mapped[dict[str, Any] | None] = mapped_column()


class Notification(Base):
    """Something a person must know (a send that failed, an integration down): one row per recipient."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_user_id_read_at", "user_id", "read_at"),
        # the same event for the same person is told once (NULL keys never collide)
        UniqueConstraint("user_id", "dedupe_key", name="uq_notifications_user_id_dedupe_key"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(50))  # NotificationKind
    severity: Mapped[str] = mapped_column(String(10), default="warning")  # info | warning | critical
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    entity_type: Mapped[str | None] = mapped_column(String(50))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    dedupe_key: Mapped[str | None] = mapped_column(String(200))
    # False when the person switched the in-app channel off for this kind (the row still carries the
    # dedupe key and the email sent for it; the page and the badge leave it out).
    shown: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    read_at: Mapped[dt.datetime | None] = mapped_column()


class NotificationDelivery(Base):
    """One notification on one outbound channel: an email to its user, or the team webhook's post for the
    event. `key` makes it exactly once ("email:<notification id>", "webhook:<event>"); a job sends it."""

    __tablename__ = "notification_deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(250), unique=True)
    channel: Mapped[str] = mapped_column(String(20))  # NotificationChannel: email | webhook
    notification_id: Mapped[int | None] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))  # email's recipient
    kind: Mapped[str] = mapped_column(String(50))  # NotificationKind
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)  # DeliveryStatus
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    to_addr: Mapped[str | None] = mapped_column(String(320))  # the address it went to, when it went
    location: Mapped[str | None] = mapped_column(String(500))  # .eml path, smtp://host:port, or the webhook host
    last_error: Mapped[str | None] = mapped_column(Text)
    hold_until: Mapped[dt.datetime | None] = mapped_column()  # quiet hours: not sent before this
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column()


class NotificationPreference(Base):
    """A person's choice for one kind on one channel; kinds and channels without a row use the defaults."""

    __tablename__ = "notification_preferences"
    __table_args__ = (UniqueConstraint("user_id", "kind", "channel", name="uq_notification_preferences_choice"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(50))
    channel: Mapped[str] = mapped_column(String(20))  # in_app | email
    enabled: Mapped[bool] = mapped_column(Boolean)


class QuietHours(Base):
    """When a person's notification email is held (in-app still appears): local start/end and a time zone."""

    __tablename__ = "quiet_hours"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    start: Mapped[str] = mapped_column(String(5))  # HH:MM, local
    end: Mapped[str] = mapped_column(String(5))  # HH:MM, local (before start: the quiet spans midnight)
    timezone: Mapped[str] = mapped_column(String(64))  # IANA name, e.g. Europe/Berlin


class TeamChannelSetting(Base):
    """The team webhook per notification kind, set by managers; kinds without a row use the defaults."""

    __tablename__ = "team_channel_settings"
    kind: Mapped[str] = mapped_column(String(50), primary_key=True)
    webhook: Mapped[bool] = mapped_column(Boolean)


class IntegrationState(Base):
    """The last known health of one integration (SMTP, database, knowledge base, LLM, webhook senders):
    a change of `healthy` is what alerts people, not every failed check."""

    __tablename__ = "integration_states"
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    healthy: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text, default="")
    checked_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_success_at: Mapped[dt.datetime | None] = mapped_column()


class CrmLink(Base):
    """A revloop record (contact, account, deal) and its twin in an external CRM (HubSpot, Pipedrive): the remote
    id, the remote updatedAt, and the field values as of the last sync, which is the base of the conflict check
    (a field changed on both sides since then is a conflict; crm/sync.py states the rule)."""

    __tablename__ = "crm_links"
    __table_args__ = (
        UniqueConstraint("source", "object_type", "remote_id", name="uq_crm_links_remote"),
        UniqueConstraint("source", "object_type", "local_id", name="uq_crm_links_local"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(20))  # hubspot | pipedrive
    object_type: Mapped[str] = mapped_column(String(20))  # contact | account | deal
    remote_id: Mapped[str] = mapped_column(String(64))
    local_id: Mapped[int] = mapped_column(Integer)
    remote_updated_at: Mapped[dt.datetime | None] = mapped_column()
    synced_values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    synced_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CrmSyncState(Base):
    """One external CRM's sync: the updatedAt cursor per object type, the last run's report, success and error."""

    __tablename__ = "crm_sync_states"
    source: Mapped[str] = mapped_column(String(20), primary_key=True)
    cursors: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # object_type -> ISO updatedAt
    last_started_at: Mapped[dt.datetime | None] = mapped_column()
    last_success_at: Mapped[dt.datetime | None] = mapped_column()
    last_error_at: Mapped[dt.datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    last_report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CrmWriteback(Base):
    """One approved action written back to the external CRM (a sent email logged on the contact, a deal's stage),
    once: the key is unique, and the remote id of what was created or changed is recorded when it succeeds."""

    __tablename__ = "crm_writebacks"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)  # email:review_item:12 | stage:deal:4:audit:88
    source: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(30))  # log_email | deal_stage
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | done | failed | skipped
    remote_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column()


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    # None: everything the role may do; else a list like ["leads:write"] (see api.auth.SCOPE_AREAS).
    scopes: Mapped[list[str] | None] = mapped_column(JSON)
    expires_at: Mapped[dt.datetime | None] = mapped_column()


class User(Base):
    """A person who signs in to the review app. `name` is what the queue's assignee holds (and the
    sales-agent roster name routing assigns leads to)."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column()


class LoginThrottle(Base):
    """Failed sign-ins of one account from one source (IP): past a few, each next try waits longer. Keyed by a
    hash of both, so a stranger's failures slow only their own address, never lock the person out."""

    __tablename__ = "login_throttles"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[dt.datetime | None] = mapped_column()
    last_failure_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class UserSession(Base):
    """A signed-in session: a random token stored as a SHA-256 hash, with absolute and idle expiry."""

    __tablename__ = "user_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()

    user: Mapped[User] = relationship()


class WebhookDelivery(Base):
    """Signatures already accepted: a delivery replayed inside the timestamp window is refused."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(30))
    signature: Mapped[str] = mapped_column(String(64), unique=True)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class Invoice(Base):
    """An invoice in the built-in billing. The balance is the amount minus the payments allocated to it."""

    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("external_source", "external_id", name="uq_invoices_external"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(50), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    deal_id: Mapped[int | None] = mapped_column(ForeignKey("deals.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    issued_on: Mapped[dt.date] = mapped_column(Date, index=True)
    due_on: Mapped[dt.date] = mapped_column(Date, index=True)
    status: Mapped[str] = mapped_column(String(20), default="issued", index=True)  # issued | paid | void
    disputed: Mapped[bool] = mapped_column(Boolean, default=False)
    payment_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    paid_on: Mapped[dt.date | None] = mapped_column(Date)
    payment_link: Mapped[str | None] = mapped_column(String(500))
    external_source: Mapped[str | None] = mapped_column(String(50))
    external_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # E-invoicing (REVLOOP_FISCAL_BACKEND): None = no fiscal step; pending | accepted | rejected. Only an
    # accepted invoice is sent; the control unit's receipt number and QR payload are printed on the PDF.
    fiscal_status: Mapped[str | None] = mapped_column(String(20), index=True)
    fiscal_receipt_number: Mapped[str | None] = mapped_column(String(100))
    fiscal_qr: Mapped[str | None] = mapped_column(String(1000))
    fiscal_error: Mapped[str | None] = mapped_column(String(1000))
    fiscal_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    account: Mapped[Account] = relationship()


class Payment(Base):
    """Money received. `external_id` (the provider's payment id) makes a re-delivered webhook count once."""

    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    received_on: Mapped[dt.date] = mapped_column(Date)
    reference: Mapped[str | None] = mapped_column(String(200))  # e.g. the invoice number the payer quoted
    unallocated: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0"))  # credit left over
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PaymentAllocation(Base):
    __tablename__ = "payment_allocations"
    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))


class PaymentEvent(Base):
    """One notice from a payment rail (a Stripe event, an M-Pesa confirmation or STK callback, an STK request we
    sent), once per (provider, event id): a replayed event is recognised and ignored. A payment that names no
    invoice we issued is `held` here (shown to managers, never lost) until a person assigns it."""

    __tablename__ = "payment_events"
    __table_args__ = (UniqueConstraint("provider", "event_id", name="uq_payment_events_provider_event"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))  # stripe | mpesa
    event_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(60))  # invoice.paid, c2b.confirmation, stk.request, stk.callback ...
    status: Mapped[str] = mapped_column(String(20), index=True)  # applied | held | ignored | requested | failed
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    reference: Mapped[str | None] = mapped_column(String(200))  # the account reference / number the payer gave
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    resolved_at: Mapped[dt.datetime | None] = mapped_column()


class DunningTouch(Base):
    """One ladder step drafted for one invoice, once: the scheduler's guard against double drafts."""

    __tablename__ = "dunning_touches"
    __table_args__ = (UniqueConstraint("invoice_id", "step", name="uq_dunning_touches_invoice_step"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    review_item_id: Mapped[int | None] = mapped_column(ForeignKey("review_items.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MessageTemplate(Base):
    """A version of a message template (Jinja2). Drafts use the latest approved version of their key,
    else the built-in text; a manager edits and approves, and every save is checked for merge fields."""

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("key", "version", name="uq_message_templates_key_version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(50), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="draft")  # draft | approved | archived
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approved_at: Mapped[dt.datetime | None] = mapped_column()


class LeadEvent(Base):
    """Something the lead did (reply, meeting booked, proposal opened, unsubscribed, bounced)."""

    __tablename__ = "lead_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    type: Mapped[str] = mapped_column(String(30))
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    note: Mapped[str | None] = mapped_column(Text)
    # The sender's event id: a re-delivered event is recorded once.
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CadenceTouch(Base):
    """One follow-up step drafted for one lead (or one reactivation for one deal), once."""

    __tablename__ = "cadence_touches"
    __table_args__ = (UniqueConstraint("lead_id", "step", name="uq_cadence_touches_lead_step"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    step: Mapped[str] = mapped_column(String(40))  # "day-2", "break-up", "proposal-opened", "reactivate-2026-11"
    review_item_id: Mapped[int | None] = mapped_column(ForeignKey("review_items.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Proposal(Base):
    """A proposal drafted from an opportunity: lines priced from the price book, discount within the
    limit, terms, validity; rendered to HTML and PDF and attached to its review item and email."""

    __tablename__ = "proposals"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(50), unique=True)
    # The proposal graph's thread: a re-run of its render step finds this row instead of adding one.
    thread_id: Mapped[str] = mapped_column(String(64), unique=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("deals.id"), index=True)
    lines: Mapped[list[Any]] = mapped_column(JSON)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    subtotal: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    discount_pct: Mapped[Decimal] = mapped_column(Numeric(5, 2), default=Decimal("0"))
    total: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    terms: Mapped[str] = mapped_column(Text)
    valid_until: Mapped[dt.date] = mapped_column(Date)
    html: Mapped[str] = mapped_column(Text)
    pdf: Mapped[bytes] = mapped_column(LargeBinary)
    review_item_id: Mapped[int | None] = mapped_column(ForeignKey("review_items.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Project(Base):
    """The delivery hand-off created when the deal is signed: scope, contacts, tasks, kickoff."""

    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("deals.id"), unique=True)
    brief: Mapped[dict[str, Any]] = mapped_column()
    tasks: Mapped[list[Any]] = mapped_column(JSON)
    kickoff_on: Mapped[dt.date] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Milestone(Base):
    """A billing milestone of a signed deal; completing it drafts its invoice and a client update."""

    __tablename__ = "milestones"
    __table_args__ = (UniqueConstraint("deal_id", "seq", name="uq_milestones_deal_seq"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("deals.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    percent: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    status: Mapped[str] = mapped_column(String(20), default="planned")  # planned | completed | invoiced
    completed_at: Mapped[dt.datetime | None] = mapped_column()
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"))


class EvalRun(Base):
    """One eval suite run: metrics, thresholds, per-case verdicts and what it ran against."""

    __tablename__ = "eval_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(80), unique=True)
    suite: Mapped[str] = mapped_column(String(30), index=True)
    engine: Mapped[str] = mapped_column(String(20))
    passed: Mapped[bool] = mapped_column(Boolean)
    metrics: Mapped[dict[str, Any]] = mapped_column()
    thresholds: Mapped[list[Any]] = mapped_column(JSON)
    failures: Mapped[list[Any]] = mapped_column(JSON)  # thresholds not met
    cases: Mapped[list[Any]] = mapped_column(JSON)  # {id, passed, detail}
    meta: Mapped[dict[str, Any]] = mapped_column()  # revision, rubric, model, engine, LLM, tokens, cost, duration
    report_path: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class Job(Base):
    """Durable background work: the worker claims rows; a sweep takes back abandoned ones."""

    __tablename__ = "jobs"
    # What claim_next reads: the queued jobs, highest priority first, then the longest due.
    __table_args__ = (Index("ix_jobs_status_priority_run_after", "status", "priority", "run_after"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    # Higher runs first (core.enums.JobPriority); a lead's comes from its pre-score at capture.
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued | running | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_after: Mapped[dt.datetime] = mapped_column(default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(100))
    locked_at: Mapped[dt.datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column()


__all__ = [
    "Account",
    "IntegrationState",
    "LoginThrottle",
    "Notification",
    "Activity",
    "ApiToken",
    "AuditEvent",
    "Base",
    "Contact",
    "CrmLink",
    "CrmSyncState",
    "CrmWriteback",
    "Deal",
    "Decision",
    "DunningTouch",
    "EvalRun",
    "Invoice",
    "Milestone",
    "Payment",
    "Project",
    "Proposal",
    "PaymentAllocation",
    "Job",
    "CadenceTouch",
    "Lead",
    "LeadEvent",
    "MessageTemplate",
    "OutboxMessage",
    "ReviewItem",
    "User",
    "UserSession",
    "WebhookDelivery",
    "utcnow",
]
