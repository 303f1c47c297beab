import pytest

from core.errors import InvalidInput
from core.settings import DEFAULT_RUBRIC
from scoring.rubric import (
    RubricError,
    field_record,
    field_value,
    load_rubric,
    parse,
    score_batch,
    score_facts,
    score_many,
)


def facts(**lead):
    base = {"title": None, "message": None, "free_mail": False, "phone": None, "custom": {}}
    base.update(lead)
    return {"lead": base, "account": None, "contact": None}


def test_bare_field_prefers_the_account_over_what_the_lead_typed():
    f = facts(custom={"industry": "Retail"})
    assert field_value(f, "industry") == "Retail"
    f["account"] = {"industry": "Software"}
    assert field_value(f, "industry") == "Software"
    assert field_value(f, "lead.custom.industry") == "Retail"
    assert field_value(f, "account.nothing.deeper") is None


def test_grades_follow_the_share_of_weight_met():
    rubric = load_rubric(DEFAULT_RUBRIC)
    strong = score_facts(
        rubric,
        facts(
            title="Head of Finance", message="send a quote", phone="1", custom={"industry": "SaaS", "employees": 300}
        ),
    )
    assert (strong.score, strong.grade) == (100, "A")
    middling = score_facts(rubric, facts(title="Director", custom={"industry": "Consulting"}))
    assert (middling.score, middling.grade) == (55, "B")
    weak = score_facts(rubric, facts(free_mail=True))
    assert (weak.score, weak.grade) == (1, "D")
    assert all(not c.known for c in weak.criteria if c.id in ("industry", "company_size", "decision_maker"))


def test_keywords_match_whole_words_only():
    rubric = load_rubric(DEFAULT_RUBRIC)
    result = score_facts(rubric, facts(message="Our demographics team", title="Headhunter"))
    by_id = {c.id: c for c in result.criteria}
    assert not by_id["buying_intent"].met  # 'demo' inside 'demographics'
    assert not by_id["decision_maker"].met  # 'head' inside 'Headhunter'


def test_a_disqualifier_forces_grade_d_whatever_the_score():
    rubric = load_rubric(DEFAULT_RUBRIC)
    result = score_facts(
        rubric,
        facts(
            title="CEO",
            message="I am a student, can I get a demo?",
            phone="1",
            custom={"industry": "software", "employees": 50},
        ),
    )
    assert result.score >= 75 and result.grade == "D"
    assert [d.id for d in result.disqualified_by] == ["not_a_buyer"]


BAD_RUBRIC = """
version: icp-bad
criteria:
  - id: size
    label: Size
    kind: range
    field: employees
    weight: 5
  - id: industry
    label: Industry
    kind: in_list
    field: account.sector
    values: [software]
    weight: 10
  - id: intent
    label: Intent
    kind: pattern
    field: lead.message
    pattern: "(demo|pricing"
    weight: ten
  - id: pain
    label: Pain
    kind: semantic
    field: lead.mesage
    statements: []
    weight: 5
grades: {A: 75, B: 50, C: 30}
"""


def test_a_bad_rubric_reports_every_error_naming_criterion_and_field(tmp_path):
    with pytest.raises(RubricError) as caught:
        parse(BAD_RUBRIC)
    errors = caught.value.errors
    assert "criterion 'size' (field 'employees'): kind range needs 'min' or 'max'" in errors
    assert any(e.startswith("criterion 'industry': unknown field 'account.sector'") for e in errors)
    assert any(e.startswith("criterion 'intent' (field 'lead.message'): bad regex '(demo|pricing'") for e in errors)
    assert "criterion 'intent' (field 'lead.message'): weight must be a number >= 0, got 'ten'" in errors
    assert any(e.startswith("criterion 'pain': unknown field 'lead.mesage'") for e in errors)
    assert (
        "criterion 'pain' (field 'lead.mesage'): kind semantic needs a non-empty list of problem 'statements'" in errors
    )
    assert len(errors) == 6
    with pytest.raises(RubricError, match="weights must add up"):
        parse(
            "version: x\ncriteria:\n  - {id: a, label: A, kind: present, field: lead.phone, weight: 0}\n"
            "grades: {A: 75, B: 50, C: 30}\n"
        )
    with pytest.raises(RubricError, match="C <= B <= A"):
        parse(
            "version: x\ncriteria:\n  - {id: a, label: A, kind: present, field: lead.phone, weight: 1}\n"
            "grades: {A: 30, B: 50, C: 75}\n"
        )
    with pytest.raises(RubricError, match="not valid YAML"):
        parse("version: [unclosed")
    with pytest.raises(InvalidInput, match="cannot read rubric"):
        load_rubric(tmp_path / "missing.yaml")


def test_pattern_and_semantic_criteria_explain_what_matched():
    rubric = parse("""
version: t
criteria:
  - {id: budget, label: Budget stated, kind: pattern, field: lead.message, pattern: '\\$\\s?\\d+k', weight: 1}
  - id: pain
    label: Chasing late payments
    kind: semantic
    field: lead.message
    statements: [Our invoices are paid late and chasing payments takes hours, We cannot follow up leads fast enough]
    threshold: 0.15
    weight: 1
  - {id: region, label: Region, kind: in_list, field: custom.Region Name, values: [emea], weight: 1}
grades: {A: 75, B: 50, C: 30}
""")
    hit = score_facts(
        rubric, facts(message="We have $40k to fix chasing late payments on invoices", custom={"Region Name": "EMEA"})
    )
    by_id = {c.id: c for c in hit.criteria}
    assert by_id["budget"].met and "'$40k'" in by_id["budget"].evidence
    assert by_id["pain"].met and "invoices are paid late" in by_id["pain"].evidence
    assert by_id["region"].met and hit.score == 100
    miss = score_facts(rubric, facts(message="I would like to learn to play the guitar"))
    by_id = {c.id: c for c in miss.criteria}
    assert not by_id["budget"].met and not by_id["pain"].met
    assert "similarity" in by_id["pain"].evidence


def test_score_many_matches_scoring_one_by_one():
    rubric = load_rubric(DEFAULT_RUBRIC)
    batch = [facts(title="CEO", message="pricing please"), facts(free_mail=True), facts(custom={"employees": 40})]
    assert [r.score for r in score_many(rubric, batch)] == [score_facts(rubric, f).score for f in batch]


def test_the_fast_batch_path_agrees_with_the_explained_one():
    root = DEFAULT_RUBRIC.parent
    batch = [
        facts(title="CEO", message="pricing please", phone="1", custom={"industry": "software", "employees": 40}),
        facts(title="student", message="my thesis on demos"),  # disqualified
        facts(free_mail=True),
        facts(title="Head of Ops", message="we want a trial", custom={"employees": "many"}),
    ]
    for path in (DEFAULT_RUBRIC, *sorted((root / "examples").glob("*.yaml"))):
        rubric = load_rubric(path)
        assert score_batch(rubric, batch) == [(r.score, r.grade) for r in score_many(rubric, batch)], path.name


def test_each_result_names_the_record_its_value_came_from():
    f = facts(custom={"industry": "Retail"})
    f["lead"]["id"], f["account"] = 7, {"id": 3, "industry": None, "employees": 40}
    assert field_record(f, "industry") == "lead:7"  # the account has no industry: the lead's own attribute
    assert field_record(f, "employees") == "account:3"
    assert field_record(f, "custom.industry") == "lead:7" and field_record(f, "lead.title") == "lead:7"
    assert field_record(f, "contact.title") is None
    result = score_many(load_rubric(DEFAULT_RUBRIC), [f])[0]
    assert {c.id: c.record for c in result.criteria}["company_size"] == "account:3"
