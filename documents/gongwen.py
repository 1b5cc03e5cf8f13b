"""The 公文 layout of GB/T 9704-2012 (党政机关公文格式) with python-docx, shared by every document
kind: A4 with the standard 版心 (156 × 225 mm; 天头 37 mm, 订口 28 mm), 3号仿宋 body at 22 lines a
page (the character grid of 28 a line is left to the fonts: see _page), the 版头 (red 发文机关标志, 发文字号, red separator), the 标题 in 2号小标宋,
主送机关, 正文 with its heading levels (一、 黑体, （一） 楷体), 发文机关署名 and 成文日期 under the
印章 position, the 版记 (抄送, 印发机关和印发日期, between separator lines) at the foot of the last
page, and page numbers "— N —" in 4号宋体 (odd pages right, even pages left).

Font names are the ones Chinese offices install (仿宋_GB2312, 方正小标宋简体, 黑体, 楷体_GB2312);
where they are missing (LibreOffice on Debian) the CJK fallback font (Noto CJK) renders the text.
The 印章 itself is applied by the office (by hand or an electronic seal system): the document
marks its place with the bookmark SEAL_BOOKMARK around 署名 and 成文日期 and leaves the line
above them free, as the standard puts the seal's top within one line of the text."""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from docx import Document
from docx.document import Document as DocxDocument
from docx.enum.section import WD_ORIENT
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_LINE_SPACING, WD_TAB_ALIGNMENT
from docx.oxml import OxmlElement, parse_xml
from docx.oxml.ns import qn
from docx.shared import Emu, Mm, Pt, RGBColor
from docx.table import _Cell
from docx.text.paragraph import Paragraph

# Fonts (east-Asian names; digits and Latin letters in Times New Roman).
FANGSONG = "仿宋_GB2312"
XIAOBIAOSONG = "方正小标宋简体"
HEITI = "黑体"
KAITI = "楷体_GB2312"
SONGTI = "宋体"
LATIN = "Times New Roman"
RED = RGBColor(0xE6, 0x00, 0x12)  # 红色 of the 版头 and its separator line

# Sizes (字号): 初号 42, 一号 26, 二号 22, 三号 16, 四号 14, 小四 12, 五号 10.5 points.
SIZE_TITLE = 22.0
SIZE_BODY = 16.0
SIZE_NOTE = 14.0
SIZE_TABLE = 12.0
CHAR = Pt(SIZE_BODY)  # one character of the body: the unit of 空二字 / 右空四字
# 225 mm / 22 lines: the body's exact line height (the "固定值 28.95 磅" of offices' templates).
LINE = Pt(28.95)
PAGE_W, PAGE_H = Mm(210), Mm(297)
TOP, BOTTOM, LEFT, RIGHT = Mm(37), Mm(35), Mm(28), Mm(26)
TEXT_W = Mm(156)
SEAL_BOOKMARK = "印章位置"
BANJI_MARK = "版记"  # the name of the 版记's text box (wp:docPr), to find it again


def doc_number(prefix: str, year: int, n: int) -> str:
    """发文字号: 机关代字〔年份〕序号号, e.g. 西法督〔2027〕3号 (the year in 六角括号, no leading zeros)."""
    return f"{prefix}〔{year}〕{n}号"


def chinese_date(d: date) -> str:
    """成文日期 in Arabic numerals without leading zeros: 2027年1月5日."""
    return f"{d.year}年{d.month}月{d.day}日"


@dataclass
class Header:
    """What frames a 公文: its 版头, 主送机关, signature and 版记."""

    issuer: str  # 发文机关 (its 标志 adds 文件, its 署名 is the name)
    number: str  # 发文字号
    title: str
    addressee: str  # 主送机关, without the colon
    issued_on: date  # 成文日期
    copies_to: Sequence[str] = ()  # 抄送机关
    printer: str = ""  # 印发机关 (default: the issuer)
    signer: str = ""  # 签发人: given for a 上行文 (a report to the county committee)
    kind: str = "文件"  # the word after the issuer's name in the 版头


@dataclass
class Body:
    """The builder of one 公文's body, on a python-docx Document."""

    doc: DocxDocument
    header: Header
    tables: int = field(default=0)

    # --- text ---------------------------------------------------------------------------------

    def paragraph(self, text: str, *, indent: bool = True) -> Paragraph:
        """A body paragraph: 3号仿宋, first line indented two characters."""
        p = self.doc.add_paragraph()
        if indent:
            p.paragraph_format.first_line_indent = CHAR * 2
        _run(p, text, FANGSONG, SIZE_BODY)
        return p

    def heading(self, text: str, level: int = 1) -> Paragraph:
        """一、 in 黑体 (level 1), （一） in 楷体 (level 2), 1. in 仿宋 bold (level 3); indented two characters."""
        p = self.doc.add_paragraph(style=f"Heading {level}")
        p.paragraph_format.first_line_indent = CHAR * 2
        font, bold = {1: (HEITI, False), 2: (KAITI, False)}.get(level, (FANGSONG, True))
        _run(p, text, font, SIZE_BODY, bold=bold)
        return p

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]], *,
              widths: Sequence[float] | None = None, empty: str = "（无）") -> None:
        """A table in 小四仿宋 with a bold header row that repeats on every page; `widths` in mm."""
        if not rows:
            self.paragraph(empty)
            return
        self.tables += 1
        t = self.doc.add_table(rows=1, cols=len(headers))
        t.style = self.doc.styles["Table Grid"]
        t.alignment = WD_TABLE_ALIGNMENT.CENTER
        t.autofit = widths is None
        cols = [Mm(w) for w in widths] if widths else None
        if cols:
            for col, w in zip(t.columns, cols, strict=True):
                col.width = w
        # Cells through their <w:tc> elements: python-docx's row.cells rebuilds the whole table's
        # cell list on every call, which makes a table of n rows cost n² (a bulletin lists
        # thousands of problems).
        head = t.rows[0]
        _repeat_header(head)
        self._row(t, head._tr, headers, cols, bold=True)
        # The data rows are copies of one row made by python-docx, with their texts replaced: its
        # element-by-element building takes ~3 ms a row, a copy ~0.1 ms.
        template = t.add_row()._tr
        self._row(t, template, ["x"] * len(headers), cols)
        template.getparent().remove(template)
        for r in rows:
            texts = ["" if v is None else str(v) for v in r]
            if len(texts) != len(headers):
                raise ValueError(f"a row of {len(texts)} values in a table of {len(headers)} columns")
            tr = copy.deepcopy(template)
            t._tbl.append(tr)
            for tc, text in zip(tr.tc_lst, texts, strict=True):
                if "\n" in text or "\t" in text:  # line breaks and tabs: python-docx writes them
                    tc.remove(tc.p_lst[0])
                    tc.add_p()
                    _cell(_Cell(tc, t), text)
                else:
                    w_t = tc.find(f"{W_P}/{W_R}/{W_T}")
                    w_t.text = _xml_safe(text)
                    w_t.set(XML_SPACE, "preserve")
        self.doc.add_paragraph().paragraph_format.line_spacing = Pt(6)

    @staticmethod
    def _row(table, tr, values: Sequence[str], cols, *, bold: bool = False) -> None:
        tcs = tr.tc_lst
        if len(tcs) != len(values):
            raise ValueError(f"a row of {len(values)} values in a table of {len(tcs)} columns")
        for i, (tc, text) in enumerate(zip(tcs, values, strict=True)):
            if cols:
                tc.width = cols[i]
            _cell(_Cell(tc, table), text, bold=bold)

    def picture(self, png: bytes, width_mm: float, caption: str) -> None:
        """A chart: centred, `width_mm` wide, its caption under it in 4号楷体."""
        p = self.doc.add_paragraph()
        p.alignment = WD_ALIGN_PARAGRAPH.CENTER
        p.paragraph_format.line_spacing_rule = WD_LINE_SPACING.SINGLE
        p.paragraph_format.keep_with_next = True
        p.add_run().add_picture(io.BytesIO(png), width=Mm(width_mm))
        c = self.doc.add_paragraph()
        c.alignment = WD_ALIGN_PARAGRAPH.CENTER
        _run(c, caption, KAITI, SIZE_NOTE)

    # --- the end ------------------------------------------------------------------------------

    def finish(self) -> bytes:
        """署名, 成文日期 and the 印章 position, then the 版记; the document as .docx bytes."""
        h = self.header
        self.doc.add_paragraph()  # the seal's upper half: within one line of the text
        issued = chinese_date(h.issued_on)
        # 成文日期 右空四字; 署名 centred over the date.
        date_w = _width(issued)
        sign_indent = CHAR * 4 + Emu(int((date_w - _width(h.issuer)) / 2))
        sign = self.doc.add_paragraph()
        sign.alignment = WD_ALIGN_PARAGRAPH.RIGHT
        sign.paragraph_format.right_indent = Emu(max(int(sign_indent), 0))
        _run(sign, h.issuer, FANGSONG, SIZE_BODY)
        day = self.doc.add_paragraph()
        day.alignment = WD_ALIGN_PARAGRAPH.RIGHT
        day.paragraph_format.right_indent = CHAR * 4
        _run(day, issued, FANGSONG, SIZE_BODY)
        _bookmark(sign, day, SEAL_BOOKMARK)
        self._banji()
        out = io.BytesIO()
        self.doc.save(out)
        return out.getvalue()

    def _banji(self) -> None:
        """版记 at the foot of the last page: 抄送 (4号仿宋, one character in from each side) and
        印发机关 left, 印发日期 right, between separator lines (0.35 mm first and last, 0.25 mm
        between). A text box anchored to the bottom of the last page's text area (Word and
        LibreOffice both place it there; the text above wraps over it), so the 版记 ends on the
        last line of the last page."""
        h = self.header
        lines: list[Paragraph] = []
        if h.copies_to:
            cc = self.doc.add_paragraph()
            _run(cc, "\u3000抄送：" + "，".join(h.copies_to) + "。", FANGSONG, SIZE_NOTE)
            lines.append(cc)
        pr = self.doc.add_paragraph()
        pr.paragraph_format.tab_stops.add_tab_stop(TEXT_W - Pt(SIZE_NOTE), WD_TAB_ALIGNMENT.RIGHT)
        _run(pr, f"\u3000{h.printer or h.issuer}\t{chinese_date(h.issued_on)}印发", FANGSONG, SIZE_NOTE)
        lines.append(pr)
        for i, p in enumerate(lines):
            f = p.paragraph_format
            f.left_indent = f.right_indent = f.first_line_indent = 0  # the lines as wide as the 版心
            f.line_spacing = Pt(SIZE_NOTE * 1.75)
            f.alignment = WD_ALIGN_PARAGRAPH.LEFT
            _border(p, "top", 8 if i == 0 else 6, space=2)  # 0.35 mm first, 0.25 mm between
        _border(lines[-1], "bottom", 8, space=2)
        height = Pt(len(lines) * (SIZE_NOTE * 1.75 + 4) + 4)
        anchor = self.doc.add_paragraph()
        anchor.paragraph_format.line_spacing = Pt(1)
        box = anchor.add_run()._r
        box.append(parse_xml(BANJI_BOX.format(w=int(TEXT_W), h=int(height), name=BANJI_MARK)))
        content = box.find(".//" + qn("w:txbxContent"))
        for p in lines:
            content.append(p._p)  # moved from the body into the box


def new_document(header: Header) -> Body:
    """A document with the 公文 page, styles, 版头, 标题 and 主送机关; the body comes next."""
    doc = Document()
    _page(doc, header)
    _styles(doc)
    _version_head(doc, header)
    title = doc.add_paragraph()
    title.alignment = WD_ALIGN_PARAGRAPH.CENTER
    title.paragraph_format.line_spacing = Pt(35)
    title.paragraph_format.space_before = LINE * 2  # 红色分隔线之下空二行
    title.paragraph_format.space_after = LINE  # 标题下空一行
    _run(title, header.title, XIAOBIAOSONG, SIZE_TITLE)
    to = doc.add_paragraph()
    _run(to, f"{header.addressee}：", FANGSONG, SIZE_BODY)
    doc.core_properties.title = header.title
    doc.core_properties.author = header.issuer
    doc.core_properties.subject = header.number
    doc.core_properties.language = "zh-CN"
    return Body(doc, header)


# --- layout pieces --------------------------------------------------------------------------------


def _page(doc: DocxDocument, header: Header) -> None:
    s = doc.sections[0]
    s.orientation = WD_ORIENT.PORTRAIT
    s.page_width, s.page_height = PAGE_W, PAGE_H
    s.top_margin, s.bottom_margin, s.left_margin, s.right_margin = TOP, BOTTOM, LEFT, RIGHT
    s.header_distance = Mm(15)
    s.footer_distance = Mm(21)  # the page number's line sits 7 mm under the 版心
    # 22 lines a page: the line pitch, without snapping every line to a grid (tables and the 版记
    # keep their own line heights). The character grid (28 a line) is left out: LibreOffice reads
    # w:charSpace differently from Word; 156 mm holds 27 characters of 16 pt.
    grid = s._sectPr.find(qn("w:docGrid"))
    if grid is None:
        grid = OxmlElement("w:docGrid")
        s._sectPr.append(grid)
    grid.set(qn("w:linePitch"), str(int(LINE.pt * 20)))
    # Page numbers: "— N —" in 4号宋体, odd pages right and even pages left, one character in.
    doc.settings.odd_and_even_pages_header_footer = True
    for footer, align in ((s.footer, WD_ALIGN_PARAGRAPH.RIGHT), (s.even_page_footer, WD_ALIGN_PARAGRAPH.LEFT)):
        p = footer.paragraphs[0]
        p.alignment = align
        if align == WD_ALIGN_PARAGRAPH.RIGHT:
            p.paragraph_format.right_indent = Pt(SIZE_NOTE)
        else:
            p.paragraph_format.left_indent = Pt(SIZE_NOTE)
        _run(p, "— ", SONGTI, SIZE_NOTE)
        _field(p, "PAGE", SONGTI, SIZE_NOTE)
        _run(p, " —", SONGTI, SIZE_NOTE)


def _styles(doc: DocxDocument) -> None:
    normal = doc.styles["Normal"]
    normal.font.size = Pt(SIZE_BODY)
    normal.font.name = LATIN
    normal.element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), FANGSONG)
    pf = normal.paragraph_format
    pf.line_spacing = LINE
    pf.space_before = pf.space_after = Pt(0)
    pf.widow_control = False
    pf.alignment = WD_ALIGN_PARAGRAPH.JUSTIFY
    for level in (1, 2, 3):
        st = doc.styles[f"Heading {level}"]
        st.font.size = Pt(SIZE_BODY)
        st.font.color.rgb = RGBColor(0, 0, 0)
        st.font.bold = False
        st.font.italic = False
        st.paragraph_format.line_spacing = LINE
        st.paragraph_format.space_before = st.paragraph_format.space_after = Pt(0)
        st.paragraph_format.keep_with_next = True


def _version_head(doc: DocxDocument, h: Header) -> None:
    """版头: 发文机关标志 (red, centred, its top 35 mm under the 版心's top edge; 80 mm for a
    上行文), two lines, 发文字号 (centred; left with 签发人 right for a 上行文), and 4 mm under it a
    red line as wide as the 版心."""
    mark = doc.add_paragraph()
    mark.alignment = WD_ALIGN_PARAGRAPH.CENTER
    mark.paragraph_format.line_spacing_rule = WD_LINE_SPACING.SINGLE
    mark.paragraph_format.space_before = Mm(80 if h.signer else 35) - Mm(4)  # the font's own leading
    text = h.issuer + h.kind
    size = min(52.0, TEXT_W.pt * 0.96 / max(len(text), 1))  # one line, as wide as it may be
    _run(mark, text, XIAOBIAOSONG, size, color=RED)
    doc.add_paragraph()
    doc.add_paragraph()
    no = doc.add_paragraph()
    no.paragraph_format.space_after = Pt(0)
    if h.signer:
        no.paragraph_format.tab_stops.add_tab_stop(TEXT_W - CHAR, WD_TAB_ALIGNMENT.RIGHT)
        _run(no, "\u3000" + h.number + "\t签发人：", FANGSONG, SIZE_BODY)
        _run(no, h.signer, KAITI, SIZE_BODY)
    else:
        no.alignment = WD_ALIGN_PARAGRAPH.CENTER
        _run(no, h.number, FANGSONG, SIZE_BODY)
    _border(no, "bottom", 18, color=RED, space=11)  # 2.25 pt, 4 mm under the number


# --- XML helpers -----------------------------------------------------------------------------------


def _run(p: Paragraph, text: str, east: str, size: float, *, bold: bool = False, color: RGBColor | None = None):
    r = p.add_run(_xml_safe(text))
    r.font.size = Pt(size)
    r.font.name = LATIN
    r.font.bold = bold
    if color is not None:
        r.font.color.rgb = color
    r._element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), east)
    return r


def _field(p: Paragraph, code: str, east: str, size: float) -> None:
    """A field (PAGE): begin, instruction, separate, a placeholder result, end."""
    for kind in ("begin", "instr", "separate", "result", "end"):
        r = _run(p, "1" if kind == "result" else "", east, size)
        if kind == "instr":
            t = OxmlElement("w:instrText")
            t.set(qn("xml:space"), "preserve")
            t.text = f" {code} "
            r._element.append(t)
        elif kind != "result":
            c = OxmlElement("w:fldChar")
            c.set(qn("w:fldCharType"), kind)
            r._element.append(c)


def _border(p: Paragraph, side: str, size: int, *, color: RGBColor | None = None, space: int = 1) -> None:
    """A paragraph border line on `side`; `size` in eighths of a point, `space` in points."""
    ppr = p._p.get_or_add_pPr()
    bdr = ppr.find(qn("w:pBdr"))
    if bdr is None:
        bdr = OxmlElement("w:pBdr")
        # pBdr's place in pPr's sequence: after keepNext/keepLines/pageBreakBefore/framePr/
        # widowControl/numPr/suppressLineNumbers, before shd/tabs/spacing/ind/jc.
        follow = next((c for c in ppr.iterchildren() if c.tag in {qn(t) for t in (
            "w:shd", "w:tabs", "w:suppressAutoHyphens", "w:kinsoku", "w:wordWrap", "w:overflowPunct",
            "w:topLinePunct", "w:autoSpaceDE", "w:autoSpaceDN", "w:bidi", "w:adjustRightInd", "w:snapToGrid",
            "w:spacing", "w:ind", "w:contextualSpacing", "w:mirrorIndents", "w:suppressOverlap", "w:jc",
            "w:textDirection", "w:textAlignment", "w:textboxTightWrap", "w:outlineLvl", "w:divId",
            "w:cnfStyle", "w:rPr", "w:sectPr", "w:pPrChange")}), None)
        if follow is None:
            ppr.append(bdr)
        else:
            follow.addprevious(bdr)
    line = OxmlElement(f"w:{side}")
    line.set(qn("w:val"), "single")
    line.set(qn("w:sz"), str(size))
    line.set(qn("w:space"), str(space))
    line.set(qn("w:color"), str(color) if color is not None else "000000")
    order = ["top", "left", "bottom", "right", "between", "bar"]
    later = next((c for c in bdr.iterchildren() if order.index(c.tag.split("}")[1]) > order.index(side)), None)
    if later is None:
        bdr.append(line)
    else:
        later.addprevious(line)


BANJI_BOX = (
    '<w:drawing xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" '
    'xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" '
    'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
    'xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape">'
    '<wp:anchor distT="0" distB="0" distL="0" distR="0" simplePos="0" relativeHeight="251659264" '
    'behindDoc="0" locked="1" layoutInCell="1" allowOverlap="0">'
    '<wp:simplePos x="0" y="0"/>'
    '<wp:positionH relativeFrom="margin"><wp:align>center</wp:align></wp:positionH>'
    '<wp:positionV relativeFrom="margin"><wp:align>bottom</wp:align></wp:positionV>'
    '<wp:extent cx="{w}" cy="{h}"/><wp:effectExtent l="0" t="0" r="0" b="0"/><wp:wrapTopAndBottom/>'
    '<wp:docPr id="9704" name="{name}" descr="{name}"/><wp:cNvGraphicFramePr/>'
    '<a:graphic><a:graphicData uri="http://schemas.microsoft.com/office/word/2010/wordprocessingShape">'
    '<wps:wsp><wps:cNvSpPr txBox="1"/><wps:spPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="{w}" cy="{h}"/></a:xfrm>'
    '<a:prstGeom prst="rect"><a:avLst/></a:prstGeom><a:noFill/><a:ln><a:noFill/></a:ln></wps:spPr>'
    '<wps:txbx><w:txbxContent/></wps:txbx>'
    '<wps:bodyPr rot="0" vert="horz" wrap="square" lIns="0" tIns="0" rIns="0" bIns="0" anchor="b">'
    '<a:noAutofit/></wps:bodyPr></wps:wsp></a:graphicData></a:graphic></wp:anchor></w:drawing>')


def _bookmark(first: Paragraph, last: Paragraph, name: str) -> None:
    start = OxmlElement("w:bookmarkStart")
    start.set(qn("w:id"), "1")
    start.set(qn("w:name"), name)
    end = OxmlElement("w:bookmarkEnd")
    end.set(qn("w:id"), "1")
    ppr = first._p.pPr
    if ppr is not None:
        ppr.addnext(start)
    else:
        first._p.insert(0, start)
    last._p.append(end)


def _repeat_header(row) -> None:
    trpr = row._tr.get_or_add_trPr()
    h = OxmlElement("w:tblHeader")
    h.set(qn("w:val"), "true")
    trpr.append(h)


def _cell(cell, text: str, *, bold: bool = False) -> None:
    p = cell.paragraphs[0]
    p.paragraph_format.line_spacing_rule = WD_LINE_SPACING.SINGLE
    p.paragraph_format.first_line_indent = 0
    p.alignment = WD_ALIGN_PARAGRAPH.CENTER if bold else WD_ALIGN_PARAGRAPH.LEFT
    _run(p, text, HEITI if bold else FANGSONG, SIZE_TABLE)


W_P, W_R, W_T = qn("w:p"), qn("w:r"), qn("w:t")
XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _xml_safe(text: str) -> str:
    """XML 1.0 cannot carry most control characters: they are dropped."""
    return text if text.isprintable() else _CONTROL.sub("", text)


def _width(text: str) -> int:
    """The width of a line of body text in EMU: a full-width character is one character."""
    return int(sum(CHAR if ord(ch) > 0x2E7F else CHAR / 2 for ch in text))
