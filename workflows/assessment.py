"""AnnualAssessment (法治建设绩效考核, 督考结合): once a year every party's score from the year's
inspection evaluations, rectification outcomes, missed clue deadlines and coverage.

    scoring ──assessment.score_year──▶ publishing ──assessment.publish_scores──▶ published

Started by schedule `annual-assessment` (10 January, 09:00 Asia/Shanghai: the year before) or by
hand with `{"year": 2026}`. Scores and deductions are written to PostgreSQL by the activity (a
rerun replaces the year's rows); each party is sent only its own score, county_committee the
summary. The workflow's history holds only a small summary.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from schemas.assessment import (
        AssessmentResult,
        AssessmentStart,
        AssessmentStatus,
        PublishScores,
        PublishSummary,
        ScoreYear,
        YearSummary,
    )

from workflows import calls
from workflows.duty import CHINA
from workflows.inputs import require
from workflows.search_attributes import DUCHA_KIND, DUCHA_STAGE, DUCHA_YEAR

SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
STAGE_NAMES = {"scoring": "计分中", "publishing": "发布中", "published": "已发布", "scored": "已计分（未发布）"}
SCORE_TIMEOUT = timedelta(minutes=10)
PUBLISH_TIMEOUT = timedelta(minutes=30)
PUBLISH_HEARTBEAT = timedelta(minutes=2)


@workflow.defn(name="AnnualAssessment", failure_exception_types=[ValidationError])
class AnnualAssessment:
    def __init__(self) -> None:
        self.year: int | None = None
        self.stage = "scoring"
        self.summary: YearSummary | None = None
        self.published: PublishSummary | None = None

    @workflow.run
    async def run(self, start: AssessmentStart) -> AssessmentResult:
        start = require(start, AssessmentStart)
        now_year = workflow.now().astimezone(CHINA).year
        year = start.year if start.year is not None else self._scheduled_at().astimezone(CHINA).year - 1
        if year > now_year:
            raise ApplicationError(f"{year} 年度尚未开始，不能考核 / cannot assess {year}: it has not begun",
                                   type="Rejected", non_retryable=True)
        self.year = year
        workflow.upsert_search_attributes([DUCHA_KIND.value_set("assessment"), DUCHA_YEAR.value_set(year)])
        self._show()
        self.summary = await calls.score_year(
            ScoreYear(year=year, workflow_id=workflow.info().workflow_id), SCORE_TIMEOUT)
        if start.notify:
            self.stage = "publishing"
            self._show()
            self.published = await calls.publish_scores(
                PublishScores(year=year, revision=start.revision, occurred_at=workflow.now()),
                PUBLISH_TIMEOUT, PUBLISH_HEARTBEAT)
            self.stage = "published"
        else:
            self.stage = "scored"
        self._show()
        return AssessmentResult(year=year, summary=self.summary, published=self.published)

    @workflow.query
    def status(self) -> AssessmentStatus:
        return AssessmentStatus(year=self.year, stage=self.stage, summary=self.summary,
                                published=self.published)

    def _scheduled_at(self) -> datetime:
        """The schedule's nominal start time (a late or caught-up run still means the same
        year); the workflow's own start when started by hand."""
        return workflow.info().typed_search_attributes.get(SCHEDULED_START) or workflow.now()

    def _show(self) -> None:
        workflow.upsert_search_attributes([DUCHA_STAGE.value_set(self.stage)])
        lines = [f"**{self.year}年度法治建设绩效考核**", f"阶段：{STAGE_NAMES[self.stage]}"]
        s = self.summary
        if s is not None:
            grades = "、".join(f"{g} {n}" for g, n in s.grades.items())
            lines.append(f"考核 {s.units} 个单位，平均 {s.mean if s.mean is not None else '-'} 分（{grades}）；"
                         f"扣分记录 {s.deductions} 条；计分规则 {s.rubric_version}")
            if s.top:
                lines.append("前列：" + "、".join(f"{r.unit} {r.score:.1f}" for r in s.top[:3]))
            if s.bottom:
                lines.append("后列：" + "、".join(f"{r.unit} {r.score:.1f}" for r in s.bottom[:3]))
        if self.published is not None:
            p = self.published
            lines.append(f"已通知 {p.published} 个单位" + (f"，{len(p.skipped)} 个无回调地址" if p.skipped else "")
                         + ("；已报县委" if p.committee else ""))
        workflow.set_current_details("\n\n".join(lines))
