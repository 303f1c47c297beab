"""Template governance: versioned message templates (Jinja2, sandboxed). A manager saves a draft, which
is checked on save (syntax, merge fields against the facts that exist for its kind, required fields),
previews it with sample data, and approves it; drafts then use the latest approved version, else the
built-in text. An unknown merge field is an error when saving, never a blank at send time."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from core import audit
from core.db import insert_once
from core.enums import TemplateStatus
from core.errors import Conflict, InvalidInput, NotFound
from core.models import MessageTemplate, utcnow
from review import sandbox
from review.texts.cadences import TEMPLATES as CADENCE_TEMPLATES
from review.texts.channels import TEMPLATES as CHANNEL_TEMPLATES
from review.texts.collections import TEMPLATES as DUNNING_TEMPLATES
from review.texts.deals import TEMPLATES as DEAL_TEMPLATES
from review.texts.lead import TEMPLATES as LEAD_TEMPLATES

# Sandboxed, with limits on time, steps, output and value sizes (review/sandbox.py): drafts, previews and approvals
# all render through render_parts.
_env = sandbox.LimitedSandbox(undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True)

BUILT_IN: dict[str, dict[str, str]] = {
    **LEAD_TEMPLATES,
    **CADENCE_TEMPLATES,
    **DUNNING_TEMPLATES,
    **DEAL_TEMPLATES,
    **CHANNEL_TEMPLATES,
}
LEAD_FIELDS = {
    "first_name": "Jane",
    "full_name": "Jane Doe",
    "title": "VP Sales",
    "company": "Acme Software",
    "industry": "software",
    "phone": "+1 415 555 0100",
    "topics": "pricing and a demo",
    "score": 82,
    "grade": "A",
    "summary": "Jane Doe, VP Sales at Acme Software. Score 82 (A).",
    "our_company": "Revloop Demo Co",
    "sender_name": "Alex Morgan",
    "unsubscribe_url": "https://revloop.example/unsubscribe",
    "opening": "",
    # Choices a closer's instruction can make on a redraft (agents/lead/instructions.py); off by default.
    "formal": False,
    "short": False,
    "call_next_week": False,
    "case_study": "",
}
DUNNING_FIELDS = {
    "first_name": "Pat",
    "full_name": "Pat Payer",
    "company": "Globex Ltd",
    "phone": "+1 415 555 0199",
    "number": "INV-1001",
    "amount": "USD 1,200.00",
    "due_on": "01 Dec 2026",
    "days_overdue": 8,
    "payment_link": "https://pay.revloop.example/invoices/INV-1001",
    "reference": "INV-1001",
    "history": "Pays late 20% of the time (3 days on average).",
    "sender_name": "Alex Morgan",
    "our_company": "Revloop Demo Co",
}
CADENCE_FIELDS = {
    **LEAD_FIELDS,
    "last_subject": "Acme Software and Revloop Demo Co: a quick call this week?",
    "days_since_first_touch": 5,
    "history": "'Acme Software and Revloop Demo Co: a quick call this week?'",
    "days_quiet": 30,
    "note": "Thanks, can we talk Thursday?",
}
DEAL_FIELDS = {
    "first_name": "Pat",
    "company": "Globex Ltd",
    "sender_name": "Alex Morgan",
    "our_company": "Revloop Demo Co",
    "number": "P-12-1",
    "total": "USD 10,200.00",
    "valid_until": "2026-12-23",
    "kickoff_on": "30 Nov 2026",
    "milestones": "Kickoff, Delivery, Acceptance",
    "owner": "Casey Jordan",
    "milestone": "Delivery",
    "next_step": "Acceptance",
}
INVOICE_FIELDS = {
    "first_name": "Pat",
    "company": "Globex Ltd",
    "sender_name": "Alex Morgan",
    "our_company": "Revloop Demo Co",
    "number": "INV-2026-00001",
    "amount": "USD 2,892.60",
    "due_on": "01 Jan 2027",
    "payment_link": "https://pay.revloop.example/invoices/INV-2026-00001",
    "milestone": "Kickoff",
}
REQUIRED = {
    "proposal_cover": {"number", "total", "valid_until"},
    "invoice_email": {"number", "amount", "due_on", "payment_link"},
    "onboarding_welcome": {"kickoff_on", "owner"},
    "onboarding_kickoff": {"kickoff_on"},
    "client_update": {"milestone"},
    **{key: {"unsubscribe_url", "sender_name"} for key in CADENCE_TEMPLATES if key != "reply_handoff"},
    "reply_handoff": set(),
    "first_touch_fast": {"unsubscribe_url", "sender_name"},
    "first_touch_nurture": {"unsubscribe_url", "sender_name"},
    "polite_decline": {"unsubscribe_url", "sender_name"},
    "dunning_friendly": {"number", "amount", "payment_link"},
    "dunning_neutral": {"number", "amount", "payment_link"},
    "dunning_firm": {"number", "amount", "payment_link"},
    "dunning_final": {"number", "amount"},
    "call_task": set(),
    "text_first_touch": {"sender_name"},
    "text_follow_up": {"sender_name"},
    "dunning_text": {"number", "amount", "payment_link"},
    "client_update_text": {"milestone"},
}


def sample_facts(key: str) -> dict[str, Any]:
    if key.startswith("dunning_"):
        return dict(DUNNING_FIELDS)
    if key == "invoice_email":  # every fact comes from the invoice record (and its milestone)
        return dict(INVOICE_FIELDS)
    if key in DEAL_TEMPLATES or key == "client_update_text":
        return dict(DEAL_FIELDS)
    return dict(CADENCE_FIELDS if key in CADENCE_TEMPLATES else LEAD_FIELDS)


def _check_key(key: str) -> None:
    if key not in BUILT_IN:
        raise NotFound(f"no template {key!r}; templates: {', '.join(sorted(BUILT_IN))}")


def validate(key: str, subject: str, body: str) -> list[str]:
    """Every problem with a template text: syntax, unknown merge fields, missing required fields."""
    _check_key(key)
    allowed = set(sample_facts(key))
    errors, used = [], set()
    for part, text in (("subject", subject), ("body", body)):
        if not text.strip():
            errors.append(f"{part}: must not be empty")
            continue
        try:
            used |= meta.find_undeclared_variables(_env.parse(text))
        except TemplateSyntaxError as exc:
            errors.append(f"{part}: line {exc.lineno}: {exc.message}")
            continue
        for field in sorted(meta.find_undeclared_variables(_env.parse(text)) - allowed):
            errors.append(f"{part}: unknown merge field {field!r} (available: {', '.join(sorted(allowed))})")
    if not errors:
        for field in sorted(REQUIRED[key] - used):
            errors.append(f"missing required merge field {field!r}")
        # A template that fails or is stopped with sample data raises TemplateRenderError (422, naming the part).
        render_parts({"subject": subject, "body": body}, sample_facts(key))
    return errors


@lru_cache(maxsize=128)
def _compiled(text: str):
    return _env.from_string(text)


def render_parts(parts: dict[str, str], slots: dict[str, Any]) -> dict[str, str]:
    """Each part rendered with the slots, within the sandbox's limits (review/sandbox.py); a part that fails,
    or is stopped, raises sandbox.TemplateRenderError (a 422 naming the part and the problem)."""
    return {name: sandbox.render(_compiled(text), slots, field=name).strip() for name, text in parts.items()}


def template_words(parts: dict[str, str]) -> list[str]:
    """The template's own words (tags removed): text a draft may contain without a fact behind it."""
    return [re.sub(r"{[{%].*?[%}]}", " ", text) for text in parts.values()]


_ACTIVE = (  # built once: every draft runs it
    select(MessageTemplate)
    .where(MessageTemplate.key == bindparam("key"), MessageTemplate.status == TemplateStatus.APPROVED)
    .order_by(MessageTemplate.version.desc())
    .limit(1)
)


def active(session: Session, key: str) -> tuple[dict[str, str], str]:
    """(parts, version label) drafts use now: the latest approved version, else the built-in text."""
    row = session.scalar(_ACTIVE, {"key": key})
    if row is None:
        return dict(BUILT_IN[key]), "built-in"
    return {"subject": row.subject, "body": row.body}, f"v{row.version}"


def save_draft(session: Session, key: str, subject: str, body: str, *, actor: str) -> MessageTemplate:
    errors = validate(key, subject, body)
    if errors:
        raise InvalidInput(f"template {key} not saved: " + "; ".join(errors), details={"errors": errors})
    for _ in range(5):  # a concurrent save took the next version number: take the one after it
        version = (session.scalar(select(func.max(MessageTemplate.version)).where(MessageTemplate.key == key)) or 0) + 1
        row, created = insert_once(
            session,
            MessageTemplate(key=key, version=version, subject=subject, body=body, created_by=actor),
            select(MessageTemplate).where(MessageTemplate.key == key, MessageTemplate.version == version),
        )
        if created:
            break
    else:
        raise Conflict(f"template {key}: others are saving versions at this moment; save again")
    audit.record(
        session,
        actor=actor,
        action="template.saved",
        entity_type="template",
        entity_id=row.id,
        after={"key": key, "version": version},
    )
    return row


def approve(session: Session, template_id: int, *, actor: str) -> MessageTemplate:
    row = session.get(MessageTemplate, template_id)
    if row is None:
        raise NotFound(f"template version {template_id} not found")
    if row.status != TemplateStatus.DRAFT:
        raise Conflict(f"{row.key} v{row.version} is {row.status}; only a draft can be approved")
    errors = validate(row.key, row.subject, row.body)  # the allowed fields may have changed since saving
    if errors:
        raise InvalidInput("; ".join(errors), details={"errors": errors})
    session.execute(
        update(MessageTemplate)
        .where(MessageTemplate.key == row.key, MessageTemplate.status == TemplateStatus.APPROVED)
        .values(status=TemplateStatus.ARCHIVED)
    )
    row.status, row.approved_by, row.approved_at = TemplateStatus.APPROVED, actor, utcnow()
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="template.approved",
        entity_type="template",
        entity_id=row.id,
        after={"key": row.key, "version": row.version},
    )
    return row


def versions(session: Session, key: str | None = None) -> list[MessageTemplate]:
    stmt = select(MessageTemplate).order_by(MessageTemplate.key, MessageTemplate.version.desc())
    if key:
        stmt = stmt.where(MessageTemplate.key == key)
    return list(session.scalars(stmt).all())
