"""Read-only queries over the ledger for operators' reports (台账, 督察情况通报)."""

from __future__ import annotations

from datetime import date

import asyncpg

from schemas.reports import ProblemRow, TimelineEntry

STATUS_FILTERS = {
    "open": "r.stage <> 'closed'",
    "overdue": "r.overdue AND r.stage <> 'closed'",
    "closed": "r.stage = 'closed'",
    "carried": "r.carried_over > 0 AND r.stage <> 'closed'",
    "escalated": "r.escalated",
}


class Reports:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def problems(
        self,
        *,
        unit: str | None = None,
        status: str | None = None,
        since: date | None = None,
        until: date | None = None,
        with_timeline: bool = True,
        limit: int | None = None,
    ) -> list[ProblemRow]:
        """Rectification ledger rows, newest first; `since`/`until` bound the day the problem
        was raised (inclusive, Asia/Shanghai)."""
        where = ["($1::text IS NULL OR r.unit = $1)",
                 "($2::date IS NULL OR (r.required_at AT TIME ZONE 'Asia/Shanghai')::date >= $2)",
                 "($3::date IS NULL OR (r.required_at AT TIME ZONE 'Asia/Shanghai')::date <= $3)"]
        if status:
            where.append(STATUS_FILTERS[status])
        rows = await self.pool.fetch(
            "SELECT r.*, coalesce(p.name, r.unit) AS unit_name FROM rectifications r "
            "LEFT JOIN parties p ON p.code = r.unit WHERE " + " AND ".join(where) +
            " ORDER BY r.required_at DESC, r.problem_no" + (f" LIMIT {int(limit)}" if limit else ""),
            unit, since, until,
        )
        problems = [ProblemRow(**{k: r[k] for k in ProblemRow.model_fields if k != "timeline"}) for r in rows]
        if with_timeline and problems:
            events = await self.pool.fetch(
                "SELECT subject_id, occurred_at, event, actor, agency FROM ledger_events "
                "WHERE subject_kind = 'rectification' AND subject_id = ANY($1::text[]) "
                "ORDER BY subject_id, seq",
                [p.problem_no for p in problems],
            )
            by_no: dict[str, list[TimelineEntry]] = {}
            for e in events:
                by_no.setdefault(e["subject_id"], []).append(
                    TimelineEntry(at=e["occurred_at"], event=e["event"], actor=e["actor"], agency=e["agency"]))
            for p in problems:
                p.timeline = by_no.get(p.problem_no, [])
        return problems
