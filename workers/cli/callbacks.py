"""`ducha callbacks ...`: signed callbacks to agencies."""

import typer

app = typer.Typer(help="回调通知 / signed agency callbacks", no_args_is_help=True)
