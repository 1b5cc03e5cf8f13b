"""The assessment rubric's arithmetic (rules/rubric.py): pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from config.settings import Settings
from config.yaml_file import FileError, load_yaml_model
from rules.rubric import (
    EvaluationFact,
    GradeBands,
    RecordFact,
    Rubric,
    UnitFacts,
    Weights,
    score,
)

R = Rubric(version="test")
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def rect(rule: str, no: str = "2026-P001", seq: int = 3, day: int = 0) -> RecordFact:
    return RecordFact(rule=rule, source_kind="rectification", source_id=no, seq=seq,
                      occurred_at=T0 + timedelta(days=day))


def clue(no: str = "2026-0001", seq: int = 2) -> RecordFact:
    return RecordFact(rule="missed_deadline", source_kind="clue", source_id=no, seq=seq,
                      occurred_at=T0, detail="签收期限")


def unit(**kw) -> UnitFacts:
    return UnitFacts(**{"unit": "market_regulation", "name": "县市场监督管理局", "year": 2026,
                        "covered_by": ["inspection-2026-routine-market_regulation"], **kw})


def ev(score_: float, wid: str = "inspection-2026-routine-market_regulation") -> EvaluationFact:
    return EvaluationFact(source_id=wid, score=score_)


def test_the_default_file_is_the_documented_default():
    s = Settings()
    rubric = load_yaml_model(s.assessment_rubric, Rubric)
    assert rubric == Rubric(version=rubric.version)
    assert (rubric.weights.evaluation, rubric.weights.rectification, rubric.weights.clues,
            rubric.weights.coverage) == (0.5, 0.3, 0.1, 0.1)
    r = rubric.rectification
    assert (r.overdue, r.escalated, r.reopened, r.open_at_year_end, rubric.clues.missed_deadline) == (5, 15, 5, 3, 10)
    doc = (Path(__file__).resolve().parent.parent / "docs" / "assessment.md").read_text(encoding="utf-8")
    assert f"`{rubric.version}`" in doc, "docs/assessment.md describes the default rubric's version"


def test_a_unit_with_nothing_recorded_is_capped_because_nobody_inspected_it():
    s = score(unit(covered_by=[]), R)
    # evaluation 100 (none), rectification 100, clues 100, coverage 0
    assert s.raw_score == 90 and s.score == 90.0
    assert s.grade_before_caps == "优秀" and s.grade == "合格" and s.caps == ["not_covered"]
    [d] = s.deductions
    assert (d.rule, d.points, d.applied_points, d.weighted_points) == ("coverage.not_covered", 100, 100, 10)
    assert (d.source_kind, d.source_id) == ("registry", "market_regulation")


def test_covered_unit_with_no_record_of_anything_scores_full_marks():
    s = score(unit(), R)
    assert (s.score, s.grade, s.deductions, s.caps) == (100.0, "优秀", [], [])


def test_every_component_and_half_up_rounding():
    facts = unit(evaluations=[ev(85, "inspection-2026-routine-market_regulation"),
                              ev(92, "inspection-2026-special-market_regulation")],
                 rectification=[rect("overdue"), rect("escalated", seq=4, day=5)],
                 clues=[clue()])
    s = score(facts, R)
    # 0.5 × 88.5 + 0.3 × (100 − 5 − 15) + 0.1 × (100 − 10) + 0.1 × 100 = 87.25 → 87.3 (not 87.2)
    assert s.raw_score == 87.25 and s.score == 87.3
    assert s.grade == "良好" and s.caps == [], "the escalation cap (良好) does not lower 良好"
    assert {c: v.score for c, v in s.components.items()} == {
        "evaluation": 88.5, "rectification": 80, "clues": 90, "coverage": 100}
    rules = [(d.rule, d.source_id, d.points, d.weighted_points) for d in s.deductions]
    assert rules == [
        ("evaluation.score", "inspection-2026-routine-market_regulation", 7.5, 3.75),
        ("evaluation.score", "inspection-2026-special-market_regulation", 4.0, 2.0),
        ("rectification.overdue", "2026-P001", 5, 1.5),
        ("rectification.escalated", "2026-P001", 15, 4.5),
        ("clues.missed_deadline", "2026-0001", 10, 1.0),
    ]
    assert "签收期限" in s.deductions[-1].note and "2026-P001" in s.deductions[2].note


def test_the_escalation_cap_lowers_an_excellent_score():
    s = score(unit(evaluations=[ev(100)], rectification=[rect("escalated")]), R)
    assert s.score == 95.5 and s.grade_before_caps == "优秀"
    assert (s.grade, s.caps) == ("良好", ["escalated"])


def test_components_stop_at_zero_and_the_overflow_is_listed_but_not_applied():
    facts = unit(evaluations=[ev(100)],
                 rectification=[rect("escalated", no=f"P{i}", day=i) for i in range(8)])
    s = score(facts, R)
    applied = [d.applied_points for d in s.deductions if d.component == "rectification"]
    assert applied == [15] * 6 + [10, 0], "applied in time order until the component is empty"
    assert s.components["rectification"].score == 0
    assert s.score == 70.0 and s.grade == "合格"


def test_the_total_floors_at_zero():
    facts = unit(covered_by=[], evaluations=[ev(0)],
                 rectification=[rect("overdue", no=f"P{i}") for i in range(30)],
                 clues=[clue(f"C{i}") for i in range(11)])
    s = score(facts, R)
    assert (s.score, s.raw_score, s.grade) == (0.0, 0.0, "不合格")
    assert all(c.score == 0 for c in s.components.values())


def test_an_agency_is_scored_on_what_applies_to_it():
    s = score(UnitFacts(unit="justice", kind="agency", year=2026, clues=[clue("C1"), clue("C2")]), R)
    assert s.score == 80.0 and s.grade == "良好"
    assert [c for c, v in s.components.items() if v.applies] == ["clues"]
    assert s.components["clues"].effective_weight == 1.0
    assert not any(d.component in ("coverage", "evaluation") for d in s.deductions), "agencies are not inspected"
    with_problem = score(UnitFacts(unit="justice", kind="agency", year=2026, problems=1,
                                   rectification=[rect("overdue")]), R)
    # rectification 95 (weight .3) and clues 100 (weight .1), scaled to the weights that apply
    assert with_problem.raw_score == pytest.approx(96.25) and with_problem.score == 96.3


def test_no_evaluation_can_be_scored_lower_by_the_rubric():
    rubric = Rubric(version="t", evaluation={"none_score": 60})
    s = score(unit(), rubric)
    assert s.score == 80.0
    assert [(d.rule, d.source_kind) for d in s.deductions] == [("evaluation.none", "registry")]


def test_a_year_end_that_is_still_overdue_counts_once_more():
    s = score(unit(evaluations=[ev(90)], rectification=[rect("overdue"), rect("open_at_year_end")]), R)
    assert s.components["rectification"].score == 92
    assert s.score == round(45 + 0.3 * 92 + 10 + 10, 1) == 92.6


def test_weights_must_add_up_to_one_exactly():
    Weights(evaluation=0.4, rectification=0.3, clues=0.2, coverage=0.1)  # 1.0000000000000002 as floats
    with pytest.raises(ValidationError, match="must add up to 1"):
        Weights(evaluation=0.6)
    with pytest.raises(ValidationError):
        Weights(evaluation=-0.1, rectification=0.6, clues=0.4, coverage=0.1)
    with pytest.raises(ValidationError, match="descend"):
        GradeBands(excellent=80, good=80)
    with pytest.raises(ValidationError):
        Rubric(version="t", grades={"excellent": 90}, surprise=1)


def test_all_weight_on_what_does_not_apply_leaves_full_marks():
    rubric = Rubric(version="t", weights={"evaluation": 1, "rectification": 0, "clues": 0, "coverage": 0})
    s = score(UnitFacts(unit="court", kind="agency", year=2026, clues=[clue()]), rubric)
    assert s.score == 100.0 and all(d.weighted_points == 0 for d in s.deductions)


def test_a_bad_rubric_file_names_its_line(tmp_path):
    bad = tmp_path / "rubric.yaml"
    bad.write_text('version: "x"\nweights:\n  evaluation: 0.7\n  rectification: 0.3\n  clues: 0.1\n'
                   "  coverage: 0.1\ncaps:\n  not_covered: 很好\n", encoding="utf-8")
    with pytest.raises(FileError) as info:
        load_yaml_model(bad, Rubric)
    text = str(info.value)
    assert "rubric.yaml:3" in text or "rubric.yaml:2" in text, text
    assert "caps.not_covered" in text and "rubric.yaml:8" in text, text


def test_the_digest_changes_with_any_number():
    assert R.digest() == Rubric(version="test").digest()
    assert R.digest() != Rubric(version="test", clues={"missed_deadline": 9}).digest()


points = st.integers(min_value=0, max_value=100)


@settings(max_examples=200, deadline=None)
@given(
    evals=st.lists(points, max_size=4),
    covered=st.booleans(),
    rules=st.lists(st.sampled_from(["overdue", "escalated", "reopened", "open_at_year_end"]), max_size=12),
    clues=st.integers(min_value=0, max_value=12),
    agency=st.booleans(),
)
def test_deductions_always_add_up_to_the_score(evals, covered, rules, clues, agency):
    facts = UnitFacts(
        unit="u", kind="agency" if agency else "unit", year=2026,
        evaluations=[ev(s, f"i{i}") for i, s in enumerate(evals)],
        covered_by=["i0"] if covered else [], problems=len(rules),
        rectification=[rect(r, no=f"P{i}", seq=i) for i, r in enumerate(rules)],
        clues=[clue(f"C{i}") for i in range(clues)])
    s = score(facts, R)
    assert 0 <= s.score <= 100
    total = sum(Decimal(str(d.weighted_points)) for d in s.deductions)
    assert abs(Decimal(100) - total - Decimal(str(s.raw_score))) < Decimal("1e-9")
    assert abs(s.score - s.raw_score) <= 0.05 + 1e-9
    assert s.grade in ("优秀", "良好", "合格", "不合格")
    expected = R.grade(s.score)
    assert ("优秀", "良好", "合格", "不合格").index(s.grade) >= ("优秀", "良好", "合格", "不合格").index(expected)
