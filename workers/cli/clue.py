"""`ducha clue ...`: start a clue transfer and show its status from the command line."""

from __future__ import annotations

import json
from datetime import date

import typer
from pydantic import ValidationError
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from schemas import ids
from schemas.clue import Channel, ClueStart, ClueStatus, Importance, Route
from schemas.codes import AgencyCode
from workers.cli.common import db_pool, fail, run, settings
from workers.client import connect
from workflows.clue_transfer import ClueTransfer

app = typer.Typer(help="线索移送 / clue transfer", no_args_is_help=True)


async def next_clue_no(pool, year: int) -> str:
    n = await pool.fetchval(
        "INSERT INTO clue_numbers (year, last) VALUES ($1, 1) "
        "ON CONFLICT (year) DO UPDATE SET last = clue_numbers.last + 1 RETURNING last",
        year,
    )
    return f"{year}-{n:04d}"


@app.command("new")
def new(
    route: Route = typer.Option(...),
    source: AgencyCode = typer.Option(...),
    channel: Channel = typer.Option(...),
    importance: Importance = typer.Option(...),
    discovered_on: str = typer.Option(..., help="YYYY-MM-DD"),
    unit: str = typer.Option(..., help="subject unit code"),
    title: str = typer.Option(...),
    reported_by: str = typer.Option(...),
    details: str = typer.Option("", help="kept in the ledger only"),
) -> None:
    """Register a clue: generates its number and starts workflow clue-{no}."""
    s = settings()
    try:
        discovered = date.fromisoformat(discovered_on)
    except ValueError:
        fail(f"日期格式错误 / bad date {discovered_on!r}: use YYYY-MM-DD")

    async def go() -> str:
        async with db_pool(s) as pool:
            clue_no = await next_clue_no(pool, discovered.year)
        try:
            start = ClueStart(clue_no=clue_no, route=route, source=source, channel=channel,
                              importance=importance, discovered_on=discovered, subject_unit=unit,
                              title=title, details=details, reported_by=reported_by)
        except ValidationError as exc:
            fail("输入无效 / invalid input: " + "; ".join(e["msg"] for e in exc.errors()))
        client = await connect(s)
        await client.start_workflow(
            ClueTransfer.run, start, id=ids.clue(clue_no), task_queue=s.task_queue,
            static_summary=f"线索 {clue_no}：{source.value} → {start.target.value}（{importance.value}）",
        )
        return clue_no

    clue_no = run(go)
    typer.echo(ids.clue(clue_no))


@app.command("show")
def show(clue_no: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Print a clue's stage, deadlines and history (CLUE_NO as `clue new` prints it, clue-2026-0001,
    or the number alone, 2026-0001)."""
    s = settings()
    clue_no = clue_no.removeprefix(ids.CLUE)

    async def go() -> ClueStatus:
        client = await connect(s)
        handle = client.get_workflow_handle(ids.clue(clue_no))
        try:
            return await handle.query(ClueTransfer.status)
        except (RPCError, WorkflowQueryFailedError) as exc:
            fail(f"找不到线索 / no such clue {ids.clue(clue_no)}: {exc}")

    status = run(go)
    if as_json:
        typer.echo(json.dumps(status.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return
    typer.echo(f"线索 {status.clue_no}  {status.source} → {status.target}  阶段 {status.stage.value}  "
               f"灯 {status.light}  责任 {status.responsible or '-'}")
    for d in status.deadlines:
        flags = [f for f, on in (("provisional", d.provisional), ("overdue", d.overdue),
                                 ("escalated", d.escalated)) if on]
        met = f" met {d.met_at:%Y-%m-%d}" if d.met_at else ""
        typer.echo(f"  期限 {d.name:12} {d.due_on}{met} {' '.join(flags)}")
    for h in status.history:
        typer.echo(f"  {h.at:%Y-%m-%d %H:%M} {h.action:24} {h.agency:14} {h.operator} {h.note}")
    for link in status.links:
        typer.echo(f"  ↳ {link.relation}: {link.workflow_id}")
