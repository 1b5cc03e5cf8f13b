"""`ducha audit verify`: check the tamper-evident ledger chain."""

import typer

from audit.chain import AuditChain
from workers.cli.common import db_pool, run, settings

app = typer.Typer(help="审计 / tamper-evident ledger", no_args_is_help=True)


@app.command("verify")
def verify() -> None:
    """Recompute the SHA-256 chain over every ledger event; exit 1 at the first broken link."""
    s = settings()

    async def go():
        async with db_pool(s) as pool:
            return await AuditChain(pool).verify()

    report = run(go)
    if report.ok:
        typer.echo(f"OK: {report.rows} 条台账事件，哈希链完整 / chain intact")
        return
    typer.echo(f"BROKEN at ledger_events.id={report.first_bad_id}: {report.reason} "
               f"(verified {report.rows} rows before it)", err=True)
    raise typer.Exit(1)
