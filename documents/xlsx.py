"""Workbook helpers shared by the .xlsx exports (openpyxl, write-only mode: rows go to disk as
they are appended, so a sheet of a million rows never sits in memory).

Every sheet: a bold header row that stays in view (frozen) with auto-filters over the rows
written, dates and times as real Excel dates (the county's local time, which Excel cannot carry
as a zone), the traffic light as a filled cell, and column widths that fit Chinese text (a
full-width character counts two)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import Cell
from openpyxl.styles import Alignment, Font, NamedStyle, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

MAX_ROWS = 1_048_576  # an Excel sheet's rows, the header included
MAX_WIDTH = 60  # characters: a long text column stays readable, the rest of the row in view
MIN_WIDTH = 6
LIGHTS = {"green": ("绿", "C6EFCE"), "yellow": ("黄", "FFEB9C"), "red": ("红", "FFC7CE")}
DATE_FORMAT = "yyyy-mm-dd"
TIME_FORMAT = "yyyy-mm-dd hh:mm"
FONT = "等线"


def text_width(value: object) -> int:
    """How many narrow characters `value` takes in a cell: wide (CJK, full-width) ones count two."""
    if value is None:
        return 0
    if isinstance(value, datetime):
        return 16
    if isinstance(value, date):
        return 10
    s = str(value)
    if s.isascii():
        return len(s)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def widths(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[float]:
    """Column widths (Excel character units) that fit the header and the sample rows."""
    w = [text_width(h) for h in header]
    for r in rows:
        for i, v in enumerate(r):
            n = text_width(v.value if isinstance(v, Cell) else v)
            if n > w[i]:
                w[i] = n
    return [min(max(n + 2, MIN_WIDTH), MAX_WIDTH) for n in w]


class Book:
    """A write-only workbook with the shared styles registered once."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.wb = Workbook(write_only=True)
        self.zone = zone
        for name, (_, colour) in LIGHTS.items():
            self.wb.add_named_style(NamedStyle(name=f"light_{name}", fill=PatternFill("solid", fgColor=colour),
                                               alignment=Alignment(horizontal="center"), font=Font(name=FONT)))
        self.wb.add_named_style(NamedStyle(name="when", number_format=TIME_FORMAT, font=Font(name=FONT)))
        self.wb.add_named_style(NamedStyle(name="day", number_format=DATE_FORMAT, font=Font(name=FONT)))
        self.wb.add_named_style(NamedStyle(name="head", font=Font(name=FONT, bold=True),
                                           fill=PatternFill("solid", fgColor="DDE6F0"),
                                           alignment=Alignment(horizontal="center", vertical="center")))

    def sheet(self, title: str, header: Sequence[str], col_widths: Sequence[float]) -> Sheet:
        ws = self.wb.create_sheet(_title(title))
        return Sheet(self, ws, list(header), col_widths)

    def light(self, value: str | None) -> WriteOnlyCell | str:
        """The traffic light as a filled cell (绿 / 黄 / 红)."""
        if value not in LIGHTS:
            return value or ""
        c = WriteOnlyCell(self._any_ws, LIGHTS[value][0])
        c.style = f"light_{value}"
        return c

    def when(self, at: datetime | None) -> WriteOnlyCell | None:
        """An instant as the county's local date and time (Excel has no time zones)."""
        if at is None:
            return None
        c = WriteOnlyCell(self._any_ws, at.astimezone(self.zone).replace(tzinfo=None))
        c.style = "when"
        return c

    def day(self, d: date | None) -> WriteOnlyCell | None:
        if d is None:
            return None
        c = WriteOnlyCell(self._any_ws, d)
        c.style = "day"
        return c

    @property
    def _any_ws(self) -> WriteOnlyWorksheet:
        return self.wb.worksheets[0]

    def save(self, path) -> None:
        self.wb.save(path)


class Sheet:
    """One sheet: the header written at once (frozen, filtered), rows appended, and the auto-filter
    range set to the rows written when the book is saved."""

    def __init__(self, book: Book, ws: WriteOnlyWorksheet, header: list[str], col_widths: Sequence[float]) -> None:
        self.book = book
        self.ws = ws
        self.header = header
        self.rows = 0
        for i, w in enumerate(col_widths, start=1):
            ws.column_dimensions[get_column_letter(i)].width = w
        ws.freeze_panes = "A2"
        cells = []
        for h in header:
            c = WriteOnlyCell(ws, h)
            c.style = "head"
            cells.append(c)
        ws.append(cells)
        self._filter()

    @property
    def full(self) -> bool:
        return self.rows + 1 >= MAX_ROWS

    def append(self, row: Sequence[object]) -> None:
        self.ws.append(row)
        self.rows += 1

    def done(self) -> None:
        self._filter()

    def _filter(self) -> None:
        self.ws.auto_filter.ref = f"A1:{get_column_letter(len(self.header))}{self.rows + 1}"


def _title(title: str) -> str:
    """A valid sheet name: at most 31 characters, none of : \\ / ? * [ ]."""
    for ch in ":\\/?*[]":
        title = title.replace(ch, "_")
    return title[:31]
