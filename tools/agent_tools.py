"""Tools a model may call by name. Read tools return facts with the record they came from, so every
claim in a brief can name its evidence; write tools exist but no lead graph may call them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field
from rapidfuzz import fuzz, process
from sqlalchemy import bindparam, false, func, or_, select

from core import audit
from core.db import flush_pending, reading, session_scope, write_if_free
from core.models import Account, Activity, Company, Contact, EnrichmentCache, utcnow
from tools.crm_reads import contact_by_email, deals_of_account
from tools.enrichment import company_key as _plain
from tools.enrichment import email_domain, is_free_mail, normalise_website
from tools.registry import ToolContext, agent_tool


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactByEmail(_Args):
    email: EmailStr = Field(description="The lead's email address")


class AccountById(_Args):
    account_id: int = Field(ge=1, description="CRM account id")


class CompanyQuery(_Args):
    name: str | None = Field(None, max_length=200, description="Company name, matched fuzzily")
    domain: str | None = Field(None, max_length=253, description="Company web domain or website")
    directory_only: bool = Field(
        False, description="Search only the company directory, not the CRM's accounts (to fill an account's gaps)"
    )


class ContactUpdate(_Args):
    contact_id: int = Field(ge=1)
    field: str = Field(pattern="^(title|phone)$")
    value: str = Field(max_length=200)


def _account(a: Account) -> dict[str, Any]:
    return {
        "record": f"account:{a.id}",
        "id": a.id,
        "name": a.name,
        "domain": a.domain,
        "industry": a.industry,
        "employees": a.employees,
        "country": a.country,
    }


# The native CRM's look-ups, built once (the lead graph runs them for every lead).
_ACTIVITIES_OF_ACCOUNT = (  # Core, of the tables: a count needs no ORM set-up
    select(func.count(Activity.__table__.c.id))
    .join(Contact.__table__, Contact.__table__.c.id == Activity.__table__.c.contact_id)
    .where(Contact.__table__.c.account_id == bindparam("account_id"))
)


def native_find_contact(settings: Any, email: str, session: Any = None) -> dict[str, Any]:
    """crm_find_contact from revloop's own tables (the native CRM backend); through `session` when given."""
    with reading(settings, session) as session:
        contact = contact_by_email(session, email.lower())
        if contact is None:
            return {"found": False}
        return {
            "found": True,
            "record": f"contact:{contact.id}",
            "id": contact.id,
            "name": " ".join(p for p in (contact.first_name, contact.last_name) if p),
            "title": contact.title,
            "do_not_email": contact.do_not_email,
            "do_not_call": contact.do_not_call,
            "account": _account(contact.account) if contact.account else None,
        }


def native_account_history(settings: Any, account_id: int, session: Any = None) -> dict[str, Any]:
    """crm_account_history from revloop's own tables (the native CRM backend); through `session` when given."""
    with reading(settings, session) as session:
        account = session.get(Account, account_id)
        if account is None:
            return {"found": False}
        deals = deals_of_account(session, account.id)
        flush_pending(session)  # a Core statement does not autoflush
        activities = session.connection().execute(_ACTIVITIES_OF_ACCOUNT, {"account_id": account.id}).scalar()
        return {
            "found": True,
            "account": _account(account),
            "won": sum(d.outcome == "won" for d in deals),
            "lost": sum(d.outcome == "lost" for d in deals),
            "open": [{"record": f"deal:{d.id}", "name": d.name, "stage": d.stage} for d in deals if d.outcome is None],
            "activities": activities or 0,
        }


def _native_crm(ctx: ToolContext) -> bool:
    """The CRM is revloop's own tables (no backend, or the native one): a crm_* call is a local read."""
    return ctx.crm is None or getattr(ctx.crm, "name", None) == "native"


@agent_tool(scope="read_crm", inline=_native_crm)
def crm_find_contact(ctx: ToolContext, args: ContactByEmail) -> dict[str, Any]:
    """Find the CRM contact for an email address, with its account and consent flags."""
    email = str(args.email).lower()
    return native_find_contact(ctx.settings, email, ctx.session) if _native_crm(ctx) else ctx.crm.find_contact(email)


@agent_tool(scope="read_crm", inline=_native_crm)
def crm_account_history(ctx: ToolContext, args: AccountById) -> dict[str, Any]:
    """Deals (won, lost, open) and the number of activities of a CRM account."""
    if not _native_crm(ctx):
        return ctx.crm.account_history(args.account_id)
    return native_account_history(ctx.settings, args.account_id, ctx.session)


def _company(c: Company) -> dict[str, Any]:
    return {
        "record": f"company:{c.id}",
        "id": c.id,
        "name": c.name,
        "domain": c.domain,
        "industry": c.industry,
        "sector": c.sector,
        "employees": c.employees,
        "region": c.region,
        "source": c.source,
    }


def _cached(session: Any, key: str) -> dict[str, Any] | None:
    row = session.get(EnrichmentCache, key)
    return dict(row.value, cached=True) if row is not None and row.expires_at > utcnow() else None


def _remember(session: Any, key: str, value: dict[str, Any], hours: float) -> dict[str, Any]:
    row = session.get(EnrichmentCache, key) or EnrichmentCache(key=key)
    row.value, row.expires_at = value, utcnow() + dt.timedelta(hours=hours)
    session.merge(row)
    return value


@agent_tool(scope="read_directory", inline=lambda _ctx: True)  # our tables (and a cache write that never waits)
def company_lookup(ctx: ToolContext, args: CompanyQuery) -> dict[str, Any]:
    """Firmographics of a company from the CRM and the imported company directory, by domain or fuzzy name."""
    domain = normalise_website(args.domain) if args.domain else None
    if domain and is_free_mail(domain):
        domain = None
    name = (args.name or "").strip()
    key = f"company:{domain or ''}:{_plain(name)}:{'directory' if args.directory_only else 'any'}"
    with reading(ctx.settings, ctx.session) as session:  # a read: no write lock unless a miss is cached
        if cached := _cached(session, key):
            return cached
        result: dict[str, Any] = {"found": False, "domain": domain}
        # An account counts only when it knows something: capture creates bare accounts (name and domain),
        # and answering with one of those would hide what the directory knows.
        informed = or_(Account.industry.is_not(None), Account.employees.is_not(None))
        if args.directory_only:
            informed = false()
        if domain:
            account = session.scalar(select(Account).where(Account.domain == domain, informed))
            company = None if account else session.scalar(select(Company).where(Company.domain == domain))
            if account or company:
                result = {
                    "found": True,
                    "match": "domain",
                    "score": 100,
                    **(_account(account) if account else _company(company)),
                }
        if not result["found"] and name:
            candidates = {
                ("account", i): _plain(n) for i, n in session.execute(select(Account.id, Account.name).where(informed))
            }
            candidates |= {("company", i): _plain(n) for i, n in session.execute(select(Company.id, Company.name))}
            # token_sort_ratio, not WRatio: partial matching would take "Bakery of Nowhere" for "NOW Inc."
            best = process.extractOne(_plain(name), candidates, scorer=fuzz.token_sort_ratio, score_cutoff=88)
            if best is not None:
                _, score, (kind, row_id) = best
                record = (
                    _account(session.get(Account, row_id))
                    if kind == "account"
                    else _company(session.get(Company, row_id))
                )
                result = {"found": True, "match": "name", "score": round(score), **record}
    # The cache is an optimisation: skipped rather than waited for when another writer holds the database.
    ttl = ctx.settings.enrichment_ttl_hours
    write_if_free(ctx.settings, lambda session: _remember(session, key, result, ttl), wait_seconds=0.05)
    return result


@agent_tool(scope="write_crm", side_effect=True)
def crm_update_contact(ctx: ToolContext, args: ContactUpdate) -> dict[str, Any]:
    """Change a contact's title or phone (a write: only an execute step after approval may run it)."""
    with session_scope(ctx.settings) as session:
        contact = session.get(Contact, args.contact_id)
        if contact is None:
            return {"found": False}
        before = {args.field: getattr(contact, args.field)}
        setattr(contact, args.field, args.value)
        audit.record(
            session,
            actor=ctx.actor,
            action="contact.updated",
            entity_type="contact",
            entity_id=contact.id,
            before=before,
            after={args.field: args.value},
        )
        return {"found": True, "record": f"contact:{contact.id}", **{args.field: args.value}}


LEAD_GRAPH_TOOLS = frozenset({"crm_find_contact", "crm_account_history", "company_lookup", "similar_won_cases"})
# What the lead graph may do: read, never write.
LEAD_GRAPH_SCOPES = frozenset({"read_crm", "read_directory", "read_kb"})


def email_company_domain(email: str | None) -> str | None:
    if not email:
        return None
    domain = email_domain(email)
    return None if is_free_mail(domain) else domain
