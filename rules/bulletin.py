"""督察情况通报: the bulletin's content, assembled from the ledger's aggregates and its list of
problems (reports/ledger.py Reports.bulletin runs the SQL), and rendered as Markdown or
self-contained HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import date
from operator import itemgetter
from typing import NamedTuple

from pydantic import BaseModel

LIST_NAMES = {"common": "共性问题", "individual": "个性问题"}
SHOWN = 200  # characters of a problem's description and opinion in the bulletin's tables
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


class BulletinLine(NamedTuple):
    """One problem as the bulletin lists it: only what the bulletin shows."""

    problem_no: str
    unit: str
    unit_name: str
    common: bool  # list = 'common' (共性问题); every other list is the unit's individual list
    category: str
    description: str
    opinion: str
    due_on: date | None
    stage: str


_number = itemgetter(0)  # a BulletinLine's problem_no


@dataclass(frozen=True)
class Bulletin:
    county: str
    since: date
    until: date
    total: int
    common: list[BulletinLine]  # by unit, then problem number
    individual: dict[str, list[BulletinLine]]  # unit -> its problems, units in code order
    units: list[UnitStatus]  # units with a problem in the period, in code order
    by_category: dict[str, int]  # most problems first, ties by name

    @property
    def named_units(self) -> list[str]:
        return [u.unit for u in self.units]


def assemble(county: str, since: date, until: date, units: list[UnitStatus], by_category: dict[str, int],
             lines: list[BulletinLine]) -> Bulletin:
    """The bulletin from per-unit and per-category counts and the period's problems (any order).
    Lists are by unit, then problem number; orders are code point orders (Python's, and
    PostgreSQL's COLLATE "C")."""
    by_unit: dict[str, list[BulletinLine]] = {}
    for p in sorted(lines, key=_number):  # one sort on a string: ~50,000 lines at a county's scale
        by_unit.setdefault(p.unit, []).append(p)
    common: list[BulletinLine] = []
    individual: dict[str, list[BulletinLine]] = {}
    for unit in sorted(by_unit):
        common += [p for p in by_unit[unit] if p.common]
        if own := [p for p in by_unit[unit] if not p.common]:
            individual[unit] = own
    return Bulletin(county=county, since=since, until=until, total=sum(u.total for u in units),
                    common=common, individual=individual, units=sorted(units, key=lambda u: u.unit),
                    by_category=dict(sorted(by_category.items(), key=lambda kv: (-kv[1], kv[0]))))


def to_markdown(b: Bulletin) -> str:
    out = [f"# {b.county}法治督察情况通报", "",
           f"通报期间：{b.since:%Y年%m月%d日}至{b.until:%Y年%m月%d日}。共发现问题 {b.total} 个，"
           f"涉及 {len(b.units)} 个单位；已销号 {sum(u.closed for u in b.units)} 个，"
           f"逾期 {sum(u.overdue for u in b.units)} 个，拒不整改升级 {sum(u.escalated for u in b.units)} 个。", ""]
    out += ["## 一、共性问题清单", ""]
    # One row per listed problem (tens of thousands in a big county's half year): the lines are
    # unpacked rather than read attribute by attribute.
    cell, stage_name = _cell, STAGE_NAMES.get
    if b.common:
        out += ["| 编号 | 单位 | 类别 | 问题 | 整改意见 | 时限 | 状态 |", "|---|---|---|---|---|---|---|"]
        out += [f"| {no} | {name} | {category} | {cell(description)} | {cell(opinion)} "
                f"| {due_on.isoformat() if due_on else '-'} | {stage_name(stage, stage)} |"
                for no, _, name, _, category, description, opinion, due_on, stage in b.common]
    else:
        out.append("本期无共性问题。")
    out += ["", "## 二、个性问题清单", ""]
    for rows in b.individual.values():
        out += [f"### {rows[0].unit_name}", "", "| 编号 | 类别 | 问题 | 整改意见 | 时限 | 状态 |", "|---|---|---|---|---|---|"]
        out += [f"| {no} | {category} | {cell(description)} | {cell(opinion)} "
                f"| {due_on.isoformat() if due_on else '-'} | {stage_name(stage, stage)} |"
                for no, _, _, _, category, description, opinion, due_on, stage in rows]
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
    return text.replace("|", "｜").replace("\n", " ")[:SHOWN]


def to_html(b: Bulletin, markdown: str | None = None) -> str:
    """The same content as self-contained HTML (no external resources), from the Markdown
    (`markdown`: to_markdown(b) when the caller has it already)."""
    body: list[str] = []
    in_table = False
    # The whole text is escaped at once. That is escaping each cell or heading: html.escape only
    # turns & < > " ' into entities, which hold no '|', '-' or white space and start with '&', so
    # every line splits, strips and is recognised as it was.
    for line in html.escape(to_markdown(b) if markdown is None else markdown).splitlines():
        if line[:1] == "|":
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not "".join(cells).strip("-"):  # the header's |---|---| line
                continue
            if not in_table:
                body.append("<table>")
                in_table = True
                body.append("<tr><th>" + "</th><th>".join(cells) + "</th></tr>")
            else:
                body.append("<tr><td>" + "</td><td>".join(cells) + "</td></tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("### "):
            body.append(f"<h3>{line[4:]}</h3>")
        elif line.startswith("## "):
            body.append(f"<h2>{line[3:]}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{line[2:]}</h1>")
        elif line:
            body.append(f"<p>{line}</p>")
    if in_table:
        body.append("</table>")
    style = ("body{font-family:'Noto Sans CJK SC','Microsoft YaHei',sans-serif;max-width:1100px;margin:2em auto;}"
             "table{border-collapse:collapse;width:100%;margin:1em 0}th,td{border:1px solid #999;padding:4px 8px;"
             "text-align:left;vertical-align:top}th{background:#eee}h1{text-align:center}")
    return (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(b.county)}'
            f"法治督察情况通报</title><style>{style}</style></head><body>{''.join(body)}</body></html>")
