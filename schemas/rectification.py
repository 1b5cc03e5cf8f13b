"""Rectification (督察督办: 通报+整改, 回头看, 销号; DOMAIN.md §6): one workflow per problem."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

from schemas.case_state import CaseState
from schemas.codes import CODE_PATTERN, NUMBER_PATTERN
from schemas.common import DeadlineView, HistoryEntry, Link, Model, OperatorAction, Ref


class OriginKind(StrEnum):
    INSPECTION = "inspection"  # 督察发现
    CLUE = "clue"  # 线索
    TOUR = "tour"  # 巡察
    JUDICIAL_RECOMMENDATION = "judicial_recommendation"  # 司法建议
    PROCURATORIAL_RECOMMENDATION = "procuratorial_recommendation"  # 检察建议
    RECONSIDERATION_DECISION = "reconsideration_decision"  # 行政复议决定
    MANUAL = "manual"


class ProblemList(StrEnum):
    COMMON = "common"  # 共性问题清单
    INDIVIDUAL = "individual"  # 个性问题清单


class Severity(StrEnum):
    GENERAL = "general"  # 一般
    SERIOUS = "serious"  # 严重


class Stage(StrEnum):
    RECTIFYING = "rectifying"  # 整改中
    REPORTED = "reported"  # 已报告, 待验收
    ACCEPTED = "accepted"  # 已验收, 等待回头看
    LOOKBACK = "lookback"  # 回头看
    CLOSED = "closed"  # 已销号


class Origin(Model):
    kind: OriginKind
    ref: str = Field("", max_length=200, description="workflow id or document number")


class RectificationTimings(Model):
    remind_working_days_before: int = Field(3, ge=0, le=20)
    grace_working_days: int = Field(5, ge=0, le=30)
    reopen_working_days: int = Field(20, ge=1, le=250, description="new deadline after a reject/fail")
    max_extensions: int = Field(2, ge=0, le=10)


class RectificationStart(Model):
    problem_no: str = Field(pattern=NUMBER_PATTERN, max_length=40)
    unit: str = Field(pattern=CODE_PATTERN)
    origin: Origin
    list: ProblemList
    category: str = Field(min_length=1, max_length=50, description="e.g. 执法程序, 文书规范")
    description: str = Field(min_length=2, max_length=5000)
    basis: str = Field("", max_length=1000, description="legal basis 依据")
    opinion: str = Field(min_length=2, max_length=2000, description="rectification opinion 整改意见")
    due_on: date | None = None
    due_in_working_days: int | None = Field(None, ge=1, le=250)
    lookback_after_days: int = Field(90, ge=1, le=730)
    severity: Severity = Severity.GENERAL
    issued_by: str = Field(min_length=1, max_length=50)
    timings: RectificationTimings = Field(default_factory=RectificationTimings)
    resume: dict | None = Field(None, description="set by the workflow itself when it continues as new")

    @model_validator(mode="after")
    def _one_deadline(self) -> RectificationStart:
        if (self.due_on is None) == (self.due_in_working_days is None):
            raise ValueError("须且只须给出 due_on 或 due_in_working_days 之一 / "
                             "give exactly one of due_on, due_in_working_days")
        return self


class SubmitReport(OperatorAction):
    measures: str = Field(min_length=2, max_length=5000, description="整改措施")
    evidence: list[Ref] = Field(default_factory=list, max_length=50, description="evidence references (≤ 200 characters each)")


class Review(OperatorAction):
    decision: str = Field(pattern=r"^(accept|reject)$")
    reason: str = Field("", max_length=1000)
    new_due_on: date | None = Field(None, description="with reject: the new deadline (default +20 working days)")

    @model_validator(mode="after")
    def _reason_on_reject(self) -> Review:
        if self.decision == "reject" and len(self.reason) < 2:
            raise ValueError("驳回须说明理由 / a reject needs a reason")
        return self


class RecordLookback(OperatorAction):
    result: str = Field(pattern=r"^(pass|fail)$")
    findings: str = Field(min_length=2, max_length=5000)
    new_due_on: date | None = Field(None, description="with fail: the new deadline")


class RectificationStatus(BaseModel):
    problem_no: str
    unit: str
    origin: Origin
    list: ProblemList
    category: str
    severity: Severity
    stage: Stage
    responsible: str | None
    light: str
    deadlines: list[DeadlineView]
    lookback_due_at: str | None
    reopened: int
    escalated: bool
    carried_over: int
    history: list[HistoryEntry]
    notes: int = Field(0, description="free notes received (add_note)")
    history_total: int = Field(0, description="all entries; `history` holds the latest 100, the ledger all")
    links: list[Link]


class RectificationResult(BaseModel):
    problem_no: str
    stage: Stage
    reopened: int
    escalated: bool
    carried_over: int
    links: list[Link]


class RectificationState(CaseState):
    """What a Rectification carries (workflows/rectification.py)."""

    stage: Stage = Stage.RECTIFYING
    missed: int = 0
    reopened: int = 0
    extensions: int = 0
    escalated: bool = False
    carried_over: int = 0
    lookback_due_at: datetime | None = None
