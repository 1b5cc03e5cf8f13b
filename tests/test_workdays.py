"""Working-day arithmetic (rules/workdays.py) against dates worked out by hand from the notices.

国务院办公厅关于2026年部分节假日安排的通知 (2025-11-04):
  元旦 1/1–1/3, 1/4 (Sun) 上班; 春节 2/15–2/23, 2/14 (Sat) and 2/28 (Sat) 上班; 清明 4/4–4/6;
  劳动节 5/1–5/5, 5/9 (Sat) 上班; 端午 6/19–6/21; 中秋 9/25–9/27;
  国庆 10/1–10/7, 9/20 (Sun) and 10/10 (Sat) 上班.
No official 2027 schedule is loaded, so 2027 dates come from the `holidays` base and are provisional.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from activities.calendar import calendar_from_files, read_files
from rules.workdays import CalendarError, DayMark, WorkCalendar, end_of_day
from schemas.calendar import DeadlineRequest

CALENDAR_DIR = Path(__file__).resolve().parent.parent / "data" / "calendar"
SHANGHAI = ZoneInfo("Asia/Shanghai")
D = date.fromisoformat


def span(first: str, last: str) -> set[date]:
    a, b = D(first), D(last)
    return {a + timedelta(days=i) for i in range((b - a).days + 1)}


NOTICE_2026_OFF = (
    span("2026-01-01", "2026-01-03") | span("2026-02-15", "2026-02-23") | span("2026-04-04", "2026-04-06")
    | span("2026-05-01", "2026-05-05") | span("2026-06-19", "2026-06-21")
    | span("2026-09-25", "2026-09-27") | span("2026-10-01", "2026-10-07")
)
NOTICE_2026_MAKEUP = {D(x) for x in ("2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09",
                                     "2026-09-20", "2026-10-10")}


@pytest.fixture(scope="module")
def cal() -> WorkCalendar:
    return calendar_from_files(read_files(CALENDAR_DIR))


def test_weekday_facts_used_below() -> None:
    # Guards the hand reasoning in this file (only the standard library is asked).
    assert D("2026-02-14").strftime("%a") == "Sat" and D("2026-02-28").strftime("%a") == "Sat"
    assert D("2026-09-20").strftime("%a") == "Sun" and D("2026-10-10").strftime("%a") == "Sat"
    assert D("2026-05-10").strftime("%a") == "Sun" and D("2027-01-10").strftime("%a") == "Sun"
    assert D("2026-12-31").strftime("%a") == "Thu"


def test_2026_yaml_is_the_notice() -> None:
    (f,) = [f for f in read_files(CALENDAR_DIR) if f.year == 2026]
    assert {d.date for d in f.days if not d.workday} == NOTICE_2026_OFF
    assert {d.date for d in f.days if d.workday} == NOTICE_2026_MAKEUP
    assert len(NOTICE_2026_OFF) == 3 + 9 + 3 + 5 + 3 + 3 + 7


def test_official_2026_working_days(cal: WorkCalendar) -> None:
    for d in span("2026-01-01", "2026-12-31"):
        expected = d in NOTICE_2026_MAKEUP or (d.weekday() < 5 and d not in NOTICE_2026_OFF)
        assert cal.is_workday(d) is expected, d


def test_holidays_package_agrees_with_2026_notice() -> None:
    base = WorkCalendar()
    wrong = [d for d in span("2026-01-01", "2026-12-31")
             if base.is_workday(d) != (d in NOTICE_2026_MAKEUP or (d.weekday() < 5 and d not in NOTICE_2026_OFF))]
    assert wrong == []


@pytest.mark.parametrize(
    ("start", "n", "due"),
    [
        # Spring Festival 2026: Sat 2/14 is a working day, 2/15–2/23 off.
        ("2026-02-13", 5, "2026-02-27"),  # 2/14, 2/24, 2/25, 2/26, 2/27
        ("2026-02-11", 5, "2026-02-25"),  # 2/12, 2/13, 2/14, 2/24, 2/25
        ("2026-02-14", 5, "2026-02-28"),  # 2/24..2/27, then make-up Sat 2/28
        ("2026-02-20", 1, "2026-02-24"),
        # Mid-Autumn + National Day 2026: Sun 9/20 and Sat 10/10 are working days.
        ("2026-09-16", 5, "2026-09-22"),  # 9/17, 9/18, 9/20, 9/21, 9/22
        ("2026-09-24", 5, "2026-10-09"),  # 9/28, 9/29, 9/30, 10/8, 10/9
        ("2026-09-30", 5, "2026-10-13"),  # 10/8, 10/9, 10/10, 10/12, 10/13
        ("2026-10-09", 1, "2026-10-10"),
        # Month ends.
        ("2026-01-30", 5, "2026-02-06"),
        ("2026-03-31", 5, "2026-04-08"),  # 4/1, 4/2, 4/3, 4/7, 4/8
        ("2026-04-30", 5, "2026-05-11"),  # 5/6, 5/7, 5/8, 5/9 (Sat), 5/11
        # Year ends (2025 official: no make-up day in late December; 2026-01-04 Sun 上班).
        ("2025-12-31", 5, "2026-01-08"),  # 1/4, 1/5, 1/6, 1/7, 1/8
        ("2025-12-26", 5, "2026-01-05"),  # 12/29, 12/30, 12/31, 1/4, 1/5
        # n = 0: the start itself when it is a working day, else the next one.
        ("2026-10-03", 0, "2026-10-08"),
        ("2026-10-10", 0, "2026-10-10"),
    ],
)
def test_add_working_days(cal: WorkCalendar, start: str, n: int, due: str) -> None:
    assert cal.add_working_days(D(start), n) == D(due)
    if n:
        assert cal.working_days_between(D(start), D(due)) == n


def test_subtract_and_between(cal: WorkCalendar) -> None:
    assert cal.subtract_working_days(D("2026-02-24"), 1) == D("2026-02-14")
    assert cal.subtract_working_days(D("2026-10-08"), 2) == D("2026-09-29")
    assert cal.subtract_working_days(D("2026-10-04"), 0) == D("2026-09-30")
    assert cal.working_days_between(D("2026-10-13"), D("2026-09-30")) == -5
    assert cal.working_days_between(D("2026-02-14"), D("2026-02-14")) == 0
    # February 2026: 20 weekdays, minus 2/16–2/20 and 2/23 (6), plus 2/14 and 2/28 = 16.
    assert cal.working_days_between(D("2026-01-31"), D("2026-02-28")) == 16


def test_important_clue_plan_across_spring_festival(cal: WorkCalendar) -> None:
    plan = cal.plan(DeadlineRequest(start=D("2026-02-13"), working_days=5), SHANGHAI)
    assert plan.due_on == D("2026-02-27")
    assert plan.due_at == datetime(2026, 2, 28, 0, 0, tzinfo=SHANGHAI)
    assert plan.remind_at == datetime(2026, 2, 26, 9, 0, tzinfo=SHANGHAI)
    # 2/28 (make-up Sat), 3/2, 3/3, 3/4, 3/5.
    assert plan.escalate_on == D("2026-03-05")
    assert plan.escalate_at == datetime(2026, 3, 6, 0, 0, tzinfo=SHANGHAI)
    assert plan.due_at.utcoffset() == timedelta(hours=8)
    assert (plan.provisional, plan.provisional_years) == (False, [])


def test_reminder_lands_on_a_makeup_saturday(cal: WorkCalendar) -> None:
    plan = cal.plan(DeadlineRequest(start=D("2026-02-20"), working_days=1), SHANGHAI)
    assert plan.due_on == D("2026-02-24")
    assert plan.remind_at == datetime(2026, 2, 14, 9, 0, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("discovered", "due"),
    [
        ("2026-01-31", "2026-02-10"),  # Tuesday
        ("2026-04-15", "2026-05-11"),  # 5/10 is a Sunday
        ("2026-09-03", "2026-10-10"),  # Saturday, but 调休上班: stays
        ("2026-12-05", "2027-01-11"),  # 2027-01-10 is a Sunday
    ],
)
def test_monthly_deadline(cal: WorkCalendar, discovered: str, due: str) -> None:
    assert cal.monthly_deadline(D(discovered)) == D(due)
    plan = cal.plan(DeadlineRequest(start=D(discovered), monthly=True), SHANGHAI)
    assert plan.due_on == D(due)


def test_monthly_deadline_on_a_holiday_moves_forward(cal: WorkCalendar) -> None:
    # holidays base for 2027: Spring Festival off 2/5–2/10 (2/10 is a Wednesday).
    plan = cal.plan(DeadlineRequest(start=D("2027-01-20"), monthly=True), SHANGHAI)
    assert (plan.due_on, plan.provisional_years) == (D("2027-02-11"), [2027])


def test_explicit_due_date_rule(cal: WorkCalendar) -> None:
    on_holiday = cal.plan(DeadlineRequest(start=D("2026-09-01"), due_on=D("2026-10-01")), SHANGHAI)
    assert on_holiday.due_on == D("2026-10-08")
    kept = cal.plan(DeadlineRequest(start=D("2026-09-01"), due_on=D("2026-10-01")), SHANGHAI,
                    roll_forward=False)
    assert kept.due_on == D("2026-10-01")
    assert kept.remind_at == datetime(2026, 9, 30, 9, 0, tzinfo=SHANGHAI)  # last working day before
    assert cal.monthly_deadline(D("2026-04-15"), roll_forward=False) == D("2026-05-10")
    with pytest.raises(CalendarError):
        cal.plan(DeadlineRequest(start=D("2026-03-01"), due_on=D("2026-02-27")), SHANGHAI)


def test_provisional_2027(cal: WorkCalendar) -> None:
    # 2027-01-01 (Fri) is New Year's Day in the base rules; then 1/4..1/8.
    plan = cal.plan(DeadlineRequest(start=D("2026-12-31"), working_days=5), SHANGHAI)
    assert plan.due_on == D("2027-01-08")
    assert (plan.provisional, plan.provisional_years) == (True, [2027])
    # Due inside 2026 but escalation in 2027: still provisional.
    late = cal.plan(DeadlineRequest(start=D("2026-12-24"), working_days=5), SHANGHAI)
    assert (late.due_on, late.escalate_on) == (D("2026-12-31"), D("2027-01-08"))
    assert late.provisional_years == [2027]


def test_official_override_changes_the_result(cal: WorkCalendar) -> None:
    # A hypothetical 2027 schedule: 1/1 off, Saturday 1/2 a make-up working day.
    schedule = {D("2027-01-01"): DayMark(False, "元旦"), D("2027-01-02"): DayMark(True, "元旦调休上班")}
    with_2027 = WorkCalendar({2027: schedule})
    plan = with_2027.plan(DeadlineRequest(start=D("2026-12-31"), working_days=5), SHANGHAI)
    assert plan.due_on == D("2027-01-07")  # 1/2, 1/4, 1/5, 1/6, 1/7
    assert plan.provisional is False
    # An official year replaces the base rules for the whole year.
    only_oct_1 = WorkCalendar({2026: {D("2026-10-01"): DayMark(False, "国庆节")}})
    assert only_oct_1.is_workday(D("2026-10-02")) and not cal.is_workday(D("2026-10-02"))


def test_end_of_day() -> None:
    assert end_of_day(D("2026-12-31"), SHANGHAI) == datetime(2027, 1, 1, tzinfo=SHANGHAI)
    assert end_of_day(D("2026-12-31"), SHANGHAI).isoformat() == "2027-01-01T00:00:00+08:00"


def test_month_view(cal: WorkCalendar) -> None:
    days = {d.day.day: d for d in cal.month_view(2026, 2)}
    assert len(days) == 28
    assert (days[14].kind, days[15].kind, days[21].kind, days[28].kind) == (
        "makeup", "holiday", "holiday", "makeup")
    assert (days[7].kind, days[24].kind) == ("weekend", "workday")
    assert days[16].name == "春节" and days[16].official
    assert not cal.month_view(2027, 2)[0].official


def test_out_of_range_is_a_calendar_error(cal: WorkCalendar) -> None:
    with pytest.raises(CalendarError):
        cal.is_workday(D("2101-01-03"))
    with pytest.raises(CalendarError):
        cal.add_working_days(D("2026-01-05"), -1)
