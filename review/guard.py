"""Safety checks on every draft and every lead.

Grounding guard: each name, number, amount, date, email address and URL in a draft must appear in
the facts it was drafted from (or in the approved template's own text). Anything else is returned
as a flag; a flagged review item cannot be approved in one click.

Injection screen: lead text is data, never instructions. Messages that try to steer the agent
(other recipients, prices, the rubric, tools, approval) are flagged for the human who reviews them;
whatever the text says, recipients and amounts still come from records only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

URL = re.compile(r"\bhttps?://[^\s<>\"')]*[^\s<>\"').,;:!?]", re.IGNORECASE)
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
AMOUNT = re.compile(r"[$€£]\s?\d[\d,]*(?:\.\d+)?(?:\s?[kKmM]\b)?|\b\d[\d,]*(?:\.\d+)?\s?%|\b\d[\d,]*(?:\.\d+)?\b")
MONTHS = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*"
DATE = re.compile(
    rf"\b\d{{1,2}}\s{MONTHS}(?:\s\d{{4}})?\b|\b{MONTHS}\s\d{{1,2}}(?:,?\s\d{{4}})?\b|\b\d{{4}}-\d{{2}}-\d{{2}}\b"
)
NAME = re.compile(r"\b[A-Z][a-zA-Z'&-]+(?:\s+[A-Z][a-zA-Z'&-]+)*\b")


# Ordinary words that start sentences in business email; capitalised there, they are not names.
SENTENCE_STARTERS = frozenset(
    """a about after again all also an and any as at based before best but by can congratulations could dear do
    does every few first for from glad good great happy have having he hello her here hi his hope hoping how
    i if in is it its just kind let looking lovely many may more most much my nice no not now of on once one
    our perhaps please quick quite really regards she since sincerely so some sounds sure thank thanks that
    the their then there these they this those to today together unfortunately we welcome well what when
    where whether which while who why will with would yes yet you your""".split()
)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def ungrounded(draft: str, allowed: Iterable[str]) -> list[str]:
    """The claims in `draft` that no allowed text supports, as flags like "ungrounded amount '20%'"."""
    corpus = " \n ".join(_norm(str(a)) for a in allowed if a not in (None, ""))
    flags: list[str] = []
    seen: set[str] = set()

    def check(kind: str, token: str) -> None:
        key = _norm(token).rstrip(".,")
        if key and key not in seen and key not in corpus:
            seen.add(key)
            flags.append(f"ungrounded {kind} {token.strip()!r}")

    masked = draft
    for kind, pattern in (("url", URL), ("email", EMAIL), ("date", DATE)):
        for match in pattern.finditer(masked):
            check(kind, match.group(0))
        masked = pattern.sub(" ", masked)
    for match in AMOUNT.finditer(masked):
        check("number", match.group(0))
    for match in NAME.finditer(masked):
        # A capitalised run is a name when the approved text does not have those words.
        words = [w for w in match.group(0).split() if _norm(w) not in corpus]
        before = masked[: match.start()].rstrip()
        starts_sentence = not before or before[-1] in ".!?:" or "\n" in masked[len(before) : match.start()]
        if starts_sentence and len(match.group(0).split()) == 1 and _norm(match.group(0)) in SENTENCE_STARTERS:
            continue
        if words:
            check("name", match.group(0))
    return flags


INJECTION_PATTERNS: dict[str, re.Pattern[str]] = {
    "override_instructions": re.compile(
        r"\b(ignore|disregard|forget|override)\b.{0,40}\b(instructions?|rules?|prompts?|guidelines|previous|above)\b"
        r"|\b(you are now|act as|pretend to be|developer mode|jailbreak|new instructions|system:)\b"
        r"|<\|?(im_start|system)\|?>|###\s*(instruction|system)",
        re.IGNORECASE,
    ),
    "redirect_recipient": re.compile(
        r"\b(send|forward|email|mail|cc|bcc|copy|reply)\b.{0,60}\b(to|at)\b\s*[\w.+-]+@[\w-]+\.", re.IGNORECASE
    ),
    "change_price": re.compile(
        r"\b(change|set|lower|reduce|cut|waive|make)\b.{0,40}\b(price|pricing|cost|fee|amount|invoice|discount)\b"
        r"|(\b\d{1,3}\s?%|\bfree of charge\b|\bfor free\b).{0,30}\b(discount|off)\b"
        r"|\bdiscount of\b",
        re.IGNORECASE,
    ),
    "reveal_internals": re.compile(
        r"\b(reveal|show|print|tell|give|output|list|repeat)\b.{0,40}\b(rubric|system prompt|prompt|instructions|"
        r"scoring|score(?:s)? you|internal|api key|token|password|other (?:leads|customers))\b",
        re.IGNORECASE,
    ),
    # A promise nobody on record made ("as agreed, the first year is free"): a human checks it.
    "claimed_commitment": re.compile(
        r"\b(as (?:agreed|promised)|you (?:promised|agreed)|your (?:rep|colleague|team) (?:promised|agreed|said)|"
        r"pre-?approved)\b",
        re.IGNORECASE,
    ),
    "invoke_tools": re.compile(
        r"\b(call|use|invoke|run|execute|trigger)\b.{0,30}\b(tool|function|api|crm_\w+|send_\w+|update_\w+|webhook)\b",
        re.IGNORECASE,
    ),
    "skip_approval": re.compile(
        r"\b(skip|bypass|without|no need for)\b.{0,30}\b(approval|review|human|checks?|confirmation)\b"
        r"|\bauto-?approve|\bapprove (?:this |it )?automatically\b",
        re.IGNORECASE,
    ),
}


def lead_text(lead: dict[str, Any]) -> str:
    """Everything the lead typed, for the injection screen: not only the message (a company or title field
    can carry an instruction too)."""
    custom = lead.get("custom") or {}
    parts = [lead.get(k) for k in ("message", "company", "title", "first_name", "last_name", "website")]
    parts += [v for v in custom.values() if isinstance(v, str)]
    return "\n".join(str(p) for p in parts if p)


def injection_signals(text: str | None, own_email: str | None = None) -> list[str]:
    """Names of the steering attempts found in a lead's free text (empty when there are none)."""
    if not text:
        return []
    found = [name for name, pattern in INJECTION_PATTERNS.items() if pattern.search(text)]
    others = {e.lower() for e in EMAIL.findall(text)} - {(own_email or "").lower()}
    if "redirect_recipient" in found and not others:
        found.remove("redirect_recipient")  # "reply to me at <my own address>" redirects nothing
    if others and "redirect_recipient" not in found:
        found.append("foreign_email_address")
    return found
