"""`ducha report annual` (年度验收报告) and `ducha archive` (档案资料): the year's acceptance
report as HTML + JSON + CSV, and every record of the year as a verifiable zip (docs/assessment.md)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import typer

from reports.annual import AnnualReport, YearRecords
from rules import annual_report as render
from schemas.report import AnnualReportData
from workers.cli.common import db_pool, fail, run, settings

ARCHIVE_FORMAT = "fazhi-ducha-archive/1"
MANIFEST = "manifest.json"
REPORT_HTML = "report.html"
REPORT_DOCX = "report.docx"
REPORT_XLSX = "tables.xlsx"

report_app = typer.Typer(help="报告 / reports", no_args_is_help=True)


# --- the report ----------------------------------------------------------------------------------


def write_report(data: AnnualReportData, out: Path) -> list[Path]:
    """report.html, data.json and one CSV per table (UTF-8 with BOM, so spreadsheets read Chinese)."""
    out.mkdir(parents=True, exist_ok=True)
    files = {REPORT_HTML: render.to_html(data).encode(),
             "data.json": (data.model_dump_json(indent=2) + "\n").encode()}
    for stem, text in render.csv_tables(data).items():
        files[f"{stem}.csv"] = text.encode("utf-8-sig")
    for name, content in files.items():
        (out / name).write_bytes(content)
    return [out / name for name in files]


def _check_year(year: int) -> None:
    if not 2000 <= year <= 2100:
        fail(f"年度须在 2000–2100 之间 / year must be 2000-2100, not {year}")


async def _report_data(year: int) -> AnnualReportData:
    s = settings()
    async with db_pool(s) as pool:
        return await AnnualReport(pool, s.zone).build(year)


FORMATS = ("html", "docx", "xlsx")


@report_app.command("annual")
def annual(
    year: int = typer.Argument(..., help="the year, e.g. 2026"),
    out: Path = typer.Option(..., help="output directory (created)"),
    formats: list[str] = typer.Option(["html"], "--format",
                                      help="html (report.html + data.json + CSVs), docx (report.docx, a numbered "
                                           "公文 with its charts), xlsx (tables.xlsx); repeatable"),
    signer: str = typer.Option("", help="docx: 签发人 of the report (a 上行文 to the county committee)"),
) -> None:
    """年度验收报告: coverage, problems, rectification funnel, clue deadlines, scores, level by level."""
    _check_year(year)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        fail(f"--format: 只能是 {' | '.join(FORMATS)} / must be one of {', '.join(FORMATS)}, not {bad[0]!r}")
    if "docx" in formats:
        data, doc_no = run(lambda: _report_docx(year, out / REPORT_DOCX, signer))
    else:
        data, doc_no = run(lambda: _report_data(year)), None
    paths = write_report(data, out) if "html" in formats else []
    if "docx" in formats:
        paths.append(out / REPORT_DOCX)
    if "xlsx" in formats:
        from documents import annual as annual_doc
        from documents.files import staged

        with staged(out / REPORT_XLSX) as tmp:
            annual_doc.write_xlsx(data, tmp, settings().zone)
        paths.append(out / REPORT_XLSX)
    t = data.totals
    typer.echo("\n".join(str(p) for p in paths if p.suffix in (".html", ".docx", ".xlsx"))
               + f"\n{len(paths)} 个文件 / files in {out}" + (f"；文号 {doc_no}" if doc_no else ""))
    typer.echo(f"{year} 年度：执法单位 {t.units}，覆盖 {t.covered}；问题 {t.problems}，销号 {t.closed}，"
               f"升级 {t.escalated}；线索 {t.clues}；考核 {t.assessed} 个单位")


async def _report_docx(year: int, path: Path, signer: str) -> tuple[AnnualReportData, str]:
    """The report's data and the report as a numbered 公文 (its 文号 taken, or kept, in the same
    transaction that records the file)."""
    from documents import annual as annual_doc
    from documents.charts import ChartError
    from documents.context import letterhead, today
    from documents.files import staged
    from documents.numbering import DocumentNumbers

    s = settings()
    async with db_pool(s) as pool:
        data = await AnnualReport(pool, s.zone).build(year)
        head = await letterhead(pool, s.document_issuer)
        with staged(path) as tmp:  # renamed over `path` after the number is committed
            async with DocumentNumbers(pool).issue(prefix=s.document_prefix, kind="annual_report", subject=str(year),
                                                   title=annual_doc.title(data), issued_on=today(s.zone)) as num:
                try:
                    content = annual_doc.render(data, head, num.doc_no, num.issued_on, signer)
                except ChartError as exc:
                    fail(str(exc))
                tmp.write_bytes(content)
                await num.written(hashlib.sha256(content).hexdigest())
    return data, num.doc_no


# --- the archive ---------------------------------------------------------------------------------


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True, default=_json_default) + "\n"
                   for r in rows).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_archive(year: int, county: str, records: dict[str, list[dict]], report: dict[str, bytes],
                  out: Path, anchor: dict | None = None) -> dict:
    """Write the zip (atomically) and return its manifest. `anchor`: the audit chains' heads when
    the archive was made (schemas/anchor.py), which `ducha audit verify --manifest` compares."""
    files: dict[str, bytes] = {f"records/{kind}.jsonl": jsonl(rows) for kind, rows in records.items()}
    files.update({f"report/{name}": content for name, content in report.items()})
    manifest = {
        "format": ARCHIVE_FORMAT, "county": county, "year": year,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "counts": {kind: len(rows) for kind, rows in records.items()},
        "files": [{"name": name, "bytes": len(content), "sha256": sha256(content),
                   "rows": len(records[name[8:-6]]) if name.startswith("records/") else None}
                  for name, content in files.items()],
    }
    if anchor is not None:
        manifest["audit_anchor"] = anchor
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
            for name, content in files.items():
                z.writestr(name, content)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return manifest


def verify_archive(path: Path) -> tuple[dict, list[str]]:
    """Recompute every file's SHA-256, size and row count against the manifest; the problems
    found (empty: the archive verifies)."""
    problems: list[str] = []
    try:
        z = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        return {}, [f"不是有效的 zip 文件 / not a readable zip: {exc}"]
    with z:
        try:
            manifest = json.loads(z.read(MANIFEST))
        except KeyError:
            return {}, [f"缺少 {MANIFEST} / {MANIFEST} is missing"]
        except ValueError as exc:
            return {}, [f"{MANIFEST} 不是有效的 JSON / {MANIFEST} is not JSON: {exc}"]
        if manifest.get("format") != ARCHIVE_FORMAT:
            problems.append(f"未知格式 / unknown format {manifest.get('format')!r}")
        listed = {f["name"]: f for f in manifest.get("files", [])}
        present = set(z.namelist()) - {MANIFEST}
        for name in sorted(present - set(listed)):
            problems.append(f"{name}: 清单中没有 / not in the manifest")
        for name, f in listed.items():
            if name not in present:
                problems.append(f"{name}: 缺失 / missing")
                continue
            content = z.read(name)
            if sha256(content) != f.get("sha256"):
                problems.append(f"{name}: SHA-256 不符 / checksum mismatch")
            if len(content) != f.get("bytes"):
                problems.append(f"{name}: 大小不符 / size {len(content)} != {f.get('bytes')}")
            if f.get("rows") is not None:
                rows = sum(1 for line in content.decode("utf-8", "replace").splitlines() if line.strip())
                if rows != f["rows"]:
                    problems.append(f"{name}: 行数不符 / {rows} rows, manifest says {f['rows']}")
                kind = name.removeprefix("records/").removesuffix(".jsonl")
                if manifest.get("counts", {}).get(kind) != f["rows"]:
                    problems.append(f"{name}: 计数与清单不一致 / counts[{kind}] differs from the file entry")
    return manifest, problems


def archive(
    target: str = typer.Argument(..., metavar="YEAR|verify", help="the year to archive, or `verify`"),
    file: Path = typer.Argument(None, metavar="[FILE.zip]", help="with `verify`: the archive to check"),
    out: Path = typer.Option(None, help="with YEAR: the zip to write"),
) -> None:
    """档案资料: every record of a year in one zip with a verifiable manifest.

    `ducha archive 2026 --out FILE.zip` bundles the year's records (JSON Lines), the acceptance
    report and manifest.json (row counts, SHA-256 per file); `ducha archive verify FILE.zip`
    recomputes them."""
    if target == "verify":
        if file is None:
            fail("用法 / usage: ducha archive verify FILE.zip")
        manifest, problems = verify_archive(file)
        if problems:
            for p in problems:
                typer.echo(p, err=True)
            typer.echo(f"校验失败 / FAILED: {len(problems)} problem(s) in {file}", err=True)
            raise typer.Exit(1)
        files = manifest["files"]
        rows = sum(f["rows"] or 0 for f in files)
        typer.echo(f"OK {file}: {manifest['year']} 年度 {len(files)} 个文件，{rows} 条记录，校验通过")
        return
    try:
        year = int(target)
    except ValueError:
        fail(f"应为年度或 verify / expected a year or `verify`, not {target!r}")
    _check_year(year)
    if out is None or file is not None:
        fail("用法 / usage: ducha archive YEAR --out FILE.zip")
    s = settings()

    async def go():
        async with db_pool(s) as pool:
            from activities.ledger import read_anchor
            from activities.registry import RegistryStore

            county = await RegistryStore(pool).county_name()
            records = await YearRecords(pool).collect(year)
            data = await AnnualReport(pool, s.zone).build(year)
            anchor = await read_anchor(pool)  # after the records: a head at least as new as they are
            return county, records, data, anchor.model_dump(mode="json")

    county, records, data, anchor = run(go)
    with tempfile.TemporaryDirectory() as tmp:
        write_report(data, Path(tmp))
        report = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir())}
    manifest = build_archive(year, county, records, report, out, anchor)
    digest = sha256(out.read_bytes())
    typer.echo(f"{out}\n{len(manifest['files'])} 个文件，"
               + "，".join(f"{k} {n}" for k, n in manifest["counts"].items() if n))
    typer.echo(f"zip SHA-256 {digest}（请登记在档案目录中 / record it in the archive register）")
    ledger = anchor["heads"][0]
    typer.echo(f"台账链头 / ledger chain head: id {ledger['last_id']}, {ledger['rows']} 条 "
               f"(`ducha audit verify --manifest {out}`)")
