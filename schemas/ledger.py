"""What workflows write to the ledger (台账) through activities."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field


class LedgerEvent(BaseModel):
    seq: int = Field(ge=0, description="the workflow's own action counter: the idempotency key")
    event: str
    actor: str = ""
    agency: str = ""
    occurred_at: datetime
    data: dict[str, Any] = Field(default_factory=dict)


class ClueSnapshot(BaseModel):
    clue_no: str
    workflow_id: str
    year: int
    route: str
    source: str
    target: str
    channel: str
    importance: str
    subject_unit: str
    title: str
    discovered_on: date
    stage: str
    responsible: str | None
    due_on: date | None
    due_at: datetime | None
    provisional: bool
    overdue: bool
    missed_deadlines: int
    escalations: int
    light: str
    outcome: str | None
    special_inspection_requested: bool
    escalated_from: str | None
    registered_at: datetime
    transferred_at: datetime | None
    acknowledged_at: datetime | None
    closed_at: datetime | None


class RecordClue(BaseModel):
    snapshot: ClueSnapshot
    event: LedgerEvent
    details: str | None = Field(None, description="written once, with the registration event")


class RectificationSnapshot(BaseModel):
    problem_no: str
    workflow_id: str
    year: int
    unit: str
    origin_kind: str
    origin_ref: str
    list: str
    category: str
    severity: str
    issued_by: str
    stage: str
    responsible: str | None
    due_on: date | None
    due_at: datetime | None
    provisional: bool
    overdue: bool
    missed_deadlines: int
    escalated: bool
    extensions: int
    reopened: int
    carried_over: int
    light: str
    required_at: datetime
    reported_at: datetime | None
    accepted_at: datetime | None
    lookback_due_at: datetime | None
    closed_at: datetime | None


class ProblemText(BaseModel):
    description: str
    basis: str
    opinion: str


class RecordRectification(BaseModel):
    snapshot: RectificationSnapshot
    event: LedgerEvent
    text: ProblemText | None = Field(None, description="written once, with the first event")
