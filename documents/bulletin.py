"""督察情况通报 as a 公文 (.docx): the same content as rules.bulletin's Markdown (the period's
totals, the common and individual problem lists, each unit's rectification, the categories),
laid out by documents.gongwen and sent to every enforcement unit."""

from __future__ import annotations

from datetime import date

from documents.context import Letterhead
from documents.gongwen import Header, chinese_date, new_document
from rules.bulletin import LIST_NAMES, STAGE_NAMES, Bulletin
from schemas.codes import AgencyCode

ADDRESSEE = "各行政执法单位"
COPIES_TO = (AgencyCode.COUNTY_COMMITTEE, AgencyCode.DISCIPLINE, AgencyCode.COURT, AgencyCode.PROCURATORATE,
             AgencyCode.JUSTICE)


def title(b: Bulletin) -> str:
    return f"关于{chinese_date(b.since)}至{chinese_date(b.until)}法治督察情况的通报"


def subject(b: Bulletin) -> str:
    """The bulletin's identity in the number ledger: its period."""
    return f"{b.since.isoformat()}..{b.until.isoformat()}"


def _due(d: date | None) -> str:
    return d.isoformat() if d else "—"


def render(b: Bulletin, head: Letterhead, doc_no: str, issued_on: date) -> bytes:
    closed = sum(u.closed for u in b.units)
    overdue = sum(u.overdue for u in b.units)
    escalated = sum(u.escalated for u in b.units)
    body = new_document(Header(
        issuer=head.issuer, number=doc_no, title=title(b), addressee=ADDRESSEE, issued_on=issued_on,
        copies_to=head.agencies(*COPIES_TO)))
    body.paragraph(
        f"按照{head.county}法治督察工作安排，现将{chinese_date(b.since)}至{chinese_date(b.until)}"
        "法治督察发现问题及整改情况通报如下。")
    body.heading("一、总体情况")
    body.paragraph(
        f"本期共发现问题{b.total}个，涉及{len(b.units)}个单位，其中{LIST_NAMES['common']}{len(b.common)}个、"
        f"{LIST_NAMES['individual']}{sum(len(v) for v in b.individual.values())}个；已销号{closed}个，"
        f"逾期{overdue}个，拒不整改升级{escalated}个。")
    body.heading("二、共性问题清单")
    body.table(["编号", "单位", "类别", "问题", "整改意见", "时限", "状态"],
               [[p.problem_no, p.unit_name, p.category, p.description, p.opinion, _due(p.due_on),
                 STAGE_NAMES.get(p.stage, p.stage)] for p in b.common],
               widths=[24, 22, 16, 30, 26, 22, 16], empty="本期无共性问题。")
    body.heading("三、个性问题清单")
    if not b.individual:
        body.paragraph("本期无个性问题。")
    for i, rows in enumerate(b.individual.values(), start=1):
        body.heading(f"（{_chinese_number(i)}）{rows[0].unit_name}", level=2)
        body.table(["编号", "类别", "问题", "整改意见", "时限", "状态"],
                   [[p.problem_no, p.category, p.description, p.opinion, _due(p.due_on),
                     STAGE_NAMES.get(p.stage, p.stage)] for p in rows],
                   widths=[24, 18, 38, 38, 22, 16])
    body.heading("四、各单位整改情况")
    body.table(["单位", "问题数", "按期", "逾期", "拒不整改升级", "已销号", "未销号"],
               [[u.unit_name, u.total, u.on_time, u.overdue, u.escalated, u.closed, u.open] for u in b.units],
               widths=[40, 18, 16, 16, 26, 20, 20])
    body.heading("五、问题类别统计")
    body.table(["类别", "数量"], [[c, n] for c, n in b.by_category.items()], widths=[100, 56])
    body.heading("六、工作要求")
    body.paragraph("请各单位对照清单逐项整改，按期报告整改情况；逾期未整改的将按规定移送县纪委监委。")
    return body.finish()


def _chinese_number(n: int) -> str:
    """1 -> 一, 12 -> 十二, 35 -> 三十五 (for （一） headings; beyond 99 the digits)."""
    digits = "零一二三四五六七八九"
    if n < 10:
        return digits[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return ("" if tens == 1 else digits[tens]) + "十" + (digits[ones] if ones else "")
    return str(n)
