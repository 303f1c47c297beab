"""A closer's instruction for a redraft ("respond"), read by the deterministic engine: it maps the words to the
choices a first-touch template offers (template, tone, length, the call ask, the similar won case, topics left
out) and says what it changed and what it could not follow. Recipients, amounts and prices never change here: the
choices are switches of an approved template, never text taken from the instruction."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from core.db import session_scope
from core.models import LlmRun
from core.settings import Settings

# Clauses of an instruction: "shorter and more formal, mention the case study" -> three clauses.
_CLAUSES = re.compile(r"\s*(?:[,;.!\n]+|\band\b|\bplus\b|\balso\b|\bthen\b)\s*", re.IGNORECASE)

LANGUAGES = {
    "spanish": "es",
    "español": "es",
    "espanol": "es",
    "german": "de",
    "deutsch": "de",
    "french": "fr",
    "français": "fr",
    "francais": "fr",
    "portuguese": "pt",
    "italian": "it",
    "dutch": "nl",
}
LANGUAGE_NAMES = {"es": "Spanish", "de": "German", "fr": "French", "pt": "Portuguese", "it": "Italian", "nl": "Dutch"}
SWITCH_SLOTS = ("formal", "short", "call_next_week", "case_study")
KEPT_NAMES = {
    "formal": "more formal",
    "short": "shorter",
    "call_next_week": "a call next week",
    "case_study": "the similar won case",
}


@dataclass
class Redraft:
    """What the instruction chose, and the sentences that tell the closer so."""

    template: str
    slots: dict[str, Any]
    changes: list[str] = field(default_factory=list)
    not_applied: list[str] = field(default_factory=list)


def _has(pattern: str, text: str) -> bool:
    return re.search(pattern, text, re.IGNORECASE) is not None


def _without_pricing(topics: str) -> str:
    parts = [p.strip() for p in re.split(r",|\band\b", topics) if p.strip()]
    kept = [p for p in parts if not _has(r"pric|quote|cost|contract terms", p)]
    if len(kept) <= 1:
        return "".join(kept)
    return ", ".join(kept[:-1]) + " and " + kept[-1]


def apply(
    instruction: str,
    *,
    template: str,
    slots: dict[str, Any],
    channel: str,
    similar_case: dict[str, Any] | None,
    templates: dict[str, dict[str, str]],
) -> Redraft:
    """Map `instruction` onto `template` and `slots` (copied, never changed in place). `templates` are the parts
    of the templates that may be chosen (the approved versions, else built-in): a switch the chosen template does
    not use is reported as not applied rather than silently ignored."""
    out = Redraft(
        template=template,
        slots={**{"formal": False, "short": False, "call_next_week": False, "case_study": ""}, **slots},
    )
    kept = [name for slot, name in KEPT_NAMES.items() if out.slots.get(slot)]
    if kept:
        out.changes.append("Kept from your earlier instructions: " + ", ".join(kept))
    if channel != "email" or template == "call_task":
        out.template = "call_task"
        out.not_applied.append(
            f"“{instruction}”: this contact may not be emailed, so the redraft stays a call task for you; "
            "nothing in it is sent"
        )
        return out
    clauses = [c for c in _CLAUSES.split(instruction.strip()) if c and c.strip()]
    wanted: list[tuple[str, str]] = []  # (switch, clause)
    for clause in clauses:
        text = clause.strip()
        matched = False
        # Instructions ("shorter") and the complaints of a rejection reason ("too long") alike.
        if _has(
            r"\b(short|shorter|brief|briefer|concise|less text|trim|cut|too long|too wordy|wordy|lengthy|"
            r"long-winded)\b",
            text,
        ):
            wanted.append(("short", text))
            matched = True
        if (
            _has(r"\b(formal|polite|professional)\b", text) and not _has(r"\b(less|not so|un|too)\s*formal\b", text)
        ) or _has(r"\b(too (casual|informal|chatty|familiar)|sloppy|unprofessional)\b", text):
            wanted.append(("formal", text))
            matched = True
        if _has(r"\b(casual|friendl|informal|warmer|relaxed|less formal|too formal|stiff|too cold)", text) and not _has(
            r"\btoo (casual|informal)", text
        ):
            wanted.append(("casual", text))
            matched = True
        if _has(r"\b(case stud|similar (won )?(case|project|customer)|reference|success stor)", text):
            wanted.append(("case_study", text))
            matched = True
        if _has(r"\bnext week\b", text) or _has(r"\b(ask|propose|suggest|offer)\b.{0,20}\b(call|meeting)\b", text):
            wanted.append(("call", text))
            matched = True
        negated = _has(r"\b(don'?t|do not|no|without|avoid|skip|leave out|never)\b", text)
        if negated and _has(r"\b(pric|cost|quote|fees?)\w*", text):
            wanted.append(("no_pricing", text))
            matched = True
        if _has(
            r"\b(less pushy|softer|gentle|nurture|not pushy|no pressure|don'?t push|too pushy|pushy|too aggressive|"
            r"aggressive|too salesy|salesy|too hard|hard sell|not ready)\b",
            text,
        ):
            wanted.append(("nurture", text))
            matched = True
        if _has(r"\b(decline|turn (them|it) down|say no|not a fit)\b", text):
            wanted.append(("decline", text))
            matched = True
        for word, code in LANGUAGES.items():
            if _has(rf"\b{word}\b", text):
                wanted.append((f"language:{code}", text))
                matched = True
        if not matched:
            out.not_applied.append(
                f"“{text}”: the deterministic engine only chooses the template, the tone, the length, the call ask, "
                "the similar won case and leaving pricing out; edit the draft yourself for this"
            )
    switches = [w for w, _ in wanted]

    def choose(new: str, why: str) -> None:
        if out.template != new:
            out.changes.append(f"Template {out.template} → {new} ({why})")
            out.template = new

    if "decline" in switches:
        choose("polite_decline", "a polite decline")
    elif "nurture" in switches:
        choose("first_touch_nurture", "a softer note without pushing for a call")
    elif "call" in switches and out.template == "first_touch_nurture" and "first_touch_fast" in templates:
        choose("first_touch_fast", "it asks for a call")
    for switch, clause in wanted:
        if switch.startswith("language:"):
            code = switch.split(":", 1)[1]
            localised = f"{out.template}_{code}"
            if localised in templates:
                choose(localised, f"the {LANGUAGE_NAMES[code]} version")
            else:
                out.not_applied.append(
                    f"“{clause}”: there is no {LANGUAGE_NAMES[code]} version of the {out.template} template; write "
                    "the translation yourself or ask a manager to add one"
                )
    parts = templates.get(out.template, {})
    used = " ".join(parts.values())

    def switch_on(slot: str, value: Any, said: str, clause: str, what: str) -> None:
        if not re.search(rf"\b{slot}\b", used):
            out.not_applied.append(f"“{clause}”: the {out.template} template has no {what}")
            return
        out.slots[slot] = value
        out.changes.append(said)

    for switch, clause in wanted:
        if switch == "short":
            switch_on("short", True, "Shorter: the paragraph about how we work is left out", clause, "shorter form")
        elif switch == "formal":
            switch_on(
                "formal", True, "More formal: “Dear <full name>”, “Thank you”, “Kind regards”", clause, "formal tone"
            )
        elif switch == "casual":
            out.slots["formal"] = False
            out.changes.append("Friendly tone: “Hi <first name>” and “Best regards” (the template's usual tone)")
        elif switch == "case_study":
            if not similar_case or not similar_case.get("title"):
                out.not_applied.append(
                    f"“{clause}”: no similar won case was found for this lead in the knowledge base, so none is named"
                )
            else:
                switch_on(
                    "case_study",
                    str(similar_case["title"]),
                    f"Mentions the most similar won case: {similar_case['title']}",
                    clause,
                    "place for a case study",
                )
        elif switch == "call":
            if _has(r"\bnext week\b", clause):
                switch_on("call_next_week", True, "Asks for a 20-minute call next week", clause, "call ask")
            elif out.template == "first_touch_fast":
                out.changes.append("Asks for a 20-minute call (the fast first touch always does)")
        elif switch == "no_pricing":
            topics = str(out.slots.get("topics") or "")
            without = _without_pricing(topics)
            if without != topics:
                out.slots["topics"] = without
                out.changes.append(
                    "Pricing left out: the draft no longer names it among the topics"
                    + (f" (now: {without})" if without else "")
                )
            else:
                out.changes.append("Pricing left out: the draft names no price or pricing (the template has none)")
    return out


class RedraftOpening(BaseModel):
    """What the model adds to a redraft: an opening line in words, never recipients, prices or amounts."""

    opening_line: str = Field("", max_length=400, description="The new first sentence or two; empty for none")
    followed: list[str] = Field(default_factory=list, max_length=10)
    not_followed: list[str] = Field(default_factory=list, max_length=10)


def _drop_ungrounded_notes(
    answer: RedraftOpening, instruction: str, lead: dict[str, Any], rendered: dict[str, str], usage: Any
) -> None:
    """What the model says it followed or could not follow is shown to the closer: a note stating a fact that
    neither the instruction, the draft nor the lead record gives (the grounding guard, case-insensitive) is
    dropped and recorded. The opening line itself is guarded with the whole draft."""
    import json

    from review.guard import Grounding, unsupported

    record = {k: v for k, v in lead.items() if k not in ("message", "custom")}
    grounding = Grounding(
        [instruction, rendered.get("subject", ""), rendered.get("body", ""), json.dumps(record, default=str)]
    )
    for name in ("followed", "not_followed"):
        kept = []
        for note in getattr(answer, name):
            if bad := unsupported(note, grounding):
                usage.note(
                    "redraft", f"ungrounded_{name}", "rejected", f"{note[:100]}: {', '.join(f.flag for f in bad)}"
                )
            else:
                kept.append(note)
        setattr(answer, name, kept)


def with_llm(
    settings: Settings, out: Redraft, *, instruction: str, lead: dict[str, Any], rendered: dict[str, str]
) -> None:
    """The LLM path: the model writes the opening line for the closer's instruction (fenced as the closer's, the
    lead's words fenced as data), and says what it followed. The line is one more slot: the grounding guard checks
    the whole draft as always. A model that fails leaves the template choices alone and says so."""
    from agents.lead.prompts import REDRAFT_SYSTEM, redraft_request
    from agents.llm import LlmBudgetExceeded, LlmClient, LlmError, fence

    client, error, answer, status = None, None, None, "ok"
    try:
        client = LlmClient(settings)
        messages = [
            {"role": "system", "content": REDRAFT_SYSTEM},
            {
                "role": "user",
                "content": redraft_request(
                    instruction, rendered.get("subject", ""), rendered.get("body", ""), fence(lead.get("message"))
                ),
            },
        ]
        answer = client.structured(messages, RedraftOpening, kind="redraft")
        _drop_ungrounded_notes(answer, instruction, lead, rendered, client.usage)
    except LlmBudgetExceeded as exc:
        error, status = str(exc), "over_budget"
    except LlmError as exc:
        error, status = str(exc), "failed"
    outcome = "used" if answer is not None else "not_used"
    with session_scope(settings) as session:
        record = (
            client.run_record(status=status, error=error, outcome=outcome)
            if client
            else {"model": settings.llm_model, "calls": 0, "tool_calls": 0, "prompt_tokens": 0,
                  "completion_tokens": 0, "cost_usd": 0, "status": status, "error": error, "outcome": outcome}
        )  # fmt: skip
        session.add(LlmRun(lead_id=lead.get("id"), purpose="lead_redraft", **record))
    if answer is None:
        out.not_applied.append(f"The language model was unavailable ({error}): only the template choices were made")
        return
    opening = " ".join(answer.opening_line.split())
    out.slots["opening"] = opening
    if opening:
        out.changes.append(f"Opening line written by the model for your instruction: {opening}")
    out.changes += [f"The model followed: {part}" for part in answer.followed]
    out.not_applied += [f"The model could not follow: {part}" for part in answer.not_followed]
