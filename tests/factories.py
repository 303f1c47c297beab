"""Plain factory functions for tests."""

from __future__ import annotations

from typing import Any

from api.auth import create_token
from core.db import session_scope
from core.models import Account
from core.settings import Settings


def token(settings: Settings, role: str = "closer", name: str | None = None) -> str:
    with session_scope(settings) as session:
        _, plaintext = create_token(session, role=role, name=name or f"test-{role}", actor="test")
    return plaintext


def auth(settings: Settings, role: str = "closer") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings, role)}"}


def account(settings: Settings, **fields: Any) -> int:
    values = {"name": "Acme Software", "domain": "acme-software.com", "industry": "Software", "employees": 250}
    values.update(fields)
    with session_scope(settings) as session:
        row = Account(**values)
        session.add(row)
        session.flush()
        return row.id


def lead_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "email": "jane.doe@acme-software.com",
        "first_name": "Jane",
        "last_name": "Doe",
        "company": "Acme Software",
        "title": "VP Sales",
        "phone": "+1 415 555 0100",
        "website": "https://www.acme-software.com",
        "message": "We need a demo and pricing for our team this quarter.",
        "source": "web_form",
        "consent": {"email": True, "call": True},
        "custom": {},
    }
    payload.update(overrides)
    return payload
