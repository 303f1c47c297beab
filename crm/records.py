"""The built-in CRM's records: the history around a lead, linking a lead to its contact and account, lead status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session, joinedload

from core import audit
from core.db import flush_pending, insert_ignore
from core.enums import DealOutcome, LeadStatus
from core.models import Account, Activity, AuditEvent, Contact, Deal, Lead
from core.names import company_key
from core.settings import get_settings
from crm.consent import try_normalise_phone
from crm.dedupe import find_account_by_name
from scoring.facts import build_facts
from tools.crm_reads import deals_of_account, known_contact
from tools.enrichment import company_domain, email_domain, is_disposable, is_free_mail

# The lead graph's reads, built once (each run executes them with its ids: no statement building per lead).
# The lead with its account and contact in one statement (two outer joins) instead of a load and two lazy loads.
_LEAD_WITH_RECORDS = (
    select(Lead).where(Lead.id == bindparam("lead_id")).options(joinedload(Lead.account), joinedload(Lead.contact))
)
_ACTIVITIES_OF_LEAD = select(Activity).where(Activity.lead_id == bindparam("lead_id")).order_by(Activity.occurred_at)
_EVENTS = AuditEvent.__table__  # a Core statement of the table: no ORM set-up for a column's values
_MATCHED_BY_NAME = select(_EVENTS.c.after).where(
    _EVENTS.c.entity_type == "account",
    _EVENTS.c.entity_id == bindparam("account_id"),
    _EVENTS.c.action == "account.matched_by_name",
)


def lead_facts(session: Session, lead_id: int) -> dict[str, Any]:
    """Everything the CRM knows around a lead: the lead, its contact, account, deals and activities."""
    lead = session.scalars(_LEAD_WITH_RECORDS, {"lead_id": lead_id}).first()
    if lead is None:
        raise LookupError(f"lead {lead_id} not found")
    # The research look-ups of the same unit of work (crm_find_contact, crm_account_history) take these as read.
    if lead.contact is not None:
        known_contact(session, lead.contact)
    deals = deals_of_account(session, lead.account.id) if lead.account is not None else []
    activities = list(session.scalars(_ACTIVITIES_OF_LEAD, {"lead_id": lead.id}))
    free_mail = is_free_mail(email_domain(lead.email)) if lead.email else None
    facts = build_facts(lead, lead.contact, lead.account, free_mail=free_mail, deals=deals, activities=activities)
    facts["lead"]["disposable_email"] = is_disposable(email_domain(lead.email)) if lead.email else False
    facts["lead"]["account_matched_by_name"] = matched_by_name(session, lead)
    return facts


def matched_by_name(session: Session, lead: Lead) -> bool:
    """Whether the lead's account was found by company name only (no email domain confirms it, e.g. a personal
    address): link_lead_to_crm audits each such match as `account.matched_by_name` with the lead's id."""
    if lead.account_id is None:
        return False
    flush_pending(session)  # a Core statement does not autoflush
    events = session.connection().execute(_MATCHED_BY_NAME, {"account_id": str(lead.account_id)}).scalars()
    return any((after or {}).get("lead_id") == lead.id for after in events)


# What capture reads of a contact and an account (scoring.facts' contact_part and account_part, and linking).
# Core columns of the tables (no ORM machinery on the capture's hot path).
_contacts, _accounts = Contact.__table__.c, Account.__table__.c
CONTACT_COLUMNS = (
    _contacts.id,
    _contacts.email,
    _contacts.first_name,
    _contacts.last_name,
    _contacts.title,
    _contacts.phone,
    _contacts.do_not_email,
    _contacts.do_not_call,
    _contacts.phone_e164,
    _contacts.account_id,
)
ACCOUNT_COLUMNS = (
    _accounts.id,
    _accounts.name,
    _accounts.domain,
    _accounts.industry,
    _accounts.employees,
    _accounts.country,
    _accounts.revenue_musd,
    _accounts.year_established,
    _accounts.subsidiary_of,
    _accounts.field_sources,
)


_CONTACT_BY_EMAIL = select(*CONTACT_COLUMNS).where(_contacts.email == bindparam("email"))
_CONTACT_BY_PHONE_ONLY = (
    select(*CONTACT_COLUMNS)
    .where(_contacts.phone_e164 == bindparam("phone"), _contacts.email.is_(None))
    .order_by(_contacts.id)
    .limit(1)
)
_ACCOUNT_BY_DOMAIN = select(*ACCOUNT_COLUMNS).where(_accounts.domain == bindparam("domain"))


@dataclass(frozen=True)
class CrmLinks:
    """A lead's contact and account as linking left them (rows with CONTACT_COLUMNS / ACCOUNT_COLUMNS' names)."""

    contact: Any
    account: Any | None

    @property
    def account_id(self) -> int | None:
        return self.account.id if self.account is not None else self.contact.account_id


def link_records(session: Session, lead: Any, *, actor: str) -> CrmLinks:
    """Find or create the contact (by email) and account (by company domain; failing that, an existing account by
    company name, crm.dedupe) of a lead (anything with a Lead's id, email, phone, website, company, first_name,
    last_name, title, consent_email and consent_call), with their audit events. Core statements only: the lead
    capture's hot path (POST /v1/leads) loads no ORM objects here.

    Consent only ever narrows: an opt-out recorded on the contact is never undone by a later lead."""
    events: list[dict[str, Any]] = []
    contact = session.connection().execute(_CONTACT_BY_EMAIL, {"email": lead.email}).first()
    phone = try_normalise_phone(lead.phone, get_settings().default_phone_region) if lead.phone else None
    contact_changes: dict[str, Any] = {}
    contact_created = False
    if contact is None and phone:
        # The person first wrote on SMS or WhatsApp (a contact known by number only): the form gives the address.
        contact = session.connection().execute(_CONTACT_BY_PHONE_ONLY, {"phone": phone}).first()
        if contact is not None:
            contact_changes["email"] = lead.email
    if contact is not None and phone and not contact.phone_e164:
        contact_changes["phone_e164"] = phone
    domain = company_domain(lead.email, lead.website)
    account = session.connection().execute(_ACCOUNT_BY_DOMAIN, {"domain": domain}).first() if domain else None
    if account is None and lead.company and (match := find_account_by_name(session, lead.company, domain)):
        account = match.account
        events.append(
            {
                "action": "account.matched_by_name",
                "entity_type": "account",
                "entity_id": account.id,
                "after": {
                    "lead_id": lead.id,  # the lead's brief says so (lead_facts: account_matched_by_name)
                    "company": lead.company,
                    "account": account.name,
                    "match": match.how,
                    "similarity": match.similarity,
                },
            }
        )
    if account is None and domain and lead.company:
        # Leads from one new company can arrive at once: the first creates the account, the others link to it.
        name = lead.company.strip()
        created = insert_ignore(
            session, Account, {"name": name, "name_key": company_key(name)[:200] or None, "domain": domain}
        )
        account = session.connection().execute(_ACCOUNT_BY_DOMAIN, {"domain": domain}).first()
        if created is not None:
            events.append(
                {
                    "action": "account.created",
                    "entity_type": "account",
                    "entity_id": account.id,
                    "after": {"name": account.name, "domain": domain},
                }
            )
    if contact is None:
        values = {
            "email": lead.email,
            "first_name": lead.first_name,
            "last_name": lead.last_name,
            "title": lead.title,
            "phone": lead.phone,
            "phone_e164": phone,
            "account_id": account.id if account is not None else None,
            "do_not_email": not lead.consent_email,
            "do_not_call": not lead.consent_call,
            "lawful_basis": "consent" if lead.consent_email else None,
        }
        contact = insert_ignore(session, Contact, values, *CONTACT_COLUMNS)
        contact_created = contact is not None
        if contact_created:
            events.append(
                {
                    "action": "contact.created",
                    "entity_type": "contact",
                    "entity_id": contact.id,
                    "after": {
                        "email": contact.email,
                        "do_not_email": contact.do_not_email,
                        "do_not_call": contact.do_not_call,
                    },
                }
            )
        else:  # a concurrent lead with the same address created it first: consent narrows it as below
            contact = session.connection().execute(_CONTACT_BY_EMAIL, {"email": lead.email}).one()
    if not contact_created:
        before = {"do_not_email": contact.do_not_email, "do_not_call": contact.do_not_call}
        after = {
            "do_not_email": contact.do_not_email or not lead.consent_email,
            "do_not_call": contact.do_not_call or not lead.consent_call,
        }
        if before != after:
            contact_changes.update(after)
            events.append(
                {
                    "action": "contact.consent_narrowed",
                    "entity_type": "contact",
                    "entity_id": contact.id,
                    "before": before,
                    "after": after,
                }
            )
    if contact_changes:
        session.execute(update(Contact).where(Contact.id == contact.id).values(**contact_changes))
        if (loaded := session.identity_map.get(session.identity_key(Contact, contact.id))) is not None:
            session.expire(loaded)  # an ORM copy of the contact in this session reads the new values
        contact = SimpleNamespace(**{**contact._asdict(), **contact_changes})
    audit.record_many(session, [{"actor": actor, **event} for event in events])
    return CrmLinks(contact, account)


def link_lead_to_crm(session: Session, lead: Lead, *, actor: str) -> CrmLinks:
    """Link an ORM lead to its contact and account (link_records), created when new."""
    if lead.id is None:
        session.flush()  # the events name the lead's id
    links = link_records(session, lead, actor=actor)
    lead.contact_id, lead.account_id = links.contact.id, links.account_id
    session.flush()
    return links


def _audit_status_change(session: Session, lead_id: int, before: str, after: str, *, actor: str) -> None:
    audit.record(
        session,
        actor=actor,
        action="lead.status_changed",
        entity_type="lead",
        entity_id=lead_id,
        before={"status": before},
        after={"status": after},
    )


def set_lead_status(session: Session, lead_id: int, status: str, *, actor: str, flush: bool = True) -> bool:
    """Move a lead to a new status with an audit event; False (and no event) when it is already there, or
    when it is converted: drafts and sends about its deal (a proposal, an invoice) do not make it a lead in
    review or contacted again. flush=False leaves the UPDATE to the unit of work's next flush (with the row's
    other changes)."""
    lead = session.get(Lead, lead_id)
    if lead is None or lead.status in (status, LeadStatus.CONVERTED):
        return False
    _audit_status_change(session, lead_id, lead.status, status, actor=actor)
    lead.status = status
    if flush:
        session.flush()
    return True


def closed_deal_count(session: Session, industry: str | None = None) -> int:
    """Won and lost deals, optionally only those of accounts in `industry` (case-insensitive)."""
    stmt = select(func.count(Deal.id)).where(Deal.outcome.in_(tuple(DealOutcome)))
    if industry is not None:
        stmt = stmt.join(Account, Account.id == Deal.account_id).where(
            func.lower(Account.industry) == str(industry).lower()
        )
    return session.scalar(stmt) or 0


def capture_snapshot(session: Session, lead_id: int) -> dict[str, Any]:
    """The lead's features as they were at capture: what scoring and training read."""
    return session.get(Lead, lead_id).capture_features or {}


_LEADS = Lead.__table__
_READ_FOR_RUN = select(_LEADS.c.status, _LEADS.c.score, _LEADS.c.grade, _LEADS.c.brief).where(
    _LEADS.c.id == bindparam("lead_id")
)
_UPDATE_BY_ID = update(_LEADS).where(_LEADS.c.id == bindparam("lead_id"))


def record_run(
    session: Session, lead_id: int, brief: dict[str, Any] | None, statuses: Sequence[str] = (), *, actor: str
) -> None:
    """Store what a lead's graph run decided: its brief (score, grade, rubric and model; a new or processing lead
    becomes scored), then each status in `statuses` in turn (as set_lead_status: not to the status it has, never
    from converted), each change with its audit event. A brief equal to the stored one is not stored again (a
    re-run after a crash). The row is read (four columns) and written (one UPDATE) with prebuilt Core statements:
    no ORM load or flush; the events go through core.audit (batched when the caller batches them)."""
    flush_pending(session)  # a Core statement does not autoflush
    row = session.connection().execute(_READ_FOR_RUN, {"lead_id": lead_id}).first()
    if row is None:
        raise LookupError(f"lead {lead_id} not found")
    status = row.status
    values: dict[str, Any] = {}
    if brief and row.brief != brief:
        model = brief.get("model")
        values.update(
            score=brief["score"],
            grade=brief["grade"],
            brief=brief,
            rubric_version=brief["rubric_version"],
            rubric_score=brief["rubric_score"],
            model_version=model["version"] if model else None,
            model_probability=model["probability"] if model else None,
        )
        audit.record(
            session,
            actor=actor,
            action="lead.scored",
            entity_type="lead",
            entity_id=lead_id,
            before={"score": row.score, "grade": row.grade},
            after={
                "score": values["score"],
                "grade": values["grade"],
                "rubric_version": values["rubric_version"],
                "model_version": values["model_version"],
            },
        )
        if status in (LeadStatus.NEW, LeadStatus.PROCESSING):
            statuses = (LeadStatus.SCORED, *statuses)
    for new in statuses:
        if status in (new, LeadStatus.CONVERTED):
            continue
        _audit_status_change(session, lead_id, status, new, actor=actor)
        status = values["status"] = new
    if values:
        session.connection().execute(_UPDATE_BY_ID, {"lead_id": lead_id, **values})


# directory field -> account field
DIRECTORY_FIELDS = {"industry": "industry", "employees": "employees", "region": "country"}


def fill_account_from_directory(
    session: Session, account_id: int, directory: dict[str, Any], *, actor: str
) -> dict[str, Any]:
    """Fill the account's empty firmographic fields from a company-directory record, recording each field's
    source ("company:12 (fortune1000)"); returns what was filled (nothing when every field had a value)."""
    account = session.get(Account, account_id)
    source = f"{directory['record']} ({directory.get('source') or 'directory'})"
    filled: dict[str, Any] = {}
    for theirs, ours in DIRECTORY_FIELDS.items():
        value = directory.get(theirs)
        if value not in (None, "") and getattr(account, ours) in (None, ""):
            setattr(account, ours, value)
            filled[ours] = value
    if not filled:
        return filled
    account.field_sources = {**(account.field_sources or {}), **{field: source for field in filled}}
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="account.enriched",
        entity_type="account",
        entity_id=account.id,
        after={**filled, "source": source},
    )
    return filled
