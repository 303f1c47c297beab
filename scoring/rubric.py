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


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    name: str = ""
    criteria: list[Criterion]
    disqualifiers: list[Criterion] = []
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


class ScoreResult(BaseModel):
    score: int
    grade: str
    rubric_version: str
    criteria: list[CriterionResult]
    disqualified_by: list[CriterionResult] = []


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


@lru_cache(maxsize=32)
def _compiled(rubric_json: str) -> CompiledRubric:
    rubric = Rubric.model_validate_json(rubric_json)
    return CompiledRubric(
        rubric,
        tuple(compile_criterion(c) for c in rubric.criteria),
        tuple(compile_criterion(c) for c in rubric.disqualifiers),
        sum(c.weight for c in rubric.criteria),
    )


def compile_rubric(rubric: Rubric) -> CompiledRubric:
    return _compiled(rubric.model_dump_json())


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
    everything = compiled.criteria + compiled.disqualifiers
    return [[field_value(facts, c.spec.field) for c in everything] for facts in facts_list]


def score_batch(
    rubric: Rubric, facts_list: list[dict[str, Any]], *, with_semantic: bool = True
) -> list[tuple[int, str]]:
    """(score, grade) per lead, fast: for backtests and bulk scoring, where no explanation is shown.
    with_semantic=False counts semantic criteria as not met instead of loading the embedding model (a lower
    bound, for the pre-score at capture)."""
    compiled = compile_rubric(rubric)
    everything = compiled.criteria + compiled.disqualifiers
    values = _field_values(compiled, facts_list)
    semantic = _semantic_matches(everything, values) if with_semantic else {}
    n = len(compiled.criteria)
    weights = [c.spec.weight for c in compiled.criteria]
    thresholds = (rubric.grades.A, rubric.grades.B, rubric.grades.C)
    out = []
    for i, row in enumerate(values):
        met = sum(
            w
            for j, (c, w) in enumerate(zip(compiled.criteria, weights, strict=True))
            if _is_met(c, row[j], semantic.get(j, {}).get(i))
        )
        score = max(1, min(100, round(100 * met / compiled.total_weight)))
        if any(_is_met(c, row[n + k], semantic.get(n + k, {}).get(i)) for k, c in enumerate(compiled.disqualifiers)):
            grade = "D"
        else:
            grade = next((g for g, t in zip("ABC", thresholds, strict=True) if score >= t), "D")
        out.append((score, grade))
    return out


def score_many(rubric: Rubric, facts_list: list[dict[str, Any]]) -> list[ScoreResult]:
    """Score a batch with an explanation per criterion (what a brief shows)."""
    compiled = compile_rubric(rubric)
    everything = compiled.criteria + compiled.disqualifiers
    values = _field_values(compiled, facts_list)
    semantic = _semantic_matches(everything, values)
    n = len(compiled.criteria)
    results = []
    for i, row in enumerate(values):
        evaluated = [
            _evaluate(c, row[j], semantic.get(j, {}).get(i)).model_copy(
                update={"record": field_record(facts_list[i], c.spec.field)}
            )
            for j, c in enumerate(everything)
        ]
        criteria, disqualifiers = evaluated[:n], evaluated[n:]
        met = sum(r.weight for r in criteria if r.met)
        score = max(1, min(100, round(100 * met / compiled.total_weight)))
        disqualified = [r for r in disqualifiers if r.met]
        grade = "D" if disqualified else grade_for(score, rubric)
        results.append(
            ScoreResult(
                score=score, grade=grade, rubric_version=rubric.version, criteria=criteria, disqualified_by=disqualified
            )
        )
    return results


def score_facts(rubric: Rubric, facts: dict[str, Any]) -> ScoreResult:
    return score_many(rubric, [facts])[0]
