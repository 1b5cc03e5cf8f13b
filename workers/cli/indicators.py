"""`ducha indicators ...`: load and show the risk indicators behind special inspections."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import typer
from pydantic import ValidationError

from activities.inspections import InspectionActivities
from config.yaml_file import FileError
from schemas.risk import PERIOD_PATTERN, IndicatorRow
from workers.cli.common import db_pool, fail, run, settings

app = typer.Typer(help="风险指标 / risk indicators (complaints, lost lawsuits, revoked decisions)",
                  no_args_is_help=True)

COLUMNS = ("unit", "period", "complaints", "lost_lawsuits", "revoked_decisions")


def read_indicator_csv(path: Path) -> list[IndicatorRow]:
    """Every row of FILE.csv, validated; all errors are reported together, each with its line."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from Excel is fine
    except (OSError, UnicodeDecodeError) as exc:
        raise FileError([f"{path}: 无法读取 / cannot read: {exc}"]) from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise FileError([f"{path}:1: 缺少列 / missing columns: {', '.join(missing)} "
                         f"(header must be {','.join(COLUMNS)})"])
    rows: list[IndicatorRow] = []
    errors: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    for line, raw in enumerate(reader, start=2):
        values = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        if not any(values.values()):
            continue
        try:
            row = IndicatorRow.model_validate({c: values.get(c, "") for c in COLUMNS})
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"])
                errors.append(f"{path}:{line}: {field}: {err['msg']}")
            continue
        key = (row.unit, row.period)
        if key in seen:
            errors.append(f"{path}:{line}: {row.unit} {row.period} 与第 {seen[key]} 行重复 / duplicate of line {seen[key]}")
            continue
        seen[key] = line
        rows.append(row)
    if errors:
        raise FileError(errors)
    if not rows:
        raise FileError([f"{path}: 没有数据行 / no data rows"])
    return rows


@app.command("load")
def load(file: Path) -> None:
    """Upsert indicator rows from FILE.csv (all or nothing); header:
    unit,period,complaints,lost_lawsuits,revoked_decisions (period YYYY-MM)."""
    try:
        rows = read_indicator_csv(file)
    except FileError as exc:
        fail(str(exc))
    s = settings()

    async def go():
        async with db_pool(s) as pool:
            try:
                return await InspectionActivities(pool).load_indicators(rows, source=file.name)
            except ValueError as exc:
                fail(f"{file}: {exc}")

    report = run(go)
    typer.echo(f"{file}: {report.summary()}")
    for label, keys in (("+", report.added), ("~", report.updated)):
        for key in keys:
            typer.echo(f"  {label} {key}")


@app.command("show")
def show(period: str = typer.Option(None, help="YYYY-MM (default: every period)"),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Print the loaded indicators."""
    import re

    if period is not None and not re.match(PERIOD_PATTERN, period):
        fail(f"期间格式错误 / bad period {period!r}: use YYYY-MM")
    s = settings()

    async def go():
        async with db_pool(s) as pool:
            return await pool.fetch(
                "SELECT unit, period, complaints, lost_lawsuits, revoked_decisions FROM risk_indicators "
                "WHERE ($1::text IS NULL OR period = $1) ORDER BY period, unit", period)

    rows = [dict(r) for r in run(go)]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{'period':8} {'unit':24} {'投诉':>6} {'败诉':>6} {'复议撤销':>8}")
    for r in rows:
        typer.echo(f"{r['period']:8} {r['unit']:24} {r['complaints']:>6} {r['lost_lawsuits']:>6} "
                   f"{r['revoked_decisions']:>8}")
