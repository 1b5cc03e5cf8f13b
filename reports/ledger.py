"""Read-only queries over the ledger for operators' reports (台账, 督察情况通报)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date

import asyncpg

from rules.bulletin import SHOWN, Bulletin, BulletinLine, UnitStatus, assemble
from schemas.reports import ProblemRow

STATUS_FILTERS = {
    "open": "r.stage <> 'closed'",
    "overdue": "r.overdue AND r.stage <> 'closed'",
    "closed": "r.stage = 'closed'",
    "carried": "r.carried_over > 0 AND r.stage <> 'closed'",
    "escalated": "r.escalated",
}
# The columns of a ledger row (schemas.reports.ProblemRow, unit_name and timeline aside).
ROW_COLUMNS = ", ".join(f"r.{c}" for c in ProblemRow.model_fields if c not in ("unit_name", "timeline"))
# The ledger's order: newest first (indexes rectifications_newest, rectifications_unit_newest,
# rectifications_overdue_newest and the open ones of migration 0012 are in this order).
ORDER = " ORDER BY r.required_at DESC, r.problem_no"
LEDGER_PAGE = 50  # `ducha ledger` without --limit or --all: one screenful
# `more` in a ledger page is exact up to this many rows (counting a million rows is not a page's work).
MORE_CAP = 10_000

# A day of the county's calendar as a range of required_at, so the page indexes serve it:
# (required_at AT TIME ZONE 'Asia/Shanghai')::date >= d  <=>  required_at >= d 00:00 in Shanghai.
ZONE = "'Asia/Shanghai'"


def _from_day(n: int) -> str:
    return f"r.required_at >= (${n}::date)::timestamp AT TIME ZONE {ZONE}"


def _to_day(n: int) -> str:
    return f"r.required_at < (${n}::date + 1)::timestamp AT TIME ZONE {ZONE}"


# 督察情况通报: counts per unit and per category of the problems raised in [$1, $2] in one pass
# (GROUPING SETS), and the problems the bulletin lists with only what it shows of them (the texts
# cut where the bulletin cuts them).
BULLETIN_COUNTS = f"""
WITH g AS (
    SELECT r.unit, r.category, GROUPING(r.unit) = 1 AS by_category, count(*) AS total,
           count(*) FILTER (WHERE r.missed_deadlines = 0) AS on_time,
           count(*) FILTER (WHERE r.missed_deadlines > 0) AS overdue,
           count(*) FILTER (WHERE r.escalated) AS escalated,
           count(*) FILTER (WHERE r.stage = 'closed') AS closed
    FROM rectifications r
    WHERE {_from_day(1)} AND {_to_day(2)}
    GROUP BY GROUPING SETS ((r.unit), (r.category)))
SELECT g.*, coalesce(p.name, g.unit) AS unit_name FROM g LEFT JOIN parties p ON p.code = g.unit"""
BULLETIN_LINES = f"""
SELECT r.problem_no, r.unit, coalesce(p.name, r.unit) AS unit_name, r.list = 'common' AS common,
       r.category, left(r.description, {SHOWN}), left(r.opinion, {SHOWN}), r.due_on, r.stage
FROM rectifications r LEFT JOIN parties p ON p.code = r.unit
WHERE {_from_day(1)} AND {_to_day(2)}"""  # the columns of rules.bulletin.BulletinLine, in its order


@dataclass
class LedgerPage:
    """One page of the ledger, newest first. `more`: matching problems after this page (exact up
    to MORE_CAP; `more_capped` when there are more than that); `next_before`: the problem number
    to pass as `before` for the next page."""

    problems: list[ProblemRow]
    more: int
    more_capped: bool

    @property
    def next_before(self) -> str | None:
        return self.problems[-1].problem_no if self.more and self.problems else None


class UnknownProblem(LookupError):
    """`before` names no problem in the ledger."""


class Reports:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool  # a pool, or anything with asyncpg's fetch/fetchval (and acquire for bulletin)

    async def _where(self, unit: str | None, status: str | None, since: date | None, until: date | None,
                     before: str | None) -> tuple[list[str], list]:
        """Only the filters given, so a prepared statement's generic plan is the custom one."""
        where: list[str] = []
        args: list = []
        if unit is not None:
            args.append(unit)
            where.append(f"r.unit = ${len(args)}")
        if since is not None:
            args.append(since)
            where.append(_from_day(len(args)))
        if until is not None:
            args.append(until)
            where.append(_to_day(len(args)))
        if status:
            where.append(STATUS_FILTERS[status])
        if before is not None:
            # Keyset paging in the ledger's order (required_at DESC, problem_no): the rows after `before`.
            at = await self.pool.fetchval("SELECT required_at FROM rectifications WHERE problem_no = $1", before)
            if at is None:
                raise UnknownProblem(before)
            args += [at, before]
            t, no = len(args) - 1, len(args)
            where.append(f"r.required_at <= ${t} AND (r.required_at < ${t} OR r.problem_no > ${no})")
        return where, args

    async def problems(
        self,
        *,
        unit: str | None = None,
        status: str | None = None,
        since: date | None = None,
        until: date | None = None,
        before: str | None = None,
        with_timeline: bool = True,
        limit: int | None = None,
    ) -> list[ProblemRow]:
        """Rectification ledger rows, newest first; `since`/`until` bound the day the problem
        was raised (inclusive, Asia/Shanghai); `before` starts after that problem (keyset paging)."""
        where, args = await self._where(unit, status, since, until, before)
        rows = await self.pool.fetch(
            f"SELECT {ROW_COLUMNS}, coalesce(p.name, r.unit) AS unit_name FROM rectifications r "
            "LEFT JOIN parties p ON p.code = r.unit" + (" WHERE " + " AND ".join(where) if where else "")
            + ORDER + (f" LIMIT {int(limit)}" if limit else ""),
            *args,
        )
        timelines: dict[str, list[dict]] = {}
        if with_timeline and rows:
            for e in await self.pool.fetch(
                "SELECT subject_id, occurred_at AS at, event, actor, agency FROM ledger_events "
                "WHERE subject_kind = 'rectification' AND subject_id = ANY($1::text[]) "
                "ORDER BY subject_id, seq",
                [r["problem_no"] for r in rows],
            ):
                timelines.setdefault(e["subject_id"], []).append(dict(e))
        # One validation per row, its timeline included (pydantic validates the nested entries).
        return [ProblemRow.model_validate({**r, "timeline": timelines.get(r["problem_no"], [])}) for r in rows]

    async def count(self, *, unit: str | None = None, status: str | None = None, before: str | None = None,
                    cap: int | None = None) -> int:
        """How many problems match (after `before`), counting at most `cap` + 1 rows."""
        where, args = await self._where(unit, status, None, None, before)
        inner = "SELECT 1 FROM rectifications r" + (" WHERE " + " AND ".join(where) if where else "")
        if cap is not None:
            inner += f" LIMIT {int(cap) + 1}"
        return await self.pool.fetchval(f"SELECT count(*) FROM ({inner}) s", *args)

    async def page(self, *, unit: str | None = None, status: str | None = None, before: str | None = None,
                   limit: int = LEDGER_PAGE, with_timeline: bool = True) -> LedgerPage:
        """`ducha ledger`: the newest `limit` problems after `before`, and how many more there are."""
        problems = await self.problems(unit=unit, status=status, before=before, limit=limit,
                                       with_timeline=with_timeline)
        more = 0
        if len(problems) == limit:
            more = await self.count(unit=unit, status=status, before=problems[-1].problem_no, cap=MORE_CAP)
        return LedgerPage(problems=problems, more=min(more, MORE_CAP), more_capped=more > MORE_CAP)

    async def all_pages(self, *, unit: str | None = None, status: str | None = None, before: str | None = None,
                        size: int = 2_000) -> AsyncIterator[list[ProblemRow]]:
        """Every matching problem (with its timeline), newest first, `size` at a time: an export
        of the whole ledger never holds more than one page."""
        while True:
            chunk = await self.problems(unit=unit, status=status, before=before, limit=size)
            if chunk:
                yield chunk
            if len(chunk) < size:
                return
            before = chunk[-1].problem_no

    async def bulletin(self, county: str, since: date, until: date) -> Bulletin:
        """督察情况通报 for problems raised in [since, until] (Asia/Shanghai days): counts by SQL
        aggregates, the listed problems with only the columns the bulletin shows, both read in one
        snapshot."""
        with _gc_paused():  # tens of thousands of rows, no cycles: nothing for the cyclic GC to find
            async with _snapshot(self.pool) as db:
                counts = await db.fetch(BULLETIN_COUNTS, since, until)
                rows = await db.fetch(BULLETIN_LINES, since, until)
            return self._bulletin(county, since, until, counts, rows)

    @staticmethod
    def _bulletin(county: str, since: date, until: date, counts, rows) -> Bulletin:
        units: list[UnitStatus] = []
        by_category: dict[str, int] = {}
        for c in counts:
            if c["by_category"]:
                by_category[c["category"]] = c["total"]
            else:
                units.append(UnitStatus(unit=c["unit"], unit_name=c["unit_name"], total=c["total"],
                                        on_time=c["on_time"], overdue=c["overdue"], escalated=c["escalated"],
                                        closed=c["closed"], open=c["total"] - c["closed"]))
        lines = list(map(BulletinLine._make, rows))
        return assemble(county, since, until, units, by_category, lines)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a big result becomes Python objects: each of its
    collections would walk every object made so far (a quarter of the bulletin's time at 50,000
    problems). The objects hold no cycles; the pause is the length of the read."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextlib.asynccontextmanager
async def _snapshot(db) -> AsyncIterator:
    """A read-only REPEATABLE READ transaction: several statements see one state of the ledger."""
    if hasattr(db, "acquire"):
        async with db.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            yield conn
    else:
        async with db.transaction(isolation="repeatable_read", readonly=True):
            yield db
