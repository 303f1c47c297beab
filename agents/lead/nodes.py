"""Nodes of the lead graph: functions of state returning partial updates.

Only `execute` has side effects outside revloop's own records, and it runs after the review
interrupt, in its own node, re-reading the approval from the database.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from typing import Any

from langgraph.types import interrupt
from sqlalchemy import event, select

from agents.lead import instructions, routing
from agents.lead.prompts import TEMPLATE_FOR_ACTION, topics_phrase
from agents.lead.research import research
from agents.lead.state import LeadState
from core.db import reading, session_scope
from core.enums import MESSAGE_KINDS, ItemKind, ItemSource, LeadStatus
from core.models import Contact
from core.settings import Settings
from crm import records
from crm.consent import may_message
from review import queue as review_queue
from review import templates as message_templates
from review.channels import whatsapp_window_open
from review.execute import Rule, execute_approved
from review.guard import ungrounded
from review.injection import injection_flags, injection_signals, lead_text
from scoring.scorer import score_lead

# First touches are sent by the one executor with no further check: the approval and the contact's
# consent (re-read at send) are what they need.
EXECUTION = Rule(actor="agent:lead")
TEXTS = ("sms", "whatsapp")
TEXT_TEMPLATE = "text_first_touch"

NEXT_ACTION_FOR_GRADE = {"A": "call_now", "B": "fast_cadence", "C": "nurture", "D": "polite_decline"}
NEXT_ACTION_LABEL = {
    "call_now": "Call now, then send the first touch",
    "fast_cadence": "Fast follow-up cadence",
    "nurture": "Nurture",
    "polite_decline": "Polite decline",
}


# What a name or company typed into a form may look like to be quoted in a draft: letters, digits, spaces and
# ordinary name punctuation. Anything else (an address, a URL, an instruction, symbols) is not quoted.
PLAIN_NAME = re.compile(r"^[^\W_][\w .,'&()\-]{0,79}$")


def plain(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text if PLAIN_NAME.match(text) and "@" not in text and "://" not in text else None


def _names(facts: dict[str, Any]) -> tuple[str, str]:
    """The person's first and full name as the records give them, empty when unknown: a draft never makes one
    up ("there"); the templates read naturally without (review/texts/lead.py)."""
    person = facts.get("contact") or facts["lead"]
    first, last = plain(person.get("first_name")), plain(person.get("last_name"))
    return first or "", " ".join(p for p in (first, last) if p)


def _display_name(facts: dict[str, Any]) -> str:
    """Who the lead is, for the closer's brief: the name, else the email address or phone number."""
    return _names(facts)[1] or facts["lead"].get("email") or facts["lead"].get("phone") or "name unknown"


def _company(facts: dict[str, Any]) -> str:
    """The company's name from the records, empty when unknown (never "your company" in a draft)."""
    return plain((facts.get("account") or {}).get("name")) or plain(facts["lead"].get("company")) or ""


def _strings(node: Any) -> list[str]:
    """Every string and number in the facts: what a draft may mention."""
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return [] if node is None or isinstance(node, bool) else [str(node)]


def _lowered(adjustments: list[dict[str, Any]]) -> str:
    """The rubric's adjustments that held a lead down, as a sentence of the brief's summary."""
    if not adjustments:
        return ""

    def effect(a: dict[str, Any]) -> str:
        parts = [
            f"-{a['penalty']:g} points" if a.get("penalty") else "",
            f"at most {a['max_grade']}" if a.get("max_grade") else "",
        ]
        return ", ".join(p for p in parts if p)

    return " Lowered: " + "; ".join(f"{a['label'].lower()} ({effect(a)})" for a in adjustments) + "."


def model_parts_sentence(llm: dict[str, Any]) -> str:
    """Which parts of the brief and draft the language model wrote, and which the deterministic engine did."""
    ours = "score, grade, flags, routing and the draft's template and facts"
    if not llm.get("model_parts"):
        why = {"over_budget": "its time budget ran out", "failed": "it gave no usable answer"}.get(
            llm.get("status", ""), "nothing it wrote could be used"
        )
        return f"The language model's output was not used ({why}): the deterministic engine did all of it."
    said = f"Written by the language model: {', '.join(llm['model_parts'])}."
    if llm.get("withheld"):
        said += f" Withheld (it stated facts no record supports): {', '.join(llm['withheld'])}."
    return (
        said
        + f" By the deterministic engine: {ours}"
        + ("." if "choice of look-ups" in llm["model_parts"] else " and the look-ups.")
    )


class LeadNodes:
    def __init__(self, settings: Settings):
        self.settings = settings

    def prepare(self, state: LeadState) -> dict[str, Any]:
        """A lead's first run up to its review: enrich, score, brief, route and (when the lead may be contacted)
        draft, in one LangGraph step."""
        return self._first_run(state, draft=True)

    def assess(self, state: LeadState) -> dict[str, Any]:
        """enrich, score, brief and route in one step (a thread checkpointed before it by an earlier version)."""
        return self._first_run(state, draft=False)

    def _first_run(self, state: LeadState, *, draft: bool) -> dict[str, Any]:
        """Each part sees the updates of the ones before it. Their reads (the lead's records, the research look-ups
        of our own tables, the rubric and model registry, routing's roster and loads, the draft's template) go
        through one read-only session, in this thread: one unit of work instead of about ten."""
        update: dict[str, Any] = {}
        # With the LLM engine the model's turns take seconds: no read transaction is held open across them.
        shared = session_scope(self.settings, readonly=True) if self.settings.llm != "openai" else nullcontext(None)
        with shared as session:
            if session is not None:
                # What one part loads stays in the session for the next (its identity map holds objects weakly):
                # the lead, its contact and account are not read again by the look-ups, score and route.
                loaded: list[Any] = []
                event.listen(session, "loaded_as_persistent", lambda _session, row: loaded.append(row))
            for step in (self.enrich, self.score, self.brief, self.route):
                update |= step({**state, **update}, session=session)  # type: ignore[arg-type]
            if draft and update["route"]["channel"] != "none":
                update |= self.draft({**state, **update}, session=session)  # type: ignore[arg-type]
        return update

    def enrich(self, state: LeadState, session: Any = None) -> dict[str, Any]:
        llm = self.settings.llm == "openai"
        with reading(self.settings, session) as reader:
            facts = records.lead_facts(reader, state["lead_id"])
            # The deterministic engine's look-ups of our own tables read through this session, in this thread; the
            # LLM engine's, spread over the model's turns, each open their own (after this block).
            investigation = None if llm else research(self.settings, facts, reader)
        if investigation is None:
            investigation = research(self.settings, facts)
        directory = investigation.get("directory")
        if directory and facts.get("account"):
            # What the directory knows fills the account's empty fields (with their source), so the rubric
            # and the model score the company, not a blank; typed-in values are never overwritten.
            with session_scope(self.settings) as session:  # idempotent: a re-run finds the fields filled
                if records.fill_account_from_directory(session, facts["account"]["id"], directory, actor="agent:lead"):
                    facts = records.lead_facts(session, state["lead_id"])
        return {"facts": facts, "research": investigation}

    def score(self, state: LeadState, session: Any = None) -> dict[str, Any]:
        with reading(self.settings, session) as session:
            snapshot = records.capture_snapshot(session, state["lead_id"])
            return {"scoring": score_lead(session, self.settings, state["facts"], snapshot)}

    def brief(self, state: LeadState, session: Any = None) -> dict[str, Any]:
        facts, scoring = state["facts"], state["scoring"]
        lead, account = facts["lead"], facts.get("account") or {}
        criteria = scoring["criteria"]
        met = [c for c in criteria if c["met"]]
        missed = [c for c in criteria if not c["met"]]
        flags: list[str] = []
        for field, label in (("company", "company"), ("title", "title")):
            if not lead.get(field):
                flags.append(f"missing_{label}")
        if lead.get("free_mail"):
            flags.append("free_mail_domain")
        if lead.get("disposable_email"):
            flags.append("disposable_email")
        if lead.get("account_matched_by_name"):
            flags.append("account_matched_by_name")  # no email domain confirms the account it was linked to
        known = sum(c["weight"] for c in criteria if c["known"]) / (sum(c["weight"] for c in criteria) or 1)
        if known < 0.6:
            flags.append("low_confidence")
        if scoring.get("too_little"):
            flags.append("too_little_to_judge")
        if any(d.get("outcome") == "won" for d in facts.get("deals", [])):
            flags.append("existing_customer")
        if any(d.get("outcome") is None for d in facts.get("deals", [])):
            flags.append("open_deal")
        for d in scoring.get("disqualified_by", []):
            flags.append(f"disqualified:{d['id']}")
        if scoring.get("fallback"):
            flags.append("rubric_only")
        if scoring.get("model_out_of_domain"):
            flags.append("model_out_of_domain")  # the lead is unlike the deals the model learned from
        model_view = scoring.get("model")
        if model_view and abs(scoring["rubric_score"] / 100 - model_view["probability"]) >= 0.5:
            flags.append("conflicting_signals")  # the written ICP and past outcomes disagree
        investigation = state.get("research") or {}
        injection = injection_signals(lead_text(lead), lead.get("email"))
        insight = investigation.get("insight") or {}
        if insight.get("injection_suspected") and not injection:
            injection = ["model_suspected"]
        flags += injection_flags(injection)  # the code, then one sentence per category for the closer
        if investigation.get("refused"):
            flags.append("tool_calls_refused:" + ",".join(investigation["refused"]))
        if investigation.get("failed"):
            flags.append("tool_calls_failed:" + ",".join(investigation["failed"]))
        llm = investigation.get("llm") or {}
        if investigation.get("llm_error"):
            flags.append("llm_unavailable")
        if llm.get("status") == "over_budget":
            flags.append("llm_over_budget")
        if llm.get("withheld"):
            flags.append("llm_output_withheld:" + ",".join(p.replace(" ", "_") for p in llm["withheld"]))
        next_action = NEXT_ACTION_FOR_GRADE[scoring["grade"]]
        if scoring.get("too_little") and next_action == "polite_decline":
            # Too little known to judge is not a "no": a person looks first (exception queue), and the draft they
            # see is the neutral first touch, not a decline of someone who may have asked for a quote.
            next_action = "nurture"
        company = _company(facts)
        who = (
            _display_name(facts)
            + (f", {lead['title']}" if lead.get("title") else "")
            + (f" at {company}" if company else " (company unknown)")
        )
        firmo = ", ".join(
            x
            for x in (
                account.get("industry") or lead["custom"].get("industry"),
                f"{account['employees']} employees" if account.get("employees") else None,
            )
            if x
        )
        reasons = "; ".join(c["label"].lower() for c in met) or "no rubric criterion met"
        model = scoring.get("model")
        weight = scoring.get("model_weight", 0.0)
        if model:
            likelihood = (
                f" Model: {model['probability']:.0%} likely to close."
                f" Blend: {weight:.0%} model, {1 - weight:.0%} rubric fit."
            )
        elif scoring.get("model_out_of_domain"):
            why = (scoring.get("fallback") or "").split(" learned from: ", 1)[-1]
            likelihood = (
                " Scored by the rubric alone: this lead is unlike the deals the outcome model learned from"
                f" ({why}), so the model's probability is not used."
            )
        else:
            likelihood = " Scored by the rubric alone (not enough closed deals for the model yet)."
        summary = (
            f"{who}{f' ({firmo})' if firmo else ''}. Score {scoring['score']} ({scoring['grade']}), "
            f"fit {scoring['rubric_score']}: {reasons}."
            + (f" Missing: {', '.join(c['label'].lower() for c in missed)}." if missed else "")
            + _lowered(scoring.get("adjustments") or [])
            + (f" {scoring['too_little'][0].upper()}{scoring['too_little'][1:]}." if scoring.get("too_little") else "")
            + likelihood
            + f" Recommended: {NEXT_ACTION_LABEL[next_action].lower()}."
        )
        if insight.get("summary"):
            summary += f" Research notes: {insight['summary']}"
        case = investigation.get("similar_case")
        if case:
            summary += f" Most similar won case: {case['title']} ({case['record']})."
        if llm:
            summary += " " + model_parts_sentence(llm)
        brief = {
            "engine": investigation.get("engine", "deterministic"),
            **({"llm": llm} if llm else {}),
            "evidence": investigation.get("evidence", []),
            "similar_case": investigation.get("similar_case"),
            "injection": injection,
            "score": scoring["score"],
            "grade": scoring["grade"],
            "summary": summary,
            "flags": flags,
            "next_action": next_action,
            "rubric_version": scoring["rubric_version"],
            "rubric_score": scoring["rubric_score"],
            "model": model,
            "model_weight": weight,
            "model_out_of_domain": bool(scoring.get("model_out_of_domain")),
            "fallback": scoring.get("fallback"),
            # Why this grade, one line per factor: each criterion, each adjustment that applied (negative intent,
            # an industry outside the ICP...), a disqualifier, too little to judge.
            "factors": scoring.get("factors") or [],
            "adjustments": scoring.get("adjustments") or [],
            "too_little": scoring.get("too_little"),
            "uncapped_grade": scoring.get("uncapped_grade"),
            "criteria": [
                {
                    "id": c["id"],
                    "label": c["label"],
                    "met": c["met"],
                    "evidence": c["evidence"],
                    "source": c["record"],
                }
                for c in criteria
            ],
        }
        # Stored with the review item, in the run's one write (LeadGraphRunner.run_lead): no transaction of its own.
        return {"brief": brief}

    def route(self, state: LeadState, session: Any = None) -> dict[str, Any]:
        facts = state["facts"]
        lead, contact = facts["lead"], facts.get("contact") or {}
        may_email = lead["consent_email"] and bool(lead.get("email")) and not contact.get("do_not_email", False)
        text_channel = self._text_channel(lead, contact, session)
        may_call = (
            lead["consent_call"]
            and not contact.get("do_not_call", False)
            and bool(lead.get("phone") or contact.get("phone"))
        )
        brief = state["brief"]
        next_action = brief["next_action"]
        if text_channel:
            channel = text_channel  # the lead wrote on SMS or WhatsApp (or prefers it): answer there
        elif may_email:
            channel = "email"
        elif may_call and next_action != "polite_decline":
            channel = "call_task"
        else:
            channel = "none"
        reasons = routing.exception_reasons(brief, facts, brief.get("injection", []), self.settings, session)
        queue = "exception" if reasons else "main"
        region = routing.region_of(facts)
        service = routing.service_type(facts)
        return {
            "route": {
                "next_action": next_action,
                "channel": channel,
                "may_email": may_email,
                "may_call": may_call,
                "queue": queue,
                "exception_reasons": reasons,
                "region": region,
                "service_type": service,
                "sla_due_at": routing.sla_due(self.settings, brief["grade"], queue),
                "assignee": None
                if queue == "exception"
                else routing.pick_assignee(self.settings, region, service, session),
            }
        }

    def _text_channel(self, lead: dict[str, Any], contact: dict[str, Any], session: Any = None) -> str | None:
        """SMS or WhatsApp when the lead came in on it (or the contact prefers it) and the contact record allows it:
        a number, consent and no opt-out; WhatsApp free text only inside the 24-hour window."""
        if not contact.get("id"):
            return None
        with reading(self.settings, session) as session:
            record = session.get(Contact, contact["id"])
            wanted = [c for c in (lead.get("source"), record.preferred_channel if record else None) if c in TEXTS]
            for channel in wanted:
                if may_message(session, record, channel) is None and (
                    channel != "whatsapp" or whatsapp_window_open(session, record.id)
                ):
                    return channel
        return None

    def draft(self, state: LeadState, session: Any = None) -> dict[str, Any]:
        facts, brief, route = state["facts"], state["brief"], state["route"]
        first_name, full_name = _names(facts)
        account = facts.get("account") or {}
        intent = next((c for c in state["scoring"]["criteria"] if c["id"] == "buying_intent" and c["met"]), None)
        # Only phrases of our own for the rubric keywords found, never the lead's wording, reach the draft.
        topics = topics_phrase(intent["hits"]) if intent else ""
        contact = facts.get("contact") or {}
        slots = {
            "first_name": first_name,
            "full_name": full_name,
            "title": facts["lead"].get("title") or "title unknown",
            "company": _company(facts),
            "industry": (account.get("industry") or "").lower(),
            "phone": contact.get("phone") or facts["lead"].get("phone") or "",
            "topics": topics,
            "score": brief["score"],
            "grade": brief["grade"],
            "summary": brief["summary"],
            "our_company": self.settings.company_name,
            "sender_name": self.settings.sender_name,
            "unsubscribe_url": self.settings.unsubscribe_url,
            # Off unless a closer's instruction chose them (respond): tone, length, the call ask, the won case.
            "formal": False,
            "short": False,
            "call_next_week": False,
            "case_study": "",
            # LLM engine only; checked by the grounding guard like everything else.
            "opening": ((state.get("research") or {}).get("insight") or {}).get("opening_line", "").strip(),
        }
        template = "call_task" if route["channel"] == "call_task" else TEMPLATE_FOR_ACTION[route["next_action"]]
        if route["channel"] in TEXTS:
            template = TEXT_TEMPLATE
        redrafts = list(state.get("redrafts") or [])
        decision = state.get("decision") or {}
        said: instructions.Redraft | None = None
        asked = ""  # what the closer asked for with a redraft: their instruction, else their rejection reason
        if decision.get("redraft"):
            # A reviewer rejected the last draft and asked for another: use the template they chose, and
            # drop the model-written opening line (the one part of a draft no template controls).
            previous = state["draft"]["template"]
            template = decision.get("template") or previous
            if route["channel"] in TEXTS:
                template = TEXT_TEMPLATE  # the text channel has one short template
            elif route["channel"] != "email":
                template = "call_task"  # email is not allowed for this contact, whatever was asked
            slots["opening"] = ""
            # The closer's instruction (respond), else the reason they gave for rejecting with a redraft ("too long,
            # too pushy"): mapped onto the template's choices, saying what changed; the LLM path gets it as an
            # instruction. The choices of earlier instructions stay (one asked "more formal", the next "shorter").
            asked = decision.get("instruction") or (decision.get("reason") or "").strip()
            if asked:
                earlier = state["draft"].get("facts_used") or {}
                slots.update({k: earlier[k] for k in (*instructions.SWITCH_SLOTS, "topics") if k in earlier})
                said = self._follow_instruction(asked, template, slots, route, brief, facts["lead"])
                template, slots = said.template, said.slots
                if route["channel"] in TEXTS:
                    template = TEXT_TEMPLATE
            redrafts.append(
                {
                    "review_item_id": decision.get("review_item_id"),
                    "reason": decision.get("reason"),
                    "by": decision.get("actor"),
                    "from_template": previous,
                    "template": template,
                    **({"instruction": decision["instruction"]} if decision.get("instruction") else {}),
                }
            )
        kind = ItemKind.CALL_TASK if template == "call_task" else ItemKind.EMAIL
        if route["channel"] in TEXTS:
            kind = ItemKind(route["channel"])
        # The approved version of the template, else built-in.
        with reading(self.settings, session) as session:
            draft, parts = review_queue.compose(
                session,
                template=template,
                slots=slots,
                facts_used={k: v for k, v in slots.items() if k not in ("summary",)},
                source=ItemSource.LEAD,
                kind=kind,
                thread_id="",  # the runner fills in the thread and the Interrupt.id when it queues the item
                lead_id=state["lead_id"],
                contact_id=contact.get("id"),
                # Shown to the reviewer; the send re-reads the contact record (never the lead's text).
                to=contact.get("email") if kind == ItemKind.EMAIL else self._number(contact, session),
                # The closer sees why a lead is in the exception queue, in words.
                brief={**state["brief"], "exception_reasons": route["exception_reasons"]},
                queue=route["queue"],
                sla_due_at=route["sla_due_at"],
                assignee=route["assignee"],
                redraft_of=redrafts[-1]["review_item_id"] if redrafts else None,
                redraft_reason=redrafts[-1]["reason"] if redrafts else None,
                instruction=asked if said else None,
                changes=said.changes if said else [],
                not_applied=said.not_applied if said else [],
            )
        # Records ground a draft; the lead's own free text never does (it is untrusted: an address or a
        # price written there must not make the same words in a draft look like facts).
        trusted = {**facts, "lead": {k: v for k, v in facts["lead"].items() if k not in ("message", "custom")}}
        grounded_in = [
            *message_templates.template_words(parts),
            *_strings(trusted),
            *(str(v) for k, v in slots.items() if k not in ("opening", "summary")),
        ]
        # The guard checks what reaches a customer; a call task is an internal note for the closer.
        if kind in MESSAGE_KINDS:
            draft.guard_flags = ungrounded(draft.subject + "\n" + draft.body, grounded_in)
        return {"redrafts": redrafts, "draft": draft.model_dump(mode="json")}

    def _number(self, contact: dict[str, Any], session: Any = None) -> str | None:
        if not contact.get("id"):
            return None
        with reading(self.settings, session) as session:
            return session.scalar(select(Contact.phone_e164).where(Contact.id == contact["id"]))

    def _follow_instruction(
        self,
        instruction: str,
        template: str,
        slots: dict[str, Any],
        route: dict[str, Any],
        brief: dict[str, Any],
        lead: dict[str, Any],
    ) -> instructions.Redraft:
        """The deterministic engine's reading of a closer's instruction: template and tone choices, with what it
        changed and what it could not follow."""
        keys = [k for k in message_templates.BUILT_IN if k.startswith(("first_touch_", "polite_decline"))]
        with session_scope(self.settings, readonly=True) as session:
            parts = {key: message_templates.active(session, key)[0] for key in keys}
        said = instructions.apply(
            instruction,
            template=template,
            slots=slots,
            channel=route["channel"],
            similar_case=brief.get("similar_case"),
            templates=parts,
        )
        if self.settings.llm == "openai" and said.template != "call_task":
            rendered = message_templates.render_parts(parts.get(said.template, {}), said.slots)
            instructions.with_llm(self.settings, said, instruction=instruction, lead=lead, rendered=rendered)
        return said

    def review(self, state: LeadState) -> dict[str, Any]:
        # Nothing before interrupt(): this node re-runs from its first line on resume.
        return {"decision": interrupt(state["draft"])}

    def execute(self, state: LeadState) -> dict[str, Any]:
        item_id = int(state["decision"]["review_item_id"])
        done = execute_approved(self.settings, item_id, EXECUTION)
        return {"outcome": {"status": done.status.value, "review_item_id": item_id, **done.result}}

    def finish(self, state: LeadState) -> dict[str, Any]:
        decision = state.get("decision") or {}
        if decision.get("action") == "reject":
            return {"outcome": {"status": "rejected", "review_item_id": decision.get("review_item_id")}}
        if state.get("route", {}).get("channel") == "none":
            # The runner stores the status with the brief, in the run's one write (LeadGraphRunner.run_lead).
            return {"outcome": {"status": LeadStatus.NO_CONTACT_ALLOWED.value}}  # plain text in checkpoints
        return {"outcome": state.get("outcome") or {"status": "done"}}
