"""What the rubric reads: one dict of lead, contact, account, deals and activities (plain values)."""

from __future__ import annotations

from typing import Any

from core.models import Account, Activity, Contact, Deal, Lead


def _money(value: Any) -> str | None:
    return None if value is None else f"{value:.2f}"


def lead_part(lead: Lead | None, free_mail: bool | None) -> dict[str, Any]:
    if lead is None:
        return {"custom": {}}
    domain = lead.email.rsplit("@", 1)[-1].lower() if lead.email else None
    return {
        "id": lead.id,
        "email": lead.email,
        "email_domain": domain,
        "free_mail": free_mail,
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "company": lead.company,
        "title": lead.title,
        "phone": lead.phone,
        "website": lead.website,
        "message": lead.message,
        "source": lead.source,
        "consent_email": lead.consent_email,
        "consent_call": lead.consent_call,
        "custom": dict(lead.custom or {}),
    }


def contact_part(contact: Contact | None) -> dict[str, Any] | None:
    if contact is None:
        return None
    return {
        "id": contact.id,
        "email": contact.email,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "title": contact.title,
        "phone": contact.phone,
        "do_not_email": contact.do_not_email,
        "do_not_call": contact.do_not_call,
    }


def account_part(account: Account | None) -> dict[str, Any] | None:
    if account is None:
        return None
    return {
        "id": account.id,
        "name": account.name,
        "domain": account.domain,
        "industry": account.industry,
        "employees": account.employees,
        "country": account.country,
        "revenue_musd": float(account.revenue_musd) if account.revenue_musd is not None else None,
        "year_established": account.year_established,
        "subsidiary_of": account.subsidiary_of,
        # field -> the record it was filled from (e.g. the company directory); absent for typed-in values
        "sources": dict(account.field_sources or {}),
    }


def build_facts(
    lead: Lead | None,
    contact: Contact | None,
    account: Account | None,
    *,
    free_mail: bool | None = None,
    deals: list[Deal] = (),
    activities: list[Activity] = (),
) -> dict[str, Any]:
    return {
        "lead": lead_part(lead, free_mail),
        "contact": contact_part(contact),
        "account": account_part(account),
        "deals": [
            {
                "id": d.id,
                "name": d.name,
                "stage": d.stage,
                "amount": _money(d.amount),
                "currency": d.currency,
                "outcome": d.outcome,
            }
            for d in deals
        ],
        "activities": [{"kind": a.kind, "summary": a.summary, "at": a.occurred_at.isoformat()} for a in activities],
    }
