"""Tool metadata: every tool declares its permission scope and whether it has a side effect.

Side-effect tools may only be called from an execute step after an approved review item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ToolSpec:
    name: str
    scope: str
    side_effect: bool
    description: str
    func: Callable[..., Any]


TOOLS: dict[str, ToolSpec] = {}


def tool(*, scope: str, side_effect: bool = False) -> Callable[[F], F]:
    def register(func: F) -> F:
        spec = ToolSpec(func.__name__, scope, side_effect, (func.__doc__ or "").strip(), func)
        TOOLS[spec.name] = spec
        func.tool_spec = spec  # type: ignore[attr-defined]
        return func

    return register
