"""Workbook helpers shared by the .xlsx exports (openpyxl, write-only mode: rows go to disk as
they are appended, so a sheet of a million rows never sits in memory).

Every sheet: a bold header row that stays in view (frozen) with auto-filters over the rows
written, dates and times as real Excel dates (the county's local time, which Excel cannot carry
as a zone), the traffic light as a filled cell, and column widths that fit Chinese text (a
full-width character counts two)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import Cell
from openpyxl.styles import Alignment, Font, NamedStyle, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.utils.datetime import to_excel
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.xml.functions import Element, SubElement

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


class Light(str):
    """A traffic-light value (green / yellow / red) for a filled cell."""


class Book:
    """A write-only workbook with the shared styles registered once."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.wb = Workbook(write_only=True)
        self.zone = zone
        self.styles: dict[str, NamedStyle] = {}
        for name, (_, colour) in LIGHTS.items():
            self._style(NamedStyle(name=f"light_{name}", fill=PatternFill("solid", fgColor=colour),
                                   alignment=Alignment(horizontal="center"), font=Font(name=FONT)))
        self._style(NamedStyle(name="when", number_format=TIME_FORMAT, font=Font(name=FONT)))
        self._style(NamedStyle(name="day", number_format=DATE_FORMAT, font=Font(name=FONT)))
        self._style(NamedStyle(name="head", font=Font(name=FONT, bold=True), fill=PatternFill("solid", fgColor="DDE6F0"),
                               alignment=Alignment(horizontal="center", vertical="center")))
        self._ids: dict[str, int] = {}

    def _style(self, style: NamedStyle) -> None:
        self.wb.add_named_style(style)
        self.styles[style.name] = style

    def style_id(self, ws: WriteOnlyWorksheet, name: str) -> int:
        """The cell format index of a named style (as openpyxl numbers it in styles.xml)."""
        if name not in self._ids:
            c = WriteOnlyCell(ws)
            c.style = name
            self._ids[name] = c.style_id
        return self._ids[name]

    def sheet(self, title: str, header: Sequence[str], col_widths: Sequence[float]) -> Sheet:
        ws = self.wb.create_sheet(_title(title))
        return Sheet(self, ws, list(header), col_widths)

    def save(self, path) -> None:
        self.wb.save(path)


class Sheet:
    """One sheet: the header written at once (frozen, filtered), rows appended, and the auto-filter
    range set to the rows written when the book is saved.

    Rows take plain values: str, int, float, bool (是/否), date and datetime (an aware datetime
    is shown in the book's zone), Light (a filled 绿/黄/红 cell) and None (an empty cell). They
    are written into openpyxl's write-only stream as one lxml element per row (the workbook, its
    styles and the sheet's header, views and filters stay openpyxl's): openpyxl's own row path
    makes a Cell object per value and takes twice the CPU per ledger row (docs/benchmarks.md)."""

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
        ws.append(cells)  # openpyxl's own path, which also opens the sheet's stream
        self._letters = [get_column_letter(i) for i in range(1, len(header) + 1)]
        ids = {name: str(book.style_id(ws, name)) for name in ("day", "when", *(f"light_{k}" for k in LIGHTS))}
        self._day, self._when = ids["day"], ids["when"]
        self._light = {k: (ids[f"light_{k}"], text) for k, (text, _) in LIGHTS.items()}
        ws._values_to_row = _raw  # rows reach write_row as given ...
        ws._writer.write_row = self._write_row  # ... and are written here
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

    def _write_row(self, xf, values: Sequence[object], row_idx: int) -> None:
        n = str(row_idx)
        row = Element("row", r=n)
        for letter, v in zip(self._letters, values, strict=False):
            if v is None or v == "":
                continue
            ref = letter + n
            if isinstance(v, Light):
                style, text = self._light.get(v, ("0", str(v)))
                c = SubElement(row, "c", r=ref, s=style, t="inlineStr")
                SubElement(SubElement(c, "is"), "t").text = text
            elif isinstance(v, str):
                c = SubElement(row, "c", r=ref, t="inlineStr")
                t = SubElement(SubElement(c, "is"), "t")
                t.text = _xml_safe(v)
                if v != v.strip():
                    t.set(PRESERVE, "preserve")
            elif isinstance(v, bool):
                c = SubElement(row, "c", r=ref, t="inlineStr")
                SubElement(SubElement(c, "is"), "t").text = "是" if v else "否"
            elif isinstance(v, int | float):
                SubElement(SubElement(row, "c", r=ref, t="n"), "v").text = repr(v)
            elif isinstance(v, datetime):
                if v.tzinfo is not None:
                    v = v.astimezone(self.book.zone).replace(tzinfo=None)
                SubElement(SubElement(row, "c", r=ref, s=self._when, t="n"), "v").text = repr(to_excel(v))
            elif isinstance(v, date):
                SubElement(SubElement(row, "c", r=ref, s=self._day, t="n"), "v").text = repr(to_excel(v))
            else:
                c = SubElement(row, "c", r=ref, t="inlineStr")
                SubElement(SubElement(c, "is"), "t").text = _xml_safe(str(v))
        xf.write(row)


PRESERVE = "{http://www.w3.org/XML/1998/namespace}space"
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _raw(values, row_idx):
    return values


def _xml_safe(text: str) -> str:
    """XML 1.0 cannot carry most control characters: they are dropped."""
    return _CONTROL.sub("", text) if not text.isprintable() else text


def _title(title: str) -> str:
    """A valid sheet name: at most 31 characters, none of : \\ / ? * [ ]."""
    for ch in ":\\/?*[]":
        title = title.replace(ch, "_")
    return title[:31]
