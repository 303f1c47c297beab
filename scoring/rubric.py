"""The written ICP rubric: criteria with weights, disqualifiers and grade thresholds, in YAML.

Criterion kinds: in_list, range, keyword, pattern (regex), semantic (free text against problem
statements, offline embedding), present, equals. Fields: lead.*, contact.*, account.* from the
catalogue below, custom.NAME for a lead's own or imported attributes, or a bare account/contact name
(account first, then contact, then custom). Validation collects every error, each naming the
criterion and the field, before anything is saved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

from core.errors import InvalidInput

Kind = Literal["in_list", "range", "keyword", "pattern", "semantic", "present", "equals"]
KINDS: tuple[str, ...] = ("in_list", "range", "keyword", "pattern", "semantic", "present", "equals")

FIELDS: dict[str, tuple[str, ...]] = {
    "lead": (
        "email",
        "email_domain",
        "free_mail",
        "first_name",
        "last_name",
        "company",
        "title",
        "phone",
        "website",
        "message",
        "source",
        "consent_email",
        "consent_call",
    ),
    "contact": ("email", "first_name", "last_name", "title", "phone", "do_not_email", "do_not_call"),
    "account": (
        "name",
        "domain",
        "industry",
        "employees",
        "country",
        "revenue_musd",
        "year_established",
        "subsidiary_of",
    ),
}
BARE_FIELDS = frozenset(FIELDS["account"]) | frozenset(FIELDS["contact"])
# WordLlama cosine: unrelated texts score up to ~0.17, paraphrases mostly 0.2-0.7 (evals/cases/paraphrase.jsonl).
DEFAULT_SEMANTIC_THRESHOLD = 0.2


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    label: str
    kind: Kind
    field: str
    weight: float = 0.0
    values: list[str] | None = None
    keywords: list[str] | None = None
    pattern: str | None = None
    statements: list[str] | None = None
    threshold: float = DEFAULT_SEMANTIC_THRESHOLD
    min: float | None = None
    max: float | None = None
    value: Any = None


class Grades(BaseModel):
    A: float
    B: float
    C: float


GRADE_LETTERS = ("A", "B", "C", "D")
WHEN = ("met", "not_met", "unknown", "missed")  # missed: not met, whether known or not
WHEN_WORDS = {"met": "met", "not_met": "known and not met", "unknown": "unknown", "missed": "not met"}
TEST_KEYS = ("kind", "field", "values", "keywords", "pattern", "min", "max", "value")


class Adjustment(BaseModel):
    """A rule a sales manager applies on top of the points (optional; rubrics without it score as before): when
    a criterion of the rubric is in a state (`criterion` + `when`), or when a test of its own holds (`kind` +
    `field` and the kind's keys, like a criterion's), the score loses `penalty` points and/or the grade can be no
    better than `max_grade`."""

    model_config = ConfigDict(extra="forbid")
    id: str
    label: str
    criterion: str | None = None
    when: Literal["met", "not_met", "unknown", "missed"] = "missed"
    kind: Literal["in_list", "range", "keyword", "pattern", "present", "equals"] | None = None
    field: str | None = None
    values: list[str] | None = None
    keywords: list[str] | None = None
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    value: Any = None
    penalty: float = 0.0
    max_grade: Literal["A", "B", "C", "D"] | None = None

    def test(self) -> Criterion:
        return Criterion(
            id=self.id,
            label=self.label,
            kind=self.kind or "present",
            field=self.field or "",
            **{k: getattr(self, k) for k in TEST_KEYS[2:] if getattr(self, k) is not None},
        )


class TooLittleToJudge(BaseModel):
    """Optional: a lead with fewer than `min_known` of these criteria known goes to the exception queue, the
    missing ones named, instead of getting a grade from what little there is."""

    model_config = ConfigDict(extra="forbid")
    essentials: list[str]
    min_known: int


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    name: str = ""
    criteria: list[Criterion]
    disqualifiers: list[Criterion] = []
    adjustments: list[Adjustment] = []
    too_little_to_judge: TooLittleToJudge | None = None
    grades: Grades


class RubricError(InvalidInput):
    def __init__(self, errors: list[str]):
        super().__init__("invalid rubric: " + "; ".join(errors), details={"errors": errors})
        self.errors = errors


# --- validation -------------------------------------------------------------------------------------


def field_problem(field: Any) -> str | None:
    if not isinstance(field, str) or not field.strip():
        return "needs a 'field'"
    if "." not in field:
        if field in BARE_FIELDS:
            return None
        return f"unknown field {field!r} (use lead.*, contact.*, account.* or custom.NAME)"
    head, rest = field.split(".", 1)
    if head == "custom":
        return None if rest else f"unknown field {field!r}: custom needs a name"
    if head == "lead" and rest.startswith("custom."):
        return None
    if head not in FIELDS:
        return f"unknown field {field!r}: it must start with lead., contact., account. or custom."
    if rest not in FIELDS[head]:
        return f"unknown field {field!r}; {head} fields are {', '.join(FIELDS[head])}"
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        raise ValueError
    return None if value is None else float(value)


def _check_criterion(raw: Any, where: str, *, weighted: bool) -> list[str]:
    if not isinstance(raw, dict):
        return [f"{where}: each entry must be a mapping with id, label, kind, field"]
    cid = raw.get("id")
    name = f"criterion {cid!r}" if cid else where
    field = raw.get("field")
    prefix = f"{name} (field {field!r})" if isinstance(field, str) else name
    errors = []
    if not isinstance(cid, str) or not cid.strip():
        errors.append(f"{where}: needs an 'id'")
    if not isinstance(raw.get("label"), str) or not raw["label"].strip():
        errors.append(f"{name}: needs a human-readable 'label'")
    unknown_keys = set(raw) - set(Criterion.model_fields)
    if unknown_keys:
        errors.append(f"{prefix}: unknown key(s) {', '.join(sorted(unknown_keys))}")
    problem = field_problem(field)
    if problem:
        errors.append(f"{name}: {problem}")
    kind = raw.get("kind")
    if kind not in KINDS:
        errors.append(f"{prefix}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if weighted:
        try:
            weight = _number(raw.get("weight"))
            if weight is None or weight < 0:
                raise ValueError
        except (TypeError, ValueError):
            errors.append(f"{prefix}: weight must be a number >= 0, got {raw.get('weight')!r}")
    if kind == "in_list" and not (isinstance(raw.get("values"), list) and raw["values"]):
        errors.append(f"{prefix}: kind in_list needs a non-empty list 'values'")
    if kind == "keyword" and not (isinstance(raw.get("keywords"), list) and raw["keywords"]):
        errors.append(f"{prefix}: kind keyword needs a non-empty list 'keywords'")
    if kind == "pattern":
        try:
            re.compile(str(raw.get("pattern") or ""))
            if not raw.get("pattern"):
                errors.append(f"{prefix}: kind pattern needs a 'pattern' (a regular expression)")
        except re.error as exc:
            errors.append(f"{prefix}: bad regex {raw.get('pattern')!r}: {exc}")
    if kind == "semantic":
        statements = raw.get("statements")
        if not (
            isinstance(statements, list) and statements and all(isinstance(s, str) and s.strip() for s in statements)
        ):
            errors.append(f"{prefix}: kind semantic needs a non-empty list of problem 'statements'")
        try:
            threshold = _number(raw.get("threshold", DEFAULT_SEMANTIC_THRESHOLD))
            if threshold is None or not 0 < threshold < 1:
                raise ValueError
        except (TypeError, ValueError):
            errors.append(f"{prefix}: threshold must be a number between 0 and 1, got {raw.get('threshold')!r}")
    if kind == "range":
        try:
            low, high = _number(raw.get("min")), _number(raw.get("max"))
            if low is None and high is None:
                errors.append(f"{prefix}: kind range needs 'min' or 'max'")
            elif low is not None and high is not None and low > high:
                errors.append(f"{prefix}: min {low:g} is above max {high:g}")
        except (TypeError, ValueError):
            errors.append(f"{prefix}: min and max must be numbers")
    if kind == "equals" and "value" not in raw:
        errors.append(f"{prefix}: kind equals needs a 'value'")
    return errors


def _check_adjustments(raw: Any, ids: dict[str, str]) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        return ["'adjustments' must be a list"]
    errors: list[str] = []
    for index, item in enumerate(raw):
        where = f"adjustments[{index}]"
        if not isinstance(item, dict):
            errors.append(f"{where}: each entry must be a mapping with id, label, and a criterion or a test")
            continue
        aid = item.get("id")
        name = f"adjustment {aid!r}" if isinstance(aid, str) and aid.strip() else where
        if not isinstance(aid, str) or not aid.strip():
            errors.append(f"{where}: needs an 'id'")
        elif aid in ids:
            errors.append(f"adjustment {aid!r}: id used twice")
        else:
            ids[aid] = "adjustments"
        if not isinstance(item.get("label"), str) or not item["label"].strip():
            errors.append(f"{name}: needs a human-readable 'label'")
        unknown = set(item) - set(Adjustment.model_fields)
        if unknown:
            errors.append(f"{name}: unknown key(s) {', '.join(sorted(unknown))}")
        criterion, kind = item.get("criterion"), item.get("kind")
        if (criterion is None) == (kind is None):
            errors.append(f"{name}: give either 'criterion' (one of the criteria's ids) or a test ('kind' and 'field')")
        elif criterion is not None:
            if ids.get(criterion) != "criteria":
                errors.append(f"{name}: 'criterion' {criterion!r} is not the id of one of the criteria")
            if item.get("when", "missed") not in WHEN:
                errors.append(f"{name}: 'when' must be one of {', '.join(WHEN)}, got {item.get('when')!r}")
            stray = [k for k in TEST_KEYS if k in item]
            if stray:
                errors.append(f"{name}: {', '.join(stray)} belong to a test, not to a 'criterion' rule")
        else:
            if kind == "semantic":
                errors.append(f"{name}: kind semantic is not available for adjustments; use a keyword or pattern")
            else:
                test = {k: item[k] for k in ("id", "label", *TEST_KEYS) if k in item}
                errors += [
                    e.replace(f"criterion {aid!r}", name)
                    for e in _check_criterion(test, where, weighted=False)
                    if "needs an 'id'" not in e and "human-readable" not in e
                ]
            if "when" in item:
                errors.append(f"{name}: 'when' belongs to a 'criterion' rule; a test applies when it holds")
        try:
            penalty = _number(item.get("penalty", 0))
            if penalty is None or not 0 <= penalty <= 100:
                raise ValueError
        except (TypeError, ValueError):
            errors.append(f"{name}: penalty must be a number of points from 0 to 100, got {item.get('penalty')!r}")
            penalty = 0
        grade = item.get("max_grade")
        if grade is not None and grade not in GRADE_LETTERS:
            errors.append(f"{name}: max_grade must be one of A, B, C, D, got {grade!r}")
        if not penalty and grade is None:
            errors.append(f"{name}: needs a 'penalty' (points off the score) or a 'max_grade', or both")
    return errors


def _check_too_little(raw: Any, ids: dict[str, str]) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        return ["'too_little_to_judge' must be a mapping with essentials (criteria ids) and min_known"]
    errors = []
    unknown = set(raw) - set(TooLittleToJudge.model_fields)
    if unknown:
        errors.append(f"too_little_to_judge: unknown key(s) {', '.join(sorted(unknown))}")
    essentials = raw.get("essentials")
    if not isinstance(essentials, list) or not essentials:
        errors.append("too_little_to_judge: 'essentials' must be a non-empty list of criteria ids")
        essentials = []
    for cid in essentials:
        if ids.get(cid) != "criteria":
            errors.append(f"too_little_to_judge: {cid!r} is not the id of one of the criteria")
    least = raw.get("min_known")
    if isinstance(least, bool) or not isinstance(least, int) or not 1 <= least <= max(1, len(essentials)):
        errors.append(
            f"too_little_to_judge: min_known must be a whole number from 1 to {max(1, len(essentials))}, got {least!r}"
        )
    return errors


def validate(data: Any) -> tuple[Rubric | None, list[str]]:
    """Every problem of a parsed rubric at once; the Rubric only when there are none."""
    if not isinstance(data, dict):
        return None, ["the rubric must be a YAML mapping with version, criteria and grades"]
    errors: list[str] = []
    unknown = set(data) - set(Rubric.model_fields)
    if unknown:
        errors.append(f"unknown top-level key(s): {', '.join(sorted(unknown))}")
    if not isinstance(data.get("version"), str | int | float) or not str(data.get("version")).strip():
        errors.append("needs a 'version' (e.g. icp-2026.11)")
    criteria = data.get("criteria")
    if not isinstance(criteria, list) or not criteria:
        errors.append("needs a non-empty list 'criteria'")
        criteria = []
    disqualifiers = data.get("disqualifiers") or []
    if not isinstance(disqualifiers, list):
        errors.append("'disqualifiers' must be a list")
        disqualifiers = []
    ids: dict[str, str] = {}
    for section, items, weighted in (("criteria", criteria, True), ("disqualifiers", disqualifiers, False)):
        for index, raw in enumerate(items):
            errors += _check_criterion(raw, f"{section}[{index}]", weighted=weighted)
            cid = raw.get("id") if isinstance(raw, dict) else None
            if isinstance(cid, str):
                if cid in ids:
                    errors.append(f"criterion {cid!r}: id used twice")
                ids[cid] = section
    errors += _check_adjustments(data.get("adjustments"), ids)
    errors += _check_too_little(data.get("too_little_to_judge"), ids)
    if not errors and sum(float(c["weight"]) for c in criteria) <= 0:
        errors.append("the criteria weights must add up to more than 0")
    grades = data.get("grades")
    if not isinstance(grades, dict) or set(grades) != {"A", "B", "C"}:
        errors.append("grades must give the minimum score of A, B and C, e.g. {A: 75, B: 50, C: 30}")
    else:
        try:
            a, b, c = (float(grades[g]) for g in "ABC")
            if not 0 <= c <= b <= a <= 100:
                errors.append(f"grades must satisfy 0 <= C <= B <= A <= 100, got A={a:g} B={b:g} C={c:g}")
        except (TypeError, ValueError):
            errors.append(f"grades must be numbers, got {grades}")
    if errors:
        return None, errors
    return Rubric.model_validate({**data, "version": str(data["version"])}), []


def parse(text: str) -> Rubric:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RubricError([f"not valid YAML: {exc}"]) from exc
    rubric, errors = validate(data)
    if errors:
        raise RubricError(errors)
    return rubric


def load_rubric(path: Path | str) -> Rubric:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read rubric {path}: {exc}") from exc
    return parse(text)


# --- scoring -----------------------------------------------------------------------------------------


class CriterionResult(BaseModel):
    id: str
    label: str
    met: bool
    weight: float
    known: bool  # False when the field had no value at all
    evidence: str
    hits: list[str] = []  # keyword criteria: which keywords were found
    record: str | None = None  # where the value came from: lead:ID, contact:ID or account:ID


class AdjustmentResult(BaseModel):
    id: str
    label: str
    penalty: float
    max_grade: str | None
    evidence: str


class ScoreResult(BaseModel):
    score: int
    grade: str
    rubric_version: str
    criteria: list[CriterionResult]
    disqualified_by: list[CriterionResult] = []
    points: int | None = None  # the score before adjustments' penalties
    adjustments: list[AdjustmentResult] = []  # the rubric's adjustments that applied
    max_grade: str | None = None  # the best grade the adjustments allow
    uncapped_grade: str | None = None  # the grade the score alone would give, when max_grade lowered it
    too_little: str | None = None  # why the lead is too thin to grade, in words (the exception queue)
    factors: list[str] = []  # one line per factor, for the brief


def field_record(facts: dict[str, Any], field: str) -> str | None:
    """The record a field's value is read from (a bare name is the first source that has a value)."""
    if "." not in field:
        for source in ("account", "contact", "custom"):
            if field_value(facts, f"{source}.{field}") not in (None, ""):
                return field_record(facts, f"{source}.{field}")
        return None
    head, rest = field.split(".", 1)
    part = "lead" if head == "custom" else head
    row = facts.get(part) or {}
    if (row.get("sources") or {}).get(rest):
        return row["sources"][rest]  # filled from another record, e.g. the company directory
    return f"{part}:{row['id']}" if row.get("id") is not None else None


def field_value(facts: dict[str, Any], field: str) -> Any:
    """Resolve 'lead.title', 'account.industry', 'custom.x' or a bare name (account, contact, then custom)."""
    if "." not in field:
        for source in ("account", "contact", "custom"):
            value = field_value(facts, f"{source}.{field}")
            if value not in (None, ""):
                return value
        return None
    head, rest = field.split(".", 1)
    if head == "lead" and rest.startswith("custom."):
        head, rest = "custom", rest.removeprefix("custom.")
    node: Any = (facts.get("lead") or {}).get("custom", {}) if head == "custom" else facts.get(head)
    if head == "custom" and isinstance(node, dict) and rest in node:
        return node[rest]  # custom keys may contain dots or spaces
    for part in rest.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


@dataclass(frozen=True)
class CompiledCriterion:
    spec: Criterion
    regex: re.Pattern[str] | None
    values: frozenset[str]
    statements: tuple[str, ...]


def _keyword_regex(keywords: list[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(k.lower()) for k in sorted(keywords, key=len, reverse=True))
    return re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])")


def compile_criterion(c: Criterion) -> CompiledCriterion:
    regex = None
    if c.kind == "keyword":
        regex = _keyword_regex(c.keywords or [])
    elif c.kind == "pattern":
        regex = re.compile(c.pattern or "", re.IGNORECASE)
    return CompiledCriterion(c, regex, frozenset(v.strip().lower() for v in c.values or []), tuple(c.statements or ()))


@dataclass(frozen=True)
class CompiledRubric:
    rubric: Rubric
    criteria: tuple[CompiledCriterion, ...]
    disqualifiers: tuple[CompiledCriterion, ...]
    total_weight: float
    tests: tuple[CompiledCriterion, ...] = ()  # the adjustments that carry a test of their own, in order
    # per adjustment: ("criterion", index of the criterion, when) or ("test", index in tests, None)
    rules: tuple[tuple[str, int, str | None], ...] = ()
    essentials: tuple[int, ...] = ()  # too_little_to_judge: indexes of the essential criteria

    @property
    def everything(self) -> tuple[CompiledCriterion, ...]:
        return self.criteria + self.disqualifiers + self.tests


@lru_cache(maxsize=32)
def _compiled(rubric_json: str) -> CompiledRubric:
    rubric = Rubric.model_validate_json(rubric_json)
    index = {c.id: i for i, c in enumerate(rubric.criteria)}
    tests, rules = [], []
    for adjustment in rubric.adjustments:
        if adjustment.criterion is not None:
            rules.append(("criterion", index[adjustment.criterion], adjustment.when))
        else:
            rules.append(("test", len(tests), None))
            tests.append(compile_criterion(adjustment.test()))
    too_little = rubric.too_little_to_judge
    return CompiledRubric(
        rubric,
        tuple(compile_criterion(c) for c in rubric.criteria),
        tuple(compile_criterion(c) for c in rubric.disqualifiers),
        sum(c.weight for c in rubric.criteria),
        tuple(tests),
        tuple(rules),
        tuple(index[e] for e in too_little.essentials) if too_little else (),
    )


# Compiled rubrics by the identity of the Rubric object (kept alive here, so its id is not reused): the JSON key of
# _compiled cost more than a capture's pre-score. Rubric objects are never changed in place (an edit is a new one).
_compiled_by_object: dict[int, tuple[Rubric, CompiledRubric]] = {}


def compile_rubric(rubric: Rubric) -> CompiledRubric:
    hit = _compiled_by_object.get(id(rubric))
    if hit is not None and hit[0] is rubric:
        return hit[1]
    compiled = _compiled(rubric.model_dump_json())
    if len(_compiled_by_object) >= 32:
        _compiled_by_object.clear()
    _compiled_by_object[id(rubric)] = (rubric, compiled)
    return compiled


def _is_met(c: CompiledCriterion, value: Any, semantic: tuple[int, float] | None) -> bool:
    """The hot path: whether a criterion holds, without building its explanation."""
    kind = c.spec.kind
    if kind == "present":
        return value not in (None, "")
    if value in (None, ""):
        return False
    if kind == "in_list":
        return str(value).strip().lower() in c.values
    if kind in ("keyword", "pattern"):
        return c.regex.search(str(value).lower() if kind == "keyword" else str(value)) is not None
    if kind == "semantic":
        return semantic is not None and semantic[1] >= c.spec.threshold
    if kind == "range":
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        return (c.spec.min is None or number >= c.spec.min) and (c.spec.max is None or number <= c.spec.max)
    return value == c.spec.value  # equals


def _evaluate(c: CompiledCriterion, value: Any, semantic: tuple[int, float] | None) -> CriterionResult:
    spec = c.spec
    known = value not in (None, "")
    met, evidence, hits = False, f"{spec.field} is unknown", []
    if spec.kind == "present":
        met, evidence = known, f"{spec.field} {'given' if known else 'missing'}"
    elif known and spec.kind == "in_list":
        met = str(value).strip().lower() in c.values
        evidence = f"{spec.field} = {value!r}"
    elif known and spec.kind == "keyword":
        hits = list(dict.fromkeys(c.regex.findall(str(value).lower())))
        met = bool(hits)
        evidence = (
            f"{spec.field} mentions {', '.join(repr(h) for h in hits)}"
            if hits
            else f"{spec.field} has none of the keywords"
        )
    elif known and spec.kind == "pattern":
        found = c.regex.search(str(value))
        met = found is not None
        evidence = f"{spec.field} matches {found.group(0)!r}" if found else f"{spec.field} does not match the pattern"
    elif known and spec.kind == "semantic" and semantic is not None:
        index, similarity = semantic
        met = similarity >= spec.threshold
        evidence = f"{spec.field} is closest to {c.statements[index]!r} (similarity {similarity:.2f})"
    elif known and spec.kind == "range":
        try:
            number = float(value)
        except (TypeError, ValueError):
            evidence = f"{spec.field} = {value!r} is not a number"
        else:
            met = (spec.min is None or number >= spec.min) and (spec.max is None or number <= spec.max)
            evidence = f"{spec.field} = {number:g}"
    elif known and spec.kind == "equals":
        met = value == spec.value
        evidence = f"{spec.field} = {value!r}"
    return CriterionResult(
        id=spec.id, label=spec.label, met=met, weight=spec.weight, known=known, evidence=evidence, hits=hits
    )


def grade_for(score: float, rubric: Rubric) -> str:
    for grade in ("A", "B", "C"):
        if score >= getattr(rubric.grades, grade):
            return grade
    return "D"


def capped(grade: str, max_grade: str | None) -> str:
    """The grade, no better than max_grade (D is the worst)."""
    if max_grade is None:
        return grade
    return max(grade, max_grade, key=GRADE_LETTERS.index)


def final_grade(score: float, rubric: Rubric, fit: ScoreResult) -> str:
    """The grade of a final score (e.g. blended with the outcome model): D when disqualified, never better than
    what the rubric's adjustments allow for this lead."""
    return "D" if fit.disqualified_by else capped(grade_for(score, rubric), fit.max_grade)


def _holds(when: str, met: bool, known: bool) -> bool:
    if when == "met":
        return met
    if when == "not_met":
        return known and not met
    if when == "unknown":
        return not known
    return not met  # missed


def _applied_rules(compiled: CompiledRubric, met: list[bool], known: list[bool], tested: list[bool]) -> list[int]:
    """Indexes of the adjustments that apply to one lead."""
    return [
        a
        for a, (how, j, when) in enumerate(compiled.rules)
        if (tested[j] if how == "test" else _holds(when, met[j], known[j]))
    ]


def _adjusted(compiled: CompiledRubric, points: int, applied: list[int]) -> tuple[int, str | None]:
    """The score after the applied adjustments' penalties, and the best grade they allow."""
    adjustments = compiled.rubric.adjustments
    score = max(1, min(100, round(points - sum(adjustments[a].penalty for a in applied))))
    caps = [adjustments[a].max_grade for a in applied if adjustments[a].max_grade]
    return score, (max(caps, key=GRADE_LETTERS.index) if caps else None)


def _field_words(field: str) -> str:
    return field.split(".", 1)[-1].removeprefix("custom.").replace("_", " ")


def _too_little(compiled: CompiledRubric, known: list[bool]) -> str | None:
    rule = compiled.rubric.too_little_to_judge
    if rule is None:
        return None
    fields = [_field_words(compiled.criteria[j].spec.field) for j in compiled.essentials]
    missing = [f for j, f in zip(compiled.essentials, fields, strict=True) if not known[j]]
    if len(fields) - len(missing) >= rule.min_known:
        return None
    return (
        f"too little to judge: {_and(missing)} unknown (a grade needs at least {rule.min_known} of "
        f"{_and(fields)}); a person should look at it first"
    )


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _points(weight: float, total: float) -> str:
    return f"{100 * weight / total:.0f}" if total else "0"


def factor_lines(result: ScoreResult, total_weight: float) -> list[str]:
    """One line per factor of a score, in words: each criterion (met, not met or unknown, its points and the
    evidence), each adjustment that applied, a disqualifier, and too little to judge."""
    lines = []
    for c in result.criteria:
        if c.met:
            state = f"yes (+{_points(c.weight, total_weight)})"
        else:
            state = f"{'no' if c.known else 'unknown'} (0 of {_points(c.weight, total_weight)})"
        lines.append(f"{c.label}: {state}: {c.evidence}")
    for a in result.adjustments:
        effect = ", ".join(
            x
            for x in (
                f"-{a.penalty:g} points" if a.penalty else "",
                f"grade at most {a.max_grade}" if a.max_grade else "",
            )
            if x
        )
        lines.append(f"{a.label}: {effect}; {a.evidence}")
    for d in result.disqualified_by:
        lines.append(f"Disqualified, {d.label.lower()}: {d.evidence}")
    if result.too_little:
        lines.append(result.too_little[0].upper() + result.too_little[1:])
    return lines


def _semantic_matches(
    everything: tuple[CompiledCriterion, ...], values: list[list[Any]]
) -> dict[int, dict[int, tuple[int, float]]]:
    """For each semantic criterion j: lead index -> (closest statement, similarity), embedded in one batch."""
    matches: dict[int, dict[int, tuple[int, float]]] = {}
    for j, c in enumerate(everything):
        if c.spec.kind != "semantic":
            continue
        rows = [i for i, row in enumerate(values) if row[j] not in (None, "")]
        if rows:
            from scoring.embedding import best_match  # scikit-learn loads only for semantic criteria

            best, similarity = best_match([str(values[i][j]) for i in rows], c.statements)
            matches[j] = {i: (int(b), float(s)) for i, b, s in zip(rows, best, similarity, strict=True)}
    return matches


def _field_values(compiled: CompiledRubric, facts_list: list[dict[str, Any]]) -> list[list[Any]]:
    """Each criterion's value per lead; a field several criteria read (the message, the size) is looked up once."""
    fields = [c.spec.field for c in compiled.everything]
    unique = list(dict.fromkeys(fields))
    where = [unique.index(f) for f in fields]
    rows = []
    for facts in facts_list:
        values = [field_value(facts, f) for f in unique]
        rows.append([values[i] for i in where])
    return rows


def score_batch(
    rubric: Rubric, facts_list: list[dict[str, Any]], *, with_semantic: bool = True
) -> list[tuple[int, str]]:
    """(score, grade) per lead, fast: for backtests and bulk scoring, where no explanation is shown.
    with_semantic=False counts semantic criteria as not met instead of loading the embedding model (a lower
    bound, for the pre-score at capture)."""
    compiled = compile_rubric(rubric)
    everything = compiled.everything
    values = _field_values(compiled, facts_list)
    semantic = _semantic_matches(everything, values) if with_semantic else {}
    n = len(compiled.criteria)
    tests_at = n + len(compiled.disqualifiers)
    weights = [c.spec.weight for c in compiled.criteria]
    thresholds = (rubric.grades.A, rubric.grades.B, rubric.grades.C)
    out = []
    for i, row in enumerate(values):
        met = [_is_met(c, row[j], semantic.get(j, {}).get(i)) for j, c in enumerate(compiled.criteria)]
        score = max(
            1, min(100, round(100 * sum(w for w, m in zip(weights, met, strict=True) if m) / compiled.total_weight))
        )
        cap = None
        if compiled.rules:  # evaluated rule by rule: only the fields the rules read
            applied = [
                a
                for a, (how, j, when) in enumerate(compiled.rules)
                if (
                    _is_met(compiled.tests[j], row[tests_at + j], None)
                    if how == "test"
                    else _holds(when, met[j], row[j] not in (None, ""))
                )
            ]
            if applied:
                score, cap = _adjusted(compiled, score, applied)
        if any(_is_met(c, row[n + k], semantic.get(n + k, {}).get(i)) for k, c in enumerate(compiled.disqualifiers)):
            grade = "D"
        else:
            grade = capped(next((g for g, t in zip("ABC", thresholds, strict=True) if score >= t), "D"), cap)
        out.append((score, grade))
    return out


def score_many(rubric: Rubric, facts_list: list[dict[str, Any]]) -> list[ScoreResult]:
    """Score a batch with an explanation per criterion (what a brief shows)."""
    compiled = compile_rubric(rubric)
    everything = compiled.everything
    values = _field_values(compiled, facts_list)
    semantic = _semantic_matches(everything, values)
    n, d = len(compiled.criteria), len(compiled.disqualifiers)
    results = []
    for i, row in enumerate(values):
        evaluated = [
            _evaluate(c, row[j], semantic.get(j, {}).get(i)).model_copy(
                update={"record": field_record(facts_list[i], c.spec.field)}
            )
            for j, c in enumerate(everything)
        ]
        criteria, disqualifiers, tests = evaluated[:n], evaluated[n : n + d], evaluated[n + d :]
        met = sum(r.weight for r in criteria if r.met)
        points = max(1, min(100, round(100 * met / compiled.total_weight)))
        applied = _applied_rules(
            compiled, [r.met for r in criteria], [r.known for r in criteria], [t.met for t in tests]
        )
        score, cap = _adjusted(compiled, points, applied)
        adjustments = []
        for a in applied:
            spec, (how, j, when) = rubric.adjustments[a], compiled.rules[a]
            if how == "test":
                evidence = tests[j].evidence
            else:
                c = criteria[j]
                evidence = f"“{c.label}” {WHEN_WORDS[when]}" + (f": {c.evidence}" if c.known else "")
            adjustments.append(
                AdjustmentResult(
                    id=spec.id, label=spec.label, penalty=spec.penalty, max_grade=spec.max_grade, evidence=evidence
                )
            )
        disqualified = [r for r in disqualifiers if r.met]
        uncapped = grade_for(score, rubric)
        result = ScoreResult(
            score=score,
            grade="D" if disqualified else capped(uncapped, cap),
            uncapped_grade=uncapped if not disqualified and capped(uncapped, cap) != uncapped else None,
            rubric_version=rubric.version,
            criteria=criteria,
            disqualified_by=disqualified,
            points=points,
            adjustments=adjustments,
            max_grade=cap,
            # A disqualified lead is judged (a clear D); otherwise too little known goes to a person.
            too_little=None if disqualified else _too_little(compiled, [r.known for r in criteria]),
        )
        result.factors = factor_lines(result, compiled.total_weight)
        results.append(result)
    return results


def score_facts(rubric: Rubric, facts: dict[str, Any]) -> ScoreResult:
    return score_many(rubric, [facts])[0]
