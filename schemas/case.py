"""What one step of a case (clue, rectification, unit inspection) writes: the input of the
`cases.step` activity, recorded in ONE PostgreSQL transaction (ledger snapshot, chained ledger
events, the authorization decision, the callback outbox rows), then delivered from the outbox.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from schemas.events import PublishEvent
from schemas.inspection import EvaluationRow, FindingRow, InspectionSnapshot, MethodRow
from schemas.ledger import ClueSnapshot, LedgerEvent, ProblemText, RectificationSnapshot
from schemas.registry import AuthorizeInput, OperatorGrant


class CaseKind(StrEnum):
    CLUE = "clue"
    RECTIFICATION = "rectification"
    INSPECTION = "inspection"


class StepRecord(BaseModel):
    """One step: exactly one snapshot (the one of `kind`), its events, and what goes with them."""

    kind: CaseKind
    events: list[LedgerEvent] = Field(min_length=1, description="usually one; a batch of notes is several")
    authorization: AuthorizeInput | None = Field(None, description="the operator action being recorded")
    notify: PublishEvent | None = Field(None, description="written to the outbox with the step")
    clue: ClueSnapshot | None = None
    rectification: RectificationSnapshot | None = None
    inspection: InspectionSnapshot | None = None
    # written once, with the registration / first event
    details: str | None = None
    text: ProblemText | None = None
    # unit inspection records
    method: MethodRow | None = None
    findings: list[FindingRow] = Field(default_factory=list)
    evaluation: EvaluationRow | None = None
    # the case's parties: their operators come back with the result (the workflow's registry copy)
    parties: list[str] = Field(default_factory=list)


class StepResult(BaseModel):
    recorded: bool = Field(description="false when an earlier attempt had recorded it already")
    queued: list[str] = Field(default_factory=list, description="recipients whose delivery started")
    skipped: list[str] = Field(default_factory=list, description="recipients with no enabled endpoint")
    operators: dict[str, OperatorGrant] | None = Field(None, description="of the record's parties, now")
