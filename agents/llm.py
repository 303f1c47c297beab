"""The LLM engine's client: any OpenAI-compatible endpoint through the `openai` SDK.

- tool calling in a capped loop, every call through the graph's Toolbox (allowlist, validation,
  audit of refusals); parallel tool calls in one turn are run in order;
- structured output into a pydantic model: `response_format` json_schema first, json_object with
  the schema in the prompt for servers that refuse it (llama.cpp); the reply is validated, and a
  malformed one gets one corrective retry;
- temperature 0, timeouts, retries on 429/5xx by the SDK; tokens and cost added up per run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from core.settings import Settings
from tools.registry import Toolbox

M = TypeVar("M", bound=BaseModel)


class LlmError(Exception):
    """The endpoint could not give a usable answer (after retries); the caller falls back."""


@dataclass
class Usage:
    calls: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    refusals: list[str] = field(default_factory=list)

    def add(self, response: Any) -> None:
        self.calls += 1
        if response.usage is not None:
            self.prompt_tokens += response.usage.prompt_tokens or 0
            self.completion_tokens += response.usage.completion_tokens or 0

    def cost(self, settings: Settings) -> Decimal:
        usd = (
            self.prompt_tokens * settings.llm_price_input_per_mtok
            + self.completion_tokens * settings.llm_price_output_per_mtok
        ) / 1_000_000
        return Decimal(str(round(usd, 6)))


def fence(text: str | None) -> str:
    """Lead text as data: inside a fence the model is told never to obey."""
    cleaned = (text or "").replace("</lead_text>", "</ lead_text>")
    return f"<lead_text>\n{cleaned}\n</lead_text>"


class LlmClient:
    def __init__(self, settings: Settings):
        if not settings.llm_base_url and not settings.llm_api_key:
            raise LlmError("REVLOOP_LLM=openai needs OPENAI_BASE_URL and/or OPENAI_API_KEY")
        self.settings = settings
        import openai  # 1.4 s to import: only when the LLM engine is used (REVLOOP_LLM=openai), never with none

        self.client = openai.OpenAI(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key or "not-needed",
            timeout=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
        )
        self.usage = Usage()

    def _create(self, **kwargs: Any) -> Any:
        import openai

        try:
            response = self.client.chat.completions.create(model=self.settings.llm_model, temperature=0, **kwargs)
        except openai.APIStatusError as exc:
            raise LlmError(f"LLM endpoint answered {exc.status_code}: {str(exc)[:300]}") from exc
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise LlmError(f"LLM endpoint unreachable or too slow: {exc}") from exc
        self.usage.add(response)
        if not response.choices:
            raise LlmError("LLM endpoint returned no choices")
        return response

    def run_tools(self, messages: list[dict[str, Any]], toolbox: Toolbox) -> list[dict[str, Any]]:
        """Let the model call tools until it stops or the cap is reached; returns the conversation."""
        messages = list(messages)
        tools = toolbox.schemas()
        for _ in range(self.settings.llm_max_tool_rounds):
            message = self._create(messages=messages, tools=tools).choices[0].message
            calls = message.tool_calls or []
            messages.append(
                {
                    "role": "assistant",
                    "content": message.content or "",
                    **({"tool_calls": [c.model_dump() for c in calls]} if calls else {}),
                }
            )
            if not calls:
                break
            for call in calls:
                self.usage.tool_calls += 1
                result = toolbox.call(call.function.name, call.function.arguments)
                if result.refused:
                    self.usage.refusals.append(call.function.name)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result.content})
        return messages

    def structured(self, messages: list[dict[str, Any]], schema: type[M]) -> M:
        """A reply validated into `schema`: json_schema, else json_object; one retry on a malformed reply."""
        json_schema = schema.model_json_schema()
        attempts: list[dict[str, Any]] = [
            {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": json_schema, "strict": False}},
            {"type": "json_object"},
        ]
        last_error = ""
        fmt_index = 0
        for attempt in range(3):
            fmt = attempts[fmt_index]
            extra = (
                []
                if fmt["type"] == "json_schema"
                else [
                    {
                        "role": "system",
                        "content": "Answer with one JSON object only, matching this JSON schema: "
                        + json.dumps(json_schema),
                    }
                ]
            )
            retry = (
                [{"role": "user", "content": f"Your last answer was not valid: {last_error}. Answer again."}]
                if last_error
                else []
            )
            try:
                response = self._create(messages=messages + extra + retry, response_format=fmt)
            except LlmError as exc:
                # Servers without json_schema support answer 400: use json_object instead.
                if fmt_index == 0 and "400" in str(exc):
                    fmt_index = 1
                    continue
                raise
            message = response.choices[0].message
            refusal = getattr(message, "refusal", None)
            if refusal:
                raise LlmError(f"the model refused: {refusal[:200]}")
            try:
                return schema.model_validate_json(message.content or "")
            except ValidationError as exc:
                last_error = exc.errors()[0]["msg"] if exc.errors() else str(exc)
                if attempt >= 1:
                    break
        raise LlmError(f"the model's answer did not match {schema.__name__}: {last_error}")
