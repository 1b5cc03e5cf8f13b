"""CalendarActivities against a real PostgreSQL: loading official years and `calendar.plan_deadline`."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import asyncpg
import pytest
import structlog
from structlog.testing import capture_logs
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import activities.calendar as calendar_module
from activities.calendar import CalendarActivities, CalendarDayEntry, CalendarFile
from config.settings import Settings
from config.yaml_file import FileError, load_yaml_model
from schemas.calendar import DeadlineRequest

CALENDAR_DIR = Path(__file__).resolve().parent.parent / "data" / "calendar"
D = date.fromisoformat

# A hypothetical 2027 schedule (not the real notice): 1/1 off, Saturday 1/2 a working day.
FAKE_2027 = CalendarFile(
    year=2027,
    source="测试用 2027 安排",
    days=[
        CalendarDayEntry(date=D("2027-01-01"), workday=False, name="元旦"),
        CalendarDayEntry(date=D("2027-01-02"), workday=True, name="元旦调休上班"),
    ],
)


@pytest.fixture(scope="module")
def schedule_2026() -> CalendarFile:
    return load_yaml_model(CALENDAR_DIR / "2026.yaml", CalendarFile)


@pytest.fixture
def acts(pool: asyncpg.Pool, settings: Settings) -> CalendarActivities:
    return CalendarActivities(pool, settings)


async def plan(acts: CalendarActivities, **fields: object):
    return await ActivityEnvironment().run(acts.plan_deadline, DeadlineRequest(**fields))


async def test_load_is_idempotent(acts: CalendarActivities, pool: asyncpg.Pool,
                                  schedule_2026: CalendarFile) -> None:
    first = await acts.load_year(schedule_2026)
    # 33 days off (3+9+3+5+3+3+7) and 6 make-up working days.
    assert first.first_load and len(first.added) == 39
    again = await acts.load_year(schedule_2026)
    assert again.unchanged and "未变" in again.summary()
    assert await pool.fetchval("SELECT count(*) FROM calendar_days WHERE year = 2026") == 39
    assert await pool.fetchval("SELECT count(*) FROM calendar_days WHERE NOT workday") == 33


async def test_reload_replaces_the_year(acts: CalendarActivities, pool: asyncpg.Pool,
                                        schedule_2026: CalendarFile) -> None:
    edited = schedule_2026.model_copy(deep=True)
    edited.days = [d for d in edited.days if d.date != D("2026-10-10")]
    edited.days[0].name = "元旦（改）"
    report = await acts.load_year(edited)
    assert (report.removed, report.changed, report.added) == ([D("2026-10-10")], [D("2026-01-01")], [])
    assert not await pool.fetchval("SELECT count(*) FROM calendar_days WHERE day = '2026-10-10'")
    back = await acts.load_year(schedule_2026)
    assert back.added == [D("2026-10-10")] and back.changed == [D("2026-01-01")]


async def test_load_dir_loads_every_yaml(acts: CalendarActivities, pool: asyncpg.Pool) -> None:
    reports = await acts.load_dir(CALENDAR_DIR)
    assert {r.year for r in reports} >= {2025, 2026}
    assert all(r.unchanged for r in await acts.load_dir(CALENDAR_DIR))


async def test_plan_deadline_official(acts: CalendarActivities) -> None:
    result = await plan(acts, start=D("2026-09-30"), working_days=5)
    # 10/8, 10/9, 10/10 (make-up Sat), 10/12, 10/13.
    assert result.due_on == D("2026-10-13")
    assert result.due_at.isoformat() == "2026-10-14T00:00:00+08:00"
    assert result.remind_at.isoformat() == "2026-10-12T09:00:00+08:00"
    assert result.provisional is False


async def test_provisional_year_warns_but_answers(acts: CalendarActivities,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with capture_logs() as logs:
        monkeypatch.setattr(calendar_module, "log", structlog.get_logger("test"))
        result = await plan(acts, start=D("2026-12-31"), working_days=5)
    assert (result.due_on, result.provisional, result.provisional_years) == (D("2027-01-08"), True, [2027])
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings and warnings[0]["provisional_years"] == [2027]


async def test_loading_a_year_changes_results_in_every_process(
    acts: CalendarActivities, pool: asyncpg.Pool, settings: Settings
) -> None:
    before = await plan(acts, start=D("2026-12-31"), working_days=5)
    assert before.due_on == D("2027-01-08")
    other_process = CalendarActivities(pool, settings)
    try:
        await other_process.load_year(FAKE_2027)
        after = await plan(acts, start=D("2026-12-31"), working_days=5)
        # 1/2 (make-up Sat), 1/4, 1/5, 1/6, 1/7.
        assert (after.due_on, after.provisional) == (D("2027-01-07"), False)
    finally:
        await pool.execute("DELETE FROM calendar_years WHERE year = 2027")
    again = await plan(acts, start=D("2026-12-31"), working_days=5)
    assert (again.due_on, again.provisional) == (D("2027-01-08"), True)


@pytest.mark.parametrize(
    "fields",
    [
        {"start": D("2026-03-01"), "due_on": D("2026-02-27")},
        {"start": D("2100-12-20"), "monthly": True},
    ],
)
async def test_invalid_request_is_non_retryable(acts: CalendarActivities, fields: dict) -> None:
    with pytest.raises(ApplicationError) as err:
        await plan(acts, **fields)
    assert err.value.non_retryable and err.value.type == "InvalidDeadlineRequest"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("  - {date: 2026-03-03, workday: true, name: 错}", "workday: true is only for a Saturday"),
        ("  - {date: 2027-01-01, workday: false, name: 错}", "not in year 2026"),
        ("  - {date: 2026-01-01, workday: false, name: 重复}", "duplicate"),
    ],
)
def test_bad_file_names_the_line(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "2026.yaml"
    path.write_text(
        "year: 2026\nsource: 测试\ndays:\n  - {date: 2026-01-01, workday: false, name: 元旦}\n" + line + "\n",
        encoding="utf-8",
    )
    with pytest.raises(FileError) as err:
        load_yaml_model(path, CalendarFile)
    assert f"{path}:5:" in str(err.value) and reason in str(err.value)
