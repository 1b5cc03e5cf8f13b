"""Yearly rule-of-law performance assessment (法治建设绩效考核, 督考结合): workflow and activity
inputs and outputs. The rubric and the arithmetic are in rules/rubric.py."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from schemas.common import Model


class AssessmentStart(Model):
    year: int | None = Field(
        None, ge=2000, le=2100,
        description="the year assessed; null: the year before the scheduled start (Asia/Shanghai)")
    notify: bool = Field(True, description="send assessment.published to every party and the county committee")
    revision: int = Field(
        1, ge=1, le=99,
        description="publish again after a correction: events get the suffix -r{revision} (2 and up)")


class ScoreYear(BaseModel):
    year: int
    workflow_id: str


class RankedScore(BaseModel):
    unit: str
    score: float
    grade: str


class YearSummary(BaseModel):
    """What `assessment.score_year` returns to the workflow: small, the rows are in PostgreSQL."""

    year: int
    units: int
    mean: float | None
    grades: dict[str, int]
    deductions: int
    top: list[RankedScore]
    bottom: list[RankedScore]
    rubric_version: str
    rubric_hash: str


class PublishScores(BaseModel):
    year: int
    revision: int = 1
    occurred_at: datetime


class PublishSummary(BaseModel):
    year: int
    published: int = Field(description="assessed parties sent their own score")
    skipped: list[str] = Field(default_factory=list, description="parties without an enabled endpoint")
    committee: bool = Field(description="the summary was queued for county_committee")


class AssessmentStatus(BaseModel):
    year: int | None
    stage: str = Field(description="scoring, publishing, published, scored (notify false)")
    summary: YearSummary | None = None
    published: PublishSummary | None = None


class AssessmentResult(BaseModel):
    year: int
    summary: YearSummary
    published: PublishSummary | None = None
