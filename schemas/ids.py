"""Workflow IDs of the operator contract (DESIGN.md §4), built and parsed in one place.

    clue-{clue_no}                          ClueTransfer
    rectification-{problem_no}              Rectification
    inspection-{year}-{kind}-{unit}[-{n}]   UnitInspection (kind: routine / special / joint)
    annual-inspection-{year}                AnnualInspectionRound
    annual-assessment-{year}                AnnualAssessment
    {case id}-esc{n}                        the n-th overdue-duty clue a case escalated
    callback-{event_id}-{recipient}         CallbackDelivery (retries of one delivery)

Operators may type other IDs in the Web UI; nothing relies on a case's ID having this shape
except the conveniences that `parse` serves (CLI look-ups, reports).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CLUE = "clue-"
RECTIFICATION = "rectification-"
INSPECTION = "inspection-"
ANNUAL_ROUND = "annual-inspection-"
ANNUAL_ASSESSMENT = "annual-assessment-"
CALLBACK = "callback-"

_ESCALATION = re.compile(r"^(?P<parent>.+)-esc(?P<n>[1-9][0-9]*)$")
_INSPECTION = re.compile(r"^inspection-(?P<year>[0-9]{4})-(?P<kind>routine|special|joint)-(?P<rest>.+)$")


def clue(clue_no: str) -> str:
    return f"{CLUE}{clue_no}"


def rectification(problem_no: str) -> str:
    return f"{RECTIFICATION}{problem_no}"


def inspection(year: int, kind: str, unit: str, n: int | None = None) -> str:
    """The n-th (n ≥ 2) inspection of the same kind of a unit in a year gets a suffix."""
    base = f"{INSPECTION}{year}-{kind}-{unit}"
    return base if n is None or n <= 1 else f"{base}-{n}"


def annual_round(year: int) -> str:
    return f"{ANNUAL_ROUND}{year}"


def annual_assessment(year: int) -> str:
    return f"{ANNUAL_ASSESSMENT}{year}"


def escalation(case_id: str, n: int) -> str:
    return f"{case_id}-esc{n}"


def callback_delivery(event_id: str, recipient: str) -> str:
    return f"{CALLBACK}{event_id}-{recipient}"


@dataclass(frozen=True)
class Escalation:
    parent: str
    n: int


def parse_escalation(workflow_id: str) -> Escalation | None:
    """`clue-C1-esc2` → Escalation("clue-C1", 2); None for any other ID."""
    m = _ESCALATION.match(workflow_id)
    return Escalation(m["parent"], int(m["n"])) if m else None


@dataclass(frozen=True)
class InspectionId:
    year: int
    kind: str
    unit_and_suffix: str  # the unit code, possibly followed by "-{n}"


def parse_inspection(workflow_id: str) -> InspectionId | None:
    m = _INSPECTION.match(workflow_id)
    return InspectionId(int(m["year"]), m["kind"], m["rest"]) if m else None


def kind_of(workflow_id: str) -> str | None:
    """The case kind an ID of the contract names (clue / rectification / inspection / round)."""
    if parse_escalation(workflow_id) is not None:
        return "clue"  # an escalation is always a new overdue-duty clue
    for prefix, kind in ((ANNUAL_ROUND, "round"), (CLUE, "clue"), (RECTIFICATION, "rectification"),
                         (INSPECTION, "inspection"), (ANNUAL_ASSESSMENT, "assessment"),
                         (CALLBACK, "callback")):
        if workflow_id.startswith(prefix):
            return kind
    return None
