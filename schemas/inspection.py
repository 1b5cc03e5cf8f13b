"""Unit inspection (督察, DOMAIN.md §2-§5): one unit's routine, special or joint inspection.

The inspection chain (§3(1)2): department self-inspection (部门自查) → joint inspection (联动检查:
methods and findings) → key evaluation (重点评估) → problem feedback (问题反馈: one rectification
per finding, a clue to the discipline commission per suspected misconduct).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

from schemas.case_state import CaseState
from schemas.codes import CODE_PATTERN, AgencyCode
from schemas.common import DeadlineView, HistoryEntry, Link, Model, OperatorAction, Ref
from schemas.ledger import LedgerEvent
from schemas.rectification import ProblemList, Severity


class Kind(StrEnum):
    ROUTINE = "routine"  # 平时督察 (the yearly round)
    SPECIAL = "special"  # 专项督察
    JOINT = "joint"  # 同步督察 / 联合检查 (with 纪委监委 or 巡察办)


class TriggerType(StrEnum):
    ANNUAL = "annual"  # the yearly round (ref: the round's workflow id)
    CLUE = "clue"  # a route-a clue outcome (ref: the clue's workflow id)
    INDICATOR = "indicator"  # risk scan (ref: the scan's workflow id)
    REFUSAL = "refusal"  # refusal to rectify (ref: the rectification's workflow id)
    REQUEST = "request"  # by hand / on request (e.g. 纪委监委 asks for a joint check)
    TOUR = "tour"  # an inspection tour (巡察) of tour_office


class Area(StrEnum):
    ENTERPRISE_SERVICES = "enterprise_services"  # 涉企服务
    ADMIN_APPROVAL = "admin_approval"  # 行政审批
    ADMIN_ENFORCEMENT = "admin_enforcement"  # 行政执法


class Method(StrEnum):
    HEAR_REPORT = "hear_report"  # 听取汇报
    REVIEW_CASE_FILES = "review_case_files"  # 评查案卷
    ONSITE_CHECK = "onsite_check"  # 现场检查
    RANDOM_TEST = "random_test"  # 随机抽考
    VISIT_PUBLIC = "visit_public"  # 访问群众


class Stage(StrEnum):
    SELF_INSPECTION = "self_inspection"  # 部门自查
    JOINT_INSPECTION = "joint_inspection"  # 联动检查
    EVALUATION = "evaluation"  # 重点评估 (evaluated; feedback next)
    COMPLETED = "completed"  # 问题已反馈


class Grade(StrEnum):
    EXCELLENT = "excellent"  # 优秀
    GOOD = "good"  # 良好
    PASS = "pass"  # 合格
    FAIL = "fail"  # 不合格


JOINT_LEADS = frozenset({AgencyCode.DISCIPLINE, AgencyCode.TOUR_OFFICE})
TEAM_LEADS = frozenset({AgencyCode.LAW_OFFICE, AgencyCode.COORDINATION_GROUP, AgencyCode.JUSTICE})
# Who may act for the inspection team (督察组), besides the inspection's own lead agency.
INSPECTION_TEAM = ("law_office", "coordination_group", "justice")
MAX_FINDINGS = 200
MAX_METHODS = 200


class Trigger(Model):
    type: TriggerType
    ref: str = Field("", max_length=200, description="workflow id or document number")


class InspectionTimings(Model):
    self_inspection_working_days: int = Field(10, ge=1, le=120, description="部门自查期限")
    team_working_days: int = Field(40, ge=1, le=250, description="督察组完成期限 (start → feedback)")
    remind_working_days_before: int = Field(2, ge=0, le=20)
    grace_working_days: int = Field(5, ge=0, le=30)
    rectification_working_days: int = Field(30, ge=1, le=250, description="default 整改时限")


class UnitInspectionStart(Model):
    unit: str = Field(pattern=CODE_PATTERN)
    year: int = Field(ge=2000, le=2100)
    kind: Kind
    lead: AgencyCode
    trigger: Trigger
    areas: list[Area] = Field(default_factory=lambda: list(Area), min_length=1, max_length=len(Area))
    focus: list[Ref] = Field(default_factory=list, max_length=200,
                             description="carried-over problem numbers to look at first")
    timings: InspectionTimings = Field(default_factory=InspectionTimings)
    resume: dict | None = Field(None, description="set by the workflow itself when it continues as new")

    @model_validator(mode="after")
    def _fits(self) -> UnitInspectionStart:
        if self.kind is Kind.JOINT and self.lead not in JOINT_LEADS:
            raise ValueError("联合督察的牵头单位须为 discipline 或 tour_office / "
                             "a joint inspection is led by discipline or tour_office")
        if self.kind is not Kind.JOINT and self.lead not in TEAM_LEADS:
            raise ValueError("平时/专项督察的牵头单位须为 law_office、coordination_group 或 justice / "
                             f"a {self.kind.value} inspection is led by law_office, coordination_group or justice")
        if self.trigger.type is TriggerType.ANNUAL and self.kind is not Kind.ROUTINE:
            raise ValueError("年度督察触发的只能是平时督察 / trigger annual is for routine inspections")
        if self.trigger.type is TriggerType.TOUR and self.kind is not Kind.JOINT:
            raise ValueError("巡察触发的须为联合督察 / trigger tour is for joint inspections")
        return self


# --- operator actions -----------------------------------------------------------------------


class SubmitSelfInspection(OperatorAction):
    summary: str = Field(min_length=2, max_length=5000, description="自查报告摘要")
    problems_found: int = Field(0, ge=0, le=10000, description="自查发现问题数")
    attachments: list[Ref] = Field(default_factory=list, max_length=50, description="≤ 200 characters each")


class RecordMethod(OperatorAction):
    method: Method
    summary: str = Field(min_length=2, max_length=2000)
    on: date | None = Field(None, description="the day it was done (default today)")
    count: int | None = Field(None, ge=0, le=100000, description="e.g. case files reviewed, people visited")


class RecordFinding(OperatorAction):
    description: str = Field(min_length=2, max_length=5000)
    category: str = Field(min_length=1, max_length=50, description="e.g. 执法程序, 文书规范")
    list: ProblemList
    basis: str = Field("", max_length=1000, description="legal basis 依据")
    severity: Severity = Severity.GENERAL
    suspected_misconduct: bool = Field(False, description="涉嫌违纪违法: a clue goes to 纪委监委")
    misconduct_note: str = Field("", max_length=2000, description="kept in the ledger and the clue only")
    opinion: str = Field("", max_length=2000, description="整改意见 (default: the feedback's opinion)")


class Evaluate(OperatorAction):
    score: float = Field(ge=0, le=100)
    grade: Grade
    comments: str = Field("", max_length=5000)


class IssueFeedback(OperatorAction):
    opinion: str = Field(min_length=2, max_length=2000, description="整改意见 for findings without their own")
    due_in_working_days: int | None = Field(None, ge=1, le=250, description="default timings.rectification_working_days")
    due_on: date | None = None
    bulletin: str = Field("", max_length=100, description="督察情况通报 document number")

    @model_validator(mode="after")
    def _one_deadline(self) -> IssueFeedback:
        if self.due_on is not None and self.due_in_working_days is not None:
            raise ValueError("due_on 与 due_in_working_days 只能给一个 / give at most one of due_on, due_in_working_days")
        return self


# --- what the team sees ---------------------------------------------------------------------


class MethodView(BaseModel):
    n: int
    method: Method
    summary: str
    on: date
    count: int | None
    agency: str
    operator: str


class FindingView(BaseModel):
    n: int
    problem_no: str
    category: str
    list: ProblemList
    severity: Severity
    suspected_misconduct: bool
    description: str
    rectification_id: str | None = None
    clue_id: str | None = None


class EvaluationView(BaseModel):
    score: float
    grade: Grade
    comments: str
    agency: str
    at: datetime


class InspectionStatus(BaseModel):
    unit: str
    year: int
    kind: Kind
    lead: str
    trigger: Trigger
    areas: list[Area]
    focus: list[str]
    stage: Stage
    responsible: str | None
    light: str
    deadlines: list[DeadlineView]
    self_inspection_missed: bool
    methods: list[MethodView]
    findings: list[FindingView]
    evaluation: EvaluationView | None
    history: list[HistoryEntry]
    notes: int = Field(0, description="free notes received (add_note)")
    history_total: int = Field(0, description="all entries; `history` holds the latest 100, the ledger all")
    links: list[Link]


class InspectionResult(BaseModel):
    workflow_id: str
    unit: str
    kind: Kind
    stage: Stage
    findings: int
    rectifications: list[str]
    clues: list[str]
    score: float | None
    grade: Grade | None


class InspectionProgress(BaseModel):
    """Signal `inspection_progress` from a routine inspection to its round."""

    unit: str
    workflow_id: str
    event: str = Field(pattern=r"^(overdue|completed|failed)$")
    findings: int = 0


# --- activities -----------------------------------------------------------------------------


class SpecialSlotQuery(BaseModel):
    unit: str
    year: int


class SpecialSlot(BaseModel):
    workflow_id: str
    open: bool = Field(description="true: this special inspection of the unit is running already")


class InspectionToStart(BaseModel):
    workflow_id: str
    start: UnitInspectionStart
    summary: str = ""


class StartInspections(BaseModel):
    """A wave of the yearly round's unit inspections, started by the `inspection.start` activity."""

    task_queue: str
    items: list[InspectionToStart] = Field(max_length=100)


class StartedInspections(BaseModel):
    started: list[str] = Field(default_factory=list)
    existing: list[str] = Field(default_factory=list, description="the id was taken already (REJECT_DUPLICATE)")


class DescribeQuery(BaseModel):
    workflow_ids: list[str]


class DescribeResult(BaseModel):
    status: dict[str, str] = Field(description="running, completed, failed, canceled, terminated, "
                                               "timed_out, continued_as_new or not_found")


class InspectionSnapshot(BaseModel):
    workflow_id: str
    run_id: str
    year: int
    kind: str
    unit: str
    lead: str
    trigger_type: str
    trigger_ref: str
    round_id: str | None
    stage: str
    responsible: str | None
    self_due_on: date | None
    team_due_on: date | None
    due_at: datetime | None
    provisional: bool
    overdue: bool
    self_inspection_missed: bool
    light: str
    methods: int
    findings: int
    rectifications: int
    clues: int
    score: float | None
    grade: str | None
    started_at: datetime
    self_submitted_at: datetime | None
    evaluated_at: datetime | None
    completed_at: datetime | None


class MethodRow(BaseModel):
    n: int
    method: str
    summary: str
    on: date
    count: int | None
    agency: str
    operator: str


class FindingRow(BaseModel):
    n: int
    problem_no: str
    description: str
    category: str
    list: str
    basis: str
    severity: str
    suspected_misconduct: bool
    misconduct_note: str
    opinion: str
    agency: str
    operator: str
    rectification_id: str | None = None
    clue_id: str | None = None


class EvaluationRow(BaseModel):
    score: float
    grade: str
    comments: str
    agency: str
    operator: str


class RecordInspection(BaseModel):
    snapshot: InspectionSnapshot
    event: LedgerEvent
    method: MethodRow | None = None
    findings: list[FindingRow] = Field(default_factory=list, description="new or updated finding rows")
    evaluation: EvaluationRow | None = None


class InspectionState(CaseState):
    """What a UnitInspection carries (workflows/unit_inspection.py)."""

    stage: Stage = Stage.SELF_INSPECTION
    methods: list[MethodView] = Field(default_factory=list)
    findings: list[FindingRow] = Field(default_factory=list)
    evaluation: EvaluationView | None = None
    self_missed: bool = False
