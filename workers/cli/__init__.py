"""The `ducha` command."""

from __future__ import annotations

import os
import sys

import typer

from workers.cli import (
    annual,
    audit,
    calendar,
    callbacks,
    clue,
    indicators,
    inspection,
    registry,
    reports,
    schedules,
)
from workers.cli.common import fail, run, settings

app = typer.Typer(help="法治督察 fazhi-ducha: rule-of-law inspection on Temporal", no_args_is_help=True)
app.add_typer(registry.app, name="registry")
app.add_typer(audit.app, name="audit")
app.add_typer(calendar.app, name="calendar")
app.add_typer(callbacks.app, name="callbacks")
app.add_typer(clue.app, name="clue")
app.add_typer(schedules.app, name="schedules")
app.add_typer(indicators.app, name="indicators")
app.add_typer(inspection.app, name="inspection")
app.command("ledger")(reports.ledger)
app.command("bulletin")(reports.bulletin)
app.add_typer(annual.report_app, name="report")
app.command("archive")(annual.archive)


@app.command()
def up() -> None:
    """Start the embedded stack: Temporal dev server + UI, PostgreSQL, worker, receiver, schedules."""
    from workers.stack import run_stack

    raise typer.Exit(run_stack(settings()))


@app.command()
def worker() -> None:
    """Run the worker on the configured task queue until SIGINT/SIGTERM."""
    from workers.worker import run_worker

    s = settings()
    from workers.logging import configure_logging

    configure_logging(s.log_format, s.log_level)
    run(lambda: run_worker(s))


@app.command()
def migrate() -> None:
    """Apply pending SQL migrations (safe to run twice or concurrently)."""
    import asyncpg

    from workers.migrate import migrate_dsn

    s = settings()
    try:
        applied = run(lambda: migrate_dsn(s.owner_url, app_role=s.app_role))
    except (OSError, asyncpg.PostgresError) as exc:
        fail(f"迁移失败 / migration failed: {exc}")
    typer.echo(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


@app.command()
def receiver(port: int = typer.Option(None, help="default DUCHA_RECEIVER_PORT")) -> None:
    """Demo callback receiver: verifies signatures and prints one line per event."""
    from workers.receiver import serve

    s = settings()
    serve(port or s.receiver_port, s)


@app.command("codec-server")
def codec_server(
    port: int = typer.Option(None, help="default DUCHA_CODEC_PORT"),
    host: str = typer.Option("127.0.0.1", help="listen address (0.0.0.0 only behind an authenticating proxy)"),
) -> None:
    """Codec server for the Web UI: POST /encode and /decode with the payload encryption keys."""
    from workers.codec_server import serve

    s = settings()
    serve(port or s.codec_port, s, host)


@app.command()
def board(
    host: str = typer.Option(None, help="listen address, default DUCHA_BOARD_HOST (127.0.0.1)"),
    port: int = typer.Option(None, help="default DUCHA_BOARD_PORT (8791)"),
) -> None:
    """督办看板: read-only supervision board (traffic lights, overdue list, coverage) in the browser."""
    from workers.board import serve

    s = settings()
    serve(s, host or s.board_host, s.board_port if port is None else port)


def main() -> None:
    """Run the command, then leave without the interpreter's final clean-up: the Temporal
    client's native runtime can crash while Python tears down (exit 134/139 after the work
    was done), which would turn a successful command into a failed one."""
    try:
        app()
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            code = 1
        else:
            code = exc.code or 0
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
