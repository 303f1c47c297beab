import pytest

from core.errors import InvalidInput
from core.settings import DEFAULT_RUBRIC
from scoring.rubric import field_value, load_rubric, score_facts


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


def test_a_bad_rubric_is_refused_naming_the_criterion(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: x\ncriteria:\n  - id: size\n    label: Size\n    kind: range\n    field: employees\n"
        "    weight: 5\ngrades: {A: 75, B: 50, C: 30}\n"
    )
    with pytest.raises(InvalidInput, match="criterion 'size': kind range needs 'min' or 'max'"):
        load_rubric(bad)
    bad.write_text("version: x\ncriteria: []\ngrades: {A: 75, B: 50, C: 30}\n")
    with pytest.raises(InvalidInput, match="weights must add up"):
        load_rubric(bad)
    with pytest.raises(InvalidInput, match="cannot read rubric"):
        load_rubric(tmp_path / "missing.yaml")
