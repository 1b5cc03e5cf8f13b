"""Report rows read from the ledger (台账) for operators' exports and bulletins."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel


class TimelineEntry(BaseModel):
    at: datetime
    event: str
    actor: str
    agency: str


class ProblemRow(BaseModel):
    problem_no: str
    workflow_id: str
    unit: str
    unit_name: str
    origin_kind: str
    list: str
    category: str
    severity: str
    description: str
    opinion: str
    stage: str
    due_on: date | None
    overdue: bool
    missed_deadlines: int
    escalated: bool
    reopened: int
    carried_over: int
    required_at: datetime
    closed_at: datetime | None
    timeline: list[TimelineEntry] = []
