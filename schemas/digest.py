"""Monthly digest of routine clues (一般线索每月10日前移送): one callback per source agency."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from schemas.common import Model


class DigestStart(Model):
    month: str | None = Field(
        None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
        description="YYYY-MM; null means the month the schedule fires in (Asia/Shanghai)",
    )


class DigestQuery(BaseModel):
    first_day: date
    last_day: date


class DigestItem(BaseModel):
    clue_no: str
    workflow_id: str
    due_on: date
    stage: str


class DigestGroup(BaseModel):
    source: str
    items: list[DigestItem]


class DigestGroups(BaseModel):
    groups: list[DigestGroup]


class DigestResult(BaseModel):
    month: str
    sources_notified: int
    clues_listed: int
