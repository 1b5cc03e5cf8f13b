"""`ducha inspection ...`: start a unit inspection by hand, show one, show a round's coverage."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer
from pydantic import ValidationError
from temporalio.client import WorkflowQueryFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.inspections import InspectionActivities
from schemas import ids
from schemas.codes import AgencyCode
from schemas.inspection import (
    InspectionStatus,
    Kind,
    SpecialSlotQuery,
    TriggerType,
    UnitInspectionStart,
)
from schemas.round import Coverage
from workers.cli.common import db_pool, fail, run, settings
from workers.client import connect
from workflows.annual_round import AnnualInspectionRound
from workflows.unit_inspection import UnitInspection

app = typer.Typer(help="督察 / unit inspections and the yearly round", no_args_is_help=True)
CHINA = timezone(timedelta(hours=8))


@app.command("start")
def start(
    unit: str = typer.Option(..., help="enforcement unit code"),
    kind: Kind = typer.Option(Kind.SPECIAL),
    lead: AgencyCode = typer.Option(AgencyCode.LAW_OFFICE, help="joint: discipline or tour_office"),
    trigger: TriggerType = typer.Option(TriggerType.REQUEST),
    ref: str = typer.Option("", help="document number or workflow id behind it"),
    year: int = typer.Option(None, help="default: this year (Asia/Shanghai)"),
    focus: list[str] = typer.Option(None, help="problem numbers to look at first (repeatable)"),
) -> None:
    """Start a UnitInspection; a special one is never opened twice for a unit (the open one is named)."""
    s = settings()
    year = year or datetime.now(CHINA).year
    try:
        inp = UnitInspectionStart(unit=unit, year=year, kind=kind, lead=lead,
                                  trigger={"type": trigger, "ref": ref}, focus=focus or [])
    except ValidationError as exc:
        fail("输入无效 / invalid input: " + "; ".join(e["msg"] for e in exc.errors()))

    async def go() -> tuple[str, bool]:
        client = await connect(s)
        async with db_pool(s) as pool:
            acts = InspectionActivities(pool, client)
            if kind is Kind.SPECIAL:
                slot = await acts.special_slot(SpecialSlotQuery(unit=unit, year=year))
                if slot.open:
                    return slot.workflow_id, False
                candidates = [slot.workflow_id]
            else:
                candidates = [ids.inspection(year, kind, unit, n) for n in range(1, 100)]
            for wid in candidates:
                try:
                    await client.start_workflow(
                        UnitInspection.run, inp, id=wid, task_queue=s.task_queue,
                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                        static_summary=f"{kind.value} 督察 {unit}（{trigger.value}）")
                    return wid, True
                except WorkflowAlreadyStartedError:
                    if kind is Kind.SPECIAL:
                        return wid, False
            fail(f"{unit} 本年度 {kind.value} 督察次数过多 / too many {kind.value} inspections of {unit}")

    wid, started = run(go)
    typer.echo(wid if started else f"{wid} (已有进行中的专项督察 / already open)")


@app.command("show")
def show(workflow_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Print an inspection's stage, deadlines, methods and findings."""
    s = settings()

    async def go() -> InspectionStatus:
        client = await connect(s)
        try:
            return await client.get_workflow_handle(workflow_id).query(UnitInspection.status)
        except (RPCError, WorkflowQueryFailedError) as exc:
            fail(f"找不到督察 / no such inspection {workflow_id}: {exc}")

    st = run(go)
    if as_json:
        typer.echo(json.dumps(st.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return
    typer.echo(f"{st.year} {st.kind.value} 督察 {st.unit}  牵头 {st.lead}  阶段 {st.stage.value}  "
               f"灯 {st.light}  责任 {st.responsible or '-'}")
    for d in st.deadlines:
        flags = " ".join(f for f, on in (("provisional", d.provisional), ("overdue", d.overdue)) if on)
        typer.echo(f"  期限 {d.name:16} {d.due_on} {flags}")
    for m in st.methods:
        typer.echo(f"  方式 {m.n:3} {m.method.value:18} {m.on} {m.summary[:60]}")
    for f in st.findings:
        typer.echo(f"  问题 {f.problem_no:30} {f.list.value:10} {f.category:10} "
                   f"{f.rectification_id or ''} {f.clue_id or ''}")
    if st.evaluation:
        typer.echo(f"  评估 {st.evaluation.score:g} 分 {st.evaluation.grade.value}")


@app.command("notice")
def notice(
    workflow_id: str = typer.Argument(..., metavar="ID", help="the inspection's workflow id"),
    out: Path = typer.Option(..., help="the .docx to write"),
) -> None:
    """问题反馈及整改通知书: the inspection's findings and rectification deadlines as a numbered
    公文 (.docx, GB/T 9704) to the inspected unit; written again it keeps its 文号."""
    import hashlib

    from documents import notice as notice_doc
    from documents.context import letterhead, today
    from documents.files import staged
    from documents.numbering import DocumentNumbers

    if out.suffix.lower() != ".docx":
        fail(f"--out: 文件名须以 .docx 结尾 / the file must end in .docx, not {out.name}")
    s = settings()

    async def go() -> tuple[str, bool, notice_doc.NoticeData]:
        async with db_pool(s) as pool:
            try:
                data = await notice_doc.load(pool, workflow_id, s.zone)
            except notice_doc.NotReady as exc:
                fail(str(exc))
            head = await letterhead(pool, s.document_issuer)
            with staged(out) as tmp:  # renamed over `out` after the number is committed
                async with DocumentNumbers(pool).issue(prefix=s.document_prefix, kind="notice", subject=workflow_id,
                                                       title=notice_doc.title(data), issued_on=today(s.zone)) as num:
                    content = notice_doc.render(data, head, num.doc_no, num.issued_on)
                    tmp.write_bytes(content)
                    await num.written(hashlib.sha256(content).hexdigest())
            return num.doc_no, num.reused, data

    doc_no, reused, data = run(go)
    typer.echo(f"{out}\n{doc_no}{'（沿用原文号）' if reused else ''}：{data.unit_name} 问题 {len(data.findings)} 个")


@app.command("coverage")
def coverage(year: int, as_json: bool = typer.Option(False, "--json"),
             workflow_id: str = typer.Option(None, help="default annual-inspection-{year}")) -> None:
    """Print the yearly round's coverage (query `coverage`)."""
    s = settings()

    async def go() -> Coverage:
        client = await connect(s)
        wid = workflow_id or ids.annual_round(year)
        try:
            return await client.get_workflow_handle(wid).query(AnnualInspectionRound.coverage)
        except (RPCError, WorkflowQueryFailedError) as exc:
            fail(f"找不到年度督察 / no round {wid}: {exc}")

    c = run(go)
    if as_json:
        typer.echo(json.dumps(c.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return
    typer.echo(f"{c.year} 年度平时督察  阶段 {c.stage.value}  单位 {c.total}  已完成 {c.completed}  "
               f"督察中 {c.in_progress}（逾期 {c.overdue}）  待督察 {c.planned}  未覆盖 {c.not_covered}")
    for b in c.batches:
        typer.echo(f"  第{b.number}批 {b.opens_on} {'已开启' if b.opened else '未开启'}  {b.total} 个："
                   f"完成 {b.completed}，督察中 {b.in_progress}，待 {b.planned}")
