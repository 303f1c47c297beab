"""Grades a closer trusts (issue 17): negative intent and an industry outside the ICP hold a grade down, too little
to judge is said in words, the brief gets one line per factor, and rubrics written before these rules score as
they did."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.settings import PROJECT_ROOT
from scoring.rubric import RubricError, load_rubric, parse, score_batch, score_facts

DEFAULT = PROJECT_ROOT / "scoring" / "rubrics" / "default.yaml"


def facts(
    message="We need a demo and pricing this quarter.",
    title="VP Sales",
    industry="software",
    employees=250,
    free_mail=False,
    phone="+1 415 555 0100",
    **lead,
):
    custom = {k: v for k, v in (("industry", industry), ("employees", employees)) if v is not None}
    return {
        "lead": {
            "id": 1,
            "title": title,
            "message": message,
            "free_mail": free_mail,
            "phone": phone,
            "custom": custom,
            **lead,
        },
        "contact": None,
        "account": None,
    }


@pytest.fixture(scope="module")
def rubric():
    return load_rubric(DEFAULT)


def test_negative_intent_lowers_fit_and_holds_the_grade_at_c(rubric):
    keen = score_facts(rubric, facts())
    assert (keen.score, keen.grade) == (100, "A")
    for message in (
        "Just researching pricing options for next year.",
        "Not now, maybe in a few months we could see a demo.",
        "Solo estamos investigando opciones para el próximo año, ¿tienen precios?",
        "Wir informieren uns nur, eine Entscheidung fällt erst nächstes Jahr.",
    ):
        cold = score_facts(rubric, facts(message=message))
        assert cold.score <= keen.score - 30 and cold.grade == "C", message
        [applied] = [a for a in cold.adjustments if a.id == "not_buying_now"]
        assert applied.penalty == 30 and applied.max_grade == "C"
        assert any(line.startswith("Not buying now") and "-30 points, grade at most C" in line for line in cold.factors)


def test_an_industry_outside_the_icp_cannot_reach_b_on_title_and_wording(rubric):
    pizzeria = score_facts(rubric, facts(industry="restaurants", employees=12, title="Owner", message="Send a quote."))
    assert pizzeria.points == 75  # the points alone were an A
    assert pizzeria.grade == "C" and pizzeria.max_grade == "C" and pizzeria.uncapped_grade == "A"
    assert pizzeria.factors[-1] == (
        "Industry outside the ICP: grade at most C; “Industry we serve” known and not met: industry = 'restaurants'"
    )
    # The fast path (backtests, the capture-time pre-grade) applies the same rules.
    assert score_batch(
        rubric, [facts(industry="restaurants", employees=12, title="Owner", message="Send a quote.")]
    ) == [(75, "C")]


def test_missing_essentials_hold_the_grade_down(rubric):
    assert score_facts(rubric, facts(title=None)).grade == "B"  # no decision maker known
    assert score_facts(rubric, facts(message="Tell me more about what you do.")).grade == "B"  # no intent
    assert score_facts(rubric, facts(industry=None)).grade == "B"  # industry unknown
    assert score_facts(rubric, facts(employees=3)).grade == "C"  # very small


def test_too_little_to_judge_names_what_is_unknown(rubric):
    thin = score_facts(
        rubric,
        facts(message="Please send a quote.", title=None, industry=None, employees=None, free_mail=True, phone=None),
    )
    assert thin.too_little.startswith("too little to judge: industry, employees and title unknown")
    assert "at least 2 of industry, employees, title and message" in thin.too_little
    assert thin.factors[-1].startswith("Too little to judge")
    enough = score_facts(rubric, facts(message=None, title="CTO", employees=None))
    assert enough.too_little is None
    # A student is judged (a clear D), not sent to a person for lack of data.
    student = score_facts(
        rubric, facts(message="I am a student writing my thesis.", title=None, industry=None, employees=None)
    )
    assert student.grade == "D" and student.too_little is None


def test_the_brief_has_one_line_per_factor(rubric):
    result = score_facts(rubric, facts(title="Analyst", phone=None))
    assert len(result.factors) == len(result.criteria) + len(result.adjustments)
    assert result.factors[0] == "Industry we serve: yes (+25): industry = 'software'"
    assert result.factors[2].startswith("Title of a decision maker: no (0 of 20): lead.title has none")
    assert result.factors[5] == "Gave a phone number: unknown (0 of 5): lead.phone missing"
    assert result.factors[6].startswith("No decision maker's title: grade at most B")


OLD_STYLE = """
version: old-style-1
criteria:
  - {id: industry, label: Industry, kind: in_list, field: industry, values: [restaurants], weight: 50}
  - {id: intent, label: Intent, kind: keyword, field: lead.message, keywords: [quote], weight: 50}
grades: {A: 75, B: 50, C: 30}
"""


def test_rubrics_without_the_new_sections_score_as_before():
    old = parse(OLD_STYLE)
    assert old.adjustments == [] and old.too_little_to_judge is None
    # "next year" and an unknown title change nothing: a manager's own rubric decides what counts.
    result = score_facts(old, facts(industry="restaurants", message="A quote for next year.", title=None))
    assert (result.score, result.grade, result.adjustments, result.too_little) == (100, "A", [], None)
    assert score_batch(old, [facts(industry="restaurants", message="nothing")]) == [(50, "B")]
    for example in Path(PROJECT_ROOT / "scoring" / "rubrics" / "examples").glob("*.yaml"):
        assert load_rubric(example).adjustments == []


def test_a_custom_rubric_can_use_adjustments_and_bad_ones_are_refused_naming_the_key():
    custom = yaml.safe_load(OLD_STYLE)
    custom["adjustments"] = [
        {"id": "no_intent", "label": "No quote asked", "criterion": "intent", "when": "missed", "max_grade": "C"},
        {
            "id": "later",
            "label": "Later",
            "kind": "keyword",
            "field": "lead.message",
            "keywords": ["later"],
            "penalty": 20,
        },
    ]
    rubric = parse(yaml.safe_dump(custom))
    assert score_facts(rubric, facts(industry="restaurants", message="hello")).grade == "C"
    later = score_facts(rubric, facts(industry="restaurants", message="a quote, later"))
    assert (later.points, later.score, later.grade) == (100, 80, "A")

    custom["adjustments"] = [
        {"id": "x", "label": "X", "criterion": "nope", "max_grade": "C"},
        {"id": "y", "label": "Y", "kind": "keyword", "field": "lead.message", "keywords": ["a"], "penalty": 200},
        {"id": "z", "label": "Z", "criterion": "intent", "when": "sometimes"},
        {"id": "w", "label": "W", "kind": "semantic", "field": "lead.message", "max_grade": "E"},
    ]
    custom["too_little_to_judge"] = {"essentials": ["industry", "size"], "min_known": 3}
    with pytest.raises(RubricError) as err:
        parse(yaml.safe_dump(custom))
    errors = " | ".join(err.value.errors)
    assert "adjustment 'x': 'criterion' 'nope' is not the id of one of the criteria" in errors
    assert "adjustment 'y': penalty must be a number of points from 0 to 100" in errors
    assert "adjustment 'z': 'when' must be one of met, not_met, unknown, missed" in errors
    assert "adjustment 'z': needs a 'penalty' (points off the score) or a 'max_grade'" in errors
    assert "adjustment 'w': kind semantic is not available for adjustments" in errors
    assert "adjustment 'w': max_grade must be one of A, B, C, D" in errors
    assert "too_little_to_judge: 'size' is not the id of one of the criteria" in errors
    assert "too_little_to_judge: min_known must be a whole number from 1 to 2" in errors
