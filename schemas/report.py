"""The yearly acceptance report (年度验收报告): every number in it, read from the ledger by
reports/annual.py and rendered by rules/annual_report.py (HTML, CSV, JSON)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field


class MonthCoverage(BaseModel):
    month: str = Field(description="YYYY-MM")
    started: int = Field(description="inspections of the year started in the month")
    completed: int = Field(description="inspections of the year completed (feedback issued) in the month")
    newly_covered: int = Field(description="units whose first completed inspection of the year is in the month")
    covered_to_date: int


class BatchCoverage(BaseModel):
    round_id: str
    batch: int = Field(description="the batch number of the round's plan")
    opens_on: date
    planned: int
    completed: int = Field(description="of the batch's units, covered by a completed routine inspection")
    not_covered: int


class UnitCoverage(BaseModel):
    unit: str
    name: str
    covered: bool
    inspections: int
    completed: int
    kinds: str = Field(description="e.g. routine,special")
    score: float | None = Field(None, description="mean evaluation score of the year")


class ProblemRow(BaseModel):
    problem_no: str
    unit: str
    unit_name: str
    list: str
    category: str
    severity: str
    stage: str
    due_on: date | None
    missed_deadlines: int
    escalated: bool
    reopened: int
    carried_over: int
    required_at: datetime
    accepted: bool = Field(description="ever accepted (验收通过)")
    looked_back: bool = Field(description="a look-back was done or fell due (回头看)")
    closed_at: datetime | None


class CategoryCount(BaseModel):
    category: str
    total: int
    common: int
    individual: int


class UnitRectification(BaseModel):
    unit: str
    name: str
    total: int
    on_time: int
    overdue: int
    escalated: int
    closed: int
    open: int


class FunnelStep(BaseModel):
    step: str
    name: str
    count: int


class ClueDeadlines(BaseModel):
    route: str
    name: str
    clues: int
    met: int
    missed: int
    pending: int = Field(description="not yet due or not yet done, and not missed")


class PartyMisses(BaseModel):
    party: str
    name: str
    missed: int


class ScoreRow(BaseModel):
    rank: int
    unit: str
    name: str
    kind: str
    score: float
    grade: str
    evaluation: float | None
    rectification: float | None
    clues: float | None
    coverage: float | None
    deductions: int
    caps: list[str] = Field(default_factory=list)


class DeductionRow(BaseModel):
    unit: str
    component: str
    rule: str
    points: float
    weighted_points: float
    source_kind: str
    source_id: str
    source_seq: int
    occurred_at: datetime | None
    note: str


class LevelStep(BaseModel):
    chain: str = Field(description="inspection (逐级检查) or acceptance (逐级验收)")
    step: str
    name: str
    done: int
    of: int
    note: str = ""


class Totals(BaseModel):
    units: int = Field(description="enforcement units in the registry (active) or inspected in the year")
    covered: int
    inspections: int
    inspections_completed: int
    problems: int
    common: int
    individual: int
    closed: int
    escalated: int
    clues: int
    clue_deadlines_met: int
    clue_deadlines_missed: int
    assessed: int
    mean_score: float | None


class AnnualReportData(BaseModel):
    year: int
    county: str
    generated_at: datetime
    rubric_version: str | None = None
    totals: Totals
    coverage_by_month: list[MonthCoverage]
    coverage_by_batch: list[BatchCoverage]
    coverage_units: list[UnitCoverage]
    problems: list[ProblemRow]
    problems_by_category: list[CategoryCount]
    rectification_by_unit: list[UnitRectification]
    funnel: list[FunnelStep]
    clue_deadlines: list[ClueDeadlines]
    clue_misses_by_party: list[PartyMisses]
    scores: list[ScoreRow]
    deductions: list[DeductionRow]
    levels: list[LevelStep]
