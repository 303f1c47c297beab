"""A first, simple ICP rubric: criteria with weights over lead, account and custom fields.

Criterion kinds: in_list, range, keyword, equals, present. The score is the share of weight met,
scaled to 1-100; a disqualifier forces grade D. Every criterion reports its evidence.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import InvalidInput

Kind = Literal["in_list", "range", "keyword", "equals", "present"]


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    label: str
    kind: Kind
    field: str
    weight: float = Field(0, ge=0)
    values: list[str] | None = None
    keywords: list[str] | None = None
    min: float | None = None
    max: float | None = None
    value: Any = None

    @model_validator(mode="after")
    def _needs_its_parameters(self) -> Criterion:
        needs = {"in_list": "values", "keyword": "keywords"}
        if self.kind in needs and not getattr(self, needs[self.kind]):
            raise ValueError(f"criterion {self.id!r}: kind {self.kind} needs a non-empty '{needs[self.kind]}'")
        if self.kind == "range" and self.min is None and self.max is None:
            raise ValueError(f"criterion {self.id!r}: kind range needs 'min' or 'max'")
        return self


class Grades(BaseModel):
    A: float
    B: float
    C: float


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    name: str = ""
    criteria: list[Criterion]
    disqualifiers: list[Criterion] = []
    grades: Grades

    @model_validator(mode="after")
    def _positive_total(self) -> Rubric:
        if sum(c.weight for c in self.criteria) <= 0:
            raise ValueError("the criteria weights must add up to more than 0")
        return self


class CriterionResult(BaseModel):
    id: str
    label: str
    met: bool
    weight: float
    known: bool  # False when the field had no value at all
    evidence: str
    hits: list[str] = []  # keyword criteria: which keywords were found


class ScoreResult(BaseModel):
    score: int
    grade: str
    rubric_version: str
    criteria: list[CriterionResult]
    disqualified_by: list[CriterionResult] = []


def load_rubric(path: Path | str) -> Rubric:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read rubric {path}: {exc}") from exc
    try:
        return Rubric.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(f"invalid rubric {path}: {exc}") from exc


@lru_cache(maxsize=8)
def cached_rubric(path: str, mtime: float) -> Rubric:
    return load_rubric(path)


def rubric_from_settings(path: Path) -> Rubric:
    return cached_rubric(str(path), Path(path).stat().st_mtime)


def field_value(facts: dict[str, Any], field: str) -> Any:
    """Resolve 'lead.title', 'account.industry', 'custom.x' or a bare name (account first, then custom)."""
    if "." not in field:
        for source in ("account", "contact", "custom"):
            value = field_value(facts, f"{source}.{field}")
            if value not in (None, ""):
                return value
        return None
    head, rest = field.split(".", 1)
    node: Any = (facts.get("lead") or {}).get("custom", {}) if head == "custom" else facts.get(head)
    for part in rest.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _keyword_hits(text: str, keywords: list[str]) -> list[str]:
    lowered = text.lower()
    return [k for k in keywords if re.search(rf"(?<![a-z0-9]){re.escape(k.lower())}(?![a-z0-9])", lowered)]


def evaluate(criterion: Criterion, facts: dict[str, Any]) -> CriterionResult:
    value = field_value(facts, criterion.field)
    known = value not in (None, "")
    met, evidence, hits = False, f"{criterion.field} is unknown", []
    if criterion.kind == "present":
        met, evidence = known, f"{criterion.field} {'given' if known else 'missing'}"
    elif known and criterion.kind == "in_list":
        met = str(value).strip().lower() in {v.lower() for v in criterion.values or []}
        evidence = f"{criterion.field} = {value!r}"
    elif known and criterion.kind == "keyword":
        hits = _keyword_hits(str(value), criterion.keywords or [])
        met = bool(hits)
        evidence = (
            f"{criterion.field} mentions {', '.join(repr(h) for h in hits)}"
            if hits
            else f"{criterion.field} has none of the keywords"
        )
    elif known and criterion.kind == "range":
        try:
            number = float(value)
        except (TypeError, ValueError):
            evidence = f"{criterion.field} = {value!r} is not a number"
        else:
            met = (criterion.min is None or number >= criterion.min) and (
                criterion.max is None or number <= criterion.max
            )
            evidence = f"{criterion.field} = {value:g}" if isinstance(value, float) else f"{criterion.field} = {value}"
    elif known and criterion.kind == "equals":
        met = value == criterion.value
        evidence = f"{criterion.field} = {value!r}"
    return CriterionResult(
        id=criterion.id,
        label=criterion.label,
        met=met,
        weight=criterion.weight,
        known=known,
        evidence=evidence,
        hits=hits,
    )


def grade_for(score: float, rubric: Rubric) -> str:
    for grade in ("A", "B", "C"):
        if score >= getattr(rubric.grades, grade):
            return grade
    return "D"


def score_facts(rubric: Rubric, facts: dict[str, Any]) -> ScoreResult:
    results = [evaluate(c, facts) for c in rubric.criteria]
    total = sum(c.weight for c in rubric.criteria)
    met = sum(r.weight for r in results if r.met)
    score = max(1, min(100, round(100 * met / total)))
    disqualified = [r for r in (evaluate(d, facts) for d in rubric.disqualifiers) if r.met]
    grade = "D" if disqualified else grade_for(score, rubric)
    return ScoreResult(
        score=score, grade=grade, rubric_version=rubric.version, criteria=results, disqualified_by=disqualified
    )
