"""Graders for drafted emails, independent of the product's own guard: each returns (passed, detail)."""

from __future__ import annotations

import re
from typing import Any

from core.enums import ItemKind
from review.templates import template_words
from review.texts.lead import TEMPLATES

BANNED_CLAIMS = [
    r"\bguarantee[sd]?\b",
    r"\b\d+\s?% (off|discount)\b",
    r"\bdiscount\b",
    r"\bfree of charge\b",
    r"\brisk[- ]free\b",
    r"\bbest in the (world|market|industry)\b",
    r"\bno\.? ?1\b",
    r"\blimited[- ]time offer\b",
]
MARKETING_TEMPLATES = {"first_touch_fast", "first_touch_nurture", "polite_decline"}
TOKEN = re.compile(r"https?://\S+|[\w.+-]+@[\w-]+\.[\w.-]+|\b\d[\d,./:%-]*\b|\b[A-Z][\w'&-]+(?:[ ]+[A-Z][\w'&-]+)*")
SENTENCE_START = re.compile(r"(^|[.!?:\n]\s*)$")
ABBREVIATION = re.compile(r"\b(Dr|Mr|Mrs|Ms|Prof|St|Inc|Ltd)\.\s*$")


def _corpus(facts: dict[str, Any], template: str) -> str:
    parts = template_words(TEMPLATES[template]) if template in TEMPLATES else []
    for value in facts.values():
        parts.append(str(value))
    return "\n".join(parts).lower()


def grounded(draft: dict[str, Any], facts: dict[str, Any]) -> tuple[bool, str]:
    """Every URL, email address, number and capitalised name in the draft is in the facts or the template."""
    text = f"{draft.get('subject', '')}\n{draft.get('body', '')}"
    corpus = _corpus(facts, draft.get("template", ""))
    missing = []
    for match in TOKEN.finditer(text):
        token = match.group(0).rstrip(".,;:!?)-")
        before = text[: match.start()]
        if token[:1].isupper() and SENTENCE_START.search(before) and not ABBREVIATION.search(before):
            # A capitalised first word of a sentence is grammar ("Thanks", "Hi"); the words after it are not.
            token = token.partition(" ")[2]
            if not token:
                continue
        if not re.search(r"(?<!\w)" + re.escape(token.lower()) + r"(?!\w)", corpus):
            missing.append(token)
    return (not missing, "untraceable: " + ", ".join(sorted(set(missing))) if missing else "all traceable")


def required_elements(draft: dict[str, Any], facts: dict[str, Any]) -> tuple[bool, str]:
    body = draft.get("body", "")
    problems = []
    first_name = facts.get("first_name") or ""
    greeting = body.strip().splitlines()[0] if body.strip() else ""
    if first_name and (not greeting.startswith("Hi ") or first_name not in greeting):
        problems.append(f"greeting should name {first_name}: {greeting!r}")
    elif not first_name and greeting != "Hello,":
        problems.append(f"with no name on record the greeting should be 'Hello,': {greeting!r}")
    if draft.get("template") != "polite_decline" and not re.search(r"\?|\breply\b", body, re.I):
        problems.append("no call to action")
    sender, company = facts.get("sender_name", ""), facts.get("our_company", "")
    if sender not in body or company not in body:
        problems.append("no signature with sender and company")
    if draft.get("template") in MARKETING_TEMPLATES and "unsubscribe" not in body.lower():
        problems.append("no unsubscribe line")
    return (not problems, "; ".join(problems) or "greeting, call to action, signature, unsubscribe")


STAND_INS = re.compile(r"\b(?:hi|hello|dear|thanks|touch),? there\b|\byour company\b", re.IGNORECASE)


def no_stand_ins(draft: dict[str, Any]) -> tuple[bool, str]:
    """No made-up name or company: never "Hi there" (a name that is not one) nor "your company"."""
    text = f"{draft.get('subject', '')}\n{draft.get('body', '')}"
    hits = sorted({m.group(0) for m in STAND_INS.finditer(text)})
    return (not hits, "stand-ins: " + ", ".join(hits) if hits else "none")


def length_bounds(draft: dict[str, Any], low: int = 30, high: int = 220) -> tuple[bool, str]:
    words = len(draft.get("body", "").split())
    subject = len(draft.get("subject", ""))
    ok = low <= words <= high and 0 < subject <= 90
    return ok, f"{words} words, subject {subject} characters"


def banned_claims(draft: dict[str, Any]) -> tuple[bool, str]:
    text = f"{draft.get('subject', '')}\n{draft.get('body', '')}"
    hits = [m.group(0) for pattern in BANNED_CLAIMS for m in re.finditer(pattern, text, re.I)]
    return (not hits, "banned: " + ", ".join(hits) if hits else "none")


def consent_respected(kind: str | None, consent: dict[str, bool], sent_kinds: list[str]) -> tuple[bool, str]:
    """No email draft without email consent; nothing at all without any consent."""
    if not consent.get("email") and kind == ItemKind.EMAIL:
        return False, "an email was drafted without email consent"
    if not consent.get("email") and not consent.get("call") and kind is not None:
        return False, f"a {kind} was drafted without any consent"
    if not consent.get("email") and ItemKind.EMAIL in sent_kinds:
        return False, "an email was sent without consent"
    return True, f"drafted {kind or 'nothing'}"
