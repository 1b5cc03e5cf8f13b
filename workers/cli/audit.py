"""`ducha audit verify` / `ducha audit anchor`: check the keyed audit chains against the anchors
kept outside PostgreSQL (docs/reliability.md, "The audit trail")."""

from __future__ import annotations

import asyncio
import json
import zipfile
from pathlib import Path

import typer
from pydantic import ValidationError

from audit.chain import AuditChain, ChainReport
from config.settings import Settings, SettingsError
from schemas.anchor import Anchor
from workers.cli.common import db_pool, fail, run, settings

app = typer.Typer(help="审计 / tamper-evident ledger", no_args_is_help=True)
TEMPORAL_TIMEOUT_SECONDS = 10


def read_manifest_anchor(path: Path) -> Anchor:
    """The anchor recorded in an archive (`ducha archive` zip, or its manifest.json)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                doc = json.loads(z.read("manifest.json"))
        else:
            doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        fail(f"无法读取清单 / cannot read manifest {path}: {exc}")
    if not isinstance(doc, dict) or "audit_anchor" not in doc:
        fail(f"清单中没有锚点 / {path} records no audit_anchor (archives from before the keyed chain)")
    try:
        return Anchor.model_validate(doc["audit_anchor"])
    except ValidationError as exc:
        fail(f"清单锚点无效 / {path}: audit_anchor is invalid: {exc.errors()[0]['msg']}")
    raise AssertionError("unreachable")


async def workflow_anchors(s: Settings, limit: int) -> tuple[list[Anchor], str]:
    """The latest anchors from the LedgerAnchor workflow, or ([], why not)."""
    from workers.client import connect
    from workers.schedules import anchor_handle
    from workflows.ledger_anchor import LedgerAnchor

    try:
        async with asyncio.timeout(TEMPORAL_TIMEOUT_SECONDS):
            handle = await anchor_handle(await connect(s))
            return await handle.query(LedgerAnchor.recent, limit), ""
    except Exception as exc:  # unreachable server, no such workflow, ...: said, not fatal
        return [], f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _chain_key(s: Settings):
    from config.chain_key import load_chain_key

    try:
        return load_chain_key(s)
    except SettingsError as exc:
        fail(str(exc))


@app.command("verify")
def verify(
    manifest: list[Path] = typer.Option(None, "--manifest", help="an archive zip or manifest.json whose "
                                        "recorded chain head is compared too (repeatable)"),
    anchors: int = typer.Option(20, help="how many of the LedgerAnchor workflow's latest anchors to compare"),
    temporal: bool = typer.Option(True, help="read anchors from the LedgerAnchor workflow"),
    require_anchor: bool = typer.Option(False, help="fail (exit 3) when no anchor could be compared"),
) -> None:
    """Walk both chains (ledger events, authorization decisions): every row's HMAC, every link,
    the head; then compare with the anchors. Exit 1 naming every problem found."""
    s = settings()
    key = _chain_key(s)
    given = [read_manifest_anchor(p) for p in manifest or []]

    async def go() -> tuple[ChainReport, str]:
        found, why = await workflow_anchors(s, anchors) if temporal else ([], "--no-temporal")
        async with db_pool(s) as pool:
            return await AuditChain(pool, key).verify(anchors=[*found, *given]), why

    report, why_not = run(go)
    if why_not and temporal:
        typer.echo(f"警告 / warning: 未能读取 LedgerAnchor 锚点 / no anchors from the LedgerAnchor workflow "
                   f"({why_not})", err=True)
    if not report.ok:
        for f in report.findings:
            typer.echo(f"BROKEN {f.message}", err=True)
        if report.wrong_key:
            typer.echo("提示 / hint: 每条密钥记录都不符：DUCHA_LEDGER_CHAIN_KEY 是否为写入时的密钥？ / every keyed "
                       "row fails: is DUCHA_LEDGER_CHAIN_KEY the key that wrote them?", err=True)
        typer.echo(f"校验失败 / FAILED: {len(report.findings)} 个问题 / problem(s); "
                   f"first at {report.first_bad_id}: {report.reason}", err=True)
        raise typer.Exit(1)
    chains = report.chains
    typer.echo(f"OK: 台账事件 {chains['ledger_events'].rows} 条（密钥 HMAC {chains['ledger_events'].keyed_rows} 条），"
               f"授权记录 {chains['authorization_log'].rows} 条，链完整；对照锚点 {report.anchors_checked} 个 / "
               f"chains intact, compared with {report.anchors_checked} anchor(s)")
    if require_anchor and report.anchors_checked == 0:
        typer.echo("未对照任何锚点 / no anchor compared: a cut tail with a moved-back head would not show",
                   err=True)
        raise typer.Exit(3)


@app.command("anchor")
def anchor() -> None:
    """Anchor the chain heads now (the LedgerAnchor workflow's `anchor_now` update)."""
    from workers.client import connect
    from workers.schedules import anchor_handle
    from workflows.ledger_anchor import LedgerAnchor

    s = settings()

    async def go() -> Anchor:
        handle = await anchor_handle(await connect(s))
        return await handle.execute_update(LedgerAnchor.anchor_now)

    try:
        a = run(go)
    except Exception as exc:
        fail(f"锚定失败 / anchoring failed: {type(exc).__name__}: {exc}. Is the LedgerAnchor workflow running "
             "(schedule ledger-anchor, `ducha schedules sync`)?")
    for h in a.heads:
        typer.echo(f"{h.chain}: id {h.last_id}, {h.rows} 条 / rows, {h.hash}")
