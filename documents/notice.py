"""问题反馈及整改通知书: the 公文 (.docx) an inspected unit receives after its inspection's
problem feedback (`ducha inspection notice ID --out FILE.docx`): how it was inspected, each
finding with its basis, the rectification opinion and deadline of each (from the rectification
ledger), the evaluation, and what happens when a deadline is missed. Read from the ledger
tables (inspections, inspection_methods, inspection_findings, inspection_evaluations,
rectifications); clue contents never appear, only that a clue went to the discipline
commission."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import asyncpg

from documents.context import Letterhead
from documents.gongwen import Header, chinese_date, new_document
from rules.annual_report import KIND_NAMES
from rules.bulletin import LIST_NAMES
from schemas.codes import AgencyCode

METHOD_NAMES = {"hear_report": "听取汇报", "review_case_files": "评查案卷", "onsite_check": "现场检查",
                "random_test": "随机抽考", "visit_public": "访问群众"}
GRADE_NAMES = {"excellent": "优秀", "good": "良好", "pass": "合格", "fail": "不合格"}
SEVERITY_NAMES = {"serious": "严重", "general": "一般"}


class NotReady(LookupError):
    """The inspection is unknown, or its problems have not been fed back yet."""


@dataclass(frozen=True)
class Finding:
    n: int
    problem_no: str
    category: str
    list: str
    severity: str
    description: str
    basis: str
    opinion: str
    due_on: date | None  # the rectification's current deadline
    clue: bool  # suspected misconduct went to 纪委监委 (route b)


@dataclass(frozen=True)
class NoticeData:
    workflow_id: str
    year: int
    kind: str
    unit: str
    unit_name: str
    lead: str
    started_on: date
    completed_on: date
    methods: list[tuple[str, str, date, int | None]]  # (method, summary, on, count)
    findings: list[Finding]
    score: float | None
    grade: str | None
    comments: str


async def load(pool: asyncpg.Pool, workflow_id: str, zone: ZoneInfo) -> NoticeData:
    """One inspection's feedback, read in one snapshot."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        i = await conn.fetchrow(
            "SELECT i.*, coalesce(p.name, i.unit) AS unit_name FROM inspections i "
            "LEFT JOIN parties p ON p.code = i.unit WHERE i.workflow_id = $1", workflow_id)
        if i is None:
            raise NotReady(f"台账中没有督察 {workflow_id} / no inspection {workflow_id} in the ledger")
        if i["stage"] != "completed":
            raise NotReady(f"督察 {workflow_id} 尚未反馈问题（阶段 {i['stage']}），不能出具整改通知书 / "
                           f"its problems have not been fed back yet (stage {i['stage']})")
        methods = await conn.fetch("SELECT method, summary, done_on, count FROM inspection_methods "
                                   "WHERE workflow_id = $1 ORDER BY n", workflow_id)
        findings = await conn.fetch(
            "SELECT f.n, f.problem_no, f.category, f.list, f.severity, f.description, f.basis, "
            "coalesce(nullif(r.opinion, ''), f.opinion) AS opinion, r.due_on, f.clue_id IS NOT NULL AS clue "
            "FROM inspection_findings f LEFT JOIN rectifications r ON r.problem_no = f.problem_no "
            "WHERE f.workflow_id = $1 ORDER BY f.n", workflow_id)
        ev = await conn.fetchrow("SELECT score, grade, comments FROM inspection_evaluations WHERE workflow_id = $1",
                                 workflow_id)

    def day(at: datetime | None) -> date:
        return (at or i["updated_at"]).astimezone(zone).date()

    return NoticeData(
        workflow_id=workflow_id, year=i["year"], kind=i["kind"], unit=i["unit"], unit_name=i["unit_name"],
        lead=i["lead"], started_on=day(i["started_at"]), completed_on=day(i["completed_at"]),
        methods=[(m["method"], m["summary"], m["done_on"], m["count"]) for m in methods],
        findings=[Finding(**dict(f)) for f in findings],
        score=ev["score"] if ev else None, grade=ev["grade"] if ev else None, comments=ev["comments"] if ev else "")


def title(d: NoticeData) -> str:
    return f"关于反馈{d.year}年度{KIND_NAMES.get(d.kind, d.kind)}发现问题并限期整改的通知"


def render(d: NoticeData, head: Letterhead, doc_no: str, issued_on: date) -> bytes:
    kind = KIND_NAMES.get(d.kind, d.kind)
    rectify = [f for f in d.findings if f.due_on is not None or not f.clue]
    clues = [f for f in d.findings if f.clue]
    copies = [AgencyCode.COUNTY_COMMITTEE] + ([AgencyCode.DISCIPLINE] if clues else [])
    lead = next((a for a in AgencyCode if a.value == d.lead), None)
    if lead is not None and lead is not AgencyCode.LAW_OFFICE and lead not in copies:
        copies.append(lead)  # the agency that led a joint inspection
    body = new_document(Header(issuer=head.issuer, number=doc_no, title=title(d), addressee=d.unit_name,
                               issued_on=issued_on, copies_to=head.agencies(*copies)))
    how = "、".join(dict.fromkeys(METHOD_NAMES.get(m, m) for m, *_ in d.methods)) or "听取汇报"
    body.paragraph(
        f"按照{d.year}年度法治督察工作安排，{head.name(d.lead)}于{chinese_date(d.started_on)}至"
        f"{chinese_date(d.completed_on)}对你单位开展了{kind}，采取{how}等方式，对你单位法治建设和"
        f"行政执法工作进行了检查。现将发现的问题反馈如下，请认真抓好整改。")
    body.heading("一、督察基本情况")
    if d.methods:
        body.table(["序号", "督察方式", "日期", "数量", "情况"],
                   [[i, METHOD_NAMES.get(m, m), on.isoformat(), "" if n is None else n, summary]
                    for i, (m, summary, on, n) in enumerate(d.methods, start=1)],
                   widths=[12, 26, 24, 14, 80])
    else:
        body.paragraph("本次督察未登记督察方式。")
    if d.score is not None:
        body.paragraph(f"经重点评估，你单位本次督察得分{d.score:g}分，等次为"
                       f"“{GRADE_NAMES.get(d.grade or '', d.grade)}”。" + (f"评估意见：{d.comments}" if d.comments else ""))
    body.heading("二、发现的问题")
    if not d.findings:
        body.paragraph("本次督察未发现问题。")
    else:
        body.paragraph(f"本次督察共发现问题{len(d.findings)}个，其中{LIST_NAMES['common']}"
                       f"{sum(f.list == 'common' for f in d.findings)}个、{LIST_NAMES['individual']}"
                       f"{sum(f.list != 'common' for f in d.findings)}个。")
        body.table(["序号", "问题编号", "类别", "清单", "程度", "问题", "依据"],
                   [[f.n, f.problem_no, f.category, LIST_NAMES.get(f.list, f.list),
                     SEVERITY_NAMES.get(f.severity, f.severity), f.description, f.basis] for f in d.findings],
                   widths=[10, 24, 18, 16, 12, 46, 30])
    body.heading("三、整改要求")
    if rectify:
        body.paragraph("请你单位对照下列问题和整改意见逐项整改，于整改时限前将整改情况书面报送县委依法治县办；"
                       "整改完成后由督察组验收，并适时开展“回头看”，验收合格的逐项销号。")
        body.table(["问题编号", "整改意见", "整改时限"],
                   [[f.problem_no, f.opinion or "请对照问题认真整改", chinese_date(f.due_on) if f.due_on else "另行通知"]
                    for f in rectify], widths=[30, 96, 30])
    else:
        body.paragraph("本次督察无须整改的问题。")
    if clues:
        body.paragraph(f"督察中发现的{len(clues)}个涉嫌违纪违法问题线索，已按规定移送县纪委监委处理。")
    body.heading("四、有关事项")
    body.paragraph("逾期未整改的，将予以催办并在督察情况通报中通报；拒不整改的，将开展专项督察，"
                   "涉嫌违纪违法的移送县纪委监委。整改情况纳入年度法治建设绩效考核。")
    return body.finish()
