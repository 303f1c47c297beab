"""Lead capture: normalise, deduplicate at entry, persist with consent, queue the lead graph.

Persist first: the lead row, its CRM links, its audit event and the job that runs the graph are
written in the caller's one transaction, so a crash never leaves a lead nobody will process.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from types import SimpleNamespace

from sqlalchemy import Row, bindparam, case, or_, select, update
from sqlalchemy.orm import Session

from core import audit, jobs
from core.db import insert_ignore
from core.enums import JobKind, JobPriority
from core.models import Account, Contact, Lead
from core.schemas import LeadCreate
from core.settings import Settings, get_settings
from crm.records import link_records
from scoring.facts import build_facts
from scoring.features import capture_snapshot
from scoring.scorer import pre_grade
from tools.enrichment import email_domain, is_free_mail


def normalise_email(email: str) -> str:
    return email.strip().lower()


# Core statements on the table (run on the session's connection): no ORM machinery on the hot path.
_leads = Lead.__table__.c
_REPEAT_OF_EMAIL = select(_leads.id, _leads.status).where(_leads.email == bindparam("email"))
_REPEAT_OF_KEY_OR_EMAIL = (
    select(_leads.id, _leads.status)
    .where(or_(_leads.idempotency_key == bindparam("key"), _leads.email == bindparam("email")))
    .order_by(case((_leads.idempotency_key == bindparam("key"), 0), else_=1))
    .limit(1)
)
_LINK_LEAD = (
    update(Lead.__table__)
    .where(_leads.id == bindparam("lead_id"))
    .values(contact_id=bindparam("contact_id"), account_id=bindparam("account_id"))
)
_COUNT_REPEAT = (
    update(Lead.__table__)
    .where(_leads.id == bindparam("lead_id"))
    .values(duplicate_count=_leads.duplicate_count + 1)
    .returning(_leads.status)
)


def _existing(session: Session, email: str, idempotency_key: str | None) -> Row | None:
    """The lead a capture repeats (id, status): the one with the same Idempotency-Key first, else the one with the
    same email. Prebuilt statements: building them per request cost more than running them."""
    if not idempotency_key:
        return session.connection().execute(_REPEAT_OF_EMAIL, {"email": email}).first()
    return session.connection().execute(_REPEAT_OF_KEY_OR_EMAIL, {"key": idempotency_key, "email": email}).first()


@dataclass(frozen=True)
class Captured:
    """What a capture answers: the lead's id and status, and whether it repeated an earlier capture."""

    id: int
    status: str
    duplicate: bool


def _repeated(session: Session, lead_id: int, actor: str, idempotency_key: str | None) -> Captured:
    status = session.connection().execute(_COUNT_REPEAT, {"lead_id": lead_id}).scalar_one()
    audit.record_many(
        session,
        [
            {
                "actor": actor,
                "action": "lead.duplicate_received",
                "entity_type": "lead",
                "entity_id": lead_id,
                "after": {"idempotency_key": idempotency_key},
            }
        ],
    )
    return Captured(lead_id, status, duplicate=True)


def capture(
    session: Session,
    data: LeadCreate,
    *,
    actor: str,
    idempotency_key: str | None = None,
    settings: Settings | None = None,
) -> Captured:
    """Store a lead, link it to its contact and account, and queue its graph run with the priority its pre-score
    gives (hot leads are drafted first). The same key or the same email again is a repeat: counted on the existing
    lead, nothing else written. The hot path of POST /v1/leads: Core statements, no ORM objects."""
    email = normalise_email(str(data.email))
    free_mail = is_free_mail(email_domain(email))
    found = _existing(session, email, idempotency_key)
    if found is not None:
        return _repeated(session, found.id, actor, idempotency_key)
    custom = dict(data.custom)
    values = {
        "email": email,
        "idempotency_key": idempotency_key,
        "first_name": data.first_name or None,
        "last_name": data.last_name or None,
        "company": data.company or None,
        "title": data.title or None,
        "phone": data.phone or None,
        "website": data.website or None,
        "message": data.message or None,
        "source": data.source or None,
        "consent_email": data.consent.email,
        "consent_call": data.consent.call,
        "custom": custom,
        "capture_features": capture_snapshot(
            source=data.source,
            consent_email=data.consent.email,
            consent_call=data.consent.call,
            free_mail=free_mail,
            phone=data.phone,
            company=data.company,
            title=data.title,
            custom=custom,
        ),
    }
    inserted = insert_ignore(session, Lead, values, _leads.id, _leads.thread_id, _leads.status)
    if inserted is None:  # a concurrent request with the same key or email inserted first: the same answer
        found = _existing(session, email, idempotency_key)
        if found is None:
            raise LookupError(f"lead {email} conflicted with a lead that cannot be found")
        return _repeated(session, found.id, actor, idempotency_key)
    lead = SimpleNamespace(id=inserted.id, **values)
    links = link_records(session, lead, actor=actor)
    session.connection().execute(
        _LINK_LEAD, {"lead_id": lead.id, "contact_id": links.contact.id, "account_id": links.account_id}
    )
    audit.record_many(
        session,
        [
            {
                "actor": actor,
                "action": "lead.created",
                "entity_type": "lead",
                "entity_id": lead.id,
                "after": {
                    "email": email,
                    "source": lead.source,
                    "consent_email": lead.consent_email,
                    "consent_call": lead.consent_call,
                },
            }
        ],
    )
    facts = build_facts(lead, links.contact, links.account, free_mail=free_mail)
    priority = pre_score_priority(session, settings or get_settings(), facts)
    queue_lead_run(session, lead.id, priority=priority, thread_id=inserted.thread_id)
    return Captured(lead.id, inserted.status, duplicate=False)


def capture_lead(
    session: Session,
    data: LeadCreate,
    *,
    actor: str,
    idempotency_key: str | None = None,
    settings: Settings | None = None,
) -> tuple[Lead, bool]:
    """capture(), answered with the lead's row: (lead, duplicate)."""
    captured = capture(session, data, actor=actor, idempotency_key=idempotency_key, settings=settings)
    return session.get(Lead, captured.id, populate_existing=True), captured.duplicate


PRIORITY_FOR_GRADE = {"A": JobPriority.LEAD_A, "B": JobPriority.LEAD_B, "C": JobPriority.LEAD_C}


def pre_score_priority(session: Session, settings: Settings, facts: dict) -> JobPriority:
    """The lead run's queue priority from its pre-score (the rubric on what capture knows: the form and the
    linked account and contact), so a likely-A lead posted in a burst is drafted before the C and D leads."""
    return PRIORITY_FOR_GRADE.get(pre_grade(session, settings, facts), JobPriority.BACKGROUND)


def lead_priority(session: Session, settings: Settings, lead: Lead, free_mail: bool | None) -> JobPriority:
    """pre_score_priority() of an ORM lead and the contact and account linked to it."""
    contact = session.get(Contact, lead.contact_id) if lead.contact_id else None
    account = session.get(Account, lead.account_id) if lead.account_id else None
    return pre_score_priority(session, settings, build_facts(lead, contact, account, free_mail=free_mail))


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
    jobs.enqueue_new(
        session,
        JobKind.LEAD_RUN,
        {"lead_id": lead_id, **({"thread_id": thread_id} if thread_id else {})},
        dedupe_key=lead_run_key(lead_id),
        run_after=run_after,
        priority=priority,
    )
