"""The registry in PostgreSQL: agencies, enforcement units, contacts and callback endpoints."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.ledger import chained_insert
from config.chain_key import ChainKey
from rules.permissions import refusal
from schemas.registry import (
    AgencyEntry,
    AuthorizeInput,
    LookupPartiesInput,
    LookupPartiesOutput,
    OperatorGrant,
    Party,
    RegistryFile,
    UnitEntry,
)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass
class LoadReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"新增 added {len(self.added)}, 更新 updated {len(self.updated)}, "
            f"未变 unchanged {len(self.unchanged)}"
        )


_COLUMNS = "code, kind, name, level, category, leader, liaison, callback_url, callback_enabled, active"


def _party(row: asyncpg.Record) -> Party:
    return Party(**{k: row[k] for k in _COLUMNS.split(", ")})


async def append_authorization(conn: asyncpg.Connection, chain: ChainKey, req: AuthorizeInput, *, allowed: bool,
                               reason: str, key: str | None) -> bool:
    """Log one authorization decision on its own keyed chain (migrations/0015_keyed_chain.sql), in
    the caller's transaction; the same activity key twice writes nothing (False)."""
    return await chained_insert(conn, chain, "authorization_log", {
        "at": datetime.now(UTC), "operator": req.operator, "agency": req.agency, "action": req.action,
        "workflow_id": req.workflow_id, "allowed": allowed, "reason": reason, "activity_key": key,
    }, "(activity_key)")


class RegistryStore:
    def __init__(self, pool: asyncpg.Pool, chain: ChainKey | None = None) -> None:
        self.pool = pool
        self.chain = chain  # needed by `authorize` only (it appends to the keyed authorization log)

    def _chain(self) -> ChainKey:
        if self.chain is None:
            raise ApplicationError("RegistryStore needs the chain key to log authorizations",
                                   type="Misconfigured", non_retryable=True)
        return self.chain

    async def load(self, registry: RegistryFile) -> LoadReport:
        """Upsert every entry in one transaction; a failure writes nothing."""
        report = LoadReport()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO registry_meta (key, value) VALUES ('county', $1) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                registry.county,
            )
            entries: list[tuple[str, AgencyEntry | UnitEntry]] = [
                ("agency", a) for a in registry.agencies
            ] + [("unit", u) for u in registry.units]
            for kind, entry in entries:
                outcome = await self._upsert(conn, kind, entry)
                if await self._sync_operators(conn, entry) and outcome == "unchanged":
                    outcome = "updated"
                getattr(report, outcome).append(str(entry.code))
        return report

    async def _sync_operators(self, conn: asyncpg.Connection, e: AgencyEntry | UnitEntry) -> bool:
        """Make the party's operators exactly those listed (others are deactivated, never
        deleted: the audit log still names them). An operator listed under another party
        moves there. True if anything changed."""
        code = str(e.code)
        old = {r["id"]: r for r in await conn.fetch("SELECT * FROM operators WHERE party = $1", code)}
        changed = False
        for op in e.operators:
            row = old.pop(op.id, None)
            if row is not None and (
                row["name"], list(row["roles"]), row["active"], row["principal"]
            ) == (op.name, op.roles, op.active, op.principal):
                continue
            await conn.execute(
                "INSERT INTO operators (id, party, name, roles, active, principal) VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (id) DO UPDATE SET party = EXCLUDED.party, name = EXCLUDED.name, "
                "roles = EXCLUDED.roles, active = EXCLUDED.active, principal = EXCLUDED.principal, "
                "updated_at = now()",
                op.id, code, op.name, op.roles, op.active, op.principal,
            )
            changed = True
        for op_id, row in old.items():
            # No longer listed: deactivated, and their sign-in freed for whoever gets it next.
            if row["active"] or row["principal"] is not None:
                await conn.execute(
                    "UPDATE operators SET active = false, principal = NULL, updated_at = now() WHERE id = $1",
                    op_id,
                )
                changed = True
        return changed

    async def _upsert(self, conn: asyncpg.Connection, kind: str, e: AgencyEntry | UnitEntry) -> str:
        code = str(e.code)
        old = await conn.fetchrow("SELECT * FROM parties WHERE code = $1 FOR UPDATE", code)
        url = str(e.callback.url) if e.callback else None
        secret = (e.callback.secret if e.callback else None) or (
            old["callback_secret"] if old and old["callback_secret"] else (new_secret() if url else None)
        )
        values = {
            "kind": kind,
            "name": e.name,
            "level": getattr(e, "level", None),
            "category": getattr(e, "category", None),
            "leader": e.leader.model_dump(),
            "liaison": e.liaison.model_dump(),
            "callback_url": url,
            "callback_secret": secret,
            "active": getattr(e, "active", True),
        }
        if old is None:
            await conn.execute(
                "INSERT INTO parties (code, kind, name, level, category, leader, liaison, "
                "callback_url, callback_secret, active) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
                code, *values.values(),
            )
            return "added"
        if all(old[k] == v for k, v in values.items()):
            return "unchanged"
        await conn.execute(
            "UPDATE parties SET kind=$2, name=$3, level=$4, category=$5, leader=$6, liaison=$7, "
            "callback_url=$8, callback_secret=$9, active=$10, updated_at=now(), "
            "callback_enabled = CASE WHEN callback_url IS DISTINCT FROM $8 THEN true "
            "ELSE callback_enabled END WHERE code=$1",
            code, *values.values(),
        )
        return "updated"

    async def list(self, kind: str | None = None) -> list[Party]:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM parties WHERE ($1::text IS NULL OR kind = $1) "
            "ORDER BY kind, code",
            kind,
        )
        return [_party(r) for r in rows]

    async def get(self, code: str) -> Party | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM parties WHERE code = $1", code)
        return _party(row) if row else None

    async def county_name(self) -> str:
        return await self.pool.fetchval("SELECT value FROM registry_meta WHERE key='county'") or ""

    async def set_endpoint(self, code: str, url: str, secret: str | None) -> str:
        """Point CODE's callbacks at URL; returns the secret (generated when none is given)."""
        secret = secret or new_secret()
        done = await self.pool.execute(
            "UPDATE parties SET callback_url=$2, callback_secret=$3, callback_enabled=true, "
            "disabled_reason=NULL, updated_at=now() WHERE code=$1",
            code, url, secret,
        )
        if done.endswith(" 0"):
            raise KeyError(code)
        return secret

    async def operator_for_principal(self, principal_name: str) -> str | None:
        """The operator who signs in as this JWT `sub` (active or not: authorization decides
        that), or None."""
        return await self.pool.fetchval("SELECT id FROM operators WHERE principal = $1", principal_name)

    # --- activities -------------------------------------------------------------------------

    @activity.defn(name="registry.lookup_parties")
    async def lookup_parties(self, req: LookupPartiesInput) -> LookupPartiesOutput:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM parties WHERE code = ANY($1::text[])", req.codes
        )
        found = {r["code"]: _party(r) for r in rows}
        return LookupPartiesOutput(found=found, missing=[c for c in req.codes if c not in found],
                                   operators=await operator_grants(self.pool, req.codes))

    @activity.defn(name="registry.require_parties")
    async def require_parties(self, req: LookupPartiesInput) -> LookupPartiesOutput:
        """Like lookup_parties, but an unknown code is a business error (never retried)."""
        out = await self.lookup_parties(req)
        if out.missing:
            raise ApplicationError(
                f"登记册中没有这些代码 / unknown registry codes: {', '.join(out.missing)}",
                type="UnknownParty",
                non_retryable=True,
            )
        return out

    @activity.defn(name="registry.authorize")
    async def authorize(self, req: AuthorizeInput) -> bool:
        """May this operator act for this agency? Every decision is logged; a refusal is a
        business error (never retried) naming the reason."""
        async with self.pool.acquire() as conn:
            reason = await authorization_refusal(conn, req)
            await log_authorization(conn, self._chain(), req, reason)
        if reason is not None:
            raise ApplicationError(reason, type="Unauthorized", non_retryable=True)
        return True


async def operator_grants(db: asyncpg.Pool | asyncpg.Connection, parties: list[str]) -> dict[str, OperatorGrant]:
    """Every operator of these parties (active or not), as case workflows hold them."""
    rows = await db.fetch("SELECT id, party, roles, active FROM operators WHERE party = ANY($1::text[])", parties)
    return {r["id"]: OperatorGrant(party=r["party"], roles=list(r["roles"]), active=r["active"]) for r in rows}


async def authorization_refusal(conn: asyncpg.Connection, req: AuthorizeInput) -> str | None:
    """None when the registry allows the action, else the reason (rules/permissions.py)."""
    row = await conn.fetchrow("SELECT party, roles, active FROM operators WHERE id = $1", req.operator)
    return refusal(
        operator=req.operator, agency=req.agency, action=req.action,
        party=row["party"] if row else None, roles=list(row["roles"]) if row else None,
        active=bool(row and row["active"]),
    )


async def log_authorization(conn: asyncpg.Connection, chain: ChainKey, req: AuthorizeInput,
                            reason: str | None) -> None:
    """One row per decision, on the keyed authorization chain, in the caller's transaction (or one
    of its own): a retried activity (same run, same activity id) writes nothing twice."""
    key = None
    if activity.in_activity():
        info = activity.info()
        key = f"{info.workflow_run_id}/{info.activity_id}"
    await append_authorization(conn, chain, req, allowed=reason is None, reason=reason or "", key=key)
