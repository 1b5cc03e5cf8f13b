"""整改销号台账 as an Excel workbook (`ducha ledger --xlsx FILE`): a 汇总 sheet, then one sheet
per stage (整改中, 待验收, 已验收待回头看, 回头看, 已销号), problems newest first in each.

The rows stream: one read-only REPEATABLE READ transaction reads the ledger through a server-side
cursor (asyncpg's cursor, PREFETCH rows at a time) in the ledger's order, and each row goes
straight to its sheet's write-only stream on disk; nothing holds more than one batch. A stage
with more rows than an Excel sheet takes continues on 「已销号（续2）」 and so on. Column widths
come from the header and the first batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg

from documents.xlsx import MAX_ROWS, Book, Light, Sheet, widths
from reports.ledger import ORDER, STATUS_FILTERS
from rules.bulletin import LIST_NAMES, STAGE_NAMES

PREFETCH = 2_000
HEADER = ["问题编号", "单位", "单位代码", "清单", "类别", "严重程度", "阶段", "督办灯", "整改时限", "逾期",
          "逾期次数", "拒不整改升级", "反弹次数", "结转次数", "下达时间", "报告时间", "销号时间", "问题描述",
          "整改意见"]
COLUMNS = ("r.problem_no, coalesce(p.name, r.unit) AS unit_name, r.unit, r.list, r.category, r.severity, r.stage, "
           "r.light, r.due_on, r.overdue, r.missed_deadlines, r.escalated, r.reopened, r.carried_over, "
           "r.required_at, r.reported_at, r.closed_at, r.description, r.opinion")
SEVERITY = {"serious": "严重", "general": "一般"}


@dataclass
class Export:
    """What was written: rows per stage sheet, in the workbook's order (after 汇总)."""

    path: Path
    sheets: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.sheets.values())


def query(unit: str | None, status: str | None) -> tuple[str, list]:
    where, args = [], []
    if unit is not None:
        args.append(unit)
        where.append(f"r.unit = ${len(args)}")
    if status:
        where.append(STATUS_FILTERS[status])
    sql = (f"SELECT {COLUMNS} FROM rectifications r LEFT JOIN parties p ON p.code = r.unit"
           + (" WHERE " + " AND ".join(where) if where else "") + ORDER)
    return sql, args


async def export(pool: asyncpg.Pool, path: Path, zone: ZoneInfo, *, unit: str | None = None,
                 status: str | None = None, max_rows: int = MAX_ROWS,
                 progress: Callable[[int], None] | None = None) -> Export:
    """Write the ledger (filtered like `ducha ledger`) to `path`; `max_rows` per sheet, header
    included (smaller only in tests)."""
    sql, args = query(unit, status)
    book = Book(zone)
    summary = book.wb.create_sheet("汇总")
    out = Export(path)
    sheets: dict[str, list[Sheet]] = {}
    col_widths: list[float] = []
    light_counts: dict[tuple[str, str], int] = {}

    def sheet_for(stage: str) -> Sheet:
        chain = sheets.get(stage)
        if chain is None or (chain[-1].rows + 1 >= max_rows):
            name = STAGE_NAMES.get(stage, stage)
            if chain:
                name = f"{name}（续{len(chain) + 1}）"
            chain = sheets.setdefault(stage, [])
            chain.append(book.sheet(name, HEADER, col_widths))
        return chain[-1]

    def row(r) -> list:
        return [r[0], r[1], r[2], LIST_NAMES.get(r[3], r[3]), r[4], SEVERITY.get(r[5], r[5]),
                STAGE_NAMES.get(r[6], r[6]), Light(r[7]) if r[7] else None, r[8], "是" if r[9] else "否", r[10],
                "是" if r[11] else "", r[12], r[13], r[14], r[15], r[16], r[17], r[18]]

    written = 0
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = conn.cursor(sql, *args, prefetch=PREFETCH)
        first: list | None = []  # the first batch, until the widths are known
        async for r in cursor:
            if first is not None:
                first.append(r)
                if len(first) < PREFETCH:
                    continue
                _start(first, row, col_widths, sheet_for)
                for f in first:
                    _put(f, row, sheet_for, light_counts)
                written += len(first)
                first = None
                continue
            _put(r, row, sheet_for, light_counts)
            written += 1
            if progress and written % 100_000 == 0:
                progress(written)
        if first is not None:
            _start(first, row, col_widths, sheet_for)
            for f in first:
                _put(f, row, sheet_for, light_counts)
    for chain in sheets.values():
        for s in chain:
            s.done()
            out.sheets[s.ws.title] = s.rows
    _summary(book, summary, sheets, light_counts)
    book.save(path)
    return out


def _start(first: list, row, col_widths: list[float], sheet_for) -> None:
    """The widths from the first batch, and the five stage sheets in the ledger's stage order."""
    col_widths[:] = widths(HEADER, (row(r) for r in first))
    for stage in STAGE_NAMES:
        sheet_for(stage)


def _put(r, row, sheet_for, light_counts: dict) -> None:
    sheet_for(r[6]).append(row(r))
    key = (r[6], r[7])
    light_counts[key] = light_counts.get(key, 0) + 1


def _summary(book: Book, ws, sheets: dict[str, list[Sheet]], light_counts: dict) -> None:
    """汇总: problems per stage and per light (the sheet was created first, written last)."""
    from openpyxl.cell import WriteOnlyCell

    ws.column_dimensions["A"].width = 20
    for col in "BCDE":
        ws.column_dimensions[col].width = 10
    ws.freeze_panes = "A2"
    head = []
    for h in ("阶段", "问题数", "绿", "黄", "红"):
        c = WriteOnlyCell(ws, h)
        c.style = "head"
        head.append(c)
    ws.append(head)
    for stage, chain in sheets.items():
        ws.append([STAGE_NAMES.get(stage, stage), sum(s.rows for s in chain),
                   *[light_counts.get((stage, light), 0) for light in ("green", "yellow", "red")]])
    ws.append(["合计", sum(s.rows for chain in sheets.values() for s in chain),
               *[sum(n for (_, lt), n in light_counts.items() if lt == light) for light in ("green", "yellow", "red")]])
    ws.auto_filter.ref = f"A1:E{len(sheets) + 1}"
