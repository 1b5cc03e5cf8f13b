"""Working-day arithmetic on the Chinese statutory calendar (pure: no I/O, no clock).

Base rules come from the `holidays` package (China: statutory holidays, plus the make-up working
weekends 调休 in `weekend_workdays`). An official schedule for a year (loaded from the State
Council notice) replaces the base rules for that whole year: inside an official year a day is a
working day if the notice says so, else if it is Monday to Friday. A year without an official
schedule is *provisional*; `plan` reports which provisional years a computation touched.

Counting convention (《民法典》第201条: 开始的当日不计入, as in "5个工作日内"): the day of the
event is not counted; `add_working_days(start, n)` is the n-th working day after `start`. A due
date given by a calendar rule (the monthly 10th, an explicit date) that falls on a non-working
day moves to the next working day (第203条: 期间的最后一日是法定休假日的，以法定休假日结束的次日
为期间的最后一日); `roll_forward=False` turns that off.
"""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from functools import lru_cache

import holidays

from schemas.calendar import DeadlinePlan, DeadlineRequest

ONE_DAY = timedelta(days=1)
MIN_YEAR = holidays.China.start_year
MAX_YEAR = holidays.China.end_year
REMIND_HOUR = 9
MAKEUP_NAME = "调休上班"


class CalendarError(ValueError):
    """A date or request the calendar cannot answer (a business error, never retried)."""


@dataclass(frozen=True)
class DayMark:
    """A day that differs from the plain Monday–Friday week, or is named by the notice."""

    workday: bool
    name: str


@dataclass(frozen=True)
class MonthDay:
    """One cell of the month view."""

    day: date
    workday: bool
    name: str
    official: bool

    @property
    def weekend(self) -> bool:
        return self.day.weekday() >= 5

    @property
    def kind(self) -> str:
        """`workday`, `weekend`, `holiday` (休, a day off by the notice) or `makeup` (班, 调休上班)."""
        if self.workday:
            return "makeup" if self.weekend else "workday"
        return "holiday" if self.name or not self.weekend else "weekend"


@lru_cache(maxsize=256)
def base_year(year: int) -> Mapping[date, DayMark]:
    """The `holidays` package's view of one year: public holidays and make-up working weekends."""
    calendar = holidays.China(years=year, language="zh_CN")
    marks = {d: DayMark(False, str(name)) for d, name in calendar.items() if d.year == year}
    for d in calendar.weekend_workdays:
        if d.year == year:
            marks[d] = DayMark(True, MAKEUP_NAME)
    return marks


def end_of_day(d: date, tz: tzinfo) -> datetime:
    """The instant a day ends: 00:00 local time of the next day."""
    return datetime.combine(d + ONE_DAY, time(0), tzinfo=tz)


def at_local(d: date, hour: int, tz: tzinfo) -> datetime:
    return datetime.combine(d, time(hour), tzinfo=tz)


def tenth_of_next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 10)


class WorkCalendar:
    """Working days from the base rules, with official schedules per year winning over them."""

    def __init__(self, official: Mapping[int, Mapping[date, DayMark]] | None = None) -> None:
        self._official = {year: dict(days) for year, days in (official or {}).items()}

    @property
    def official_years(self) -> list[int]:
        return sorted(self._official)

    def _marks(self, year: int) -> Mapping[date, DayMark]:
        if not MIN_YEAR <= year <= MAX_YEAR:
            raise CalendarError(f"日期超出日历范围 {MIN_YEAR}–{MAX_YEAR} / year {year} out of range")
        return self._official[year] if year in self._official else base_year(year)

    def mark(self, d: date) -> DayMark | None:
        return self._marks(d.year).get(d)

    def is_workday(self, d: date) -> bool:
        mark = self.mark(d)
        return mark.workday if mark else d.weekday() < 5

    def next_workday(self, d: date) -> date:
        """`d` itself when it is a working day, else the first working day after it."""
        while not self.is_workday(d):
            d += ONE_DAY
        return d

    def previous_workday(self, d: date) -> date:
        """`d` itself when it is a working day, else the last working day before it."""
        while not self.is_workday(d):
            d -= ONE_DAY
        return d

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day after `start` (start not counted); n=0: `next_workday(start)`."""
        if n < 0:
            raise CalendarError(f"工作日数不能为负 / working days must be >= 0, got {n}")
        d = start
        for _ in range(n):
            d = self.next_workday(d + ONE_DAY)
        return self.next_workday(d)

    def subtract_working_days(self, end: date, n: int) -> date:
        """The n-th working day before `end`; n=0: `previous_workday(end)`."""
        if n < 0:
            raise CalendarError(f"工作日数不能为负 / working days must be >= 0, got {n}")
        d = end
        for _ in range(n):
            d = self.previous_workday(d - ONE_DAY)
        return self.previous_workday(d)

    def working_days_between(self, a: date, b: date) -> int:
        """Working days d with a < d <= b (negative when b is before a)."""
        if b < a:
            return -self.working_days_between(b, a)
        return sum(self.is_workday(a + ONE_DAY * i) for i in range(1, (b - a).days + 1))

    def statutory_due(self, d: date, *, roll_forward: bool = True) -> date:
        """A due date set by the calendar; on a non-working day it moves to the next working day."""
        self._marks(d.year)
        return self.next_workday(d) if roll_forward else d

    def monthly_deadline(self, discovered: date, *, roll_forward: bool = True) -> date:
        """Routine clues: the 10th of the month after discovery (statutory-period rule applied)."""
        return self.statutory_due(tenth_of_next_month(discovered), roll_forward=roll_forward)

    def provisional_years(self, a: date, b: date) -> list[int]:
        """Years from a to b (inclusive) that have no official schedule."""
        lo, hi = sorted((a.year, b.year))
        return [y for y in range(lo, hi + 1) if y not in self._official]

    def month_view(self, year: int, month: int) -> list[MonthDay]:
        first = date(year, month, 1)
        days = monthrange(year, month)[1]
        official = year in self._official
        out = []
        for i in range(days):
            d = first + ONE_DAY * i
            mark = self.mark(d)
            out.append(MonthDay(d, self.is_workday(d), mark.name if mark else "", official))
        return out

    def plan(self, req: DeadlineRequest, tz: tzinfo, *, roll_forward: bool = True) -> DeadlinePlan:
        """Due date, reminder and escalation for one request (see the module docstring)."""
        if req.working_days is not None:
            due_on = self.add_working_days(req.start, req.working_days)
            first = req.start + ONE_DAY if req.working_days else req.start
        elif req.monthly:
            first = tenth_of_next_month(req.start)
            due_on = self.statutory_due(first, roll_forward=roll_forward)
        else:
            assert req.due_on is not None
            if req.due_on < req.start:
                raise CalendarError(
                    f"期限 {req.due_on} 早于起算日 {req.start} / due_on is before start"
                )
            first = req.due_on
            due_on = self.statutory_due(first, roll_forward=roll_forward)
        remind_on = self.subtract_working_days(due_on, req.remind_working_days_before)
        escalate_on = self.add_working_days(due_on, req.grace_working_days)
        years = self.provisional_years(min(first, remind_on), escalate_on)
        return DeadlinePlan(
            due_on=due_on,
            due_at=end_of_day(due_on, tz),
            remind_at=at_local(remind_on, REMIND_HOUR, tz),
            escalate_on=escalate_on,
            escalate_at=end_of_day(escalate_on, tz),
            provisional=bool(years),
            provisional_years=years,
        )
