"""`ducha calendar ...`: the statutory working-day calendar.

`due` and `show` read the official schedules from PostgreSQL; when the database cannot be
reached they fall back to the base rules plus the YAML files in DUCHA_CALENDAR_DIR, so they work
without `make up` (docs/calendar.md).
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import NoReturn

import asyncpg
import typer
from pydantic import ValidationError

from activities.calendar import (
    CalendarActivities,
    CalendarFile,
    calendar_from_files,
    read_files,
    read_official,
)
from config.settings import Settings
from config.yaml_file import FileError, load_yaml_model
from rules.workdays import CalendarError, MonthDay, WorkCalendar
from schemas.calendar import DeadlineRequest
from workers.cli.common import db_pool, fail, run, settings

app = typer.Typer(help="工作日历 / statutory working-day calendar", no_args_is_help=True)

WEEKDAYS = "一二三四五六日"
MARKS = {"holiday": "休", "makeup": "班"}
LEGEND = "图例：休 = 节假日放假（含假期中的周末）  班 = 调休上班（周末上班）  六、日无标记 = 周末休息"
DB_TIMEOUT_SECONDS = 3


def _usage_error(message: str) -> NoReturn:
    """One line on stderr, exit code 2."""
    fail(message, code=2)
    raise typer.Exit(2)


def _parse_date(value: str | None, option: str) -> date:
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value or ""):
            return date.fromisoformat(value)
    except ValueError:
        pass
    _usage_error(f"日期无效 / invalid date for {option}: {value!r} (expected YYYY-MM-DD)")


async def _read_calendar(s: Settings) -> WorkCalendar:
    """Official years from PostgreSQL, or from the YAML files when the database is unreachable."""
    try:
        conn = await asyncpg.connect(s.postgres_url, timeout=DB_TIMEOUT_SECONDS)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return _calendar_from_files(s, f"无法连接数据库 / database unreachable ({type(exc).__name__})")
    try:
        return WorkCalendar(await read_official(conn))
    except asyncpg.PostgresError as exc:
        return _calendar_from_files(s, f"数据库未迁移 / calendar tables missing ({type(exc).__name__})")
    finally:
        await conn.close()


def _calendar_from_files(s: Settings, why: str) -> WorkCalendar:
    try:
        files = read_files(s.calendar_dir)
    except FileError as exc:
        _usage_error(str(exc))
    typer.echo(f"提示 / note: {why}; 使用基础规则和 {s.calendar_dir}/*.yaml", err=True)
    return calendar_from_files(files)


@app.command("load")
def load(file: Path) -> None:
    """Load one year's official schedule (国务院办公厅节假日安排通知) from a YAML file."""
    try:
        schedule = load_yaml_model(file, CalendarFile)
    except FileError as exc:
        _usage_error(str(exc))
    s = settings()

    async def go():
        async with db_pool(s) as pool:
            report = await CalendarActivities(pool, s).load_year(schedule)
            return report, (None if report.unchanged else await _recompute(pool))

    report, recomputed = run(go)
    typer.echo(f"{file}: {report.summary()}")
    if recomputed is not None:
        typer.echo(recomputed)
    entries = {e.date: e for e in schedule.days}
    for label, days in (("+", report.added), ("~", report.changed), ("-", report.removed)):
        for d in days:
            entry = entries.get(d)
            what = f"{'调休上班' if entry.workday else '放假'} {entry.name}" if entry else ""
            typer.echo(f"  {label} {d.isoformat()} {what}".rstrip())


async def _recompute(pool) -> str:
    """Tell open workflows with provisional deadlines to compute them again."""
    from workers.client import connect
    from workers.recompute import recompute_provisional

    try:
        client = await connect(settings())
    except RuntimeError as exc:
        return (f"注意：无法连接 Temporal，未通知在办流程重算期限 / Temporal unreachable, open "
                f"workflows were not told to recompute ({exc}); run this command again once it is up")
    signalled, gone = await recompute_provisional(pool, client)
    return f"已通知 {signalled} 个暂定期限的在办流程重算 / {signalled} open workflows told to recompute"


@app.command("due")
def due(
    start: str = typer.Option(None, "--from", help="起算日 YYYY-MM-DD（当日不计入）"),
    working_days: str = typer.Option(None, "--working-days", help="N 个工作日内（重要线索 5）"),
    monthly: bool = typer.Option(False, "--monthly", help="次月10日前（一般线索按月移送）"),
) -> None:
    """Print the due date (and `provisional` when a year involved has no official schedule)."""
    begin = _parse_date(start, "--from")
    if (working_days is None) == (not monthly):
        _usage_error("请二选一 / give exactly one of --working-days N or --monthly")
    n = None
    if working_days is not None:
        if not re.fullmatch(r"\d+", working_days.strip()):
            _usage_error(f"工作日数无效 / --working-days must be a whole number >= 0, got {working_days!r}")
        n = int(working_days)
    try:
        req = DeadlineRequest(start=begin, working_days=n, monthly=monthly)
    except ValidationError as exc:
        _usage_error(f"参数无效 / invalid request: {exc.errors()[0]['msg']}")
    s = settings()
    calendar = run(lambda: _read_calendar(s))
    try:
        plan = calendar.plan(req, s.zone)
    except CalendarError as exc:
        _usage_error(str(exc))
    typer.echo(plan.due_on.isoformat() + (" provisional" if plan.provisional else ""))


@app.command("show")
def show(month: str = typer.Argument(..., help="YYYY-MM")) -> None:
    """Print one month with holidays (休) and make-up working days (班) marked."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", month.strip())
    if not match or not 1 <= int(match[2]) <= 12:
        _usage_error(f"月份无效 / invalid month: {month!r} (expected YYYY-MM)")
    year, mon = int(match[1]), int(match[2])
    s = settings()
    calendar = run(lambda: _read_calendar(s))
    try:
        days = calendar.month_view(year, mon)
    except CalendarError as exc:
        _usage_error(str(exc))
    for line in render_month(year, mon, days):
        typer.echo(line)


def render_month(year: int, month: int, days: list[MonthDay]) -> list[str]:
    status = (
        "正式安排 official（已加载国务院办公厅通知）"
        if days[0].official
        else "暂定 provisional（未加载本年官方安排，按 holidays 基础规则推算）"
    )
    lines = [f"{year}年{month}月  {status}", " ".join(f"  {w}" for w in WEEKDAYS)]
    cells = ["    "] * days[0].day.weekday()
    for d in days:
        cells.append(f"{d.day.day:>2}{MARKS.get(d.kind, '  ')}")
    for i in range(0, len(cells), 7):
        lines.append(" ".join(cells[i : i + 7]).rstrip())
    lines.append(LEGEND)
    for first, last in _named_runs(days):
        span = _md(first.day) if first is last else f"{_md(first.day)}—{_md(last.day)}"
        lines.append(f"  {MARKS.get(first.kind, '  ')} {span} {first.name}")
    return lines


def _named_runs(days: list[MonthDay]) -> list[tuple[MonthDay, MonthDay]]:
    """Consecutive holiday / make-up days with the same name, as (first, last) pairs."""
    runs: list[tuple[MonthDay, MonthDay]] = []
    for d in days:
        if d.kind not in MARKS:
            continue
        if runs and runs[-1][1].day.toordinal() + 1 == d.day.toordinal() and (
            runs[-1][1].kind, runs[-1][1].name) == (d.kind, d.name):
            runs[-1] = (runs[-1][0], d)
        else:
            runs.append((d, d))
    return runs


def _md(d: date) -> str:
    return f"{d.month}月{d.day}日（周{WEEKDAYS[d.weekday()]}）"

