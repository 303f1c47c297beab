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


def closed_leads(settings: Settings, n: int = 160) -> None:
    """n imported leads with outcomes where the source predicts the outcome (referrals win)."""
    import random

    from core.models import Deal, Lead
    from scoring.features import capture_snapshot

    rng = random.Random(3)
    with session_scope(settings) as session:
        for i in range(n):
            source = rng.choice(["referral", "referral", "web_form", "ads", "ads"])
            won = rng.random() < {"referral": 0.8, "web_form": 0.4, "ads": 0.1}[source]
            custom = {"industry": rng.choice(["software", "retail"]), "employees": rng.randint(5, 500)}
            lead = Lead(
                external_source="test",
                external_id=f"t{i}",
                source=source,
                status="imported",
                custom=custom,
                capture_features=capture_snapshot(
                    source=source,
                    consent_email=True,
                    consent_call=True,
                    free_mail=False,
                    phone=None,
                    company="X",
                    title=None,
                    custom=custom,
                ),
            )
            session.add(lead)
            session.add(Deal(name=f"deal {i}", lead=lead, stage="closed", outcome="won" if won else "lost"))


def trained_models(settings: Settings, count: int = 2) -> list[str]:
    """Train `count` models on closed_leads(); the first becomes the champion."""
    from scoring.features import load_feature_spec
    from scoring.registry import train_challenger

    closed_leads(settings)
    versions = []
    for _ in range(count):
        with session_scope(settings) as session:
            result = train_challenger(session, load_feature_spec(), min_closed=100, actor="test")
            versions.append(result["challenger"]["version"])
    return versions


def captured_lead(settings: Settings, **overrides: Any) -> int:
    """Capture a lead as the API does (persist, link to CRM, queue the graph); returns its id."""
    from core.schemas import LeadCreate
    from crm.capture import capture_lead

    with session_scope(settings) as session:
        lead, _ = capture_lead(session, LeadCreate.model_validate(lead_payload(**overrides)), actor="test")
        return lead.id


def review_item_for(settings: Settings, lead_id: int):
    """The one review item of a lead."""
    from sqlalchemy import select

    from core.models import ReviewItem

    with session_scope(settings) as session:
        return session.scalars(select(ReviewItem).where(ReviewItem.lead_id == lead_id)).one()


PASSWORD = "correct-horse-battery"


def user(settings: Settings, role: str = "closer", name: str | None = None, password: str = PASSWORD) -> str:
    """A user with a known password; returns the email."""
    from core.users import create_user

    name = name or f"Test {role.title()}"
    email = f"{name.lower().replace(' ', '.')}@revloop.test"
    with session_scope(settings) as session:
        create_user(session, email=email, role=role, password=password, name=name, actor="test")
    return email


def session_token(settings: Settings, role: str = "closer", name: str | None = None) -> str:
    """Sign a new user in (the real login path) and return the session token."""
    from core.users import login

    email = user(settings, role, name)
    with session_scope(settings) as session:
        _, plaintext = login(session, settings, email=email, password=PASSWORD)
    return plaintext


def queued_item(settings: Settings, **fields: Any) -> int:
    """A pending review item inserted directly (no graph behind it): for queue listing tests."""
    import uuid

    from core.models import ReviewItem

    values: dict[str, Any] = {
        "kind": "email",
        "thread_id": f"t-{uuid.uuid4().hex[:12]}",
        "dedupe_key": uuid.uuid4().hex,
        "source": "lead",
        "template": "first_touch_fast",
        "brief": {"grade": fields.get("grade") or "B", "score": 60},
        "draft": {"subject": "Hello", "body": "Hi there", "to": "x@example.com"},
        "queue": "main",
        "grade": "B",
    }
    values.update(fields)
    with session_scope(settings) as session:
        row = ReviewItem(**values)
        session.add(row)
        session.flush()
        return row.id


def pending_item(settings: Settings, http, worker, **lead_overrides: Any) -> dict[str, Any]:
    """Post a lead over HTTP, run the worker, and return the lead's pending review item as the API shows it."""
    r = http.post("/v1/leads", json=lead_payload(**lead_overrides), headers=auth(settings, "integration"))
    assert r.status_code == 202, r.text
    worker.run_until_idle()
    page = http.get("/v1/review-items", params={"status": "pending"}, headers=auth(settings, "closer")).json()
    items = [i for i in page["items"] if i["lead_id"] == r.json()["id"]]
    assert len(items) == 1, page
    return items[0]


def sales_agent(
    settings: Settings,
    name: str,
    *,
    region: str | None = None,
    services: list[str] | None = None,
    account_role: str | None = "closer",
    active: bool = True,
) -> int:
    """A sales agent; with account_role (default closer), also a user of the same name linked to it, the way
    routing needs it (None: an agent with no account). The link is written as it stands, whatever the role and
    active flag (a person whose role or account changed after linking). Returns the agent's id."""
    from core.models import SalesAgent, User

    if account_role is not None:
        user(settings, account_role, name)
    with session_scope(settings) as session:
        agent = SalesAgent(name=name, regional_office=region, services=services or [])
        session.add(agent)
        session.flush()
        if account_role is not None:
            from sqlalchemy import select

            account_user = session.scalar(select(User).where(User.name == name))
            agent.user_id = account_user.id
            account_user.active = active
        return agent.id
