"""`ducha ledger` and `ducha bulletin`: the close-off ledger (销号台账) and the circular
(督察情况通报) from PostgreSQL."""

from __future__ import annotations

import csv
import hashlib
import io
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import typer

from activities.registry import RegistryStore
from reports.ledger import LEDGER_PAGE, STATUS_FILTERS, Reports, UnknownProblem
from rules import bulletin as bulletin_rules
from schemas.events import EventType, PublishEvent
from workers.cli.common import db_pool, fail, run, settings


def _date(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{name}: 日期格式错误 / bad date {value!r}, use YYYY-MM-DD")


def ledger(
    unit: str = typer.Option(None, help="only this unit code"),
    status: str = typer.Option(None, help="open | overdue | closed | carried | escalated"),
    limit: int = typer.Option(None, "--limit", min=1, help=f"problems on this page, newest first [default: {LEDGER_PAGE}]"),
    before: str = typer.Option(None, "--before", metavar="PROBLEM_NO",
                               help="the next page: start after this problem (the last one shown)"),
    every: bool = typer.Option(False, "--all", help="every matching problem, no page (e.g. a full --csv export)"),
    as_csv: bool = typer.Option(False, "--csv", help="CSV on stdout, one row per problem"),
    xlsx: Path = typer.Option(None, "--xlsx", metavar="FILE",
                              help="every matching problem to an Excel workbook, a sheet per stage"),
) -> None:
    """The close-off ledger (整改销号台账): problems newest first with their whole timelines, a page
    at a time (--limit, --before), or all of them (--all, --xlsx FILE)."""
    if status is not None and status not in STATUS_FILTERS:
        fail(f"--status: 只能是 {' | '.join(STATUS_FILTERS)} / must be one of {', '.join(STATUS_FILTERS)}")
    if xlsx is not None:
        if limit is not None or before is not None or as_csv:
            fail("--xlsx 导出全部匹配的问题，不能与 --limit、--before、--csv 同用 / "
                 "--xlsx exports every matching problem: no --limit, --before or --csv")
        _ledger_xlsx(xlsx, unit, status)
        return
    if every and limit is not None:
        fail("--all 与 --limit 不能同时使用 / --all and --limit exclude each other")
    size = limit or LEDGER_PAGE
    s = settings()
    out = _CsvOut() if as_csv else _TextOut(s)

    async def go():
        async with db_pool(s) as pool:
            reports = Reports(pool)
            try:
                if every:
                    shown = 0
                    async for chunk in reports.all_pages(unit=unit, status=status, before=before):
                        out.write(chunk)
                        shown += len(chunk)
                    out.summary(f"共 {shown} 个问题 / {shown} problems")
                    return
                page = await reports.page(unit=unit, status=status, before=before, limit=size)
            except UnknownProblem:
                fail(f"--before: 台账中没有问题 {before} / no problem {before} in the ledger")
        out.head(f"{len(page.problems)} 个问题（最新在前）/ problems, newest first")
        out.write(page.problems)
        if page.next_before is None:
            return
        more = f"{page.more:,}" + ("+" if page.more_capped else "")
        again = ["ducha ledger"] + (["--unit", unit] if unit else []) + (["--status", status] if status else [])
        again += (["--limit", str(size)] if limit else []) + (["--csv"] if as_csv else [])
        again += ["--before", page.next_before]
        out.summary(f"还有 {more} 个更早的问题 / {more} more, older. 下一页 / next page: {' '.join(again)} "
                    "（全部 / everything: --all）")

    run(go)


def _ledger_xlsx(path: Path, unit: str | None, status: str | None) -> None:
    from documents import ledger_xlsx
    from documents.files import staged

    if path.suffix.lower() != ".xlsx":
        fail(f"--xlsx: 文件名须以 .xlsx 结尾 / the file must end in .xlsx, not {path.name}")
    s = settings()

    async def go():
        async with db_pool(s) as pool:
            with staged(path) as tmp:
                return await ledger_xlsx.export(
                    pool, tmp, s.zone, unit=unit, status=status,
                    progress=lambda n: typer.echo(f"已写入 {n:,} 行 / {n:,} rows written", err=True))

    result = run(go)
    typer.echo(f"{path}\n共 {result.total} 个问题 / {result.total} problems: "
               + "，".join(f"{name} {n}" for name, n in result.sheets.items()))


CSV_HEADER = ["problem_no", "unit", "unit_name", "list", "category", "severity", "stage", "due_on", "overdue",
              "missed_deadlines", "escalated", "reopened", "carried_over", "required_at", "closed_at", "timeline"]


class _CsvOut:
    """CSV rows on stdout as they come; the header once; notes on stderr (stdout stays CSV)."""

    def __init__(self) -> None:
        self.started = False

    def head(self, line: str) -> None:
        pass

    def write(self, problems) -> None:
        out = io.StringIO()
        writer = csv.writer(out)
        if not self.started:
            writer.writerow(CSV_HEADER)
            self.started = True
        for p in problems:
            writer.writerow([p.problem_no, p.unit, p.unit_name, p.list, p.category, p.severity, p.stage,
                             p.due_on or "", p.overdue, p.missed_deadlines, p.escalated, p.reopened,
                             p.carried_over, p.required_at.isoformat(),
                             p.closed_at.isoformat() if p.closed_at else "",
                             "; ".join(f"{t.at.isoformat()} {t.event}" for t in p.timeline)])
        sys.stdout.write(out.getvalue())
        sys.stdout.flush()

    def summary(self, line: str) -> None:
        if not self.started:
            self.write([])
        typer.echo(line, err=True)


class _TextOut:
    def __init__(self, s) -> None:
        self.zone = s.zone

    def head(self, line: str) -> None:
        typer.echo(line)

    def write(self, problems) -> None:
        for p in problems:
            flags = " ".join(f for f, on in (("逾期", p.overdue), ("升级", p.escalated),
                                             (f"结转{p.carried_over}", p.carried_over)) if on)
            typer.echo(f"{p.problem_no:16} {p.unit_name:16} {p.category:8} {p.stage:10} 时限 {p.due_on or '-'} {flags}")
            for t in p.timeline:
                typer.echo(f"    {t.at.astimezone(self.zone):%Y-%m-%d %H:%M}  {t.event:20} {t.agency} {t.actor}")

    def summary(self, line: str) -> None:
        typer.echo(line)


FORMATS = ("html", "docx")


def bulletin(
    since: str = typer.Option(..., "--from", help="first day, YYYY-MM-DD"),
    until: str = typer.Option(..., "--to", help="last day, YYYY-MM-DD"),
    out: Path = typer.Option(..., help="output file; writes FILE.md and FILE.html (html), FILE.docx (docx)"),
    notify: bool = typer.Option(True, help="send bulletin.published to every unit named"),
    formats: list[str] = typer.Option(["html"], "--format", help="html (Markdown + HTML) and/or docx (公文); repeatable"),
) -> None:
    """The circular (督察情况通报) for problems raised in a period, as Markdown and HTML, or as a
    numbered 公文 (.docx, GB/T 9704)."""
    first, last = _date(since, "--from"), _date(until, "--to")
    assert first is not None and last is not None
    if last < first:
        fail("--to 早于 --from / --to is before --from")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        fail(f"--format: 只能是 {' | '.join(FORMATS)} / must be one of {', '.join(FORMATS)}, not {bad[0]!r}")
    s = settings()

    async def go():
        async with db_pool(s) as pool:
            county = await RegistryStore(pool).county_name()
            b = await Reports(pool).bulletin(county, first, last)
            written: list[Path] = []
            if "html" in formats:
                text = bulletin_rules.to_markdown(b)
                md, page = out.with_suffix(".md"), out.with_suffix(".html")
                md.parent.mkdir(parents=True, exist_ok=True)
                md.write_text(text, encoding="utf-8")
                page.write_text(bulletin_rules.to_html(b, text), encoding="utf-8")
                written += [md, page]
            doc_no = None
            if "docx" in formats:
                doc_no = await _bulletin_docx(s, pool, b, out.with_suffix(".docx"))
                written.append(out.with_suffix(".docx"))
            typer.echo("\n".join(map(str, written)) + f"\n{b.total} 个问题，{len(b.units)} 个单位"
                       + (f"，文号 {doc_no}" if doc_no else ""))
            if notify and b.units:
                result = await _publish(s, pool, b, first, last, doc_no)
                typer.echo(f"bulletin.published → {len(result.queued)} 个单位已通知，{len(result.skipped)} 个无回调地址")

    run(go)


async def _bulletin_docx(s, pool, b, path: Path) -> str:
    """The bulletin as a numbered 公文: its 文号 is taken (or kept) in the same transaction that
    records the file."""
    from documents import bulletin as bulletin_doc
    from documents.context import letterhead, today
    from documents.files import staged
    from documents.numbering import DocumentNumbers

    head = await letterhead(pool, s.document_issuer)
    with staged(path) as tmp:  # renamed over `path` after the number is committed
        async with DocumentNumbers(pool).issue(prefix=s.document_prefix, kind="bulletin",
                                               subject=bulletin_doc.subject(b), title=bulletin_doc.title(b),
                                               issued_on=today(s.zone)) as num:
            data = bulletin_doc.render(b, head, num.doc_no, num.issued_on)
            tmp.write_bytes(data)
            await num.written(hashlib.sha256(data).hexdigest())
    return num.doc_no


async def _publish(s, pool, b, first: date, last: date, doc_no: str | None = None):
    from activities.callbacks import CallbackActivities, make_http_client
    from workers.client import connect

    try:
        client = await connect(s)
    except RuntimeError as exc:
        fail(f"无法连接 Temporal / cannot reach Temporal at {s.temporal_address}: {exc}. "
             "Use --no-notify to write the bulletin only.")
    async with make_http_client(s) as http:
        return await CallbackActivities(pool, s, client, http).publish(PublishEvent(
            event_id=f"bulletin-{first}-{last}", type=EventType.BULLETIN_PUBLISHED,
            recipients=b.named_units, workflow_id="ducha-cli",
            summary=f"{b.county}法治督察情况通报（{first:%Y.%m.%d}—{last:%Y.%m.%d}）已印发，"
                    f"请对照问题清单整改",
            data={"from": first.isoformat(), "to": last.isoformat(), "problems": b.total,
                  **({"doc_no": doc_no} if doc_no else {})},
            occurred_at=datetime.now(UTC),
        ))
