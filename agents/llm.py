"""The LLM engine's client: any OpenAI-compatible endpoint (OpenAI, Azure, Ollama, vLLM, llama.cpp) through the
`openai` SDK, safe with a weak model and a slow server.

- Capabilities, not error strings: what the endpoint supports (json_schema structured output, json_object mode
  with the schema in the prompt, tool calling) is learned on first use (an HTTP 4xx/5xx on a feature that a
  plain request then answers means "not supported"; llama.cpp answers json_schema with 500) or by
  `revloop llm check`, cached per endpoint+model in the process and in `llm_capabilities`. The strongest mode
  that works is used: json_schema, else json_object, else the schema in the prompt alone.
- Speed: calls of 150+ tokens measure the endpoint's seconds per token (a timeout gives a lower bound), kept with
  the capabilities. json_object measured slow (llama.cpp's grammar on a small CPU) is skipped for prompt mode; the
  lead research uses its compact prompt when the full one would not fit half the budget (REVLOOP_LLM_PROMPT).
- Budgets: every call sends max_tokens (settings.llm_max_tokens, per kind of call); a client has a time budget
  (REVLOOP_LLM_BUDGET_SECONDS per lead) that covers waiting for one of the REVLOOP_LLM_MAX_CONCURRENCY slots
  this process may use at the endpoint, each reply's timeout (never more than what is left) and retries (only
  while time is left). Past it, LlmBudgetExceeded: the caller finishes the lead without the model.
- Weak-model tolerance: prose around the JSON, code fences, a truncated object, wrong types, schema echoes and
  invented tool names are parsed, repaired once (a corrective turn) or rejected; each problem is kept in
  `Usage.rejections` for the run record.
- Usage: tokens of every call; a call whose reply has no usage makes the run's tokens and cost unknown (None),
  never 0. Cost from the per-model price table (settings.llm_prices; 0 for unlisted, local models).
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError

from core.settings import Settings
from tools.registry import Toolbox

M = TypeVar("M", bound=BaseModel)

# HTTP answers to a request using a feature (response_format, tools) that mean "this server does not do that"
# when the same request without the feature succeeds. llama.cpp's server answers json_schema with 500.
FEATURE_REFUSED = frozenset({400, 404, 415, 422, 500, 501})
RETRYABLE = frozenset({408, 409, 429, 500, 502, 503, 504})
MIN_CALL_SECONDS = 0.25  # less budget than this left: no new call


class LlmError(Exception):
    """The endpoint could not give a usable answer (after retries); the caller falls back."""


class LlmBudgetExceeded(LlmError):
    """The lead's LLM time budget is spent; the deterministic engine finishes the lead."""


class _StatusError(LlmError):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass
class Usage:
    calls: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls_without_usage: int = 0
    refusals: list[str] = field(default_factory=list)
    rejections: list[dict[str, str]] = field(default_factory=list)

    def unanswered(self) -> None:
        """A request that timed out: the server may have spent tokens on it that nobody reported (unknown)."""
        self.calls += 1
        self.calls_without_usage += 1

    def refused(self) -> None:
        """A request answered with an HTTP error: sent, no tokens generated."""
        self.calls += 1

    def add(self, response: Any) -> None:
        self.calls += 1
        usage = getattr(response, "usage", None)
        if usage is None or usage.prompt_tokens is None or usage.completion_tokens is None:
            self.calls_without_usage += 1
            return
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens

    def note(self, call: str, problem: str, action: str, detail: str = "") -> None:
        """A reply or tool call repaired ("repaired") or not used ("rejected"), with why."""
        self.rejections.append({"call": call, "problem": problem, "action": action, "detail": detail[:300]})

    @property
    def known(self) -> bool:
        return self.calls_without_usage == 0

    @property
    def prompt(self) -> int | None:
        return self.prompt_tokens if self.known else None

    @property
    def completion(self) -> int | None:
        return self.completion_tokens if self.known else None

    def cost(self, settings: Settings) -> Decimal | None:
        if not self.known:
            return None
        price_in, price_out = settings.llm_price()
        usd = (self.prompt_tokens * price_in + self.completion_tokens * price_out) / 1_000_000
        return Decimal(str(round(usd, 6)))


def fence(text: str | None) -> str:
    """Lead text as data: inside a fence the model is told never to obey."""
    cleaned = (text or "").replace("</lead_text>", "</ lead_text>")
    return f"<lead_text>\n{cleaned}\n</lead_text>"


# ---------------------------------------------------------------------------------------------------------------
# Capabilities per endpoint+model: in the process, and in llm_capabilities (read once per process, written on change)

CAPABILITIES = ("json_schema", "json_object", "tools")


@dataclass
class Capabilities:
    json_schema: bool | None = None
    json_object: bool | None = None
    tools: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def structured_modes(self) -> list[str]:
        """The structured-output modes to try, strongest first, skipping those known not to work and json_object
        once it was measured slow (llama.cpp's grammar decoding on a small CPU: about a second per token)."""
        modes = [m for m in ("json_schema", "json_object") if getattr(self, m) is not False]
        if self.details.get("json_object_slow"):
            modes = [m for m in modes if m != "json_object"]
        return modes + ["prompt"]

    def seconds_for(self, tokens: int) -> float | None:
        """How long the endpoint was measured to take for `tokens` tokens (prompt + completion); None: unmeasured."""
        per_token = self.details.get("seconds_per_token")
        return None if per_token is None else tokens * float(per_token)


_CAPS: dict[tuple[str, str], Capabilities] = {}
_CAPS_LOCK = threading.Lock()
_SLOTS: dict[tuple[str, int], threading.BoundedSemaphore] = {}


def _endpoint(settings: Settings) -> str:
    return (settings.llm_base_url or "https://api.openai.com/v1").rstrip("/")


def capabilities(settings: Settings) -> Capabilities:
    """What is known about the endpoint+model (loaded from the database on first use in this process)."""
    key = (_endpoint(settings), settings.llm_model)
    with _CAPS_LOCK:
        if key in _CAPS:
            return _CAPS[key]
    caps = Capabilities()
    try:
        from sqlalchemy import select

        from core.db import session_scope
        from core.models import LlmCapability

        with session_scope(settings, readonly=True) as session:
            row = session.scalars(
                select(LlmCapability).where(LlmCapability.base_url == key[0], LlmCapability.model == key[1])
            ).first()
            if row is not None:
                caps = Capabilities(row.json_schema, row.json_object, row.tools, dict(row.details or {}))
    except Exception:  # noqa: BLE001 - the cache is an optimisation: without it the endpoint is asked again
        pass
    with _CAPS_LOCK:
        return _CAPS.setdefault(key, caps)


def learn(settings: Settings, **found: bool | None) -> Capabilities:
    """Record what was found about the endpoint+model, in the process and (if it changed) in the database."""
    caps = capabilities(settings)
    changed = {k: v for k, v in found.items() if k in CAPABILITIES and getattr(caps, k) != v}
    if not changed:
        return caps
    with _CAPS_LOCK:
        for name, value in changed.items():
            setattr(caps, name, value)
    _store(settings, caps)
    return caps


def _store(settings: Settings, caps: Capabilities) -> None:
    """The endpoint+model's row in llm_capabilities, written from what this process knows."""
    try:
        from sqlalchemy import select

        from core.db import session_scope
        from core.models import LlmCapability, utcnow

        base_url, model = _endpoint(settings), settings.llm_model
        with session_scope(settings) as session:
            row = session.scalars(
                select(LlmCapability).where(LlmCapability.base_url == base_url, LlmCapability.model == model)
            ).first()
            if row is None:
                row = LlmCapability(base_url=base_url, model=model)
                session.add(row)
            row.json_schema, row.json_object, row.tools = caps.json_schema, caps.json_object, caps.tools
            with _CAPS_LOCK:
                row.details = dict(caps.details)
            row.checked_at = utcnow()
    except Exception:  # noqa: BLE001 - two workers learning at once: one row wins, the other keeps it in memory
        pass


# A lead's full research, for `llm check`'s verdict: a tool round with the tool schemas, then the insight with the
# look-ups' findings; without tool calling, the insight alone.
TYPICAL_FULL_RESEARCH_TOKENS = {"tools": 1700, "no_tools": 1000}
MEASURE_MIN_TOKENS = 150  # a call this big measures the endpoint's speed (on smaller ones the latency dominates)


# json_object counts as slow only above this (seconds per prompt + completion token; ~200 tokens/s): llama.cpp's
# grammar on a small CPU is ~0.04 and more, a hosted endpoint a thousandth of that.
GRAMMAR_SLOW_SECONDS_PER_TOKEN = 0.005


def learn_speed(settings: Settings, key: str, seconds_per_token: float, *, at_least: bool = False) -> Capabilities:
    """Record a measured speed (`seconds_per_token` or `json_object_seconds_per_token`): the latest measurement,
    or with `at_least` (a call that timed out: a lower bound) the slower of it and what was known. json_object is
    marked slow when it takes over twice as long per token as plain replies (and over
    GRAMMAR_SLOW_SECONDS_PER_TOKEN), or timed out with the plain speed
    unknown (the next calls use prompt mode). Written to the database when a
    decision it feeds changes or the value moves by more than a quarter."""
    caps = capabilities(settings)
    with _CAPS_LOCK:
        before = dict(caps.details)
        known = before.get(key)
        value = max(float(known), seconds_per_token) if at_least and known is not None else seconds_per_token
        caps.details[key] = round(value, 5)
        plain, grammar = caps.details.get("seconds_per_token"), caps.details.get("json_object_seconds_per_token")
        if plain is not None and grammar is not None:
            # An absolute floor too: on a fast endpoint both figures are tiny and their ratio is timing noise.
            caps.details["json_object_slow"] = grammar > 2 * plain and grammar > GRAMMAR_SLOW_SECONDS_PER_TOKEN
        elif at_least and key == "json_object_seconds_per_token":
            caps.details["json_object_slow"] = True  # a json_object reply that never came, plain speed unknown
        changed = before.get("json_object_slow") != caps.details.get("json_object_slow") or (
            known is None or abs(value - float(known)) > 0.25 * float(known)
        )
    if changed:
        _store(settings, caps)
    return caps


def forget_capabilities() -> None:
    """Clear the in-process cache (tests, `revloop llm check`)."""
    with _CAPS_LOCK:
        _CAPS.clear()


def _slot(settings: Settings) -> threading.BoundedSemaphore:
    key = (_endpoint(settings), settings.llm_max_concurrency)
    with _CAPS_LOCK:
        return _SLOTS.setdefault(key, threading.BoundedSemaphore(settings.llm_max_concurrency))


# ---------------------------------------------------------------------------------------------------------------
# Parsing a weak model's reply


class ReplyProblem(Exception):
    def __init__(self, problem: str, detail: str):
        super().__init__(f"{problem}: {detail}")
        self.problem = problem
        self.detail = detail


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def _close_partial(text: str) -> str | None:
    """A JSON object cut off (max_tokens reached): closed after its last complete value, or None."""
    stack: list[str] = []
    in_string = escape = False
    last_safe, open_at_safe = -1, []
    for i, ch in enumerate(text):
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if not stack:
                return None
            stack.pop()
            if not stack:
                return text[: i + 1]
        elif ch == ",":
            last_safe, open_at_safe = i, list(stack)  # what is open where the last complete value ends
    if not stack or last_safe < 0:
        return None
    # Cut at the last comma outside a string, then close what was open at that point.
    return text[:last_safe] + "".join(reversed(open_at_safe))


def extract_object(content: str | None, notes: list[tuple[str, str]]) -> dict[str, Any]:
    """The JSON object in a reply: the whole reply, or inside a code fence or prose, or a cut-off one closed."""
    text = (content or "").strip()
    if not text:
        raise ReplyProblem("empty", "the reply was empty")
    if "&#34;" in text or "&quot;" in text:
        # llama-cpp-python's chatml-function-calling template HTML-escapes the prompt, so a small model copies
        # `{&#34;summary&#34;: ...}`: entities decoded (they carry no meaning of their own in a JSON answer).
        text = html.unescape(text)
        notes.append(("html_escaped", "HTML entities in the reply were decoded"))
    try:
        value = json.loads(text)
        if isinstance(value, dict):
            return value
        raise ReplyProblem("not_an_object", f"the reply is JSON but a {type(value).__name__}, not an object")
    except json.JSONDecodeError:
        pass
    fenced = _FENCE.search(text)
    candidates = ([fenced.group(1).strip()] if fenced else []) + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for match in re.finditer(r"\{", candidate):
            try:
                value, _ = decoder.raw_decode(candidate, match.start())
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                notes.append(("prose_around_json", "the JSON object was taken out of surrounding text"))
                return value
    start = text.find("{")
    if start >= 0:
        closed = _close_partial(text[start:])
        if closed is not None:
            try:
                value = json.loads(closed)
            except json.JSONDecodeError:
                value = None
            if isinstance(value, dict):
                notes.append(("partial_json", "a cut-off JSON object was closed after its last complete value"))
                return value
        raise ReplyProblem("invalid_json", "the reply has a JSON object that does not parse: " + text[:120])
    raise ReplyProblem("not_json", "the reply has no JSON object: " + text[:120])


_SCHEMA_KEYS = frozenset({"type", "properties", "required", "title", "description", "$defs", "items", "$schema"})


def _schema_like(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and set(value) <= _SCHEMA_KEYS | {"default", "maxLength", "maxItems"}


def _is_echo(data: dict[str, Any], fields: set[str]) -> bool:
    """The model repeated the JSON schema (or a piece of it) instead of filling it in."""
    if "properties" in data and ("type" in data or "required" in data or "title" in data or "$defs" in data):
        return True
    return any(_schema_like(data.get(name)) for name in fields)


def _coerce(value: Any, annotation: Any, max_length: int | None) -> tuple[Any, bool]:
    """A value of the wrong type turned into the field's type, when that is unambiguous."""
    origin = get_origin(annotation)
    if annotation is str:
        if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            value = " ".join(str(v) for v in value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        else:
            return value, False
        return value, True
    if origin is list and get_args(annotation) == (str,):
        if isinstance(value, str):
            parts = [p.strip(" -•*") for p in re.split(r"[;\n]|, ", value) if p.strip(" -•*")]
            return parts[: max_length or None], True
        if isinstance(value, list) and any(not isinstance(v, str) for v in value):
            return [v if isinstance(v, str) else json.dumps(v) for v in value], True
        return value, False
    if annotation is bool and isinstance(value, str) and value.strip().lower() in ("yes", "no", "true", "false"):
        return value.strip().lower() in ("yes", "true"), True
    return value, False


def _max_length(info: Any) -> int | None:
    for meta in info.metadata:
        if getattr(meta, "max_length", None) is not None:
            return meta.max_length
    return None


def parse_reply(content: str | None, schema: type[M], notes: list[tuple[str, str]]) -> M:
    """A reply validated into `schema`, repaired where the repair cannot change its meaning; else ReplyProblem."""
    data = extract_object(content, notes)
    fields = schema.model_fields
    if _is_echo(data, set(fields)):
        raise ReplyProblem("schema_echo", "the reply repeats the JSON schema instead of filling it in")
    if len(data) == 1 and not set(data) & set(fields) and isinstance(next(iter(data.values())), dict):
        inner = next(iter(data.values()))  # {"LeadInsight": {...}} or {"answer": {...}}
        if set(inner) & set(fields):
            notes.append(("wrapped", f"the object was inside {next(iter(data))!r}"))
            data = inner
    unknown = sorted(set(data) - set(fields))
    if unknown:
        notes.append(("extra_keys", "keys not asked for were dropped: " + ", ".join(unknown[:5])))
    clean: dict[str, Any] = {}
    for name, info in fields.items():
        if name not in data:
            continue
        limit = _max_length(info)
        value, changed = _coerce(data[name], info.annotation, limit)
        if changed:
            notes.append(("wrong_type", f"{name} was converted to the expected type"))
        if isinstance(value, str) and limit and len(value) > limit:
            value = value[:limit].rsplit(" ", 1)[0]
            notes.append(("too_long", f"{name} was cut to {limit} characters"))
        if isinstance(value, list) and limit and len(value) > limit:
            value = value[:limit]
            notes.append(("too_long", f"{name} kept its first {limit} items"))
        clean[name] = value
    try:
        return schema.model_validate(clean)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
        where = ".".join(str(p) for p in first["loc"]) or "reply"
        raise ReplyProblem("invalid_fields", f"{where}: {first['msg']}") from exc


def estimate_tokens(request: Any) -> int:
    """A request's size in tokens, estimated from its JSON (about 3 characters a token; generous on purpose)."""
    return len(json.dumps(request, default=str)) // 3


def schema_in_words(schema: type[BaseModel]) -> str:
    """The schema as a small example object a weak model fills in (a full JSON schema gets echoed back)."""
    example: dict[str, Any] = {}
    for name, info in schema.model_fields.items():
        hint = info.description or name.replace("_", " ")
        if info.annotation is bool:
            example[name] = False
        elif get_origin(info.annotation) is list:
            example[name] = [f"<{hint}>"]
        else:
            example[name] = f"<{hint}>"
    return json.dumps(example)


# ---------------------------------------------------------------------------------------------------------------


class LlmClient:
    """One unit of LLM work (a lead's research, a redraft) with its own time budget."""

    def __init__(self, settings: Settings, *, budget_seconds: float | None = None):
        if not settings.llm_base_url and not settings.llm_api_key:
            raise LlmError("REVLOOP_LLM=openai needs OPENAI_BASE_URL and/or OPENAI_API_KEY")
        self.settings = settings
        import openai  # 1.4 s to import: only when the LLM engine is used (REVLOOP_LLM=openai), never with none

        self.client = openai.OpenAI(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key or "not-needed",
            timeout=settings.llm_timeout_seconds,
            max_retries=0,  # our own retries, bounded by the budget
        )
        self.started = time.monotonic()
        self.budget = settings.llm_budget_seconds if budget_seconds is None else budget_seconds
        self.deadline = self.started + self.budget
        self.usage = Usage()
        self.caps = capabilities(settings)
        self.modes_used: list[str] = []
        # Whether replies measure the endpoint's speed; off for the compact research, whose prefix the server has
        # cached (it would look faster than a full research would be, and switch back to it).
        self.measures = True

    @property
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    @property
    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def _over_budget(self, what: str) -> LlmBudgetExceeded:
        return LlmBudgetExceeded(f"LLM time budget of {self.budget:g} s spent ({what})")

    def _once(self, kind: str, **kwargs: Any) -> Any:
        import openai

        if self.remaining < MIN_CALL_SECONDS:
            raise self._over_budget(f"before the {kind} call")
        slot = _slot(self.settings)
        if not slot.acquire(timeout=max(self.remaining, 0)):
            raise self._over_budget(f"waiting for one of {self.settings.llm_max_concurrency} endpoint slot(s)")
        if self.remaining < MIN_CALL_SECONDS:
            slot.release()
            raise self._over_budget(f"waiting for one of {self.settings.llm_max_concurrency} endpoint slot(s)")
        try:
            timeout = min(self.settings.llm_timeout_seconds, self.remaining)
            if timeout < MIN_CALL_SECONDS:
                raise self._over_budget(f"before the {kind} call")
            max_tokens = getattr(self.settings.llm_max_tokens, kind)
            sent = time.monotonic()
            try:
                response = self.client.with_options(timeout=timeout).chat.completions.create(
                    model=self.settings.llm_model, temperature=0, max_tokens=max_tokens, **kwargs
                )
            except openai.APIStatusError as exc:
                self.usage.refused()
                message = f"LLM endpoint answered {exc.status_code}: {str(exc)[:300]}"
                raise _StatusError(message, exc.status_code) from exc
            except openai.APITimeoutError as exc:
                self.usage.unanswered()
                self._measure(kwargs, time.monotonic() - sent, None)
                if self.remaining < MIN_CALL_SECONDS:
                    raise self._over_budget(f"the {kind} call took the rest") from exc
                raise LlmError(f"LLM endpoint unreachable or too slow: {exc}") from exc
            except openai.APIConnectionError as exc:
                raise LlmError(f"LLM endpoint unreachable or too slow: {exc}") from exc
        finally:
            slot.release()
        self.usage.add(response)
        self._measure(kwargs, time.monotonic() - sent, response)
        if not getattr(response, "choices", None):
            raise LlmError("LLM endpoint returned no choices")
        return response

    def _measure(self, request: dict[str, Any], seconds: float, response: Any) -> None:
        """The endpoint's speed from a reply with usage (seconds per prompt + completion token), or a lower bound
        from a request that timed out (its prompt estimated at 3 characters a token); json_object apart."""
        if not self.measures:
            return
        grammar = (request.get("response_format") or {}).get("type") == "json_object"
        key = "json_object_seconds_per_token" if grammar else "seconds_per_token"
        if response is None:
            tokens = estimate_tokens(request)
            if tokens >= MEASURE_MIN_TOKENS:
                learn_speed(self.settings, key, seconds / tokens, at_least=True)
            return
        usage = getattr(response, "usage", None)
        tokens = (getattr(usage, "prompt_tokens", None) or 0) + (getattr(usage, "completion_tokens", None) or 0)
        if tokens >= MEASURE_MIN_TOKENS:
            learn_speed(self.settings, key, seconds / tokens)

    def _create(self, kind: str, *, retries: bool = True, **kwargs: Any) -> Any:
        """One call, retried on timeouts and lost connections (and on 429/5xx unless `retries` is False: a feature
        being tried for the first time) while the budget lasts; never a retry that outlives it."""
        attempts = 1 + self.settings.llm_max_retries
        for attempt in range(attempts):
            try:
                return self._once(kind, **kwargs)
            except LlmBudgetExceeded:
                raise
            except _StatusError as exc:
                if not retries or attempt + 1 >= attempts or exc.status not in RETRYABLE:
                    raise
            except LlmError:
                if attempt + 1 >= attempts:
                    raise
            pause = min(0.25 * 2**attempt, 2.0)
            if self.remaining < pause + MIN_CALL_SECONDS:
                raise self._over_budget("no time left to retry")
            time.sleep(pause)
        raise AssertionError("unreachable")

    # -- tools -----------------------------------------------------------------------------------------------------

    def run_tools(self, messages: list[dict[str, Any]], toolbox: Toolbox) -> list[dict[str, Any]] | None:
        """Let the model call tools until it stops or the cap is reached; returns the conversation, or None when
        the endpoint does not do tool calling (the caller plans the calls itself)."""
        if self.caps.tools is False:
            return None
        messages = list(messages)
        tools = toolbox.schemas()
        names = {t["function"]["name"] for t in tools}
        for _ in range(self.settings.llm_max_tool_rounds):
            if self.caps.tools is None:
                try:
                    response = self._create("tool_round", retries=False, messages=messages, tools=tools)
                except _StatusError as exc:
                    if exc.status not in FEATURE_REFUSED:
                        raise
                    # Is it the tools, or the server? The same request without them tells.
                    self._create("tool_round", retries=False, messages=messages)
                    self.usage.note("tool_round", "tools_unsupported", "rejected", str(exc))
                    learn(self.settings, tools=False)
                    return None
            else:
                response = self._create("tool_round", messages=messages, tools=tools)
            message = response.choices[0].message
            calls = message.tool_calls or []
            if calls and self.caps.tools is None:
                learn(self.settings, tools=True)
            messages.append(
                {
                    "role": "assistant",
                    "content": message.content or "",
                    **({"tool_calls": [c.model_dump() for c in calls]} if calls else {}),
                }
            )
            if not calls:
                break
            if "tools" not in self.modes_used:
                self.modes_used.append("tools")
            for call in calls:
                self.usage.tool_calls += 1
                name, arguments = self._repair_call(call.function.name or "", call.function.arguments, names)
                result = toolbox.call(name, arguments)
                if result.refused:
                    self.usage.refusals.append(name)
                    self.usage.note("tool_round", "tool_refused", "rejected", f"{name}: {result.content}")
                elif not result.ok and result.content.startswith("error: "):
                    problem = "invalid_arguments" if "argument" in result.content else "tool_failed"
                    self.usage.note("tool_round", problem, "rejected", f"{name}: {result.content}")
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result.content})
        return messages

    def _repair_call(self, name: str, arguments: Any, names: set[str]) -> tuple[str, Any]:
        """A weak model's tool call: "functions.crm_find_contact" or "CRM_Find_Contact" is the tool it means;
        arguments wrapped in prose are unwrapped. Anything else goes to the toolbox as written (and is refused)."""
        fixed = name.strip().split(".")[-1].strip().lower().replace("-", "_").replace(" ", "_")
        if name not in names and fixed in names:
            self.usage.note("tool_round", "tool_name", "repaired", f"{name!r} read as {fixed!r}")
            name = fixed
        if isinstance(arguments, str):
            try:
                json.loads(arguments or "{}")
            except json.JSONDecodeError:
                notes: list[tuple[str, str]] = []
                try:
                    arguments = json.dumps(extract_object(arguments, notes))
                    self.usage.note("tool_round", "tool_arguments", "repaired", "JSON taken out of the text")
                except ReplyProblem:
                    pass
        return name, arguments

    # -- structured output -----------------------------------------------------------------------------------------

    def _format(
        self, mode: str, schema: type[BaseModel], in_prompt: bool = False
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Extra messages and request arguments of a structured-output mode (`in_prompt`: the caller's messages
        already show the answer's shape, so no instruction is added)."""
        if mode == "json_schema":
            spec = {"name": schema.__name__, "schema": schema.model_json_schema(), "strict": False}
            return [], {"response_format": {"type": "json_schema", "json_schema": spec}}
        if in_prompt:
            return [], ({"response_format": {"type": "json_object"}} if mode == "json_object" else {})
        instruction = {
            "role": "system",
            "content": "Answer with one JSON object only, with these keys (the JSON schema in brief; fill in the "
            "values, never repeat the schema): " + schema_in_words(schema),
        }
        return [instruction], ({"response_format": {"type": "json_object"}} if mode == "json_object" else {})

    def _structured_call(
        self, kind: str, messages: list[dict[str, Any]], schema: type[BaseModel], in_prompt: bool = False
    ) -> tuple[Any, str]:
        """One reply in the strongest mode the endpoint does; a mode it refuses is recorded and the next tried."""
        forced = self.settings.llm_structured_mode
        modes = self.caps.structured_modes() if forced == "auto" else [forced]
        if in_prompt and forced == "auto":
            # A worked example in the prompt: SmolLM2-135M's plain reply followed it, its json_object reply (grammar
            # decoding) did not (other keys, then prose up to max_tokens), and the grammar is the slow part.
            modes = [m for m in modes if m != "json_object"]
        refused: list[str] = []
        for index, mode in enumerate(modes):
            extra, request = self._format(mode, schema, in_prompt)
            known = getattr(self.caps, mode, True) is True or forced != "auto"
            try:
                response = self._create(kind, retries=known or mode == "prompt", messages=messages + extra, **request)
            except _StatusError as exc:
                if mode == "prompt" or exc.status not in FEATURE_REFUSED or index + 1 >= len(modes) or known:
                    raise
                refused.append(mode)
                self.usage.note(kind, f"{mode}_unsupported", "rejected", str(exc))
                continue
            if refused or not known:
                learn(self.settings, **{m: False for m in refused}, **({mode: True} if mode != "prompt" else {}))
            if mode not in self.modes_used:
                self.modes_used.append(mode)
            return response, mode
        raise AssertionError("unreachable")

    def structured(
        self, messages: list[dict[str, Any]], schema: type[M], *, kind: str = "insight", in_prompt: bool = False
    ) -> M:
        """A reply validated into `schema` (repaired where safe); one corrective turn for a reply that is not.
        `in_prompt`: the messages already show the answer's shape (a compact prompt), none is added."""
        retry: list[dict[str, Any]] = []
        problem: ReplyProblem | None = None
        for attempt in range(2):
            response, _ = self._structured_call(kind, messages + retry, schema, in_prompt)
            choice = response.choices[0]
            message = choice.message
            refusal = getattr(message, "refusal", None)
            if refusal:
                self.usage.note(kind, "refusal", "rejected", refusal)
                raise LlmError(f"the model refused: {refusal[:200]}")
            notes: list[tuple[str, str]] = []
            try:
                parsed = parse_reply(message.content, schema, notes)
            except ReplyProblem as exc:
                problem = exc
                if getattr(choice, "finish_reason", None) == "length":
                    problem = ReplyProblem("runaway", f"cut off at max_tokens without a usable object ({exc.detail})")
                self.usage.note(kind, problem.problem, "rejected", problem.detail)
                if attempt == 0 and self.remaining >= MIN_CALL_SECONDS:
                    retry = [
                        {"role": "assistant", "content": (message.content or "")[:1000]},
                        {
                            "role": "user",
                            "content": f"Your last answer was not valid: {problem.detail}. Answer again with only "
                            "the JSON object, its values filled in: " + schema_in_words(schema),
                        },
                    ]
                    continue
                break
            for name, detail in notes:
                self.usage.note(kind, name, "repaired", detail)
            return parsed
        assert problem is not None
        raise LlmError(f"the model's answer did not match {schema.__name__}: {problem}")

    @property
    def mode(self) -> str | None:
        """The last structured-output mode, then `+tools` (the model made look-ups) or `+compact` (the compact
        prompt: our look-ups and one short call), e.g. `prompt+compact`."""
        structured = [m for m in self.modes_used if m not in ("tools", "compact")]
        extras = [m for m in ("tools", "compact") if m in self.modes_used]
        return "+".join(structured[-1:] + extras) or None

    def run_record(self, **fields: Any) -> dict[str, Any]:
        """The LlmRun columns of this client's work (usage unknown is None, never 0)."""
        return {
            "model": self.settings.llm_model,
            "calls": self.usage.calls,
            "tool_calls": self.usage.tool_calls,
            "prompt_tokens": self.usage.prompt,
            "completion_tokens": self.usage.completion,
            "cost_usd": self.usage.cost(self.settings),
            "mode": self.mode,
            "duration_ms": self.elapsed_ms,
            "rejections": list(self.usage.rejections),
            **fields,
        }


def probe(settings: Settings) -> dict[str, Any]:
    """`revloop llm check`: ask the endpoint for each capability with a tiny request and time a sample call.
    Returns what was found (also stored as the endpoint+model's capabilities)."""

    class Probe(BaseModel):
        answer: str

    client = LlmClient(settings, budget_seconds=max(settings.llm_timeout_seconds * 4, settings.llm_budget_seconds))
    ask = [
        {"role": "system", "content": "You answer with JSON."},
        {"role": "user", "content": 'Reply with the JSON object {"answer": "ok"}.'},
    ]
    found: dict[str, Any] = {}
    notes: list[tuple[str, str]] = []

    def attempt(name: str, **request: Any) -> None:
        started = time.monotonic()
        try:
            response = client._create("check", retries=False, **request)
        except _StatusError as exc:
            found[name] = {"ok": False, "why": f"HTTP {exc.status}", "seconds": round(time.monotonic() - started, 2)}
            return
        except LlmError as exc:
            found[name] = {"ok": None, "why": str(exc)[:200], "seconds": round(time.monotonic() - started, 2)}
            return
        message = response.choices[0].message
        seconds = round(time.monotonic() - started, 2)
        usage = getattr(response, "usage", None)
        tokens = (
            {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
            if usage is not None and usage.prompt_tokens is not None
            else {"prompt_tokens": None, "completion_tokens": None}
        )
        if name == "tools":
            calls = message.tool_calls or []
            ok = any(c.function.name == "record_answer" for c in calls)
            found[name] = {"ok": ok, "why": "called the tool" if ok else "answered without calling the tool"}
        elif name == "sample":
            found[name] = {"ok": True, "why": (message.content or "")[:80]}
        elif name == "speed":
            total = (tokens["prompt_tokens"] or 0) + (tokens["completion_tokens"] or 0)
            rate = f"{total / seconds:.0f} tokens/s" if total and seconds else "tokens unknown"
            found[name] = {"ok": True, "why": f"a compact research prompt: {rate}"}
        else:
            # The endpoint does the mode if it answers with a JSON object; whether the model fills a schema well is
            # the weak-model handling's business (repair, one corrective turn, rejection).
            try:
                parse_reply(message.content, Probe, notes)
                found[name] = {"ok": True, "why": "valid JSON"}
            except ReplyProblem as exc:
                ok = exc.problem not in ("empty", "not_json", "invalid_json", "not_an_object")
                found[name] = {"ok": ok, "why": f"a JSON object, but the model's {exc.problem}: {exc.detail[:60]}"}
                if not ok:
                    found[name]["why"] = f"HTTP 200 but {exc.problem}: {exc.detail[:80]}"
        found[name].update(seconds=seconds, **tokens)

    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    attempt("sample", messages=[{"role": "user", "content": "Say hello in one word."}])
    attempt(
        "json_schema",
        messages=ask,
        response_format={"type": "json_schema", "json_schema": {"name": "Probe", "schema": schema, "strict": False}},
    )
    attempt("json_object", messages=ask, response_format={"type": "json_object"})
    attempt("prompt", messages=ask)  # the same request without a grammar: is json_object's decoding slow?
    tool = {
        "type": "function",
        "function": {"name": "record_answer", "description": "Record the answer", "parameters": schema},
    }
    attempt(
        "tools",
        messages=[{"role": "user", "content": "Call record_answer with answer 'ok'."}],
        tools=[tool],
    )
    # The endpoint's speed on a prompt the size of the compact research (measured in _once, >= 150 tokens): it
    # decides between the full and the compact research prompts (REVLOOP_LLM_PROMPT=auto).
    from agents.lead.prompts import COMPACT_EXAMPLE, COMPACT_SYSTEM

    sample_lead = "Lead: Jane Roe, Head of IT at Example Ltd.\nCRM account: Example Ltd, software, 120 employees."
    attempt(
        "speed",
        messages=[
            {"role": "system", "content": COMPACT_SYSTEM},
            *COMPACT_EXAMPLE,
            {"role": "user", "content": sample_lead + "\n" + fence("We would like a demo next week.")},
        ],
    )
    learned = {k: found[k]["ok"] for k in CAPABILITIES if found.get(k, {}).get("ok") is not None}
    caps = learn(settings, **learned)
    slow = _json_object_slow(found.get("json_object", {}), found.get("prompt", {}))
    if slow is not None:
        with _CAPS_LOCK:
            caps.details["json_object_slow"] = slow
            caps.details.pop("json_object_seconds_per_token", None)  # the probe's verdict replaces older ones
        _store(settings, caps)
    per_token = caps.details.get("seconds_per_token")
    full = caps.seconds_for(TYPICAL_FULL_RESEARCH_TOKENS["no_tools" if caps.tools is False else "tools"])
    research_prompt = settings.llm_prompt
    if research_prompt == "auto":
        research_prompt = "unknown" if full is None else "compact" if full > settings.llm_budget_seconds / 2 else "full"
    return {
        "endpoint": _endpoint(settings),
        "model": settings.llm_model,
        "results": found,
        "capabilities": {k: getattr(caps, k) for k in CAPABILITIES},
        "structured_mode": caps.structured_modes()[0],
        "json_object_slow": caps.details.get("json_object_slow"),
        "seconds_per_token": per_token,
        # What a lead's full research would take; with REVLOOP_LLM_PROMPT=auto the compact prompt is used when that
        # is over half the budget.
        "full_research_seconds": None if full is None else round(full, 1),
        "research_prompt": research_prompt,
        "price_per_mtok": settings.llm_price(),
    }


def _json_object_slow(grammar: dict[str, Any], plain: dict[str, Any]) -> bool | None:
    """json_object is slow when, on the same request, it took over 2 s and over three times as long per completion
    token as the plain reply (llama.cpp's grammar decoding on a small CPU); None when either did not answer."""
    if not (grammar.get("ok") and plain.get("seconds") is not None and plain.get("completion_tokens")):
        return None
    if not grammar.get("completion_tokens"):
        return None
    per_token = grammar["seconds"] / grammar["completion_tokens"]
    return grammar["seconds"] > 2.0 and per_token > 3 * (plain["seconds"] / plain["completion_tokens"])
