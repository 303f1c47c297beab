"""Templates cannot hurt the server: the sandbox sizes what could grow, stops slow renders, and every failure is a
422 naming the part; the API keeps answering other requests while a slow preview runs."""

from __future__ import annotations

import threading
import time

import pytest

from review import sandbox
from review.sandbox import RenderLimits, TemplateRenderError
from review.templates import render_parts, sample_facts
from tests.factories import session_token

FACTS = sample_facts("call_task")
NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def _refused(text: str, part: str = "body") -> TemplateRenderError:
    started = time.monotonic()
    with pytest.raises(TemplateRenderError) as caught:
        render_parts({part: text}, FACTS)
    assert time.monotonic() - started < 5  # refused, not computed
    assert caught.value.status_code == 422 and caught.value.details["field"] == part
    assert caught.value.message.startswith(f"{part}: ")
    return caught.value


def test_ordinary_templates_still_render():
    text = (
        "Hi {{ first_name }}, {{ [company, industry]|join(' / ') }} {{ '%s-%d'|format('a', 3) }} "
        "{{ '{:,}'.format(1234567) }} {{ 'a b'|replace(' ', '-') }} {{ (score * 2) ** 2 }} {{ 'ab' * 3 }} "
        "{{ first_name ~ '!' }}{% for x in range(3) %} {{ x }}{% endfor %}"
    )
    assert render_parts({"body": text}, FACTS)["body"] == (
        "Hi Jane, Acme Software / software a-3 1,234,567 a-b 26896 ababab Jane! 0 1 2"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{{ 9**(9**7) > 0 }}", "9 ** 4782969 is too large a number"),
        ("{{ 2 ** 5000 }}", "too large a number"),
        ("{{ (10 ** 1000) * (10 ** 1000) * (10 ** 1000) * (10 ** 1000) * (10 ** 1000) }}", "too large a number"),
    ],
)
def test_huge_powers_and_products_are_refused(text, problem):
    error = _refused(text)
    assert "stopped at the render limits" in error.problem and problem in error.problem


@pytest.mark.parametrize(
    "text",
    [
        "{{ 'x' * 50000000 }}",
        "{{ 50000000 * first_name }}",
        "{{ [first_name] * 50000000 }}",
        "{{ ['x' * 90000] * 10 }}",  # references to one long text count at their written size
        "{{ ('x' * 90000).replace('', 'yy') }}",
        "{{ ('x' * 90000)|replace('x', 'yy') }}",
        "{{ ['x' * 50000, 'x' * 50000, 'x']|join }}",
        "{{ 'x'|center(100000000) }}",
        "{{ 'x'.ljust(100000000) }}",
        "{{ '{:>100000000}'.format(1) }}",
        "{{ '{:>{}}'.format(1, 10) }}",
        "{{ '%100000000s' % 'x' }}",
        "{{ (1).to_bytes(1000000000, 'big') }}",
        "{% set s = 'x' * 90000 %}{{ s ~ s }}",
        "{% macro grow(s, n) %}{{ grow(s ~ s, n - 1) if n else s|length }}{% endmacro %}{{ grow('x', 40) }}",
        "{% set ns = namespace(x='x') %}{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x }}",
    ],
)
def test_repetition_and_growth_are_refused_before_they_happen(text):
    assert "stopped at the render limits" in _refused(text).problem


def test_output_is_capped():
    error = _refused("{% for i in range(100000) %}{{ first_name }} {% endfor %}")
    assert "longer than 100000 characters" in error.problem


@pytest.mark.parametrize(
    "text", ["{{ ''.__class__ }}", "{{ first_name.__init__.__globals__ }}", "{% set x = [] %}{{ x.append(1) }}"]
)
def test_blocked_sandbox_attributes_are_refused(text):
    assert "not allowed in a template" in _refused(text).problem


def test_undefined_fields_and_errors_name_the_part():
    assert "no attribute 'nope'" in _refused("{{ first_name.nope }}", "subject").problem
    assert "'lipsum' is undefined" in _refused("{{ lipsum(100000) }}").problem  # no text generator
    assert "division by zero" in _refused("{{ 1 / 0 }}").problem


def test_a_render_stops_after_its_steps_or_its_time(monkeypatch):
    assert "more than 1000000 steps" in _refused(NESTED_LOOPS).problem
    monkeypatch.setattr(sandbox, "LIMITS", RenderLimits(seconds=0.5, max_steps=10**12))
    started = time.monotonic()
    error = _refused(NESTED_LOOPS)
    assert "took longer than 0.5 s" in error.problem and time.monotonic() - started < 3


def test_the_trace_is_removed_after_a_render():
    import sys

    render_parts({"body": "{{ first_name }}"}, FACTS)
    _refused(NESTED_LOOPS)
    assert sys.gettrace() is None


# --- over the API ---------------------------------------------------------------------------------------------


def _manager(settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {session_token(settings, 'manager')}"}


def _preview(body: str, subject: str = "Call {{ first_name }}") -> dict[str, str]:
    return {"key": "call_task", "subject": subject, "body": body}


def test_preview_and_save_answer_422_naming_the_problem(settings, http):
    manager = _manager(settings)
    started = time.monotonic()
    power = http.post("/v1/templates/preview", headers=manager, json=_preview("{{ 9**(9**7) > 0 }}"))
    assert power.status_code == 422 and time.monotonic() - started < 5
    assert power.json()["error"] == "validation_error" and power.json()["details"]["field"] == "body"
    assert "9 ** 4782969 is too large a number" in power.json()["message"]

    big = http.post("/v1/templates/preview", headers=manager, json=_preview("{{ 'x' * 50000000 }}"))
    assert big.status_code == 422 and len(big.content) < 2000  # not 50 MB
    blocked = http.post("/v1/templates/preview", headers=manager, json=_preview("x", subject="{{ ''.__class__ }}"))
    assert blocked.status_code == 422 and blocked.json()["details"]["field"] == "subject"
    assert "access to attribute '__class__'" in blocked.json()["message"]

    saved = http.post("/v1/templates", headers=manager, json=_preview("{{ 'x' * 50000000 }}"))
    assert saved.status_code == 422 and saved.json()["details"]["field"] == "body"
    assert http.get("/v1/templates", headers=manager).json()[0]["versions"] == []  # nothing was saved


def test_the_api_keeps_answering_while_a_slow_preview_runs(settings, http, monkeypatch):
    monkeypatch.setattr(sandbox, "LIMITS", RenderLimits(seconds=4, max_steps=10**12))
    manager = _manager(settings)
    result: dict[str, object] = {}

    def slow() -> None:
        response = http.post("/v1/templates/preview", headers=manager, json=_preview(NESTED_LOOPS))
        result.update(response=response, done=time.monotonic())

    thread = threading.Thread(target=slow)
    started = time.monotonic()
    thread.start()
    time.sleep(0.5)  # the preview is rendering now
    probe = http.get("/v1/me", headers=manager)
    answered = time.monotonic()
    thread.join(timeout=30)
    assert probe.status_code == 200
    assert answered - started < 3, "another request waited for the slow preview"
    response = result["response"]
    assert response.status_code == 422 and "took longer than 4 s" in response.json()["message"]
    assert answered < result["done"]
