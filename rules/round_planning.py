"""Planning the yearly full-coverage round (平时督察, DOMAIN.md §2): pure, no I/O, no clock.

"In batches, by plan, unit by unit; every enforcement unit once a year", and next year's round
puts last year's unfinished rectifications first (§3(2)3). Priority, best first:

1. units with carried-over (结转) problems — more carried-over problems first;
2. units with a score from last year's evaluation — worst score first;
3. every other unit.

Ties are broken by unit code, so the same inputs always give the same plan. The units, in that
order, are cut into `batches` consecutive batches of (almost) equal size, the earlier ones taking
the remainder; batch k opens k/n of the way through the window [first day, due date], so the last
batch still has 1/n of the window to finish. The unit's level (county / township) is carried
through for the record; it does not change the priority.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta


class PlanningError(ValueError):
    """Inputs that cannot make a plan (a business error: never retried)."""


@dataclass(frozen=True)
class PlanUnit:
    code: str
    level: str = "county"
    carried_over: int = 0  # open problems carried over from earlier years
    last_score: float | None = None  # last year's evaluation score (lower is worse)
    focus: tuple[str, ...] = field(default=())  # the carried-over problem numbers

    @property
    def group(self) -> int:
        if self.carried_over > 0:
            return 0
        if self.last_score is not None:
            return 1
        return 2


@dataclass(frozen=True)
class PlannedBatch:
    number: int  # 1-based
    opens_on: date
    units: tuple[str, ...]


def priority_key(u: PlanUnit) -> tuple:
    score = u.last_score if u.last_score is not None else float("inf")
    return (u.group, -u.carried_over, score, u.code)


def priority_order(units: Sequence[PlanUnit]) -> list[PlanUnit]:
    codes = [u.code for u in units]
    if len(set(codes)) != len(codes):
        dup = sorted({c for c in codes if codes.count(c) > 1})
        raise PlanningError(f"单位代码重复 / duplicate unit codes: {', '.join(dup)}")
    return sorted(units, key=priority_key)


def first_day(start_on: date, today: date) -> date:
    """A round planned late starts today, not in the past."""
    return max(start_on, today)


def plan_round(
    units: Sequence[PlanUnit], *, start_on: date, due_on: date, batches: int, today: date
) -> list[PlannedBatch]:
    """Ordered batches with their opening dates; no empty batch is ever planned."""
    if batches < 1:
        raise PlanningError("批次数至少为 1 / batches must be at least 1")
    first = first_day(start_on, today)
    if due_on < first:
        raise PlanningError(f"截止日期 {due_on} 早于开始日期 {first} / due_on is before the first day")
    ordered = priority_order(units)
    n = min(batches, len(ordered))
    if n == 0:
        return []
    span = (due_on - first).days
    size, extra = divmod(len(ordered), n)
    out: list[PlannedBatch] = []
    at = 0
    for i in range(n):
        take = size + (1 if i < extra else 0)
        chunk = tuple(u.code for u in ordered[at:at + take])
        at += take
        out.append(PlannedBatch(number=i + 1, opens_on=first + timedelta(days=span * i // n), units=chunk))
    return out


def later_batch(
    batches: Sequence[tuple[date, bool]], *, today: date, not_before: date, due_on: date
) -> tuple[int | None, date]:
    """Where a unit added mid-year, or postponed, goes.

    `batches` are (opens_on, opened) in order. The unit joins the first batch that has not opened
    yet, opens after today and on or after `not_before`; `(index, opens_on)` is returned. When there
    is none, `(None, day)`: a new batch is needed, opening on `day` = `not_before` (not before today,
    not after the due date) — today means "start at once".
    """
    for i, (opens_on, opened) in enumerate(batches):
        if not opened and opens_on > today and opens_on >= not_before:
            return i, opens_on
    return None, min(max(not_before, today), due_on)
