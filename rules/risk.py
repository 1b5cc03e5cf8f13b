"""Risk indicators for special inspections (专项督察, DOMAIN.md §4): pure, no I/O, no clock.

A unit with many public complaints (群众投诉), many lost administrative lawsuits (行政诉讼败诉) or
many revoked reconsideration decisions (行政复议被撤销/纠错) in the scan window is flagged; each
indicator is compared with its own threshold (flagged when the count reaches it).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from schemas.risk import RiskFlag, RiskThresholds, UnitIndicators

METRIC_NAMES = {
    "complaints": "群众投诉",
    "lost_lawsuits": "行政诉讼败诉",
    "revoked_decisions": "行政复议被撤销",
}


def flag_units(rows: Iterable[UnitIndicators], thresholds: RiskThresholds) -> list[RiskFlag]:
    """Units at or over any threshold, with the reasons, ordered by unit code."""
    flags: list[RiskFlag] = []
    for row in sorted(rows, key=lambda r: r.unit):
        reasons = []
        for metric, name in METRIC_NAMES.items():
            value, limit = getattr(row, metric), getattr(thresholds, metric)
            if value >= limit:
                reasons.append(f"{name} {value} ≥ {limit}")
        if reasons:
            flags.append(RiskFlag(unit=row.unit, reasons=reasons))
    return flags


def previous_period(today: date) -> str:
    """The month before `today`, as YYYY-MM: a scan on the 5th looks at last month's data."""
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{year}-{month:02d}"


def window(period: str, months: int) -> tuple[str, str]:
    """The first and last period (YYYY-MM) of `months` months ending with `period`."""
    year, month = (int(p) for p in period.split("-"))
    index = year * 12 + (month - 1) - (months - 1)
    return f"{index // 12}-{index % 12 + 1:02d}", period
