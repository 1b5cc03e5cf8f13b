"""schemas/ids.py: the workflow IDs of the contract (DESIGN.md §4) as operators see them, and
every ID parses back to what built it."""

from __future__ import annotations

import pytest

from rules.round_units import workflow_id as round_unit_id
from schemas import ids


def test_the_ids_of_the_contract():
    assert ids.clue("2026-0007") == "clue-2026-0007"
    assert ids.rectification("2026-R-transport-1") == "rectification-2026-R-transport-1"
    assert ids.inspection(2026, "routine", "transport") == "inspection-2026-routine-transport"
    assert ids.annual_round(2027) == "annual-inspection-2027"
    assert ids.annual_assessment(2026) == "annual-assessment-2026"
    assert ids.escalation("clue-2026-0007", 2) == "clue-2026-0007-esc2"
    assert ids.callback_delivery("clue-2026-0007.3", "court") == "callback-clue-2026-0007.3-court"


@pytest.mark.parametrize("n, suffix", [(None, ""), (0, ""), (1, ""), (2, "-2"), (17, "-17")])
def test_an_inspection_after_the_first_of_its_kind_in_a_year_gets_a_suffix(n, suffix):
    assert ids.inspection(2026, "special", "market_regulation", n) == f"inspection-2026-special-market_regulation{suffix}"


@pytest.mark.parametrize("kind", ["routine", "special", "joint"])
@pytest.mark.parametrize("unit", ["transport", "town_xinhe", "market_regulation"])
@pytest.mark.parametrize("n", [1, 2, 10])
def test_an_inspection_id_parses_back(kind, unit, n):
    parsed = ids.parse_inspection(ids.inspection(2031, kind, unit, n))
    assert parsed == ids.InspectionId(2031, kind, unit if n == 1 else f"{unit}-{n}")
    assert ids.kind_of(ids.inspection(2031, kind, unit, n)) == "inspection"


def test_an_id_that_is_not_an_inspection_does_not_parse_as_one():
    for wid in ("inspection-26-routine-transport", "inspection-2026-annual-transport", "inspection-2026-routine-",
                "annual-inspection-2026", "clue-inspection-2026-routine-transport"):
        assert ids.parse_inspection(wid) is None, wid


def test_the_round_names_its_units_inspections_through_ids():
    assert round_unit_id(2027, "transport", 0) is None
    assert [round_unit_id(2027, "transport", a) for a in (1, 2, 3)] == [
        ids.inspection(2027, "routine", "transport", a) for a in (1, 2, 3)]
    assert ids.parse_inspection(round_unit_id(2027, "transport", 3)).unit_and_suffix == "transport-3"


@pytest.mark.parametrize("case_id", [ids.clue("2026-0007"), ids.rectification("2026-R-transport-1"),
                                     ids.inspection(2026, "joint", "natural_resources", 2)])
@pytest.mark.parametrize("n", [1, 2, 12])
def test_an_escalation_names_the_case_it_came_from(case_id, n):
    wid = ids.escalation(case_id, n)
    assert ids.parse_escalation(wid) == ids.Escalation(case_id, n)
    assert ids.kind_of(wid) == "clue", "an escalation is always a new overdue-duty clue"


def test_an_escalation_of_an_escalation_names_its_direct_parent():
    first = ids.escalation(ids.clue("2026-0007"), 1)
    second = ids.escalation(first, 3)
    assert second == "clue-2026-0007-esc1-esc3"
    assert ids.parse_escalation(second) == ids.Escalation(first, 3)
    assert ids.parse_escalation(ids.parse_escalation(second).parent) == ids.Escalation(ids.clue("2026-0007"), 1)


@pytest.mark.parametrize("wid", ["clue-2026-0007", "clue-2026-0007-esc0", "clue-2026-0007-esc", "clue-esc-1",
                                 "clue-2026-0007-esc01", "rectification-P1-escalated"])
def test_only_a_numbered_suffix_is_an_escalation(wid):
    assert ids.parse_escalation(wid) is None


@pytest.mark.parametrize(("wid", "kind"), [
    (ids.clue("T1"), "clue"),
    (ids.rectification("P1"), "rectification"),
    (ids.inspection(2026, "special", "health"), "inspection"),
    (ids.annual_round(2026), "round"),
    (ids.annual_assessment(2026), "assessment"),
    (ids.callback_delivery("rectification-P1.2", "law_office"), "callback"),
    ("digest-1bd012", None),
    ("risk-scan-t75dcbd", None),
])
def test_kind_of_reads_every_builder(wid, kind):
    assert ids.kind_of(wid) == kind
