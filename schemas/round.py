"""The yearly full-coverage round (平时督察, DOMAIN.md §2): input, operator updates, coverage."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

from schemas.codes import CODE_PATTERN
from schemas.common import HistoryEntry, Model, OperatorAction
from schemas.ledger import LedgerEvent

ROUND_MANAGERS = ("law_office", "coordination_group")


class RoundStage(StrEnum):
    RUNNING = "running"  # 进行中
    PAUSED = "paused"  # 已暂停
    CLOSING = "closing"  # 已过截止日期, 收尾
    COMPLETED = "completed"  # 已完成


class UnitStatus(StrEnum):
    PLANNED = "planned"  # 待督察 (its batch has not opened, or it waits for a free slot)
    IN_PROGRESS = "in_progress"  # 督察中
    COMPLETED = "completed"  # 已覆盖
    FAILED = "failed"  # 督察流程异常终止 (not covered; add_unit starts it again)


class UnitSlot(BaseModel):
    """One unit's place in the round (internal state, carried across continue-as-new)."""

    batch: int
    priority: int
    status: UnitStatus = UnitStatus.PLANNED
    workflow_id: str | None = None
    attempts: int = 0
    carried_over: int = 0
    last_score: float | None = None
    level: str = "county"
    focus: list[str] = Field(default_factory=list)
    overdue: bool = False
    postponed: str = ""
    added: bool = False


class BatchSlot(BaseModel):
    number: int
    opens_on: date
    opened: bool = False


class RoundState(BaseModel):
    """Everything the round knows; the input of the next run after continue-as-new."""

    year: int
    start_on: date
    due_on: date
    max_parallel: int
    batches: list[BatchSlot]
    units: dict[str, UnitSlot]
    queue: list[str] = Field(default_factory=list, description="opened, waiting for a free slot")
    paused: bool = False
    pause_reason: str = ""
    seq: int = 0
    gap_escalated: bool = False
    gap_units: list[str] = Field(default_factory=list)
    runs: int = 1
    started: int = 0
    next_reconcile_at: datetime | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    planned_at: datetime


class RoundStart(Model):
    year: int | None = Field(None, ge=2000, le=2100,
                             description="null: the year of the scheduled start time (Asia/Shanghai)")
    start_on: date | None = Field(None, description="first batch opens (default: Jan 1 or today, the later)")
    due_on: date | None = Field(None, description="every unit covered by then (default Dec 31)")
    batches: int = Field(4, ge=1, le=24)
    max_parallel: int = Field(100, ge=1, le=500, description="unit inspections in flight at most")
    state: RoundState | None = Field(None, description="internal: carried across continue-as-new")

    @model_validator(mode="after")
    def _dates(self) -> RoundStart:
        if self.year is not None:
            for name in ("start_on", "due_on"):
                value = getattr(self, name)
                if value is not None and value.year != self.year:
                    raise ValueError(f"{name} {value} 不在 {self.year} 年 / {name} is not in year {self.year}")
        if self.start_on and self.due_on and self.due_on < self.start_on:
            raise ValueError("due_on 早于 start_on / due_on is before start_on")
        return self


class AddUnit(OperatorAction):
    unit: str = Field(pattern=CODE_PATTERN)
    note: str = Field("", max_length=500)


class PostponeUnit(OperatorAction):
    unit: str = Field(pattern=CODE_PATTERN)
    reason: str = Field(min_length=2, max_length=500)
    until: date | None = Field(None, description="not before this day (default: the next batch)")


class PauseRound(OperatorAction):
    reason: str = Field(min_length=2, max_length=500)


class ResumeRound(OperatorAction):
    note: str = Field("", max_length=500)


class BatchCoverage(BaseModel):
    number: int
    opens_on: date
    opened: bool
    total: int
    planned: int
    in_progress: int
    completed: int
    overdue: int
    failed: int


class Coverage(BaseModel):
    year: int
    stage: RoundStage
    paused: bool
    start_on: date
    due_on: date
    max_parallel: int
    total: int
    planned: int
    in_progress: int
    completed: int
    overdue: int
    failed: int
    not_covered: int
    postponed: int
    added: int
    batches: list[BatchCoverage]
    gap_escalated: bool
    not_covered_units: list[str] = Field(description="first 200, in plan order")
    runs: int
    history: list[HistoryEntry]


class RoundResult(BaseModel):
    workflow_id: str
    year: int
    total: int = 0
    completed: int = 0
    not_covered: list[str] = Field(default_factory=list)
    runs: int = 1
    launched: str | None = Field(None, description="started by the schedule: the round it started")
    already_running: bool = Field(False, description="the year's round had been started already (running or finished)")


# --- activities -----------------------------------------------------------------------------


class RoundInputsQuery(BaseModel):
    year: int


class PlanUnitRow(BaseModel):
    code: str
    level: str = "county"
    carried_over: int = 0
    last_score: float | None = None
    focus: list[str] = Field(default_factory=list)


class RoundInputs(BaseModel):
    units: list[PlanUnitRow]


class RoundSnapshot(BaseModel):
    round_id: str
    year: int
    stage: str
    start_on: date
    due_on: date
    batches: int
    max_parallel: int
    total: int
    planned: int
    in_progress: int
    completed: int
    overdue: int
    failed: int
    not_covered: int
    paused: bool
    gap_escalated: bool
    runs: int
    planned_at: datetime
    closed_at: datetime | None


class RoundUnitRow(BaseModel):
    unit: str
    batch: int
    opens_on: date
    priority: int
    carried_over: int
    last_score: float | None
    postponed: str = ""
    added: bool = False


class RecordRound(BaseModel):
    snapshot: RoundSnapshot
    event: LedgerEvent | None = None
    units: list[RoundUnitRow] = Field(default_factory=list, description="plan rows, new or moved")
