"""Shapes shared by every process: operator actions, history entries, links, notes."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from schemas.codes import AgencyCode

# One reference in a list of an operator's input (evidence file, attachment, problem number).
Ref = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Model(BaseModel):
    """Inputs from operators: unknown fields are refused, strings trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OperatorAction(Model):
    operator: str = Field(min_length=1, max_length=50, description="who acts (姓名或工号)")
    agency: str = Field(min_length=2, max_length=40, description="the agency or unit code they act for")


class Note(Model):
    operator: str = Field(min_length=1, max_length=50)
    text: str = Field(min_length=1, max_length=1000)


class ExtendDeadline(OperatorAction):
    """Only the rule-of-law office (law_office) may extend a deadline."""

    new_due_on: date
    reason: str = Field(min_length=2, max_length=500)


class HistoryEntry(BaseModel):
    at: datetime
    action: str
    operator: str = ""
    agency: str = ""
    note: str = ""


class Link(BaseModel):
    relation: str = Field(description="e.g. escalated_to, escalated_from, special_inspection")
    workflow_id: str


class DeadlineView(BaseModel):
    name: str
    due_on: date
    due_at: datetime
    remind_at: datetime
    escalate_on: date
    escalate_at: datetime
    provisional: bool
    reminded: bool
    overdue: bool
    escalated: bool
    met_at: datetime | None
    extensions: int


LAW_OFFICE = AgencyCode.LAW_OFFICE.value
DISCIPLINE = AgencyCode.DISCIPLINE.value
