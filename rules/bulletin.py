"""督察情况通报: the bulletin's content, computed from ledger rows (pure) and rendered as
Markdown or self-contained HTML."""

from __future__ import annotations

import html
from collections import defaultdict
from datetime import date

from pydantic import BaseModel

from schemas.reports import ProblemRow

LIST_NAMES = {"common": "共性问题", "individual": "个性问题"}
STAGE_NAMES = {"rectifying": "整改中", "reported": "待验收", "accepted": "已验收待回头看",
               "lookback": "回头看", "closed": "已销号"}


class UnitStatus(BaseModel):
    unit: str
    unit_name: str
    total: int = 0
    on_time: int = 0  # never missed a deadline
    overdue: int = 0  # missed at least one deadline
    escalated: int = 0  # 拒不整改, escalated
    closed: int = 0  # 已销号
    open: int = 0


class Bulletin(BaseModel):
    county: str
    since: date
    until: date
    total: int
    common: list[ProblemRow]
    individual: dict[str, list[ProblemRow]]
    units: list[UnitStatus]
    by_category: dict[str, int]

    @property
    def named_units(self) -> list[str]:
        return [u.unit for u in self.units]


def build(county: str, since: date, until: date, problems: list[ProblemRow]) -> Bulletin:
    units: dict[str, UnitStatus] = {}
    individual: dict[str, list[ProblemRow]] = defaultdict(list)
    by_category: dict[str, int] = defaultdict(int)
    common: list[ProblemRow] = []
    for p in sorted(problems, key=lambda p: (p.unit, p.problem_no)):
        u = units.setdefault(p.unit, UnitStatus(unit=p.unit, unit_name=p.unit_name))
        u.total += 1
        u.on_time += p.missed_deadlines == 0
        u.overdue += p.missed_deadlines > 0
        u.escalated += p.escalated
        u.closed += p.stage == "closed"
        u.open += p.stage != "closed"
        by_category[p.category] += 1
        (common if p.list == "common" else individual[p.unit]).append(p)
    return Bulletin(county=county, since=since, until=until, total=len(problems), common=common,
                    individual=dict(individual), units=sorted(units.values(), key=lambda u: u.unit),
                    by_category=dict(sorted(by_category.items(), key=lambda kv: (-kv[1], kv[0]))))


def _due(p: ProblemRow) -> str:
    return p.due_on.isoformat() if p.due_on else "-"


def to_markdown(b: Bulletin) -> str:
    out = [f"# {b.county}法治督察情况通报", "",
           f"通报期间：{b.since:%Y年%m月%d日}至{b.until:%Y年%m月%d日}。共发现问题 {b.total} 个，"
           f"涉及 {len(b.units)} 个单位；已销号 {sum(u.closed for u in b.units)} 个，"
           f"逾期 {sum(u.overdue for u in b.units)} 个，拒不整改升级 {sum(u.escalated for u in b.units)} 个。", ""]
    out += ["## 一、共性问题清单", ""]
    if b.common:
        out += ["| 编号 | 单位 | 类别 | 问题 | 整改意见 | 时限 | 状态 |", "|---|---|---|---|---|---|---|"]
        out += [f"| {p.problem_no} | {p.unit_name} | {p.category} | {_cell(p.description)} | {_cell(p.opinion)} "
                f"| {_due(p)} | {STAGE_NAMES.get(p.stage, p.stage)} |" for p in b.common]
    else:
        out.append("本期无共性问题。")
    out += ["", "## 二、个性问题清单", ""]
    for rows in b.individual.values():
        out += [f"### {rows[0].unit_name}", "", "| 编号 | 类别 | 问题 | 整改意见 | 时限 | 状态 |", "|---|---|---|---|---|---|"]
        out += [f"| {p.problem_no} | {p.category} | {_cell(p.description)} | {_cell(p.opinion)} | {_due(p)} "
                f"| {STAGE_NAMES.get(p.stage, p.stage)} |" for p in rows]
        out.append("")
    if not b.individual:
        out += ["本期无个性问题。", ""]
    out += ["## 三、各单位整改情况", "", "| 单位 | 问题数 | 按期 | 逾期 | 拒不整改升级 | 已销号 | 未销号 |",
            "|---|---|---|---|---|---|---|"]
    out += [f"| {u.unit_name} | {u.total} | {u.on_time} | {u.overdue} | {u.escalated} | {u.closed} | {u.open} |"
            for u in b.units]
    out += ["", "## 四、问题类别统计", "", "| 类别 | 数量 |", "|---|---|"]
    out += [f"| {c} | {n} |" for c, n in b.by_category.items()]
    out += ["", "请各单位对照清单逐项整改，按期报告整改情况；逾期未整改的将按规定移送县纪委监委。", ""]
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "｜").replace("\n", " ")[:200]


def to_html(b: Bulletin) -> str:
    """The same content as self-contained HTML (no external resources)."""
    body: list[str] = []
    in_table = False
    for line in to_markdown(b).splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= {"-"}:
                continue
            if not in_table:
                body.append("<table>")
                in_table = True
                body.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr>")
            else:
                body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("### "):
            body.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    style = ("body{font-family:'Noto Sans CJK SC','Microsoft YaHei',sans-serif;max-width:1100px;margin:2em auto;}"
             "table{border-collapse:collapse;width:100%;margin:1em 0}th,td{border:1px solid #999;padding:4px 8px;"
             "text-align:left;vertical-align:top}th{background:#eee}h1{text-align:center}")
    return (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(b.county)}'
            f"法治督察情况通报</title><style>{style}</style></head><body>{''.join(body)}</body></html>")
