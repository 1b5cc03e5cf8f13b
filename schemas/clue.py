"""Clue transfer (线索移送, DOMAIN.md §1): start input, operator updates, status."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

from schemas.case_state import CaseState
from schemas.codes import CODE_PATTERN, NUMBER_PATTERN, AgencyCode
from schemas.common import (
    DeadlineView,
    HistoryEntry,
    Link,
    Model,
    OperatorAction,
)


class Route(StrEnum):
    TO_LAW_OFFICE = "to_law_office"  # a: 法院/检察院/司法局 → 依法治县办
    TO_DISCIPLINE = "to_discipline"  # b: 督察中发现 → 纪委监委
    TO_JUSTICE = "to_justice"  # c: 纪委监委 → 司法局 (调查后反馈)


class Channel(StrEnum):
    JUDGMENT_ENFORCEMENT = "judgment_enforcement"  # 判决执行
    PUBLIC_INTEREST_LITIGATION = "public_interest_litigation"  # 公益诉讼
    ADMIN_RECONSIDERATION = "admin_reconsideration"  # 行政复议
    ADMIN_LITIGATION = "admin_litigation"  # 行政应诉
    INSPECTION = "inspection"  # 督察检查
    SUPERVISION_REVIEW = "supervision_review"  # 纪检监察
    OVERDUE_DUTY = "overdue_duty"  # 逾期未履职


class Importance(StrEnum):
    ROUTINE = "routine"  # 一般线索: 每月10日前移送
    IMPORTANT = "important"  # 重要线索: 发现之日起5个工作日内移送


class Stage(StrEnum):
    REGISTERED = "registered"  # 已登记, 待移送
    TRANSFERRED = "transferred"  # 已移送, 待签收
    HANDLING = "handling"  # 已签收, 办理中
    CONCLUDED = "concluded"  # 已办结
    WITHDRAWN = "withdrawn"  # 已撤回


class Outcome(StrEnum):
    SUBSTANTIATED = "substantiated"  # 属实
    PARTLY_SUBSTANTIATED = "partly_substantiated"  # 部分属实
    UNSUBSTANTIATED = "unsubstantiated"  # 不属实
    NO_JURISDICTION = "no_jurisdiction"  # 不属管辖, 已另行处理


OUTCOME_NAMES: dict[Outcome, str] = {
    Outcome.SUBSTANTIATED: "属实",
    Outcome.PARTLY_SUBSTANTIATED: "部分属实",
    Outcome.UNSUBSTANTIATED: "不属实",
    Outcome.NO_JURISDICTION: "不属管辖",
}

ROUTE_TARGET: dict[Route, AgencyCode] = {
    Route.TO_LAW_OFFICE: AgencyCode.LAW_OFFICE,
    Route.TO_DISCIPLINE: AgencyCode.DISCIPLINE,
    Route.TO_JUSTICE: AgencyCode.JUSTICE,
}
ROUTE_SOURCES: dict[Route, frozenset[AgencyCode]] = {
    Route.TO_LAW_OFFICE: frozenset({AgencyCode.COURT, AgencyCode.PROCURATORATE, AgencyCode.JUSTICE}),
    Route.TO_DISCIPLINE: frozenset(
        {AgencyCode.LAW_OFFICE, AgencyCode.JUSTICE, AgencyCode.COORDINATION_GROUP, AgencyCode.TOUR_OFFICE}
    ),
    Route.TO_JUSTICE: frozenset({AgencyCode.DISCIPLINE}),
}
ROUTE_CHANNELS: dict[Route, frozenset[Channel]] = {
    Route.TO_LAW_OFFICE: frozenset(
        {Channel.JUDGMENT_ENFORCEMENT, Channel.PUBLIC_INTEREST_LITIGATION,
         Channel.ADMIN_RECONSIDERATION, Channel.ADMIN_LITIGATION}
    ),
    Route.TO_DISCIPLINE: frozenset({Channel.INSPECTION, Channel.OVERDUE_DUTY}),
    Route.TO_JUSTICE: frozenset({Channel.SUPERVISION_REVIEW}),
}


class ClueTimings(Model):
    """Working-day periods after the transfer deadline (documented in docs/operators.md)."""

    acknowledge_working_days: int = Field(3, ge=1, le=60)
    handling_working_days: int = Field(30, ge=1, le=250)
    remind_working_days_before: int = Field(1, ge=0, le=10)
    grace_working_days: int = Field(5, ge=0, le=30)


class ClueStart(Model):
    clue_no: str = Field(pattern=NUMBER_PATTERN, max_length=40, description="e.g. 2026-0007")
    route: Route
    source: AgencyCode
    channel: Channel
    importance: Importance
    discovered_on: date
    subject_unit: str = Field(pattern=CODE_PATTERN, description="unit (or agency) concerned")
    title: str = Field(min_length=2, max_length=100)
    details: str = Field("", max_length=5000, description="never leaves the ledger and this input")
    reported_by: str = Field(min_length=1, max_length=50)
    timings: ClueTimings = Field(default_factory=ClueTimings)
    resume: dict | None = Field(None, description="set by the workflow itself when it continues as new")
    auto_transfer: bool = Field(False, description="system-opened clues start already transferred")
    escalated_from: str | None = Field(None, max_length=200, description="workflow that missed a duty")

    @model_validator(mode="after")
    def _route_fits(self) -> ClueStart:
        if self.source not in ROUTE_SOURCES[self.route]:
            allowed = ", ".join(sorted(ROUTE_SOURCES[self.route]))
            raise ValueError(
                f"路径 {self.route} 的移送方只能是 {allowed} / source {self.source} does not fit route {self.route}"
            )
        if self.channel not in ROUTE_CHANNELS[self.route]:
            allowed = ", ".join(sorted(ROUTE_CHANNELS[self.route]))
            raise ValueError(
                f"路径 {self.route} 的来源渠道只能是 {allowed} / channel {self.channel} does not fit route {self.route}"
            )
        return self

    @property
    def target(self) -> AgencyCode:
        return ROUTE_TARGET[self.route]


class Transfer(OperatorAction):
    note: str = Field("", max_length=500)


class Acknowledge(OperatorAction):
    note: str = Field("", max_length=500)


class ReportResult(OperatorAction):
    outcome: Outcome
    summary: str = Field(min_length=2, max_length=2000)
    open_special_inspection: bool = False


class Withdraw(OperatorAction):
    reason: str = Field(min_length=2, max_length=500)


class ClueStatus(BaseModel):
    clue_no: str
    route: Route
    source: str
    target: str
    subject_unit: str
    importance: Importance
    title: str
    stage: Stage
    responsible: str | None
    light: str
    deadlines: list[DeadlineView]
    history: list[HistoryEntry]
    history_total: int = Field(0, description="all entries; `history` holds the latest 100, the ledger all")
    links: list[Link]
    notes: int
    outcome: Outcome | None = None
    special_inspection_requested: bool = False


class ClueResult(BaseModel):
    clue_no: str
    stage: Stage
    outcome: Outcome | None
    escalations: int
    links: list[Link]


class ClueState(CaseState):
    """What a ClueTransfer carries (workflows/clue_transfer.py)."""

    stage: Stage = Stage.REGISTERED
    outcome: ReportResult | None = None
    escalations: int = 0
    missed: int = 0
