"""Lead capture: normalise, deduplicate at entry, persist with consent, queue the lead graph.

Persist first: the lead row, its CRM links, its audit event and the job that runs the graph are
written in the caller's one transaction, so a crash never leaves a lead nobody will process.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Select, case, or_, select, update
from sqlalchemy.orm import Session

from core import audit, jobs
from core.db import insert_once
from core.enums import JobKind, JobPriority
from core.models import Account, Contact, Lead
from core.schemas import LeadCreate
from core.settings import Settings, get_settings
from crm.records import link_lead_to_crm
from scoring.facts import build_facts
from scoring.features import capture_snapshot
from scoring.scorer import pre_grade
from tools.enrichment import email_domain, is_free_mail


def normalise_email(email: str) -> str:
    return email.strip().lower()


def _existing(email: str, idempotency_key: str | None) -> Select[tuple[Lead]]:
    """The lead a capture repeats: the one with the same Idempotency-Key first, else the one with the same email."""
    if not idempotency_key:
        return select(Lead).where(Lead.email == email)
    return (
        select(Lead)
        .where(or_(Lead.idempotency_key == idempotency_key, Lead.email == email))
        .order_by(case((Lead.idempotency_key == idempotency_key, 0), else_=1))
        .limit(1)
    )


def _mark_duplicate(session: Session, lead: Lead, actor: str, idempotency_key: str | None) -> Lead:
    session.execute(update(Lead).where(Lead.id == lead.id).values(duplicate_count=Lead.duplicate_count + 1))
    audit.record(
        session,
        actor=actor,
        action="lead.duplicate_received",
        entity_type="lead",
        entity_id=lead.id,
        after={"idempotency_key": idempotency_key},
    )
    session.refresh(lead)
    return lead


def capture_lead(
    session: Session,
    data: LeadCreate,
    *,
    actor: str,
    idempotency_key: str | None = None,
    settings: Settings | None = None,
) -> tuple[Lead, bool]:
    """Return (lead, duplicate). The same key or the same email again returns the existing lead. Its graph run is
    queued with the priority its pre-score gives (hot leads are drafted first)."""
    email = normalise_email(str(data.email))
    free_mail = is_free_mail(email_domain(email))
    lead = Lead(
        email=email,
        idempotency_key=idempotency_key,
        first_name=data.first_name or None,
        last_name=data.last_name or None,
        company=data.company or None,
        title=data.title or None,
        phone=data.phone or None,
        website=data.website or None,
        message=data.message or None,
        source=data.source or None,
        consent_email=data.consent.email,
        consent_call=data.consent.call,
        custom=dict(data.custom),
        capture_features=capture_snapshot(
            source=data.source,
            consent_email=data.consent.email,
            consent_call=data.consent.call,
            free_mail=free_mail,
            phone=data.phone,
            company=data.company,
            title=data.title,
            custom=dict(data.custom),
        ),
    )
    # A repeat, or a concurrent request with the same key or email that inserted first: the same answer.
    lead, created = insert_once(session, lead, _existing(email, idempotency_key))
    if not created:
        return _mark_duplicate(session, lead, actor, idempotency_key), True
    link_lead_to_crm(session, lead, actor=actor)
    audit.record(
        session,
        actor=actor,
        action="lead.created",
        entity_type="lead",
        entity_id=lead.id,
        after={
            "email": email,
            "source": lead.source,
            "consent_email": lead.consent_email,
            "consent_call": lead.consent_call,
        },
    )
    priority = lead_priority(session, settings or get_settings(), lead, free_mail)
    queue_lead_run(session, lead.id, priority=priority, thread_id=lead.thread_id)
    return lead, False


PRIORITY_FOR_GRADE = {"A": JobPriority.LEAD_A, "B": JobPriority.LEAD_B, "C": JobPriority.LEAD_C}


def lead_priority(session: Session, settings: Settings, lead: Lead, free_mail: bool | None) -> JobPriority:
    """The lead run's queue priority from its pre-score (the rubric on what capture knows: the form and the
    linked account and contact), so a likely-A lead posted in a burst is drafted before the C and D leads."""
    # The contact and account linking just put in the session: taken from it by id (no lazy-load SELECTs).
    contact = session.get(Contact, lead.contact_id) if lead.contact_id else None
    account = session.get(Account, lead.account_id) if lead.account_id else None
    facts = build_facts(lead, contact, account, free_mail=free_mail)
    return PRIORITY_FOR_GRADE.get(pre_grade(session, settings, facts), JobPriority.BACKGROUND)


def lead_run_key(lead_id: int) -> str:
    """The lead graph job's dedupe key: one run per lead, whoever queues it (capture, working imported leads)."""
    return f"{JobKind.LEAD_RUN}:{lead_id}"


def queue_lead_run(
    session: Session,
    lead_id: int,
    run_after: dt.datetime | None = None,
    *,
    priority: int = JobPriority.BACKGROUND,
    thread_id: str | None = None,
) -> None:
    """Queue the lead's graph run; with its thread id in the payload the worker need not look the lead up to take
    the thread's lock."""
    jobs.enqueue(
        session,
        JobKind.LEAD_RUN,
        {"lead_id": lead_id, **({"thread_id": thread_id} if thread_id else {})},
        dedupe_key=lead_run_key(lead_id),
        run_after=run_after,
        priority=priority,
    )
