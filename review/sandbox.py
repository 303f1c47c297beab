"""The Jinja sandbox message templates render in, with limits, so that a template cannot hurt the server.

Jinja's own sandbox stops a template from reaching Python internals; it does not stop one from asking for a
huge amount of work or memory (`{{ 9**(9**7) }}`, `{{ 'x' * 50000000 }}`, nested loops). Here every operation
that can make something much larger than its inputs is sized before it runs, and refused past the limits:

- powers and products of integers past `max_int_bits`; repetition (`*`), `+`, `~`, `%`, `str.format`, string
  methods and filters that multiply (replace, join, center, indent, wordwrap, expandtabs, ...) past `max_chars`;
- every value a template prints or passes to a filter, test or call is at most `max_chars` characters when
  written out (a list of references to one long text counts at its written size), and so is each part's output;
- rendering stops after `max_steps` template lines or `seconds` of wall time (a per-thread trace function, so a
  slow template costs only its own request, and other requests keep being answered meanwhile);
- no mutating methods (`ImmutableSandboxedEnvironment`), no `lipsum`, `range` at most 100 000 items (Jinja's).

Every refusal, and every other error a template causes while rendering, is a `TemplateRenderError`: a 422 that
names the part (`subject` or `body`) and the problem. Nothing here imports our other packages but core.errors.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import math
import re
import string
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.nodes import Concat
from jinja2.runtime import Context, Namespace
from jinja2.sandbox import ImmutableSandboxedEnvironment

from core.errors import InvalidInput


@dataclass(frozen=True)
class RenderLimits:
    max_chars: int = 100_000  # a part's output, and any one value a template builds, written out
    max_int_bits: int = 4096  # about 1 200 decimal digits
    max_steps: int = 1_000_000  # template lines executed
    seconds: float = 2.0  # wall time for one part


LIMITS = RenderLimits()  # read at each render, so a test (or an operator) can replace it
_active: contextvars.ContextVar[RenderLimits | None] = contextvars.ContextVar("template_limits", default=None)


class TemplateRenderError(InvalidInput):
    """A template that failed to render, or was stopped: 422, naming the part and the problem."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}", details={"field": field, "problem": problem})
        self.field, self.problem = field, problem


class LimitExceeded(SecurityError):
    """A template asked for more than the render limits allow."""


def limits() -> RenderLimits:
    return _active.get() or LIMITS


# --- sizes -----------------------------------------------------------------------------------------------


def weight(value: Any, budget: int) -> int:
    """About how many characters `value` takes written out, counting each reference (a list holding one long
    text 1 000 times weighs 1 000 texts); stops counting once past `budget`, so it is cheap and cycle-safe."""
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes | bytearray):
            total += len(item)
        elif isinstance(item, bool) or item is None:
            total += 1
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item) + 1
            stack.extend(item)
        elif isinstance(item, dict):
            total += len(item) + 1
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, Namespace):
            total += 1
            stack.append(object.__getattribute__(item, "_Namespace__attrs"))
        else:  # numbers, Undefined, loop helpers, records: short when written out
            total += 1
        if total > budget:
            return total
    return total


def _check_size(value: Any, what: str) -> Any:
    cap = limits().max_chars
    if weight(value, cap) > cap:
        raise LimitExceeded(f"{what} would be longer than {cap} characters")
    return value


def _check_length(length: int, what: str) -> None:
    cap = limits().max_chars
    if length > cap:
        raise LimitExceeded(f"{what} would be {length} characters long; the limit is {cap}")


def _check_int_bits(bits: int, what: str) -> None:
    cap = limits().max_int_bits
    if bits > cap:
        raise LimitExceeded(f"{what} is too large a number (about {bits} bits; the limit is {cap})")


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_printf(fmt: str) -> None:
    """`'%100000000s' % x`: a width or precision past the limit (or taken from the arguments) is refused."""
    for match in _PRINTF.finditer(fmt):
        for number in match.groups():
            if number == "*":
                raise LimitExceeded("a '*' width or precision in a % format is not allowed")
            if number is not None:
                _check_length(int(number), f"a % format field of width {number}")


def _check_format_spec(fmt: str) -> None:
    """`'{:>100000000}'.format(x)`: widths past the limit and nested (argument-given) widths are refused."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises the same error when called
    for _, _, spec, _ in fields:
        if not spec:
            continue
        if "{" in spec:
            raise LimitExceeded("a format field whose width comes from an argument is not allowed")
        for number in re.findall(r"\d+", spec):
            _check_length(int(number), f"a format field of width {number}")


def _as_str(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


# --- what may grow: estimated before it runs --------------------------------------------------------------


def _estimate_replace(s: Any, old: Any, new: Any, count: Any = None) -> None:
    if not isinstance(s, str | bytes):
        s = _as_str(s)
    if isinstance(old, type(s)) and isinstance(new, type(s)):
        hits = s.count(old)
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        _check_length(len(s) + hits * max(0, len(new) - len(old)), "the replacement")


def _estimate_join(separator: Any, items: list) -> None:
    cap = limits().max_chars
    size = weight(items, cap) + len(_as_str(separator)) * max(0, len(items) - 1)
    _check_length(size, "the joined text")


def _estimate_width(s: Any, width: Any, what: str) -> None:
    if isinstance(width, int):
        _check_length(max(len(_as_str(s)), width), what)


def _estimate_indent(s: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    text = _as_str(s)
    step = width if isinstance(width, int) else len(_as_str(width))
    _check_length(len(text) + (text.count("\n") + 1) * max(0, step), "the indented text")


def _estimate_wordwrap(s: Any, width: Any = 79, wrapstring: Any = None) -> None:
    text = _as_str(s)
    joint = len(_as_str(wrapstring)) if wrapstring is not None else 1
    lines = len(text) // max(1, width if isinstance(width, int) else 1) + text.count("\n") + 1
    _check_length(len(text) + lines * joint, "the wrapped text")


def _estimate_expandtabs(s: Any, tabsize: Any = 8) -> None:
    if isinstance(tabsize, int):
        _check_length(len(s) + s.count("\t" if isinstance(s, str) else b"\t") * max(0, tabsize), "the expanded text")


def _estimate_translate(s: Any, table: Any) -> None:
    if isinstance(s, str) and isinstance(table, dict):
        longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
        _check_length(len(s) * max(1, longest), "the translated text")


# str/bytes methods that can return far more than they were given: how to size them first.
_METHOD_ESTIMATES: dict[str, Callable[..., None]] = {
    "replace": _estimate_replace,
    "center": lambda s, width, *_: _estimate_width(s, width, f"centering to width {width}"),
    "ljust": lambda s, width, *_: _estimate_width(s, width, f"padding to width {width}"),
    "rjust": lambda s, width, *_: _estimate_width(s, width, f"padding to width {width}"),
    "zfill": lambda s, width, *_: _estimate_width(s, width, f"padding to width {width}"),
    "expandtabs": _estimate_expandtabs,
    "translate": _estimate_translate,
}


# --- the environment --------------------------------------------------------------------------------------


class _LimitedCodeGenerator(CodeGenerator):
    """`a ~ b` goes through environment.concat (sized) instead of a plain join."""

    @optimizeconst
    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _finalize(value: Any) -> Any:
    """Every `{{ value }}` is sized before it is written out."""
    return _check_size(value, "a printed value")


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with every operation that can grow a value sized first (see the module)."""

    code_generator_class = _LimitedCodeGenerator
    intercepted_binops = frozenset({"**", "*", "+", "%"})

    def __init__(self, **options: Any):
        super().__init__(finalize=_finalize, **options)
        self.globals.pop("lipsum", None)  # builds text in a Python loop the limits cannot see into
        self.filters = {name: _limited(name, func) for name, func in self.filters.items()}
        self.tests = {name: _limited(name, func, kind="test") for name, func in self.tests.items()}

    def concat(self, parts: Any) -> str:  # type: ignore[override]  # output, {% set %} blocks, macros, ~
        cap, total, out = limits().max_chars, 0, []
        for part in parts:
            if not isinstance(part, str):
                _check_size(part, "a joined value")
                part = str(part)
            total += len(part)
            if total > cap:
                raise LimitExceeded(f"the text would be longer than {cap} characters")
            out.append(part)
        return "".join(out)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                _check_int_bits(math.ceil(math.log2(abs(left)) * right), f"{left} ** {right}")
        elif operator == "*":
            if isinstance(left, int) and isinstance(right, int):
                _check_int_bits(abs(left).bit_length() + abs(right).bit_length(), f"{left} * {right}")
            else:
                seq, times = (right, left) if isinstance(left, int) else (left, right)
                if isinstance(times, int) and isinstance(seq, str | bytes | list | tuple):
                    cap = limits().max_chars
                    _check_length(weight(seq, cap) * max(0, times), f"repeating a value {times} times")
        elif operator == "+":
            if isinstance(left, str | bytes | list | tuple) and isinstance(right, str | bytes | list | tuple):
                cap = limits().max_chars
                _check_length(weight(left, cap) + weight(right, cap), "the sum")
        elif operator == "%" and isinstance(left, str):
            _check_printf(left)
            _check_size(right, "a % format's arguments")
        result = super().call_binop(context, operator, left, right)
        return _check_size(result, f"the result of {operator}") if operator in ("%", "*", "+") else result

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        receiver = getattr(__obj, "__self__", None)
        for value in (receiver, *args, *kwargs.values()):
            if isinstance(value, str | bytes | list | tuple | dict | set | frozenset | Namespace):
                _check_size(value, "a value passed to a call")
        name = getattr(__obj, "__name__", "")
        if isinstance(receiver, str | bytes) and name == "join" and args:
            items = list(args[0])
            _estimate_join(receiver, items)
            args = (items, *args[1:])
        elif isinstance(receiver, str | bytes) and name in _METHOD_ESTIMATES:
            _METHOD_ESTIMATES[name](receiver, *args, **kwargs)
        elif isinstance(receiver, int) and name == "to_bytes":
            length = args[0] if args else kwargs.get("length", 1)
            if isinstance(length, int):
                _check_length(length, "to_bytes")
        return _check_size(super().call(__context, __obj, *args, **kwargs), "a call's result")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is not None:
            _check_format_spec(value.__self__)
        return wrapper


# Filters that can return far more than they were given, sized from their bound arguments first.
def _filter_replace(a: inspect.BoundArguments) -> None:
    args = a.arguments
    _estimate_replace(_as_str(args["s"]), args["old"], args["new"], args.get("count"))


def _filter_join(a: inspect.BoundArguments) -> None:
    items = list(a.arguments["value"])
    a.arguments["value"] = items  # the filter gets the list, not a spent iterator
    _estimate_join(a.arguments.get("d", ""), items)


def _filter_center(a: inspect.BoundArguments) -> None:
    width = a.arguments.get("width", 80)
    _estimate_width(a.arguments["value"], width, f"centering to width {width}")


def _filter_indent(a: inspect.BoundArguments) -> None:
    _estimate_indent(a.arguments["s"], a.arguments.get("width", 4))


def _filter_wordwrap(a: inspect.BoundArguments) -> None:
    _estimate_wordwrap(a.arguments["s"], a.arguments.get("width", 79), a.arguments.get("wrapstring"))


def _filter_format(a: inspect.BoundArguments) -> None:
    _check_printf(_as_str(a.arguments["value"]))


_FILTER_ESTIMATES: dict[str, Callable[[inspect.BoundArguments], None]] = {
    "replace": _filter_replace,
    "join": _filter_join,
    "center": _filter_center,
    "indent": _filter_indent,
    "wordwrap": _filter_wordwrap,
    "format": _filter_format,
}


def _limited(name: str, func: Callable[..., Any], kind: str = "filter") -> Callable[..., Any]:
    """A filter (or test) whose arguments are sized first and whose result is sized after."""
    estimate = _FILTER_ESTIMATES.get(name) if kind == "filter" else None
    signature = inspect.signature(func) if estimate else None

    @functools.wraps(func)  # keeps jinja_pass_arg: Jinja still passes the context/environment first
    def limited(*args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            if isinstance(value, str | bytes | list | tuple | dict | set | frozenset | Namespace):
                _check_size(value, f"the value given to the {name} {kind}")
        if estimate is not None and signature is not None:
            bound = signature.bind(*args, **kwargs)
            estimate(bound)
            args, kwargs = bound.args, bound.kwargs
        result = func(*args, **kwargs)
        return _check_size(result, f"the {name} {kind}'s result") if kind == "filter" else result

    return limited


# --- rendering with a step and time budget ----------------------------------------------------------------


@contextmanager
def _budget(limit: RenderLimits) -> Iterator[None]:
    """Counts the template's lines and watches the clock while it renders in this thread; stops it past either.
    A trace function, so it also stops loops that never print anything; other threads are not traced."""
    deadline = time.monotonic() + limit.seconds
    steps = 0

    def check() -> None:
        if time.monotonic() > deadline:
            raise LimitExceeded(f"rendering took longer than {limit.seconds:g} s")

    def on_line(frame: Any, event: str, arg: Any) -> Any:
        nonlocal steps
        steps += 1
        if steps > limit.max_steps:
            raise LimitExceeded(f"rendering took more than {limit.max_steps} steps")
        check()
        return on_line

    def on_call(frame: Any, event: str, arg: Any) -> Any:
        check()
        return on_line if frame.f_code.co_filename == "<template>" else None

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        yield
    finally:
        sys.settrace(previous)


def render(template: Any, slots: dict[str, Any], *, field: str, limit: RenderLimits | None = None) -> str:
    """Render one part within the limits; any failure is a TemplateRenderError naming `field`."""
    limit = limit or LIMITS
    token = _active.set(limit)
    try:
        with _budget(limit):
            return template.render(**slots)
    except UndefinedError as exc:
        raise TemplateRenderError(field, f"a merge field is missing or has no such attribute: {exc}") from None
    except LimitExceeded as exc:
        raise TemplateRenderError(field, f"stopped at the render limits: {exc}") from None
    except SecurityError as exc:
        raise TemplateRenderError(field, f"not allowed in a template: {exc}") from None
    except RecursionError:
        raise TemplateRenderError(field, "the template calls itself too deeply") from None
    except (ArithmeticError, MemoryError) as exc:
        raise TemplateRenderError(field, f"a calculation failed: {exc or type(exc).__name__}") from None
    except (TemplateError, TypeError, ValueError, LookupError, AttributeError) as exc:
        raise TemplateRenderError(field, f"the template does not render: {exc}") from None
    finally:
        _active.reset(token)
