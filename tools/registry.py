"""Tools: typed functions with a permission scope, a side-effect flag and a timeout.

Only what a model may call: agent tools (`@agent_tool`) take a ToolContext and one pydantic argument
model, so a model can call them by name with JSON. Their policy sits beside them: the scope they need,
whether they have a side effect, a timeout. A `Toolbox` runs agent tools for one graph and enforces that
policy: a call outside the graph's allowlist or granted scopes, a side-effect tool outside an execute step,
bad arguments, an error or a timeout comes back as text for the model, and refusals are audited.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("revloop.tools")


@dataclass(frozen=True)
class ToolSpec:
    name: str
    scope: str
    side_effect: bool
    description: str
    func: Callable[..., Any]
    args_model: type[BaseModel] | None = None
    timeout: float = 10.0
    # Whether a call may run in the caller's thread with the caller's session (ToolContext.session): a tool that
    # reads only revloop's own database, for that context (a CRM tool only on the native backend). None: never.
    inline: Callable[[ToolContext], bool] | None = None

    def openai_schema(self) -> dict[str, Any]:
        parameters = self.args_model.model_json_schema() if self.args_model else {"type": "object", "properties": {}}
        parameters.pop("title", None)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": parameters},
        }


TOOLS: dict[str, ToolSpec] = {}

# One pool for every toolbox: a timed-out call keeps its thread until it ends, the caller moves on.
_EXECUTOR = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tool")


def agent_tool(
    *,
    scope: str,
    side_effect: bool = False,
    timeout: float = 10.0,
    inline: Callable[[ToolContext], bool] | None = None,
) -> Callable[[F], F]:
    """Register a tool a model may call: func(ctx, args: SomeModel) -> JSON-able dict. inline(ctx) true: a read of
    revloop's own database, run in the caller's thread with ctx.session when the caller passes one (see Toolbox)."""

    def register(func: F) -> F:
        params = list(inspect.signature(func, eval_str=True).parameters.values())
        args_model = params[1].annotation if len(params) > 1 else None
        spec = ToolSpec(
            func.__name__, scope, side_effect, inspect.getdoc(func) or "", func, args_model, timeout, inline
        )
        TOOLS[spec.name] = spec
        func.tool_spec = spec  # type: ignore[attr-defined]
        return func

    return register


@dataclass
class ToolContext:
    """What an agent tool may use: settings, a session factory, and whose behalf it acts on."""

    settings: Any
    lead_id: int | None = None
    actor: str = "agent"
    # The CRM backend the crm_* tools read through (crm.connectors: native, hubspot, pipedrive); None: the tables.
    crm: Any = None
    # The caller's read-only session (its thread's): an inline tool reads through it instead of opening its own.
    # Only calls run in the caller's thread see it (Toolbox.call); a call on the tool pool gets None.
    session: Any = None


@dataclass
class ToolResult:
    name: str
    ok: bool
    content: str  # what goes back to the model
    data: Any = None
    refused: bool = False
    failed: bool = False  # the tool itself raised or timed out (an outage), not a refusal or bad arguments
    seconds: float = 0.0


@dataclass
class Toolbox:
    """The tools one graph may call, and a record of every call made through it."""

    graph: str
    allowed: frozenset[str]
    context: ToolContext
    # The scopes granted to this graph (read_crm, read_kb, ...): a tool needing another is refused.
    scopes: frozenset[str] = frozenset()
    allow_side_effects: bool = False
    calls: list[ToolResult] = field(default_factory=list)
    audit: Callable[[str, dict[str, Any]], None] | None = None

    def schemas(self) -> list[dict[str, Any]]:
        return [
            TOOLS[name].openai_schema()
            for name in sorted(self.allowed)
            if name in TOOLS and not TOOLS[name].side_effect
        ]

    def _refuse(self, name: str, reason: str, arguments: Any) -> ToolResult:
        if self.audit:
            self.audit(
                "tool.refused",
                {
                    "graph": self.graph,
                    "tool": name,
                    "reason": reason,
                    "arguments": arguments if isinstance(arguments, dict) else str(arguments)[:500],
                },
            )
        result = ToolResult(name, False, f"error: {reason}", refused=True)
        self.calls.append(result)
        return result

    def call(self, name: str, arguments: dict[str, Any] | str | None) -> ToolResult:
        spec = TOOLS.get(name)
        if spec is None:
            return self._refuse(name, f"tool {name!r} does not exist", arguments)
        if name not in self.allowed or spec.args_model is None:
            return self._refuse(name, f"tool {name!r} is not allowed in the {self.graph} graph", arguments)
        if spec.scope not in self.scopes:
            return self._refuse(
                name, f"tool {name!r} needs the {spec.scope!r} scope, which the {self.graph} graph lacks", arguments
            )
        if spec.side_effect and not self.allow_side_effects:
            return self._refuse(
                name, f"tool {name!r} has side effects and runs only after an approved review", arguments
            )
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments or "{}")
            except json.JSONDecodeError as exc:
                result = ToolResult(name, False, f"error: arguments are not valid JSON: {exc}")
                self.calls.append(result)
                return result
        try:
            args = spec.args_model.model_validate(arguments or {}) if spec.args_model else None
        except ValidationError as exc:
            fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            result = ToolResult(name, False, f"error: invalid arguments: {fields}")
            self.calls.append(result)
            return result
        started = time.perf_counter()
        inline = self.context.session is not None and spec.inline is not None and spec.inline(self.context)
        try:
            if inline:
                # A read of our own database, in this thread and through the caller's session: no thread hand-off
                # and no unit of work of its own. It cannot be interrupted (nor could a pool thread be), so its
                # timeout is applied to its answer: one later than the limit is dropped, as the pool's would be.
                data = spec.func(self.context, args)
                if time.perf_counter() - started > spec.timeout:
                    raise FutureTimeout
            else:
                context = replace(self.context, session=None) if self.context.session is not None else self.context
                data = _EXECUTOR.submit(spec.func, context, args).result(timeout=spec.timeout)
        except FutureTimeout:
            result = ToolResult(name, False, f"error: {name} timed out after {spec.timeout:g}s", failed=True)
        except Exception as exc:  # a tool's failure goes back to the model as text
            result = ToolResult(name, False, f"error: {type(exc).__name__}: {exc}", failed=True)
        else:
            result = ToolResult(name, True, json.dumps(data, default=str)[:8000], data)
        result.seconds = round(time.perf_counter() - started, 4)
        if result.failed:  # an operator's clue: the brief only flags it (tool_calls_failed)
            log.warning("%s: tool %s failed: %s", self.graph, name, result.content.removeprefix("error: "))
        self.calls.append(result)
        return result
