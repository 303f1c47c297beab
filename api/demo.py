"""A small demo business: accounts, contacts, deals, API tokens and a handful of incoming leads."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.auth import create_token
from billing.ledger import record_payment
from core.enums import DealOutcome, DealStage, Role
from core.files import write_private
from core.models import Account, Contact, Deal, Invoice, Lead, Product, SalesAgent, utcnow
from core.schemas import LeadCreate
from core.settings import Settings
from core.users import create_user
from crm.capture import capture_lead
from crm.sales_team import link_matching_users

ACCOUNTS = [
    ("Northwind Analytics", "northwind-analytics.com", "Software", 240, "United States"),
    ("Bluebird Logistics", "bluebird-logistics.com", "Transportation", 1800, "United Kingdom"),
    ("Cobalt Health", "cobalthealth.io", "Healthcare", 85, "Germany"),
    ("Juniper Retail Group", "juniper-retail.com", "Retail", 6500, "United States"),
    ("Tallis & Reed Consulting", "tallisreed.co.uk", "Consulting", 35, "United Kingdom"),
]

CLOSED = "closed"  # the stage CRM imports give a closed deal (core.enums.DealStage has no such member)
DEALS = [
    (
        "Northwind Analytics - onboarding package",
        "northwind-analytics.com",
        CLOSED,
        DealOutcome.WON,
        Decimal("18500.00"),
        -120,
    ),
    ("Cobalt Health - pilot", "cobalthealth.io", CLOSED, DealOutcome.LOST, Decimal("7200.00"), -60),
    ("Tallis & Reed - retainer", "tallisreed.co.uk", DealStage.PROPOSAL, None, Decimal("12000.00"), 30),
]

LEADS = [
    {
        "email": "maria.santos@northwind-analytics.com",
        "first_name": "Maria",
        "last_name": "Santos",
        "company": "Northwind Analytics",
        "title": "VP Revenue Operations",
        "phone": "+1 415 555 0134",
        "message": "We want to automate our pipeline follow-ups this quarter. Can we see a demo and pricing?",
        "source": "web_form",
        "consent": {"email": True, "call": True},
    },
    {
        "email": "tom.becker@cobalthealth.io",
        "first_name": "Tom",
        "last_name": "Becker",
        "company": "Cobalt Health",
        "title": "Sales Operations Analyst",
        "message": "Looking at options for our spreadsheet-based follow-ups.",
        "source": "web_form",
        "consent": {"email": True, "call": False},
    },
    {
        "email": "priya.n@gmail.com",
        "first_name": "Priya",
        "last_name": "Nair",
        "company": "Nair Studio",
        "title": "Designer",
        "message": "Just curious what you do.",
        "source": "newsletter",
        "consent": {"email": True, "call": False},
        "custom": {"industry": "Design", "employees": 2},
    },
    {
        "email": "li.wei@tallisreed.co.uk",
        "first_name": "Li",
        "last_name": "Wei",
        "company": "Tallis & Reed Consulting",
        "title": "Partner",
        "phone": "+44 20 7946 0321",
        "message": "Please call me about the proposal.",
        "source": "referral",
        "consent": {"email": False, "call": True},
    },
    {
        "email": "sam.okafor@juniper-retail.com",
        "first_name": "Sam",
        "last_name": "Okafor",
        "company": "Juniper Retail Group",
        "title": "Operations Lead",
        "message": "Send me some information about collections automation.",
        "source": "web_form",
        "consent": {"email": True, "call": True},
    },
]


CASE_STUDIES = [
    (
        "northwind-follow-up",
        "Northwind Analytics: follow-up within five minutes",
        ("Software", 240),
        "A software analytics company with 240 employees automated lead follow-ups and pipeline reminders; "
        "first touch went from two days to five minutes and demo bookings doubled.",
    ),
    (
        "cobalt-collections",
        "Cobalt Health: collections without awkward calls",
        ("Healthcare", 85),
        "A healthcare provider reduced late invoices and days sales outstanding with automated, polite collection "
        "reminders approved by its finance team.",
    ),
    (
        "tallis-proposals",
        "Tallis & Reed: proposals in hours, not days",
        ("Consulting", 35),
        "A consulting firm cut proposal turnaround from three days to four hours with drafted proposals from its "
        "price book.",
    ),
]


def _seed_knowledge_base(settings: Settings) -> None:
    from tools import kb

    for doc_id, title, (industry, employees), text in CASE_STUDIES:
        kb.add(
            settings, doc_id=doc_id, kind="case_study", title=title, text=text, industry=industry, employees=employees
        )


def is_empty(session: Session) -> bool:
    return not session.scalar(select(func.count(Lead.id))) and not session.scalar(select(func.count(Account.id)))


def credentials_path(settings: Settings) -> Path:
    return settings.var_dir / "demo-credentials.json"


# Each sales agent is a closer who can sign in, linked by name when the demo is seeded, so every lead routing
# assigns lands with someone who can act on it.
DEMO_USERS = (
    ("casey@revloop.example", "Casey Jordan", Role.CLOSER),
    ("robin@revloop.example", "Robin Lee", Role.CLOSER),
    ("sasha@revloop.example", "Sasha Patel", Role.CLOSER),
    ("morgan@revloop.example", "Morgan Demo", Role.MANAGER),
    ("eve@revloop.example", "Eve Evaluator", Role.EVALUATOR),
    ("admin@revloop.example", "Admin", Role.ADMIN),
)


def seed(session: Session, settings: Settings) -> dict[str, object]:
    """Create the demo business. Returns the demo tokens (also written to var/ for `revloop up`)."""
    by_domain: dict[str, Account] = {}
    for name, domain, industry, employees, country in ACCOUNTS:
        account = Account(name=name, domain=domain, industry=industry, employees=employees, country=country)
        session.add(account)
        by_domain[domain] = account
    session.flush()
    dana = Contact(
        email="dana.white@northwind-analytics.com",
        first_name="Dana",
        last_name="White",
        title="COO",
        account_id=by_domain["northwind-analytics.com"].id,
        lawful_basis="contract",
    )
    session.add(dana)
    # A price book for proposals, and some billing so the cash view and the reminder ladder have work.
    for name, price in (
        ("Onboarding package", "2500.00"),
        ("Growth plan (annual)", "12000.00"),
        ("Training day", "1500.00"),
    ):
        session.add(Product(name=name, price=Decimal(price)))
    session.flush()
    northwind = by_domain["northwind-analytics.com"].id
    session.add_all(
        [
            Invoice(
                number="INV-DEMO-001",
                account_id=northwind,
                amount=Decimal("4800.00"),
                issued_on=utcnow().date() - dt.timedelta(days=40),
                due_on=utcnow().date() - dt.timedelta(days=10),
                payment_link="https://pay.revloop.example/invoices/INV-DEMO-001",
            ),
            Invoice(
                number="INV-DEMO-002",
                account_id=northwind,
                amount=Decimal("2500.00"),
                issued_on=utcnow().date() - dt.timedelta(days=70),
                due_on=utcnow().date() - dt.timedelta(days=40),
            ),
        ]
    )
    session.flush()
    record_payment(  # paid, through the same reconciliation as the payments webhook
        session,
        external_id="demo-payment-1",
        amount=Decimal("2500.00"),
        received_on=utcnow().date() - dt.timedelta(days=35),
        reference="INV-DEMO-002",
        actor="demo",
    )
    today = utcnow().date()
    for name, domain, stage, outcome, amount, days in DEALS:
        session.add(
            Deal(
                name=name,
                account_id=by_domain[domain].id,
                stage=stage,
                outcome=outcome,
                amount=amount,
                expected_close=today + dt.timedelta(days=days),
                closed_at=utcnow() + dt.timedelta(days=days) if outcome else None,
            )
        )
    for name, region in (("Casey Jordan", "AMER"), ("Robin Lee", "EMEA"), ("Sasha Patel", "APAC")):
        session.add(SalesAgent(name=name, manager="Morgan Demo", regional_office=region))
    _, integration = create_token(session, role=Role.INTEGRATION, name="demo-web-form", actor="demo")
    users = []
    for email, name, role in DEMO_USERS:
        password = secrets.token_urlsafe(12)
        create_user(session, email=email, name=name, role=role, password=password, actor="demo")
        users.append({"email": email, "name": name, "role": role, "password": password})
    link_matching_users(session, actor="demo")
    lead_ids = []
    for payload in LEADS:
        lead, _ = capture_lead(session, LeadCreate.model_validate(payload), actor="demo")
        lead_ids.append(lead.id)
    session.flush()
    tokens = {"integration": integration}
    _seed_knowledge_base(settings)
    path = credentials_path(settings)
    write_private(path, json.dumps({"tokens": tokens, "users": users}, indent=2).encode())
    return {"tokens": tokens, "users": users, "leads": lead_ids, "accounts": len(ACCOUNTS), "deals": len(DEALS)}
