"""Working-day calendar shapes: deadline plans computed by the `calendar.plan_deadline` activity."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field, model_validator


class DeadlineRequest(BaseModel):
    """Exactly one of working_days, monthly or due_on says how the due date is found."""

    start: date = Field(description="day counting starts from (discovery, transfer, ...)")
    working_days: int | None = Field(None, ge=0, le=366)
    monthly: bool = Field(False, description="the 10th of the month after `start`")
    due_on: date | None = Field(None, description="an explicit date (statutory-period rule applied)")
    remind_working_days_before: int = Field(1, ge=0, le=30)
    grace_working_days: int = Field(5, ge=0, le=60)

    @model_validator(mode="after")
    def _one_rule(self) -> DeadlineRequest:
        given = [self.working_days is not None, self.monthly, self.due_on is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of working_days, monthly, due_on")
        return self


class DeadlinePlan(BaseModel):
    """A deadline with its reminder and escalation instants (all timezone-aware)."""

    due_on: date = Field(description="last day, inclusive")
    due_at: datetime = Field(description="end of due_on in Asia/Shanghai (next day 00:00)")
    remind_at: datetime = Field(description="09:00 on the working day N working days before due_on")
    escalate_on: date = Field(description="due_on + grace working days")
    escalate_at: datetime
    provisional: bool = Field(description="a year involved has no official schedule loaded")
    provisional_years: list[int] = Field(default_factory=list)


class DeadlineState(BaseModel):
    """One deadline of a case: its plan and which of its steps (rules/deadline_steps.py) were taken."""

    name: str
    plan: DeadlinePlan
    request: DeadlineRequest | None = None  # kept so the plan can be recomputed
    reminded: bool = False
    overdue: bool = False
    escalated: bool = False
    met_at: datetime | None = None
    extensions: int = 0

    @property
    def open(self) -> bool:
        return self.met_at is None
