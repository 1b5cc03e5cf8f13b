"""Round planning and risk thresholds: pure rules, no I/O."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.risk import flag_units, previous_period, window
from rules.round_planning import PlanningError, PlanUnit, later_batch, plan_round, priority_order
from schemas.risk import RiskThresholds, UnitIndicators

YEAR_START, YEAR_END = date(2027, 1, 5), date(2027, 12, 31)


def codes(batches) -> list[list[str]]:
    return [list(b.units) for b in batches]


def test_carried_over_first_then_worst_scores_then_the_rest():
    units = [
        PlanUnit("alpha"), PlanUnit("bravo", last_score=92), PlanUnit("charlie", last_score=61.5),
        PlanUnit("delta", carried_over=1, last_score=95), PlanUnit("echo", carried_over=3),
        PlanUnit("foxtrot", level="township"), PlanUnit("golf", last_score=61.5),
    ]
    order = [u.code for u in priority_order(units)]
    assert order == ["echo", "delta", "charlie", "golf", "bravo", "alpha", "foxtrot"]


def test_ties_break_by_code_whatever_the_input_order():
    units = [PlanUnit(c, carried_over=2) for c in ("zulu", "mike", "alpha")]
    assert [u.code for u in priority_order(units)] == ["alpha", "mike", "zulu"]
    assert [u.code for u in priority_order(list(reversed(units)))] == ["alpha", "mike", "zulu"]


def test_batches_cut_the_priority_order_and_open_across_the_window():
    units = [PlanUnit(f"u{i:02d}") for i in range(10)] + [PlanUnit("late", carried_over=1)]
    batches = plan_round(units, start_on=YEAR_START, due_on=YEAR_END, batches=4, today=date(2026, 12, 1))
    assert [b.number for b in batches] == [1, 2, 3, 4]
    assert [len(b.units) for b in batches] == [3, 3, 3, 2]
    assert batches[0].units[0] == "late", "carried-over unit is in the first batch, first"
    assert sorted(sum(codes(batches), [])) == sorted(u.code for u in units), "every unit exactly once"
    assert [b.opens_on for b in batches] == [date(2027, 1, 5), date(2027, 4, 5), date(2027, 7, 4),
                                            date(2027, 10, 2)]
    assert all(b.opens_on <= YEAR_END for b in batches)


def test_late_start_plans_from_today_and_never_an_empty_batch():
    units = [PlanUnit("a"), PlanUnit("b")]
    batches = plan_round(units, start_on=YEAR_START, due_on=YEAR_END, batches=6, today=date(2027, 6, 1))
    assert len(batches) == 2 and batches[0].opens_on == date(2027, 6, 1)
    assert plan_round([], start_on=YEAR_START, due_on=YEAR_END, batches=4, today=YEAR_START) == []


def test_bad_inputs_are_refused():
    with pytest.raises(PlanningError, match="due_on"):
        plan_round([PlanUnit("a")], start_on=YEAR_START, due_on=YEAR_END, batches=2, today=date(2028, 1, 2))
    with pytest.raises(PlanningError, match="duplicate"):
        plan_round([PlanUnit("a"), PlanUnit("a")], start_on=YEAR_START, due_on=YEAR_END, batches=2,
                   today=YEAR_START)
    with pytest.raises(PlanningError, match="batches"):
        plan_round([PlanUnit("a")], start_on=YEAR_START, due_on=YEAR_END, batches=0, today=YEAR_START)


@given(n=st.integers(0, 300), k=st.integers(1, 24), scores=st.lists(st.none() | st.floats(0, 100), max_size=300))
def test_plans_are_complete_balanced_ordered_and_deterministic(n, k, scores):
    units = [PlanUnit(f"u{i:03d}", carried_over=i % 7 == 0, last_score=scores[i] if i < len(scores) else None)
             for i in range(n)]
    a = plan_round(units, start_on=YEAR_START, due_on=YEAR_END, batches=k, today=YEAR_START)
    b = plan_round(list(reversed(units)), start_on=YEAR_START, due_on=YEAR_END, batches=k, today=YEAR_START)
    assert a == b
    flat = sum(codes(a), [])
    assert sorted(flat) == sorted(u.code for u in units)
    assert flat == [u.code for u in priority_order(units)]
    sizes = [len(x.units) for x in a]
    assert all(sizes) and (not sizes or max(sizes) - min(sizes) <= 1)
    assert [x.opens_on for x in a] == sorted(x.opens_on for x in a)


def test_added_and_postponed_units_go_to_a_later_unopened_batch():
    batches = [(date(2027, 1, 5), True), (date(2027, 4, 5), False), (date(2027, 7, 4), False)]
    today = date(2027, 3, 1)
    assert later_batch(batches, today=today, not_before=today, due_on=YEAR_END) == (1, date(2027, 4, 5))
    assert later_batch(batches, today=today, not_before=date(2027, 4, 6), due_on=YEAR_END) == (2, date(2027, 7, 4))
    # Nothing later: a new batch on `not_before`, never before today nor after the due date.
    assert later_batch(batches, today=today, not_before=date(2027, 8, 1), due_on=YEAR_END) == (None, date(2027, 8, 1))
    assert later_batch(batches, today=date(2027, 9, 1), not_before=date(2027, 9, 1), due_on=YEAR_END) == (
        None, date(2027, 9, 1))
    assert later_batch(batches, today=today, not_before=date(2028, 2, 1), due_on=YEAR_END) == (None, YEAR_END)


# --- risk thresholds -----------------------------------------------------------------------


def test_units_reaching_any_threshold_are_flagged_with_reasons():
    t = RiskThresholds(complaints=10, lost_lawsuits=2, revoked_decisions=2)
    rows = [UnitIndicators(unit="quiet", complaints=9, lost_lawsuits=1, revoked_decisions=1),
            UnitIndicators(unit="noisy", complaints=10),
            UnitIndicators(unit="court_loser", lost_lawsuits=3, revoked_decisions=2)]
    flags = flag_units(rows, t)
    assert [f.unit for f in flags] == ["court_loser", "noisy"]
    assert flags[0].reasons == ["行政诉讼败诉 3 ≥ 2", "行政复议被撤销 2 ≥ 2"]
    assert flags[1].reasons == ["群众投诉 10 ≥ 10"]


def test_periods_and_windows():
    assert previous_period(date(2027, 3, 5)) == "2027-02"
    assert previous_period(date(2027, 1, 5)) == "2026-12"
    assert window("2027-02", 1) == ("2027-02", "2027-02")
    assert window("2027-02", 3) == ("2026-12", "2027-02")
    assert window("2027-12", 12) == ("2027-01", "2027-12")
