"""年度验收报告: the acceptance report as one self-contained HTML page (inline SVG charts, inline
CSS, no script, nothing fetched at view time) plus its tables as CSV rows. Pure: data in, text out.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date, datetime
from html import escape

from pydantic import BaseModel

from rules.bulletin import LIST_NAMES, STAGE_NAMES
from rules.rubric import COMPONENT_NAMES, RULE_NAMES
from schemas.report import AnnualReportData

# Chart colours (the screenshot test looks for BLUE and RED pixels).
BLUE = "#1f5fa8"
RED = "#c0392b"
GREEN = "#2e8b57"
GREY = "#9aa5b1"
ORANGE = "#e08a1e"
FONT = "'Noto Sans CJK SC','Source Han Sans SC','Microsoft YaHei','PingFang SC',sans-serif"
KIND_NAMES = {"routine": "平时督察", "special": "专项督察", "joint": "联合督察"}
CAP_NAMES = {"not_covered": "未完成督察，等次不高于合格", "escalated": "拒不整改，等次封顶"}
CHAIN_NAMES = {"inspection": "逐级检查", "acceptance": "逐级验收"}

# One CSV per table: file stem → the data's attribute.
TABLES = ("coverage_by_month", "coverage_by_batch", "coverage_units", "problems", "problems_by_category",
          "rectification_by_unit", "funnel", "clue_deadlines", "clue_misses_by_party", "scores",
          "deductions", "levels")


# --- CSV -------------------------------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def to_csv(rows: Sequence[BaseModel], model: type[BaseModel]) -> str:
    """One table as CSV (header = the model's field names), UTF-8 text."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    fields = list(model.model_fields)
    w.writerow(fields)
    for r in rows:
        w.writerow([_cell(getattr(r, f)) for f in fields])
    return out.getvalue()


def csv_tables(data: AnnualReportData) -> dict[str, str]:
    """`{stem: csv text}` for every table of the report."""
    out = {}
    for name in TABLES:
        rows = getattr(data, name)
        model = type(data).model_fields[name].annotation.__args__[0]  # list[Model]
        out[name] = to_csv(rows, model)
    return out


# --- charts (inline SVG) -----------------------------------------------------------------------


STEPS = sorted({int(m * 10 ** k) for k in range(7) for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8)
                if float(m * 10 ** k).is_integer()})


def _nice_max(value: float) -> float:
    """The top of a count axis: four equal whole-number steps that reach `value`."""
    step = next((s for s in STEPS if 4 * s >= value), None)
    return 4 * step if step else value


def _text(x: float, y: float, s: object, *, size: int = 12, anchor: str = "middle", color: str = "#333",
          weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{color}" '
            f'font-weight="{weight}">{escape(str(s))}</text>')


def column_chart(title: str, labels: list[str], series: list[tuple[str, str, list[float]]],
                 width: int = 560, height: int = 280) -> str:
    """Grouped vertical bars: one group per label, one bar per series."""
    left, right, top, bottom = 44, 12, 46, 46
    pw, ph = width - left - right, height - top - bottom
    peak = _nice_max(max((v for _, _, vs in series for v in vs), default=0))
    parts = [f'<svg class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" font-family="{escape(FONT)}">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
             _text(width / 2, 20, title, size=15, weight="bold")]
    for i in range(5):
        y = top + ph - ph * i / 4
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        parts.append(_text(left - 6, y + 4, f"{peak * i / 4:g}", size=10, anchor="end", color="#666"))
    lx = left
    for name, color, _ in series:
        parts.append(f'<rect x="{lx}" y="28" width="10" height="10" fill="{color}"/>')
        parts.append(_text(lx + 14, 37, name, size=11, anchor="start"))
        lx += 24 + 12 * len(name)
    n = max(len(labels), 1)
    group = pw / n
    bar = group * 0.78 / max(len(series), 1)
    for gi, label in enumerate(labels):
        gx = left + gi * group + group * 0.11
        for si, (_, color, values) in enumerate(series):
            v = values[gi]
            h = ph * v / peak
            x = gx + si * bar
            if v > 0:
                parts.append(f'<rect x="{x:.1f}" y="{top + ph - h:.1f}" width="{max(bar - 1, 1):.1f}" '
                             f'height="{h:.1f}" fill="{color}"/>')
                parts.append(_text(x + bar / 2, top + ph - h - 3, f"{v:g}", size=9, color="#444"))
        parts.append(_text(left + gi * group + group / 2, top + ph + 16, label, size=10, color="#444"))
    if not any(v for _, _, vs in series for v in vs):
        parts.append(_text(left + pw / 2, top + ph / 2, "无数据", size=13, color="#999"))
    parts.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#888"/>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(title: str, rows: list[tuple[str, float, str, str]], width: int = 560,
              peak: float | None = None) -> str:
    """Horizontal bars, one per row: (label, value, colour, text shown after the bar)."""
    left, right, top, row_h = 150, 70, 34, 22
    height = top + row_h * max(len(rows), 1) + 12
    pw = width - left - right
    peak = peak or _nice_max(max((r[1] for r in rows), default=0))
    parts = [f'<svg class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" font-family="{escape(FONT)}">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
             _text(width / 2, 20, title, size=15, weight="bold")]
    for i, (label, value, color, shown) in enumerate(rows):
        y = top + i * row_h
        w = pw * value / peak if peak else 0
        parts.append(_text(left - 8, y + 15, label[:12], size=11, anchor="end"))
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{pw}" height="{row_h - 6}" fill="#f2f4f7"/>')
        if w > 0:
            parts.append(f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{color}"/>')
        parts.append(_text(left + pw + 6, y + 15, shown, size=11, anchor="start", color="#333"))
    if not rows:
        parts.append(_text(width / 2, top + 14, "无数据", size=13, color="#999"))
    parts.append("</svg>")
    return "".join(parts)


def charts(d: AnnualReportData) -> list[str]:
    months = [m for m in d.coverage_by_month if m.month.startswith(str(d.year))]
    out = [column_chart(
        "督察覆盖：按月", [m.month[5:] + "月" for m in months],
        [("完成督察", BLUE, [m.completed for m in months]), ("首次覆盖单位", ORANGE, [m.newly_covered for m in months])])]
    out.append(column_chart(
        "督察覆盖：按批次", [f"第{b.batch}批" for b in d.coverage_by_batch],
        [("计划单位", GREY, [b.planned for b in d.coverage_by_batch]),
         ("已完成", BLUE, [b.completed for b in d.coverage_by_batch]),
         ("未覆盖", RED, [b.not_covered for b in d.coverage_by_batch])]))
    out.append(bar_chart("发现问题：按类别", [(c.category, c.total, BLUE, f"{c.total}（共性{c.common}）")
                                       for c in d.problems_by_category]))
    top = d.funnel[0].count if d.funnel else 0
    out.append(bar_chart("整改漏斗", [(f.name, f.count, RED if f.step == "escalated" else BLUE,
                                   f"{f.count}" + (f"（{f.count * 100 / top:.0f}%）" if top else ""))
                                  for f in d.funnel], peak=top or None))
    out.append(column_chart(
        "线索期限：按移送路径", [c.name.split(" ", 1)[0] + " " + c.route.removeprefix("to_") for c in d.clue_deadlines],
        [("按期", GREEN, [c.met for c in d.clue_deadlines]), ("逾期", RED, [c.missed for c in d.clue_deadlines]),
         ("未到期", GREY, [c.pending for c in d.clue_deadlines])]))
    grade_color = {"优秀": BLUE, "良好": BLUE, "合格": ORANGE, "不合格": RED}
    out.append(bar_chart("考核得分排名", [(f"{s.rank}. {s.name}", s.score, grade_color.get(s.grade, BLUE),
                                     f"{s.score:.1f} {s.grade}") for s in d.scores], peak=100))
    return out


# --- the page ----------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[object]], cls: str = "") -> str:
    if not rows:
        return '<p class="none">（无）</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(_cell(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _pct(n: int, of: int) -> str:
    return f"{n * 100 / of:.1f}%" if of else "-"


def _day(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d}" if at else ""


def to_html(d: AnnualReportData) -> str:
    t = d.totals
    title = f"{d.county}{d.year}年度法治督察验收报告"
    funnel = {f.step: f.count for f in d.funnel}
    overview = [
        f"{d.year}年度应督察执法单位 {t.units} 个，已完成督察覆盖 {t.covered} 个（{_pct(t.covered, t.units)}）；"
        f"开展督察 {t.inspections} 次，完成 {t.inspections_completed} 次。",
        f"发现问题 {t.problems} 个（共性 {t.common}、个性 {t.individual}）；已销号 {t.closed} 个"
        f"（{_pct(t.closed, t.problems)}），验收通过 {funnel.get('accepted', 0)} 个，拒不整改升级 {t.escalated} 个。",
        f"登记线索 {t.clues} 条，线索期限按期履职 {t.clue_deadlines_met} 项、逾期 {t.clue_deadlines_missed} 项。",
        (f"考核 {t.assessed} 个单位，平均 {t.mean_score:.1f} 分（计分规则 {d.rubric_version}）。"
         if t.assessed and t.mean_score is not None else "本年度尚未进行绩效考核。"),
    ]
    s: list[str] = [f"<h1>{escape(title)}</h1>",
                    f'<p class="meta">生成时间：{d.generated_at:%Y-%m-%d %H:%M} UTC · 数据来源：督察台账</p>',
                    "<h2>一、总体情况</h2>", *[f"<p>{escape(p)}</p>" for p in overview],
                    _table(["指标", "数值"], [
                        ["执法单位", t.units], ["督察覆盖单位", t.covered], ["覆盖率", _pct(t.covered, t.units)],
                        ["督察次数", t.inspections], ["完成督察", t.inspections_completed],
                        ["发现问题", t.problems], ["共性问题", t.common], ["个性问题", t.individual],
                        ["已销号", t.closed], ["拒不整改升级", t.escalated], ["线索", t.clues],
                        ["线索期限按期", t.clue_deadlines_met], ["线索期限逾期", t.clue_deadlines_missed],
                        ["考核单位", t.assessed], ["平均得分", "" if t.mean_score is None else f"{t.mean_score:.1f}"],
                    ], "totals"),
                    "<h2>二、图表</h2>", '<div class="charts">', *charts(d), "</div>"]
    s += ["<h2>三、督察覆盖</h2>", "<h3>按月</h3>",
          _table(["月份", "开始督察", "完成督察", "首次覆盖单位", "累计覆盖单位"],
                 [[m.month, m.started, m.completed, m.newly_covered, m.covered_to_date] for m in d.coverage_by_month]),
          "<h3>按批次</h3>",
          _table(["年度督察", "批次", "开始日期", "计划单位", "已完成", "未覆盖"],
                 [[b.round_id, b.batch, b.opens_on, b.planned, b.completed, b.not_covered] for b in d.coverage_by_batch]),
          "<h3>各单位</h3>",
          _table(["单位", "督察次数", "已完成", "督察类型", "评估得分", "覆盖"],
                 [[u.name, u.inspections, u.completed, "、".join(KIND_NAMES.get(k, k) for k in u.kinds.split(",") if k),
                   "" if u.score is None else f"{u.score:.1f}", "是" if u.covered else "否"] for u in d.coverage_units])]
    s += ["<h2>四、发现问题</h2>", "<h3>按类别</h3>",
          _table(["类别", "合计", "共性", "个性"],
                 [[c.category, c.total, c.common, c.individual] for c in d.problems_by_category], "categories")]
    for lst in ("common", "individual"):
        rows = [p for p in d.problems if p.list == lst]
        s += [f"<h3>{LIST_NAMES[lst]}清单（{len(rows)} 个）</h3>",
              _table(["编号", "单位", "类别", "严重程度", "状态", "整改时限", "逾期次数", "升级", "销号日期"],
                     [[p.problem_no, p.unit_name, p.category, "严重" if p.severity == "serious" else "一般",
                       STAGE_NAMES.get(p.stage, p.stage), p.due_on, p.missed_deadlines, "是" if p.escalated else "",
                       _day(p.closed_at)] for p in rows], "problems")]
    s += ["<h2>五、整改落实</h2>", "<h3>整改漏斗</h3>",
          _table(["环节", "问题数", "占下达整改"], [[f.name, f.count, _pct(f.count, funnel.get("required", 0))]
                                          for f in d.funnel], "funnel"),
          "<h3>各单位整改情况</h3>",
          _table(["单位", "问题数", "按期", "逾期", "拒不整改升级", "已销号", "未销号"],
                 [[u.name, u.total, u.on_time, u.overdue, u.escalated, u.closed, u.open]
                  for u in d.rectification_by_unit], "units")]
    s += ["<h2>六、线索移送办理</h2>",
          _table(["移送路径", "线索数", "期限按期", "期限逾期", "未到期"],
                 [[c.name, c.clues, c.met, c.missed, c.pending] for c in d.clue_deadlines], "clues"),
          "<h3>逾期履职单位</h3>",
          _table(["单位", "逾期期限数"], [[m.name, m.missed] for m in d.clue_misses_by_party])]
    comps = ["evaluation", "rectification", "clues", "coverage"]
    s += ["<h2>七、绩效考核结果</h2>",
          _table(["名次", "单位", "得分", "等次", *[COMPONENT_NAMES[c] for c in comps], "扣分项", "等次封顶"],
                 [[r.rank, r.name, f"{r.score:.1f}", r.grade,
                   *["—" if getattr(r, c) is None else f"{getattr(r, c):.1f}" for c in comps], r.deductions,
                   "；".join(CAP_NAMES.get(c, c) for c in r.caps)] for r in d.scores], "scores"),
          "<h3>扣分明细</h3>",
          _table(["单位", "项目", "规则", "扣分（折算）", "来源", "时间", "说明"],
                 [[x.unit, COMPONENT_NAMES.get(x.component, x.component), RULE_NAMES.get(x.rule, x.rule),
                   f"{x.weighted_points:.2f}", f"{x.source_kind}:{x.source_id}", _day(x.occurred_at), x.note]
                  for x in d.deductions], "deductions")]
    s += ["<h2>八、逐级检查验收</h2>",
          _table(["链条", "环节", "完成", "应完成", "完成率", "说明"],
                 [[CHAIN_NAMES.get(x.chain, x.chain), x.name, x.done, x.of, _pct(x.done, x.of), x.note]
                  for x in d.levels], "levels"),
          '<p class="meta">本报告由法治督察系统根据台账自动生成；同一数据见 data.json 及各 CSV 文件。</p>']
    style = (f"body{{font-family:{FONT};max-width:1160px;margin:1.5em auto;color:#222;padding:0 12px}}"
             "h1{text-align:center;font-size:26px}h2{border-bottom:2px solid #8a9bb0;padding-bottom:4px;margin-top:1.6em}"
             "table{border-collapse:collapse;width:100%;margin:.6em 0 1em;font-size:13px}"
             "th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top}"
             "th{background:#eef2f7}table.totals{width:auto;min-width:360px}"
             ".charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #ddd}"
             ".meta{color:#666;font-size:12px}.none{color:#888}"
             "@media print{.charts{display:block}.chart{page-break-inside:avoid}}")
    return (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width"><style>{style}</style></head>'
            f"<body>{''.join(s)}</body></html>")
