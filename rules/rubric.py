"""考核计分 (督考结合): the yearly rule-of-law performance score of one assessed party, from its
facts and a rubric. Pure arithmetic, no I/O; docs/assessment.md explains every rule.

    component score = 100 − Σ deductions, never below 0 (evaluation: the mean of the year's
                      evaluation scores instead)
    raw score       = Σ weight × component score over the components that apply, ÷ Σ those weights
    score           = raw score rounded half up to 0.1;  grade from the rounded score, then capped

Arithmetic is done in Decimal so 88.45 rounds to 88.5 and the listed deductions add up exactly:
Σ weighted_points = 100 − raw score.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

COMPONENTS = ("evaluation", "rectification", "clues", "coverage")
COMPONENT_NAMES = {"evaluation": "督察评估", "rectification": "整改落实", "clues": "线索移送办理",
                   "coverage": "督察覆盖"}
GRADES = ("优秀", "良好", "合格", "不合格")  # best first
RULE_NAMES = {
    "evaluation.score": "重点评估得分",
    "evaluation.none": "当年无评估",
    "coverage.not_covered": "当年未完成督察",
    "rectification.overdue": "整改逾期",
    "rectification.escalated": "拒不整改（升级）",
    "rectification.reopened": "回头看未通过，重新整改",
    "rectification.open_at_year_end": "年末仍逾期未整改",
    "clues.missed_deadline": "线索期限未履职",
}
Grade = Literal["优秀", "良好", "合格", "不合格"]
PartyKind = Literal["unit", "agency"]
ZERO, HUNDRED = Decimal(0), Decimal(100)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- the rubric (data/assessment/rubric.yaml) ---------------------------------------------------


class Weights(_Strict):
    evaluation: float = Field(0.5, ge=0, le=1)
    rectification: float = Field(0.3, ge=0, le=1)
    clues: float = Field(0.1, ge=0, le=1)
    coverage: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> Weights:
        total = sum(Decimal(str(getattr(self, c))) for c in COMPONENTS)
        if total != 1:
            raise ValueError(f"权重之和须为 1，现为 {total} / weights must add up to 1, not {total}")
        return self


class EvaluationRule(_Strict):
    none_score: float = Field(100, ge=0, le=100, description="component score with no evaluation in the year")


class CoverageRule(_Strict):
    not_covered: float = Field(100, ge=0, le=100, description="deducted when no inspection was completed")


class RectificationRule(_Strict):
    overdue: float = Field(5, ge=0, le=100, description="each missed rectification deadline (催办)")
    escalated: float = Field(15, ge=0, le=100, description="each escalation for refusing to rectify")
    reopened: float = Field(5, ge=0, le=100, description="each failed look-back (问题反弹)")
    open_at_year_end: float = Field(3, ge=0, le=100, description="each problem still overdue at year end")


class ClueRule(_Strict):
    missed_deadline: float = Field(10, ge=0, le=100, description="each clue deadline the party missed")


class GradeBands(_Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    excellent: float = Field(90, ge=0, le=100, description="优秀 from this score")
    good: float = Field(80, ge=0, le=100, description="良好 from this score")
    pass_: float = Field(60, ge=0, le=100, alias="pass", description="合格 from this score")

    @model_validator(mode="after")
    def _descending(self) -> GradeBands:
        if not self.excellent > self.good > self.pass_:
            raise ValueError("等次分数线须 excellent > good > pass / grade bands must descend")
        return self


class GradeCaps(_Strict):
    """不得评为更高等次: the best grade a party may get in these cases (null: no cap)."""

    not_covered: Grade | None = Field("合格", description="an enforcement unit with no completed inspection")
    escalated: Grade | None = Field("良好", description="a party escalated for refusing to rectify")


class Rubric(_Strict):
    version: str = Field(min_length=1, max_length=40)
    weights: Weights = Field(default_factory=Weights)
    evaluation: EvaluationRule = Field(default_factory=EvaluationRule)
    coverage: CoverageRule = Field(default_factory=CoverageRule)
    rectification: RectificationRule = Field(default_factory=RectificationRule)
    clues: ClueRule = Field(default_factory=ClueRule)
    grades: GradeBands = Field(default_factory=GradeBands)
    caps: GradeCaps = Field(default_factory=GradeCaps)
    assessed_agencies: list[str] = Field(
        default_factory=lambda: ["law_office", "discipline", "court", "procuratorate", "justice",
                                 "tour_office", "coordination_group"],
        description="agencies scored besides every enforcement unit (they carry clue deadlines)")

    def digest(self) -> str:
        """SHA-256 of the rubric's canonical JSON: what the scores were computed with."""
        text = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True,
                          ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def grade(self, score: float) -> Grade:
        if score >= self.grades.excellent:
            return "优秀"
        if score >= self.grades.good:
            return "良好"
        if score >= self.grades.pass_:
            return "合格"
        return "不合格"


# --- facts ----------------------------------------------------------------------------------


class EvaluationFact(_Strict):
    source_id: str = Field(description="the inspection's workflow id (inspection_evaluations)")
    score: float = Field(ge=0, le=100)
    kind: str = "routine"
    at: datetime | None = None


class RecordFact(_Strict):
    """One event behind a deduction: a ledger event of a rectification or a clue."""

    rule: Literal["overdue", "escalated", "reopened", "open_at_year_end", "missed_deadline"]
    source_kind: Literal["rectification", "clue"]
    source_id: str = Field(description="problem_no or clue_no")
    seq: int = Field(0, description="the ledger event's seq within its subject")
    occurred_at: datetime | None = None
    detail: str = Field("", description="e.g. the clue deadline's name")


class UnitFacts(_Strict):
    """Everything the score of one party in one year is computed from, each with its source."""

    unit: str
    name: str = ""
    kind: PartyKind = "unit"
    year: int
    evaluations: list[EvaluationFact] = Field(default_factory=list)
    covered_by: list[str] = Field(default_factory=list, description="completed inspections of the year")
    coverage_source: tuple[str, str] = Field(("registry", ""),
                                             description="(kind, id) blamed when not covered: the round or the registry")
    problems: int = Field(0, ge=0, description="problems raised against the party in the year")
    rectification: list[RecordFact] = Field(default_factory=list)
    clues: list[RecordFact] = Field(default_factory=list)


# --- the score ------------------------------------------------------------------------------


class Deduction(BaseModel):
    component: str
    rule: str
    points: float = Field(description="the rule's points")
    applied_points: float = Field(description="what it took from the component (a component stops at 0)")
    weighted_points: float = Field(description="what it took from the total score (before rounding)")
    source_kind: str
    source_id: str
    source_seq: int = 0
    occurred_at: datetime | None = None
    note: str


class ComponentScore(BaseModel):
    component: str
    applies: bool
    weight: float = Field(description="the rubric's weight")
    effective_weight: float = Field(description="share of the total among the components that apply")
    score: float = Field(description="0-100, unrounded")


class UnitScore(BaseModel):
    unit: str
    name: str
    kind: PartyKind
    year: int
    score: float = Field(description="0-100, rounded half up to 0.1")
    raw_score: float
    grade: Grade
    grade_before_caps: Grade
    caps: list[str] = Field(default_factory=list, description="the caps that lowered the grade")
    components: dict[str, ComponentScore]
    deductions: list[Deduction]


def _d(x: float | int) -> Decimal:
    return Decimal(str(x))


def _order(f: RecordFact) -> tuple:
    return (f.occurred_at is None, f.occurred_at or datetime.min, f.source_id, f.seq, f.rule)


def _applies(facts: UnitFacts) -> dict[str, bool]:
    """Evaluation and coverage are about the yearly inspections of enforcement units; an agency
    is scored on its clue deadlines and, if problems were raised against it, on rectification."""
    unit = facts.kind == "unit"
    return {"evaluation": unit, "coverage": unit,
            "rectification": unit or facts.problems > 0 or bool(facts.rectification),
            "clues": True}


def score(facts: UnitFacts, rubric: Rubric) -> UnitScore:
    applies = _applies(facts)
    weights = {c: _d(getattr(rubric.weights, c)) for c in COMPONENTS}
    total_weight = sum((weights[c] for c in COMPONENTS if applies[c]), ZERO)
    share = {c: (weights[c] / total_weight if applies[c] and total_weight else ZERO) for c in COMPONENTS}
    pending: dict[str, list[tuple[Deduction, Decimal]]] = {c: [] for c in COMPONENTS}
    comp: dict[str, Decimal] = {}

    def add(component: str, rule: str, points: Decimal, kind: str, sid: str, seq: int = 0,
            at: datetime | None = None, note: str = "") -> None:
        if not applies[component]:
            return
        pending[component].append((Deduction(
            component=component, rule=f"{component}.{rule}", points=float(points), applied_points=0,
            weighted_points=0, source_kind=kind, source_id=sid, source_seq=seq, occurred_at=at,
            note=note or RULE_NAMES.get(f"{component}.{rule}", rule)), points))

    # 督察评估: the mean of the year's evaluation scores; each evaluation takes its share.
    if facts.evaluations:
        n = len(facts.evaluations)
        for e in sorted(facts.evaluations, key=lambda e: e.source_id):
            add("evaluation", "score", (HUNDRED - _d(e.score)) / n, "evaluation", e.source_id, at=e.at,
                note=f"重点评估得分 {e.score:g}" + (f"（{n} 次评估取平均）" if n > 1 else ""))
    elif rubric.evaluation.none_score < 100:
        add("evaluation", "none", HUNDRED - _d(rubric.evaluation.none_score), "registry", facts.unit)
    # 督察覆盖
    if not facts.covered_by:
        kind, sid = facts.coverage_source
        add("coverage", "not_covered", _d(rubric.coverage.not_covered), kind, sid or facts.unit)
    # 整改落实
    r = rubric.rectification
    for f in sorted(facts.rectification, key=_order):
        add("rectification", f.rule, _d(getattr(r, f.rule)), f.source_kind, f.source_id, f.seq,
            f.occurred_at, f"{RULE_NAMES['rectification.' + f.rule]}：问题 {f.source_id}")
    # 线索移送办理
    for f in sorted(facts.clues, key=_order):
        add("clues", "missed_deadline", _d(rubric.clues.missed_deadline), f.source_kind, f.source_id,
            f.seq, f.occurred_at, f"线索 {f.source_id} {f.detail or '期限'}逾期")

    deductions: list[Deduction] = []
    raw = ZERO
    for c in COMPONENTS:
        left = HUNDRED
        for d, points in pending[c]:
            applied = min(points, left)
            left -= applied
            d.applied_points = float(applied)
            d.weighted_points = float(applied * share[c])
            deductions.append(d)
        comp[c] = left
        raw += left * share[c]
    if not total_weight:
        raw = HUNDRED  # nothing weighs: nothing can be deducted
    rounded = float(raw.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
    before = rubric.grade(rounded)
    grade, caps = before, []
    limits: list[tuple[str, Grade]] = []
    if applies["coverage"] and not facts.covered_by and rubric.caps.not_covered:
        limits.append(("not_covered", rubric.caps.not_covered))
    if any(f.rule == "escalated" for f in facts.rectification) and rubric.caps.escalated:
        limits.append(("escalated", rubric.caps.escalated))
    for name, cap in limits:
        if GRADES.index(cap) > GRADES.index(before):
            caps.append(name)
            grade = max(grade, cap, key=GRADES.index)
    components = {
        c: ComponentScore(component=c, applies=applies[c], weight=getattr(rubric.weights, c),
                          effective_weight=float(share[c]), score=float(comp[c]))
        for c in COMPONENTS
    }
    return UnitScore(unit=facts.unit, name=facts.name or facts.unit, kind=facts.kind, year=facts.year,
                     score=rounded, raw_score=float(raw), grade=grade, grade_before_caps=before,
                     caps=caps, components=components, deductions=deductions)
