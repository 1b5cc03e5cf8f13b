"""年度验收报告 as a 公文 (.docx) to the county committee, with the report's charts as PNG
images (the HTML report's own charts, documents/charts.py), and its tables as one workbook
(.xlsx), a sheet per table. Same data as the HTML report (reports/annual.py AnnualReportData)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from documents.charts import chart_title, svg_to_png
from documents.context import Letterhead, county_name
from documents.gongwen import Header, new_document
from documents.xlsx import Book, widths
from rules.annual_report import CAP_NAMES, CHAIN_NAMES, KIND_NAMES, TABLES, charts
from rules.bulletin import LIST_NAMES, STAGE_NAMES
from rules.rubric import COMPONENT_NAMES, RULE_NAMES
from schemas.codes import AgencyCode
from schemas.report import AnnualReportData

CHART_MM = 150  # a chart's width on the page (the 版心 is 156 mm)
SHEET_NAMES = {"coverage_by_month": "督察覆盖按月", "coverage_by_batch": "督察覆盖按批次",
               "coverage_units": "各单位督察覆盖", "problems": "发现问题清单", "problems_by_category": "问题类别",
               "rectification_by_unit": "各单位整改情况", "funnel": "整改漏斗", "clue_deadlines": "线索移送期限",
               "clue_misses_by_party": "逾期履职单位", "scores": "绩效考核得分", "deductions": "扣分明细",
               "levels": "逐级检查验收"}
LABELS = {
    "month": "月份", "started": "开始督察", "completed": "完成", "newly_covered": "首次覆盖单位",
    "covered_to_date": "累计覆盖单位", "round_id": "年度督察", "batch": "批次", "opens_on": "开始日期",
    "planned": "计划单位", "not_covered": "未覆盖", "unit": "单位代码", "name": "单位", "covered": "已覆盖",
    "inspections": "督察次数", "kinds": "督察类型", "score": "得分", "problem_no": "问题编号", "unit_name": "单位",
    "list": "清单", "category": "类别", "severity": "严重程度", "stage": "阶段", "due_on": "整改时限",
    "missed_deadlines": "逾期次数", "escalated": "拒不整改升级", "reopened": "反弹次数", "carried_over": "结转次数",
    "required_at": "下达时间", "accepted": "验收通过", "looked_back": "回头看", "closed_at": "销号时间",
    "total": "合计", "common": "共性", "individual": "个性", "on_time": "按期", "overdue": "逾期",
    "closed": "已销号", "open": "未销号", "step": "环节代码", "count": "问题数", "route": "路径代码",
    "clues": "线索数", "met": "期限按期", "missed": "期限逾期", "pending": "未到期", "party": "单位代码",
    "rank": "名次", "kind": "类型", "grade": "等次", "evaluation": "重点评估", "rectification": "整改落实",
    "coverage": "督察覆盖", "deductions": "扣分项", "caps": "等次封顶", "component": "考核项目", "rule": "规则",
    "points": "扣分", "weighted_points": "扣分（折算）", "source_kind": "来源类型", "source_id": "来源",
    "source_seq": "来源序号", "occurred_at": "时间", "note": "说明", "chain": "链条", "done": "完成",
    "of": "应完成",
}
VALUE_NAMES = {"list": LIST_NAMES, "stage": STAGE_NAMES, "severity": {"serious": "严重", "general": "一般"},
               "component": COMPONENT_NAMES, "rule": RULE_NAMES, "chain": CHAIN_NAMES}


def _pct(n: int, of: int) -> str:
    return f"{n * 100 / of:.1f}%" if of else "-"


def _day(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d}" if at else ""


def title(d: AnnualReportData) -> str:
    return f"关于{d.year}年度法治督察工作验收情况的报告"


def render(d: AnnualReportData, head: Letterhead, doc_no: str, issued_on: date, signer: str = "") -> bytes:
    t = d.totals
    funnel = {f.step: f.count for f in d.funnel}
    committee = county_name(head.county, head.name(AgencyCode.COUNTY_COMMITTEE.value))
    body = new_document(Header(issuer=head.issuer, number=doc_no, title=title(d), addressee=committee,
                               issued_on=issued_on, signer=signer,
                               copies_to=head.agencies(AgencyCode.DISCIPLINE, AgencyCode.JUSTICE)))
    pngs = [(chart_title(svg), svg_to_png(svg)) for svg in charts(d)]
    figure = iter(range(1, len(pngs) + 1))

    def chart(i: int) -> None:
        name, png = pngs[i]
        body.picture(png, CHART_MM, f"图{next(figure)}  {name}")

    body.paragraph(f"按照县委关于法治督察工作的部署，现将{d.year}年度法治督察工作验收情况报告如下。")
    body.heading("一、总体情况")
    body.paragraph(f"{d.year}年度应督察执法单位{t.units}个，已完成督察覆盖{t.covered}个（{_pct(t.covered, t.units)}）；"
                   f"开展督察{t.inspections}次，完成{t.inspections_completed}次。")
    body.paragraph(f"发现问题{t.problems}个（共性{t.common}个、个性{t.individual}个）；已销号{t.closed}个"
                   f"（{_pct(t.closed, t.problems)}），验收通过{funnel.get('accepted', 0)}个，拒不整改升级{t.escalated}个。")
    body.paragraph(f"登记线索{t.clues}条，线索期限按期履职{t.clue_deadlines_met}项、逾期{t.clue_deadlines_missed}项。")
    body.paragraph(f"考核{t.assessed}个单位，平均{t.mean_score:.1f}分（计分规则{d.rubric_version}）。"
                   if t.assessed and t.mean_score is not None else "本年度尚未进行绩效考核。")
    body.heading("二、督察覆盖")
    chart(0)
    chart(1)
    body.heading("（一）按月", 2)
    body.table(["月份", "开始督察", "完成督察", "首次覆盖单位", "累计覆盖单位"],
               [[m.month, m.started, m.completed, m.newly_covered, m.covered_to_date] for m in d.coverage_by_month])
    body.heading("（二）按批次", 2)
    body.table(["年度督察", "批次", "开始日期", "计划单位", "已完成", "未覆盖"],
               [[b.round_id, b.batch, b.opens_on, b.planned, b.completed, b.not_covered] for b in d.coverage_by_batch])
    body.heading("（三）各单位", 2)
    body.table(["单位", "督察次数", "已完成", "督察类型", "评估得分", "覆盖"],
               [[u.name, u.inspections, u.completed, "、".join(KIND_NAMES.get(k, k) for k in u.kinds.split(",") if k),
                 "" if u.score is None else f"{u.score:.1f}", "是" if u.covered else "否"] for u in d.coverage_units])
    body.heading("三、发现问题")
    chart(2)
    body.table(["类别", "合计", "共性", "个性"],
               [[c.category, c.total, c.common, c.individual] for c in d.problems_by_category])
    for i, lst in enumerate(("common", "individual"), start=1):
        rows = [p for p in d.problems if p.list == lst]
        body.heading(f"（{'一二'[i - 1]}）{LIST_NAMES[lst]}清单（{len(rows)}个）", 2)
        body.table(["编号", "单位", "类别", "状态", "整改时限", "逾期次数", "销号日期"],
                   [[p.problem_no, p.unit_name, p.category, STAGE_NAMES.get(p.stage, p.stage), p.due_on or "",
                     p.missed_deadlines, _day(p.closed_at)] for p in rows])
    body.heading("四、整改落实")
    chart(3)
    body.table(["环节", "问题数", "占下达整改"],
               [[f.name, f.count, _pct(f.count, funnel.get("required", 0))] for f in d.funnel])
    body.table(["单位", "问题数", "按期", "逾期", "拒不整改升级", "已销号", "未销号"],
               [[u.name, u.total, u.on_time, u.overdue, u.escalated, u.closed, u.open] for u in d.rectification_by_unit])
    body.heading("五、线索移送办理")
    chart(4)
    body.table(["移送路径", "线索数", "期限按期", "期限逾期", "未到期"],
               [[c.name, c.clues, c.met, c.missed, c.pending] for c in d.clue_deadlines])
    if d.clue_misses_by_party:
        body.table(["逾期履职单位", "逾期期限数"], [[m.name, m.missed] for m in d.clue_misses_by_party])
    body.heading("六、绩效考核结果")
    chart(5)
    comps = ["evaluation", "rectification", "clues", "coverage"]
    body.table(["名次", "单位", "得分", "等次", *[COMPONENT_NAMES[c] for c in comps], "等次封顶"],
               [[r.rank, r.name, f"{r.score:.1f}", r.grade,
                 *["—" if getattr(r, c) is None else f"{getattr(r, c):.1f}" for c in comps],
                 "；".join(CAP_NAMES.get(c, c) for c in r.caps)] for r in d.scores])
    body.heading("七、逐级检查验收")
    body.table(["链条", "环节", "完成", "应完成", "完成率", "说明"],
               [[CHAIN_NAMES.get(x.chain, x.chain), x.name, x.done, x.of, _pct(x.done, x.of), x.note]
                for x in d.levels])
    body.paragraph("特此报告。")
    return body.finish()


# --- the tables as a workbook ----------------------------------------------------------------------


def _value(field: str, v: object) -> object:
    """A report value as the workbook shows it (dates stay dates; Sheet writes them as such)."""
    if v is None or isinstance(v, date | int | float) and not isinstance(v, bool):
        return v
    if isinstance(v, bool):
        return "是" if v else "否"
    if isinstance(v, list | tuple):
        return "；".join(CAP_NAMES.get(str(x), str(x)) for x in v)
    names = VALUE_NAMES.get(field)
    if names and isinstance(v, str):
        return names.get(v, v)
    return v


def write_xlsx(d: AnnualReportData, path: Path, zone: ZoneInfo) -> dict[str, int]:
    """Every table of the report, a sheet each (header frozen, filters, dates as dates); the rows
    written per sheet."""
    book = Book(zone)
    book.wb.create_sheet("说明").append([f"{d.county}{d.year}年度法治督察验收报告：各表数据（生成于 "
                                         f"{d.generated_at.astimezone(zone):%Y-%m-%d %H:%M}）"])
    out: dict[str, int] = {}
    for name in TABLES:
        rows: list[BaseModel] = getattr(d, name)
        model = type(d).model_fields[name].annotation.__args__[0]
        fields = list(model.model_fields)
        header = [LABELS.get(f, f) for f in fields]
        values = [[_value(f, getattr(r, f)) for f in fields] for r in rows[:2000]]
        sheet = book.sheet(SHEET_NAMES.get(name, name), header, widths(header, values))
        for r in values:
            sheet.append(r)
        for r in rows[2000:]:
            sheet.append([_value(f, getattr(r, f)) for f in fields])
        sheet.done()
        out[sheet.ws.title] = sheet.rows
    book.save(path)
    return out
