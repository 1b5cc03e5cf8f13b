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
    """One unit's place in the round as rounds before the compact state carried it (`RoundState`
    with `units: {code: UnitSlot}`): still read when such a run continues as new into this code."""

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


class UnitTable(BaseModel):
    """Every unit of the round as columns, in plan order: unit i has priority i (rules/round_units.py).
    About 20 bytes a unit in the continue-as-new input, where a UnitSlot per unit took about 210."""

    codes: list[str]
    batch: list[int] = Field(description="batch index of each unit")
    status: str = Field(pattern=r"^[piocf]*$",
                        description="one letter a unit: p planned, i in progress, o in progress and overdue, "
                                    "c completed, f failed")
    attempts: list[int] = Field(description="inspections started for each unit (its workflow id follows)")
    postponed: dict[int, str] = Field(default_factory=dict, description="unit index: reason")
    added: list[int] = Field(default_factory=list, description="units added mid-year")
    carried_over: dict[int, int] = Field(default_factory=dict)
    last_score: dict[int, float] = Field(default_factory=dict)
    focus: dict[int, list[str]] = Field(default_factory=dict, description="carried-over problem numbers")

    @model_validator(mode="after")
    def _consistent(self) -> UnitTable:
        n = len(self.codes)
        if not len(self.batch) == len(self.status) == len(self.attempts) == n:
            raise ValueError(f"单位数据列长度不一致 / unit columns differ in length ({n} codes)")
        if len(set(self.codes)) != n:
            raise ValueError("单位代码重复 / duplicate unit codes")
        if any(a < 0 for a in self.attempts) or any(b < 0 for b in self.batch):
            raise ValueError("批次和督察次数不能为负 / batch and attempts must not be negative")
        for name in ("postponed", "added", "carried_over", "last_score", "focus"):
            if any(not 0 <= i < n for i in getattr(self, name)):
                raise ValueError(f"{name} 指向不存在的单位 / {name} names a unit index out of range")
        return self


class RoundState(BaseModel):
    """Everything the round knows; the input of the next run after continue-as-new.

    While a run goes on the round keeps its units in rules.round_units.RoundUnits and writes them
    back to `table` and `queue` when it continues as new. The state of a run started before the
    compact format (`units` as {code: UnitSlot}, `queue` of codes, `gap_units`) is read as well and
    converted (`from_slots`)."""

    year: int
    start_on: date
    due_on: date
    max_parallel: int
    batches: list[BatchSlot]
    table: UnitTable
    queue: list[int] = Field(default_factory=list, description="opened, waiting for a free slot (unit indexes)")
    paused: bool = False
    pause_reason: str = ""
    seq: int = 0
    gap_escalated: bool = False
    gap_count: int = Field(0, description="units not covered at the due date (the ledger lists them)")
    runs: int = 1
    started: int = 0
    next_reconcile_at: datetime | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    planned_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _older_format(cls, data):
        if isinstance(data, dict) and "table" not in data and isinstance(data.get("units"), dict):
            return from_slots(data)
        return data

    @model_validator(mode="after")
    def _indexes(self) -> RoundState:
        if any(b >= len(self.batches) for b in self.table.batch):
            raise ValueError("单位所在批次不存在 / a unit's batch does not exist")
        if any(not 0 <= i < len(self.table.codes) for i in self.queue):
            raise ValueError("待督察队列指向不存在的单位 / the queue names a unit index out of range")
        return self


def from_slots(data: dict) -> dict:
    """A state in the format before the compact one, converted: units in priority order (ties by
    code), the queue and postponements by unit index, workflow ids derived from the attempts
    (they always were `inspection-{year}-routine-{code}`, then `-2`, `-3`…)."""
    slots = {code: UnitSlot.model_validate(v) for code, v in data["units"].items()}
    order = sorted(slots, key=lambda c: (slots[c].priority, c))
    where = {code: i for i, code in enumerate(order)}
    letters = {UnitStatus.PLANNED: "p", UnitStatus.IN_PROGRESS: "i", UnitStatus.COMPLETED: "c",
               UnitStatus.FAILED: "f"}
    rows = [slots[c] for c in order]
    table = {
        "codes": order,
        "batch": [u.batch for u in rows],
        "status": "".join("o" if u.status is UnitStatus.IN_PROGRESS and u.overdue else letters[u.status]
                          for u in rows),
        "attempts": [u.attempts for u in rows],
        "postponed": {i: u.postponed for i, u in enumerate(rows) if u.postponed},
        "added": [i for i, u in enumerate(rows) if u.added],
        "carried_over": {i: u.carried_over for i, u in enumerate(rows) if u.carried_over},
        "last_score": {i: u.last_score for i, u in enumerate(rows) if u.last_score is not None},
        "focus": {i: u.focus for i, u in enumerate(rows) if u.focus and u.status is not UnitStatus.COMPLETED},
    }
    out = {k: v for k, v in data.items() if k not in ("units", "queue", "gap_units")}
    out["table"] = table
    out["queue"] = [where[c] for c in data.get("queue", []) if c in where]
    out["gap_count"] = len(data.get("gap_units", []))
    return out


class RoundStart(Model):
    year: int | None = Field(None, ge=2000, le=2100,
                             description="null: the year of the scheduled start time (Asia/Shanghai)")
    start_on: date | None = Field(None, description="first batch opens (default: Jan 1 or today, the later)")
    due_on: date | None = Field(None, description="every unit covered by then (default Dec 31)")
    batches: int = Field(4, ge=1, le=24)
    max_parallel: int = Field(100, ge=1, le=500, description="unit inspections in flight at most")
    state: RoundState | None = Field(None, description="internal: carried across continue-as-new (either format)")

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
