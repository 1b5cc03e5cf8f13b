"""The working-day calendar in PostgreSQL: official schedules per year, and the deadline activity.

`calendar.plan_deadline` turns a `DeadlineRequest` into a `DeadlinePlan` (rules/workdays.py)
using the base rules plus every official year loaded here. Computing it in an activity records
the plan in workflow history, so loading a new schedule never changes a replay.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import asyncpg
import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator
from temporalio import activity
from temporalio.exceptions import ApplicationError

from config.yaml_file import load_yaml_model
from rules.workdays import MAX_YEAR, MIN_YEAR, CalendarError, DayMark, WorkCalendar
from schemas.calendar import DeadlinePlan, DeadlineRequest

if TYPE_CHECKING:
    from config.settings import Settings

log = structlog.get_logger("ducha.calendar")

# Two-key advisory lock namespace for loading one year ("cal" in ASCII).
_LOCK_NAMESPACE = 0x63616C


class CalendarDayEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    date: dt.date
    workday: bool = Field(description="false: 放假; true: 调休上班 (only on a Saturday or Sunday)")
    name: str = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _makeup_on_weekend(self) -> CalendarDayEntry:
        if self.workday and self.date.weekday() < 5:
            raise ValueError(
                f"{self.date} 是工作日（周一至周五），无需标注调休上班 / "
                "workday: true is only for a Saturday or Sunday"
            )
        return self


class CalendarFile(BaseModel):
    """One year's official schedule, as written in data/calendar/YYYY.yaml (docs/calendar.md)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    year: int = Field(ge=MIN_YEAR, le=MAX_YEAR)
    source: str = Field(min_length=1, max_length=200, description="notice title")
    notice_no: str | None = Field(None, max_length=50)
    issued_on: dt.date | None = None
    days: list[CalendarDayEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _days_in_year(self) -> CalendarFile:
        seen: set[dt.date] = set()
        for index, entry in enumerate(self.days):
            if entry.date.year != self.year:
                raise _DayError(index, f"{entry.date} 不在 {self.year} 年 / not in year {self.year}")
            if entry.date in seen:
                raise _DayError(index, f"{entry.date} 重复 / duplicate date")
            seen.add(entry.date)
        return self

    def marks(self) -> dict[dt.date, DayMark]:
        return {e.date: DayMark(e.workday, e.name) for e in self.days}


class _DayError(ValueError):
    """A file-level error that points at one entry (load_yaml_model reports its line)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.loc = ("days", index, "date")


@dataclass
class CalendarLoadReport:
    year: int
    first_load: bool = False
    source_changed: bool = False
    added: list[dt.date] = field(default_factory=list)
    changed: list[dt.date] = field(default_factory=list)
    removed: list[dt.date] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        return not (self.first_load or self.source_changed or self.added or self.changed or self.removed)

    def summary(self) -> str:
        if self.unchanged:
            return f"{self.year}年：未变 unchanged"
        head = "首次加载 first load" if self.first_load else "已更新 updated"
        return (
            f"{self.year}年：{head}；新增 added {len(self.added)}, 修改 changed {len(self.changed)}, "
            f"删除 removed {len(self.removed)}"
            + ("；来源已更新 source changed" if self.source_changed and not self.first_load else "")
        )


class _Fetcher(Protocol):
    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]: ...


async def read_official(db: _Fetcher) -> dict[int, dict[dt.date, DayMark]]:
    """Every loaded year's days (a year with no rows yet still counts as official)."""
    years = await db.fetch("SELECT year FROM calendar_years")
    official: dict[int, dict[dt.date, DayMark]] = {r["year"]: {} for r in years}
    for r in await db.fetch("SELECT day, year, workday, name FROM calendar_days"):
        official[r["year"]][r["day"]] = DayMark(r["workday"], r["name"])
    return official


def read_files(directory: Path) -> list[CalendarFile]:
    """Every data/calendar/*.yaml, validated (raises config.yaml_file.FileError)."""
    return [load_yaml_model(p, CalendarFile) for p in sorted(Path(directory).glob("*.yaml"))]


def calendar_from_files(files: Iterable[CalendarFile]) -> WorkCalendar:
    return WorkCalendar({f.year: f.marks() for f in files})


class CalendarActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self._calendar: WorkCalendar | None = None
        self._stamp: tuple[object, ...] | None = None

    async def load_year(self, file: CalendarFile) -> CalendarLoadReport:
        """Replace one year's official schedule atomically; loading the same file twice is a no-op."""
        report = CalendarLoadReport(file.year)
        new = file.marks()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_NAMESPACE, file.year)
            meta = await conn.fetchrow(
                "SELECT source, notice_no, issued_on FROM calendar_years WHERE year = $1", file.year
            )
            rows = await conn.fetch(
                "SELECT day, workday, name FROM calendar_days WHERE year = $1", file.year
            )
            old = {r["day"]: DayMark(r["workday"], r["name"]) for r in rows}
            report.first_load = meta is None
            report.source_changed = meta is not None and tuple(meta.values()) != (
                file.source, file.notice_no, file.issued_on
            )
            report.added = sorted(d for d in new if d not in old)
            report.changed = sorted(d for d in new if d in old and old[d] != new[d])
            report.removed = sorted(d for d in old if d not in new)
            if report.unchanged:
                return report
            await conn.execute(
                "INSERT INTO calendar_years (year, source, notice_no, issued_on) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (year) DO UPDATE SET source = EXCLUDED.source, "
                "notice_no = EXCLUDED.notice_no, issued_on = EXCLUDED.issued_on, loaded_at = now()",
                file.year, file.source, file.notice_no, file.issued_on,
            )
            await conn.execute("DELETE FROM calendar_days WHERE year = $1", file.year)
            await conn.executemany(
                "INSERT INTO calendar_days (day, year, workday, name) VALUES ($1, $2, $3, $4)",
                [(d, file.year, m.workday, m.name) for d, m in sorted(new.items())],
            )
        self._calendar = None
        log.info("calendar year loaded", year=file.year, result=report.summary())
        return report

    async def load_dir(self, directory: Path) -> list[CalendarLoadReport]:
        """Load every YAML file in `directory` (bootstrap; idempotent)."""
        return [await self.load_year(f) for f in read_files(directory)]

    async def work_calendar(self) -> WorkCalendar:
        """The calendar with every loaded year; re-read only when some process loaded a year."""
        row = await self.pool.fetchrow("SELECT count(*), max(loaded_at) FROM calendar_years")
        stamp = tuple(row.values())
        if self._calendar is None or stamp != self._stamp:
            self._calendar = WorkCalendar(await read_official(self.pool))
            self._stamp = stamp
        return self._calendar

    # --- activities -------------------------------------------------------------------------

    @activity.defn(name="calendar.plan_deadline")
    async def plan_deadline(self, req: DeadlineRequest) -> DeadlinePlan:
        calendar = await self.work_calendar()
        try:
            plan = calendar.plan(req, self.settings.zone)
        except CalendarError as exc:
            raise ApplicationError(
                f"无法计算期限 / cannot plan deadline: {exc}",
                type="InvalidDeadlineRequest",
                non_retryable=True,
            ) from exc
        if plan.provisional:
            log.warning(
                "deadline is provisional: no official schedule loaded for these years",
                provisional_years=plan.provisional_years,
                start=req.start.isoformat(),
                due_on=plan.due_on.isoformat(),
            )
        return plan
