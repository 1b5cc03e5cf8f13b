"""`ducha registry ...`: load, list and edit the registry of agencies and units."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from activities.registry import RegistryStore
from schemas.registry import RegistryFile
from workers.cli.common import db_pool, fail, run, settings
from workers.yaml_file import FileError, load_yaml_model

app = typer.Typer(help="登记册 / registry of agencies and enforcement units", no_args_is_help=True)


@app.command("load")
def load(file: Path) -> None:
    """Upsert agencies and units from a YAML file (all or nothing)."""
    try:
        registry = load_yaml_model(file, RegistryFile)
    except FileError as exc:
        fail(str(exc))
    s = settings()

    async def go():
        async with db_pool(s) as pool:
            return await RegistryStore(pool).load(registry)

    report = run(go)
    typer.echo(f"{file}: {report.summary()}")
    for label, codes in (("+", report.added), ("~", report.updated)):
        for code in codes:
            typer.echo(f"  {label} {code}")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Print every agency and unit."""
    s = settings()

    async def go():
        async with db_pool(s) as pool:
            store = RegistryStore(pool)
            return await store.county_name(), await store.list()

    county, parties = run(go)
    if as_json:
        typer.echo(json.dumps(
            {"county": county, "agencies": [p.model_dump() for p in parties if p.kind == "agency"],
             "units": [p.model_dump() for p in parties if p.kind == "unit"]},
            ensure_ascii=False, indent=2))
        return
    typer.echo(f"{county} — {len(parties)} 条")
    for p in parties:
        endpoint = p.callback_url if p.callback_enabled else f"(停用 disabled) {p.callback_url}"
        typer.echo(f"{p.kind:6} {p.code:22} {p.name:24} 联络员 {p.liaison.name:6} {endpoint or '-'}")
