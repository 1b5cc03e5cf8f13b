"""公文 (.docx, GB/T 9704-2012) from the ledger: the bulletin, an inspection's problem feedback
notice and the annual acceptance report, written by the real `ducha` commands on this module's
own database (demo registry, a completed inspection and its rectifications written straight into
the ledger tables). Each file is opened with python-docx and its 公文 parts checked; its 文号 is
checked against the number ledger (SQL): gap-free, never twice, kept when written again. One
file goes through LibreOffice headless to PDF and pdftoppm to PNG (scripts/ensure-libreoffice.sh,
which `make test` runs)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import shutil
import subprocess
import zipfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import openpyxl
import pytest
import pytest_asyncio
from docx import Document
from PIL import Image

from documents.gongwen import BANJI_MARK, RED, SEAL_BOOKMARK
from documents.numbering import DocumentNumbers

from .conftest import DEMO_REGISTRY
from .support import run_cli

CHINA = timezone(timedelta(hours=8))
YEAR = 2026
WID = f"inspection-{YEAR}-routine-market_regulation"
OPEN_WID = f"inspection-{YEAR}-routine-transport"
PREFIX = "测法督"
NUMBER = re.compile(rf"^{PREFIX}〔(\d{{4}})〕(\d+)号$")
W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ledger(pool) -> dict:
    """The demo registry; a completed routine inspection of 县市场监管局 (methods, three findings,
    one with a clue, an evaluation) with its rectifications; one of 县交通运输局 still open."""
    from activities.registry import RegistryStore
    from config.yaml_file import load_yaml_model
    from schemas.registry import RegistryFile

    await RegistryStore(pool).load(load_yaml_model(DEMO_REGISTRY, RegistryFile))
    started = datetime(YEAR, 3, 2, 9, tzinfo=CHINA)
    done = datetime(YEAR, 3, 20, 16, tzinfo=CHINA)
    for wid, unit, stage in ((WID, "market_regulation", "completed"), (OPEN_WID, "transport", "joint_inspection")):
        await pool.execute(
            "INSERT INTO inspections (workflow_id, run_id, year, kind, unit, lead, trigger_type, stage, started_at, "
            "completed_at, methods, findings) VALUES ($1, 'r1', $2, 'routine', $3, 'coordination_group', 'annual', $4, "
            "$5, $6, 2, 3)", wid, YEAR, unit, stage, started, done if stage == "completed" else None)
    await pool.executemany(
        "INSERT INTO inspection_methods (workflow_id, n, method, summary, done_on, count, agency, operator) "
        "VALUES ($1, $2, $3, $4, $5, $6, 'coordination_group', '李娜')",
        [(WID, 1, "hear_report", "听取局主要负责人汇报", date(YEAR, 3, 3), None),
         (WID, 2, "review_case_files", "评查行政处罚案卷", date(YEAR, 3, 5), 20)])
    findings = [
        (1, "执法程序", "individual", "行政处罚案卷缺少听证告知书", "《行政处罚法》第六十三条", "补正听证告知程序", False),
        (2, "执法公示", "common", "执法公示信息更新不及时", "行政执法公示制度", "建立公示更新台账", False),
        (3, "执法人员", "individual", "执法人员涉嫌违规办案", "", "", True),
    ]
    for n, category, lst, description, basis, opinion, clue in findings:
        no = f"{WID}-F{n}"
        await pool.execute(
            "INSERT INTO inspection_findings (workflow_id, n, problem_no, unit, year, description, category, list, "
            "basis, severity, suspected_misconduct, opinion, agency, operator, rectification_id, clue_id) "
            "VALUES ($1, $2, $3, 'market_regulation', $4, $5, $6, $7, $8, 'general', $9, $10, 'coordination_group', "
            "'李娜', $11, $12)", WID, n, no, YEAR, description, category, lst, basis, clue, opinion,
            None if clue else f"rectification-{no}", f"clue-x-D{n}" if clue else None)
        if not clue:
            await pool.execute(
                "INSERT INTO rectifications (problem_no, workflow_id, year, unit, origin_kind, origin_ref, list, "
                "category, severity, description, basis, opinion, issued_by, stage, due_on, required_at) "
                "VALUES ($1, 'rectification-' || $1, $2, 'market_regulation', 'inspection', $3, $4, $5, 'general', "
                "$6, $7, $8, '李娜', 'rectifying', $9, $10)",
                no, YEAR, WID, lst, category, description, basis, opinion, date(YEAR, 4, 10 + n), done)
    await pool.execute("INSERT INTO inspection_evaluations (workflow_id, unit, year, kind, score, grade, comments, "
                       "agency, operator) VALUES ($1, 'market_regulation', $2, 'routine', 86, 'good', '总体规范', "
                       "'coordination_group', '李娜')", WID, YEAR)
    return {"due": {f"{WID}-F1": date(YEAR, 4, 11), f"{WID}-F2": date(YEAR, 4, 12)}}


@pytest.fixture(scope="module")
def cli_env(db_url) -> dict[str, str]:
    return {**os.environ, "DUCHA_DATABASE_URL": db_url, "DUCHA_DOCUMENT_PREFIX": PREFIX}


def texts(doc) -> list[str]:
    return [p.text for p in doc.paragraphs]


def check_gongwen(path: Path, *, issuer: str, title: str, addressee: str) -> str:
    """The 公文 parts of GB/T 9704 in a .docx; its 文号."""
    doc = Document(str(path))
    s = doc.sections[0]
    mm = lambda v: round(v / 36000)  # noqa: E731 (EMU to mm; stored in twips)
    assert (mm(s.page_width), mm(s.page_height)) == (210, 297)  # A4
    assert (mm(s.top_margin), mm(s.left_margin)) == (37, 28)  # 天头, 订口
    assert mm(s.page_width - s.left_margin - s.right_margin) == 156  # 版心 156 mm wide
    assert mm(s.page_height - s.top_margin - s.bottom_margin) == 225  # and 225 mm high
    ps = [p for p in doc.paragraphs if p.text.strip()]
    # 版头: 发文机关标志 in red, then 发文字号 over a red line.
    assert ps[0].text == issuer + "文件"
    assert all(r.font.color.rgb == RED for r in ps[0].runs)
    number = ps[1].text.strip().split("\t")[0]  # a 上行文 has 签发人 after a tab
    assert NUMBER.match(number), number
    line = ps[1]._p.pPr.find(f"{W}pBdr/{W}bottom")
    assert line is not None and line.get(f"{W}color") == str(RED)
    # 标题 in 2号 (22 pt), centred; 主送机关 with a full-width colon.
    assert ps[2].text == title and ps[2].runs[0].font.size.pt == 22
    assert ps[3].text == addressee + "："
    # 署名 and 成文日期 inside the seal's bookmark, the date four characters in from the right.
    body = doc.element.body
    start = body.find(f".//{W}bookmarkStart[@{W}name='{SEAL_BOOKMARK}']")
    assert start is not None
    signed = [p for p in ps if p.text == issuer]
    dated = [p for p in ps if re.fullmatch(r"\d{4}年\d{1,2}月\d{1,2}日", p.text)]
    assert signed and dated and start.getparent() is signed[-1]._p
    assert dated[-1].paragraph_format.right_indent.pt == 64
    assert dated[-1]._p.find(f"{W}bookmarkEnd") is not None
    # 版记 in a text box at the foot of the page: 抄送 and 印发, ruled.
    box = [d for d in body.iter("{http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing}docPr")
           if d.get("name") == BANJI_MARK]
    assert len(box) == 1
    anchor = box[0].getparent()
    align = anchor.find("{http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing}positionV")
    assert align.get("relativeFrom") == "margin" and align[0].text == "bottom"
    banji = ["".join(t.text or "" for t in p.iter(f"{W}t")) for p in anchor.iter(f"{W}p")]
    assert banji[0].strip().startswith("抄送：") and banji[0].endswith("。")
    assert banji[-1].strip().startswith(issuer) and banji[-1].endswith(dated[-1].text + "印发")
    # Page numbers "— N —" on odd and even pages.
    assert doc.settings.odd_and_even_pages_header_footer
    for footer in (s.footer, s.even_page_footer):
        assert footer.paragraphs[0]._p.find(f".//{W}instrText").text.strip() == "PAGE"
    assert doc.core_properties.subject == number
    return number


async def ledger_number(pool, kind: str, subject: str):
    return await pool.fetchrow("SELECT * FROM documents WHERE kind = $1 AND subject = $2", kind, subject)


async def test_bulletin_docx(pool, ledger, cli_env, tmp_path):
    out = tmp_path / "通报"
    code, stdout, stderr = await run_cli("bulletin", "--from", f"{YEAR}-03-01", "--to", f"{YEAR}-03-31", "--out",
                                         str(out), "--format", "docx", "--no-notify", env=cli_env)
    assert code == 0, stderr
    assert not out.with_suffix(".md").exists()  # docx only, as asked
    title = f"关于{YEAR}年3月1日至{YEAR}年3月31日法治督察情况的通报"
    number = check_gongwen(out.with_suffix(".docx"), issuer="西县委依法治县办", title=title, addressee="各行政执法单位")
    row = await ledger_number(pool, "bulletin", f"{YEAR}-03-01..{YEAR}-03-31")
    assert row["doc_no"] == number and row["title"] == title and number in stdout
    assert row["sha256"] == hashlib.sha256(out.with_suffix(".docx").read_bytes()).hexdigest()
    doc = Document(str(out.with_suffix(".docx")))
    common = [t for t in doc.tables if t.rows[0].cells[0].text == "编号" and len(t.columns) == 7][0]
    assert [r.cells[0].text for r in common.rows[1:]] == [f"{WID}-F2"]
    unit = await pool.fetchval("SELECT name FROM parties WHERE code = 'market_regulation'")
    assert f"（一）{unit}" in texts(doc)  # its individual problems under its name
    # Written again: the same number; the Markdown/HTML default is unchanged.
    code, _, stderr = await run_cli("bulletin", "--from", f"{YEAR}-03-01", "--to", f"{YEAR}-03-31", "--out",
                                    str(out), "--format", "docx", "--format", "html", "--no-notify", env=cli_env)
    assert code == 0, stderr
    assert out.with_suffix(".md").exists() and out.with_suffix(".html").exists()
    assert Document(str(out.with_suffix(".docx"))).core_properties.subject == number
    assert await pool.fetchval("SELECT count(*) FROM documents WHERE kind = 'bulletin'") == 1


async def test_notice_docx(pool, ledger, cli_env, tmp_path):
    out = tmp_path / "notice.docx"
    code, stdout, stderr = await run_cli("inspection", "notice", WID, "--out", str(out), env=cli_env)
    assert code == 0, stderr
    unit = await pool.fetchval("SELECT name FROM parties WHERE code = 'market_regulation'")
    number = check_gongwen(out, issuer="西县委依法治县办", title=f"关于反馈{YEAR}年度平时督察发现问题并限期整改的通知",
                           addressee=unit)
    assert (await ledger_number(pool, "notice", WID))["doc_no"] == number
    doc = Document(str(out))
    findings = next(t for t in doc.tables if t.rows[0].cells[1].text == "问题编号")
    assert [r.cells[1].text for r in findings.rows[1:]] == [f"{WID}-F{n}" for n in (1, 2, 3)]
    deadlines = next(t for t in doc.tables if [c.text for c in t.rows[0].cells] == ["问题编号", "整改意见", "整改时限"])
    shown = {r.cells[0].text: r.cells[2].text for r in deadlines.rows[1:]}
    assert shown == {no: f"{d.year}年{d.month}月{d.day}日" for no, d in ledger["due"].items()}  # from the ledger
    text = "\n".join(texts(doc))
    assert "1个涉嫌违纪违法问题线索，已按规定移送县纪委监委" in text and "违规办案" not in text.split("二、")[0]
    assert "86分" in text and "良好" in text
    banji = "".join(t.text or "" for t in doc.element.body.iter(f"{W}t"))
    assert "抄送：县委，县纪委监委" in banji  # the clue's recipient is copied
    # Not fed back yet, or unknown: one clear line, no number taken.
    for wid, words in ((OPEN_WID, "尚未反馈问题"), ("inspection-1999-x", "没有督察")):
        code, _, stderr = await run_cli("inspection", "notice", wid, "--out", str(tmp_path / "x.docx"), env=cli_env)
        assert code == 2 and words in stderr and "Traceback" not in stderr
    assert not (tmp_path / "x.docx").exists()
    assert await pool.fetchval("SELECT count(*) FROM documents WHERE kind = 'notice'") == 1


async def test_annual_report_docx_and_xlsx(pool, ledger, cli_env, tmp_path):
    code, stdout, stderr = await run_cli("report", "annual", str(YEAR), "--out", str(tmp_path), "--format", "docx",
                                         "--format", "xlsx", "--signer", "王建国", env=cli_env)
    assert code == 0, stderr
    assert not (tmp_path / "report.html").exists()
    path = tmp_path / "report.docx"
    number = check_gongwen(path, issuer="西县委依法治县办", title=f"关于{YEAR}年度法治督察工作验收情况的报告",
                           addressee="西县委")
    assert (await ledger_number(pool, "annual_report", str(YEAR)))["doc_no"] == number
    doc = Document(str(path))
    # A 上行文: 签发人 on the number's line.
    assert any(p.text.endswith("签发人：王建国") and number in p.text for p in doc.paragraphs)
    # The six charts as PNG images, each captioned.
    assert len(doc.inline_shapes) == 6
    with zipfile.ZipFile(path) as z:
        pngs = [n for n in z.namelist() if n.startswith("word/media/") and n.endswith(".png")]
        assert len(pngs) == 6
        img = Image.open(io.BytesIO(z.read(pngs[0])))
        assert img.width >= 1500 and len(img.convert("RGB").getcolors(1 << 24)) > 10  # drawn, not blank
    captions = [p.text for p in doc.paragraphs if p.text.startswith("图")]
    assert captions[0].startswith("图1") and len(captions) == 6
    problems = await pool.fetchval("SELECT count(*) FROM rectifications WHERE year = $1", YEAR)
    assert f"发现问题{problems}个" in "\n".join(texts(doc))
    wb = openpyxl.load_workbook(tmp_path / "tables.xlsx")
    ws = wb["发现问题清单"]
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref == f"A1:{ws.cell(1, ws.max_column).column_letter}{ws.max_row}"
    header = [c.value for c in ws[1]]
    rows = list(ws.iter_rows(min_row=2))
    assert len(rows) == problems
    due = {r[header.index("问题编号")].value: r[header.index("整改时限")] for r in rows}
    for no, d in ledger["due"].items():
        assert due[no].is_date and due[no].value.date() == d


async def test_numbers_gap_free_and_unique_under_concurrency(pool, ledger):
    """Twelve writers at once (one of which fails while writing): the series stays 1..N."""
    numbers = DocumentNumbers(pool)
    on = date(2031, 5, 6)

    async def write(i: int) -> str:
        async with numbers.issue(prefix="并发", kind="notice", subject=f"concurrent-{i}", title="t",
                                 issued_on=on) as num:
            await asyncio.sleep(0.01 * (i % 3))
            if i == 5:
                raise RuntimeError("the file could not be written")
            await num.written("x")
            return num.doc_no

    results = await asyncio.gather(*(write(i) for i in range(12)), return_exceptions=True)
    issued = [r for r in results if isinstance(r, str)]
    assert len(issued) == 11 and len(set(issued)) == 11
    rows = await pool.fetch("SELECT number, doc_no FROM documents WHERE prefix = '并发' AND year = 2031 ORDER BY number")
    assert [r["number"] for r in rows] == list(range(1, 12))
    assert await pool.fetchval("SELECT last_no FROM document_series WHERE prefix = '并发' AND year = 2031") == 11
    assert sorted(r["doc_no"] for r in rows) == sorted(issued)
    assert "并发〔2031〕1号" in issued
    # Asked again for the same documents, concurrently: their numbers, nothing new.
    again = await asyncio.gather(*(write(i) for i in (0, 0, 1)))
    assert again[0] == again[1] and await pool.fetchval(
        "SELECT last_no FROM document_series WHERE prefix = '并发' AND year = 2031") == 11


def test_pdf_page_is_a4_and_not_blank(tmp_path):
    """A notice through LibreOffice headless: page 1 is A4 and shows the red 版头 and black text."""
    soffice, pdftoppm = shutil.which("soffice"), shutil.which("pdftoppm")
    assert soffice and pdftoppm, "LibreOffice or pdftoppm missing: run scripts/ensure-libreoffice.sh (make test does)"
    from documents import notice
    from documents.context import Letterhead

    data = notice.NoticeData(
        workflow_id=WID, year=YEAR, kind="routine", unit="u", unit_name="县市场监督管理局", lead="coordination_group",
        started_on=date(YEAR, 3, 2), completed_on=date(YEAR, 3, 20),
        methods=[("hear_report", "听取汇报", date(YEAR, 3, 3), None)],
        findings=[notice.Finding(1, "P-1", "执法程序", "individual", "general", "案卷缺少听证告知书", "第六十三条",
                                 "补正", date(YEAR, 4, 11), False)], score=86, grade="good", comments="")
    head = Letterhead("西县", "西县委依法治县办", {"county_committee": "县委", "coordination_group": "县执法协调小组"})
    docx = tmp_path / "notice.docx"
    docx.write_bytes(notice.render(data, head, f"{PREFIX}〔{YEAR}〕7号", date(YEAR, 3, 21)))
    profile = tmp_path / "lo-profile"
    subprocess.run([soffice, f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to", "pdf",
                    "--outdir", str(tmp_path), str(docx)], check=True, capture_output=True, timeout=180)
    pdf = tmp_path / "notice.pdf"
    subprocess.run([pdftoppm, "-r", "60", "-f", "1", "-l", "1", "-png", str(pdf), str(tmp_path / "page")],
                   check=True, timeout=60)
    page = Image.open(next(tmp_path.glob("page*.png"))).convert("RGB")
    # A4 at 60 dpi: 8.27 × 11.69 in.
    assert abs(page.width - 210 / 25.4 * 60) <= 2 and abs(page.height - 297 / 25.4 * 60) <= 2
    raw = page.tobytes()
    pixels = list(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))
    red = sum(1 for r, g, b in pixels if r > 180 and g < 80 and b < 80)
    dark = sum(1 for r, g, b in pixels if r < 90 and g < 90 and b < 90)
    assert red > 200, "no red 版头 on page 1"
    assert dark > 2000, "page 1 has no text"
    # The 版头 (标志 and red line) is in the top half, where the standard puts it.
    top_red = sum(1 for i, (r, g, b) in enumerate(pixels) if i < len(pixels) // 2 and r > 180 and g < 80 and b < 80)
    assert top_red == red
    shutil.copy(next(tmp_path.glob("page*.png")), Path(os.environ.get("DUCHA_KEEP_PAGE", tmp_path / "kept.png")))
