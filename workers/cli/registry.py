"""`ducha registry ...`: load, list and edit the registry of agencies and units."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from activities.registry import RegistryStore
from config.yaml_file import FileError, load_yaml_model
from schemas.registry import RegistryFile
from workers.cli.common import db_pool, fail, run, settings

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
            report = await RegistryStore(pool).load(registry)
            told = await _tell_open_cases(pool) if report.added or report.updated else ""
            return report, told

    report, told = run(go)
    typer.echo(f"{file}: {report.summary()}")
    for label, codes in (("+", report.added), ("~", report.updated)):
        for code in codes:
            typer.echo(f"  {label} {code}")
    if told:
        typer.echo(told)


async def _tell_open_cases(pool) -> str:
    """Open cases read their parties' operators again (they refuse unknown operators early)."""
    from workers.client import connect
    from workers.recompute import registry_changed

    try:
        client = await connect(settings())
    except RuntimeError as exc:
        return (f"注意：无法连接 Temporal，在办案件将在下一步骤时读取新的操作人员 / Temporal unreachable: "
                f"open cases read the new operators at their next step ({exc})")
    signalled, _ = await registry_changed(pool, client)
    return f"已通知 {signalled} 个在办案件更新操作人员 / {signalled} open cases told to read their operators again"


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


@app.command("set-endpoint")
def set_endpoint(
    code: str,
    url: str,
    secret: str = typer.Option(None, "--secret", help="whsec_... (generated and printed once when omitted)"),
    keep_secret: bool = typer.Option(False, "--keep-secret", help="keep the current secret"),
    grace_hours: float = typer.Option(
        24.0, "--grace-hours", min=0,
        help="keep signing with the replaced secret as well for this long (0: stop at once)",
    ),
) -> None:
    """Point CODE's callbacks at URL and (re-)enable them; the URL passes the SSRF guard."""
    from activities.callbacks import current_secret, keep_previous_secret
    from rules.address_guard import ForbiddenAddress, ResolutionError, check_url
    from rules.signing import SecretError, check_secret

    s = settings()
    if secret and keep_secret:
        fail("--secret 与 --keep-secret 不能同时使用 / use either --secret or --keep-secret")
    if secret:
        try:
            check_secret(secret)
        except SecretError as exc:
            fail(f"密钥无效 / invalid secret: {exc}")
    try:
        check_url(url, s.callback_allowlist)
    except ForbiddenAddress as exc:
        fail(f"拒绝该地址 / refused: {exc.reason}")
    except ResolutionError as exc:
        fail(f"无法解析主机 / cannot resolve: {exc}")

    async def go() -> tuple[str, str | None]:
        async with db_pool(s) as pool:
            old = await current_secret(pool, code)
            wanted = old if keep_secret else secret
            try:
                new = await RegistryStore(pool).set_endpoint(code, url, wanted)
            except KeyError:
                fail(f"登记册中没有该代码 / unknown registry code {code!r}")
            if old and old != new:
                await keep_previous_secret(pool, code, old, grace_hours)
            return new, old

    new, old = run(go)
    typer.echo(f"{code}: 回调地址已设置并启用 / endpoint set and enabled: {url}")
    if not secret and not (keep_secret and old):
        typer.echo(f"签名密钥（只显示这一次）/ signing secret (shown once): {new}")
    if old and old != new and grace_hours > 0:
        typer.echo(f"旧密钥在 {grace_hours:g} 小时内仍会同时签名 / the old secret also signs for "
                   f"{grace_hours:g} h")
