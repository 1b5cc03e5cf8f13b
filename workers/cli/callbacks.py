"""`ducha callbacks ...`: signed callbacks to agencies (docs/agencies.md)."""

from __future__ import annotations

import json

import typer

from activities.callbacks import CallbackActivities, RedeliverRefused, make_http_client
from schemas.callbacks import AttemptOutcome
from workers.cli.common import db_pool, fail, run, settings

app = typer.Typer(help="回调通知 / signed agency callbacks", no_args_is_help=True)

_STATUS_LABEL = {"failed": "失败 failed", "dead": "死信 dead"}


@app.command("failed")
def failed(
    limit: int = typer.Option(50, min=1, max=1000, help="how many, newest first"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """List failed and dead-lettered deliveries (use the ID with `redeliver`)."""
    s = settings()

    async def go():
        async with db_pool(s) as pool:
            return await CallbackActivities(pool, s).list_failed(limit)

    rows = run(go)
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in rows], ensure_ascii=False, indent=2))
        return
    if not rows:
        typer.echo("没有失败或死信的投递 / no failed or dead-lettered deliveries")
        return
    typer.echo(f"{'ID':>6}  {'状态 status':12}  {'次数':>4}  {'HTTP':>4}  {'接收方 recipient':22}  事件 event")
    for r in rows:
        typer.echo(
            f"{r.id:>6}  {_STATUS_LABEL.get(r.status, r.status):12}  {r.attempts:>4}  "
            f"{r.last_status or '-':>4}  {r.recipient:22}  {r.event_id} ({r.type})"
        )
        if r.last_error:
            typer.echo(f"{'':8}{r.last_error}")


@app.command("redeliver")
def redeliver(
    delivery_id: int = typer.Argument(..., metavar="ID", help="delivery id from `ducha callbacks failed`"),
    force: bool = typer.Option(False, "--force", help="also when the delivery still looks pending"),
) -> None:
    """Deliver one event to one recipient again, on a new delivery workflow."""
    from temporalio.service import RPCError

    from workers.client import connect

    s = settings()

    async def go() -> str:
        try:
            client = await connect(s)
        except (OSError, RuntimeError, RPCError) as exc:
            fail(f"无法连接 Temporal / cannot reach Temporal at {s.temporal_address}: {exc}")
        async with db_pool(s) as pool:
            return await CallbackActivities(pool, s, client).redeliver(delivery_id, force=force)

    try:
        workflow_id = run(go)
    except RedeliverRefused as exc:
        fail(str(exc))
    typer.echo(f"已重新投递 / redelivery started: workflow {workflow_id}")


@app.command("test")
def test(code: str = typer.Argument(..., help="registry code of an agency or unit")) -> None:
    """Send a `ping` to CODE's endpoint now and print the outcome (status, latency)."""
    s = settings()

    async def go():
        async with db_pool(s) as pool, make_http_client(s) as http:
            return await CallbackActivities(pool, s, http=http).send_test(code)

    try:
        outcome = run(go)
    except LookupError as exc:
        fail(str(exc.args[0]))
    if outcome.outcome is AttemptOutcome.FORBIDDEN:
        fail(f"拒绝发送 / refused: {outcome.url}: {outcome.error}")
    status = outcome.http_status if outcome.http_status is not None else "-"
    latency = f"{outcome.latency_ms} ms" if outcome.latency_ms is not None else "-"
    typer.echo(f"{code}  {outcome.url}")
    typer.echo(f"  事件 event    {outcome.event_id}")
    typer.echo(f"  状态 status   {status}  ({outcome.outcome})")
    typer.echo(f"  耗时 latency  {latency}")
    if outcome.error:
        typer.echo(f"  错误 error    {outcome.error}")
    if not outcome.endpoint_enabled:
        typer.echo("  注意：该回调地址已停用 / note: this endpoint is disabled "
                   "(re-enable with `ducha registry set-endpoint`)")
    if outcome.outcome is not AttemptOutcome.DELIVERED:
        raise typer.Exit(1)
