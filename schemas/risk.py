"""Risk scan (专项督察 triggers, DOMAIN.md §4): indicator rows, thresholds, the scan's input and result."""

from __future__ import annotations

from pydantic import BaseModel, Field

from schemas.codes import CODE_PATTERN
from schemas.common import Link, Model

PERIOD_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"


class IndicatorRow(Model):
    """One line of the CSV read by `ducha indicators load` (docs/operators.md)."""

    unit: str = Field(pattern=CODE_PATTERN)
    period: str = Field(pattern=PERIOD_PATTERN, description="YYYY-MM")
    complaints: int = Field(ge=0, description="群众投诉件数")
    lost_lawsuits: int = Field(ge=0, description="行政诉讼败诉件数")
    revoked_decisions: int = Field(ge=0, description="行政复议被撤销/纠错件数")


class RiskThresholds(Model):
    """A unit is flagged when any count in the window reaches its threshold."""

    complaints: int = Field(20, ge=1)
    lost_lawsuits: int = Field(3, ge=1)
    revoked_decisions: int = Field(3, ge=1)


class RiskScanStart(Model):
    period: str | None = Field(
        None, pattern=PERIOD_PATTERN,
        description="YYYY-MM, the last month of the window; null: the month before the scan runs",
    )
    window_months: int = Field(1, ge=1, le=12, description="months summed, ending with `period`")
    thresholds: RiskThresholds = Field(default_factory=RiskThresholds)
    max_starts: int = Field(50, ge=1, le=200, description="at most this many inspections per scan")


class IndicatorQuery(BaseModel):
    first_period: str
    last_period: str


class UnitIndicators(BaseModel):
    unit: str
    complaints: int = 0
    lost_lawsuits: int = 0
    revoked_decisions: int = 0
    periods: int = 1


class IndicatorRows(BaseModel):
    rows: list[UnitIndicators]


class RiskFlag(BaseModel):
    unit: str
    reasons: list[str]


class RiskScanResult(BaseModel):
    period: str
    first_period: str
    units_with_data: int
    flagged: list[RiskFlag]
    started: list[Link] = Field(default_factory=list, description="special inspections started")
    already_open: list[Link] = Field(default_factory=list, description="an open one was found: not started twice")
    not_started: list[str] = Field(default_factory=list, description="over max_starts: for the next scan")
