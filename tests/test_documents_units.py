"""The pure parts of documents/: 文号 and dates as 公文 write them, agency names with the county,
the chart rasteriser (the HTML report's SVG, refused beyond the part it draws) and the workbook's
cell writer (values that XML cannot carry)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from PIL import Image

from documents.bulletin import _chinese_number
from documents.charts import ChartError, chart_title, svg_to_png
from documents.context import county_name
from documents.gongwen import chinese_date, doc_number
from documents.xlsx import Book, Light
from rules.annual_report import BLUE, RED, bar_chart, column_chart


def test_doc_number_and_date():
    assert doc_number("西法督", 2027, 3) == "西法督〔2027〕3号"
    assert chinese_date(date(2027, 1, 5)) == "2027年1月5日"
    assert [_chinese_number(n) for n in (1, 10, 12, 20, 35, 100)] == ["一", "十", "十二", "二十", "三十五", "100"]


@pytest.mark.parametrize("county,name,full", [("西县", "县委依法治县办", "西县委依法治县办"),
                                              ("西县", "西县人民法院", "西县人民法院"),
                                              ("东城区", "区司法局", "东城区区司法局"), ("", "县委", "县委")])
def test_county_name(county, name, full):
    assert county_name(county, name) == full


def test_chart_is_drawn_with_its_colours():
    svg = column_chart("督察覆盖：按月", ["01月", "02月"], [("完成督察", BLUE, [3, 5]), ("首次覆盖单位", RED, [1, 0])])
    img = Image.open(io.BytesIO(svg_to_png(svg))).convert("RGB")
    assert img.size == (560 * 3, 280 * 3)
    colours = {c for _, c in img.getcolors(1 << 24)}
    assert (0x1F, 0x5F, 0xA8) in colours and (0xC0, 0x39, 0x2B) in colours
    assert chart_title(svg) == "督察覆盖：按月"
    # Text was drawn: dark pixels in the title's band.
    title = img.crop((0, 0, img.width, 25 * 3))
    assert sum(n for n, c in title.getcolors(1 << 24) if sum(c) < 300) > 500


def test_chart_outside_the_supported_svg_is_refused():
    svg = bar_chart("x", [("a", 1, BLUE, "1")]).replace("</svg>", '<path d="M0 0"/></svg>')
    with pytest.raises(ChartError, match="path"):
        svg_to_png(svg)


def test_missing_font_is_one_clear_error(monkeypatch):
    from documents import charts

    monkeypatch.setenv("DUCHA_CJK_FONT", "/nonexistent/font.ttc")
    charts._font.cache_clear()
    with pytest.raises(ChartError, match="DUCHA_CJK_FONT"):
        svg_to_png(bar_chart("x", [("a", 1, BLUE, "1")]))
    charts._font.cache_clear()


def test_sheet_cells(tmp_path):
    book = Book(ZoneInfo("Asia/Shanghai"))
    sheet = book.sheet("a/b:c", ["文本", "数", "日期", "时间", "灯", "是否"], [10] * 6)
    sheet.append([" 前后空格 \x01\x1f", 3.5, date(2026, 2, 1), datetime(2026, 1, 31, 16, 30, tzinfo=UTC),
                  Light("yellow"), True])
    sheet.append(["<&>", None, None, None, Light("purple"), False])
    sheet.done()
    book.save(tmp_path / "t.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "t.xlsx")["a_b_c"]
    a, b = ([c for c in row] for row in ws.iter_rows(min_row=2))
    assert a[0].value == " 前后空格 " and a[1].value == 3.5
    assert a[2].value == datetime(2026, 2, 1) and a[2].number_format == "yyyy-mm-dd"
    assert a[3].value == datetime(2026, 2, 1, 0, 30) and a[3].number_format == "yyyy-mm-dd hh:mm"  # Shanghai
    assert a[4].value == "黄" and a[4].fill.fgColor.rgb.endswith("FFEB9C") and a[5].value == "是"
    assert b[0].value == "<&>" and b[1].value is None and b[4].value == "purple" and b[5].value == "否"
    assert ws.auto_filter.ref == "A1:F3" and ws.freeze_panes == "A2"


def test_table_cells_keep_their_text():
    """Table rows are copies of one template row: each keeps its own text, line breaks and
    spaces; control characters XML cannot carry are dropped."""
    from docx import Document

    from documents.gongwen import Header, new_document

    body = new_document(Header(issuer="西县委依法治县办", number="西法督〔2026〕1号", title="标题", addressee="县委",
                               issued_on=date(2026, 7, 3)))
    rows = [["1", " 前后空格 "], ["2", "第一行\n第二行"], ["3", "控制\x01字符"], ["4", None]]
    body.table(["序号", "内容"], rows, widths=[20, 136])
    doc = Document(io.BytesIO(body.finish()))
    t = doc.tables[0]
    assert [[c.text for c in r.cells] for r in t.rows] == [
        ["序号", "内容"], ["1", " 前后空格 "], ["2", "第一行\n第二行"], ["3", "控制字符"], ["4", ""]]
    assert all(round(c.width / 36000) == w for r in t.rows for c, w in zip(r.cells, (20, 136), strict=True))
    with pytest.raises(ValueError, match="columns"):
        body.table(["a", "b"], [["only one"]])
