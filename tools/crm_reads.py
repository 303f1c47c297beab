"""Reads of revloop's own CRM tables that the native CRM tools (tools.agent_tools) and a lead's records
(crm.records.lead_facts) share: in the lead run's one read-only unit of work each is read once (core.db.read_once).
A module of its own, light to import: capture imports crm.records."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from core.db import known_read, read_once
from core.models import Contact, Deal

_CONTACT_BY_EMAIL = select(Contact).where(Contact.email == bindparam("email"))
_DEALS_OF_ACCOUNT = select(Deal).where(Deal.account_id == bindparam("account_id")).order_by(Deal.id)


def contact_by_email(session: Any, email: str) -> Contact | None:
    """The contact with this (lower-case) address; read once per read-only unit of work (core.db.read_once)."""
    return read_once(session, ("contact by email", email), lambda: session.scalar(_CONTACT_BY_EMAIL, {"email": email}))


def known_contact(session: Any, contact: Contact) -> None:
    """A contact the caller has loaded: contact_by_email for its address in this unit of work needs no read."""
    if contact.email:
        known_read(session, ("contact by email", contact.email), contact)


def deals_of_account(session: Any, account_id: int) -> list[Deal]:
    """The account's deals in id order; read once per read-only unit of work (core.db.read_once)."""
    return read_once(
        session,
        ("deals of account", account_id),
        lambda: list(session.scalars(_DEALS_OF_ACCOUNT, {"account_id": account_id})),
    )
