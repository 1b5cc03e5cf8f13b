"""`ducha calendar ...`: the statutory working-day calendar."""

import typer

app = typer.Typer(help="工作日历 / statutory working-day calendar", no_args_is_help=True)
