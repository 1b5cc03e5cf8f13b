"""`ducha schedules sync`: create or update the service's Temporal schedules."""

import typer

from workers.cli.common import run, settings
from workers.client import connect

app = typer.Typer(help="定时任务 / Temporal schedules", no_args_is_help=True)


@app.command("sync")
def sync() -> None:
    """Create missing schedules and update existing ones (idempotent)."""
    from workers.schedules import sync as sync_schedules

    s = settings()

    async def go():
        return await sync_schedules(await connect(s), s)

    for schedule_id, outcome in run(go):
        typer.echo(f"{outcome:8} {schedule_id}")
