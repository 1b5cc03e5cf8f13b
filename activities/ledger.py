"""The ledger (台账) in PostgreSQL: snapshots per process and the append-only event log.

`append_event` is the one way the application appends a ledger event: chained with the HMAC of
config/chain_key.py inside the caller's transaction (migrations/0013_keyed_chain.sql)."""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from config.chain_key import ALG_HMAC, ChainKey
from schemas.anchor import CHAINS, Anchor, ChainHead
from schemas.digest import DigestGroup, DigestGroups, DigestItem, DigestQuery
from schemas.ledger import (
    LedgerEvent,
    RecordClue,
    RecordRectification,
)


async def upsert_snapshot(conn: asyncpg.Connection, table: str, key: str, snapshot: BaseModel) -> None:
    """Insert or replace one snapshot row; columns are the model's fields."""
    values = snapshot.model_dump()
    cols = list(values)
    params = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != key)
    await conn.execute(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({params}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}, updated_at = now()",
        *values.values(),
    )


async def claim_subject(conn: asyncpg.Connection, table: str, key: str, value: str, workflow_id: str) -> None:
    """Refuse a business number already owned by another workflow (never retried)."""
    owner = await conn.fetchval(f"SELECT workflow_id FROM {table} WHERE {key} = $1", value)
    if owner is not None and owner != workflow_id:
        raise ApplicationError(
            f"编号 {value} 已由 {owner} 登记 / number already registered by workflow {owner}",
            type="DuplicateNumber",
            non_retryable=True,
        )


# The canonical text of each chained table, computed by PostgreSQL from the values about to be
# inserted (jsonb and timestamps print exactly as the stored row will), in column order.
CANONICAL_SQL = {
    "ledger_events": "ledger_event_text(l.next_id, $1, $2, $3, $4, $5, $6, $7, $8)",
    "authorization_log": "authorization_text(l.next_id, $1, $2, $3, $4, $5, $6, $7, $8)",
}


async def chained_insert(conn: asyncpg.Connection, chain: ChainKey, table: str, columns: dict[str, object],
                         conflict: str) -> bool:
    """Append one row to a keyed chain (ledger_events or authorization_log): lock the chain's
    head, take the next id, compute the HMAC over the previous hash and the row's canonical
    text, insert; the head advances (trigger) only if the row is new. Runs in the caller's
    transaction (it opens one if there is none). True if inserted, False on a conflict (a retry
    of the same idempotency key): then nothing is written and the head does not move."""
    if not conn.is_in_transaction():
        async with conn.transaction():
            return await chained_insert(conn, chain, table, columns, conflict)
    values = list(columns.values())
    row = await conn.fetchrow(
        f"SELECT l.next_id, l.prev_hash, {CANONICAL_SQL[table]} AS canonical FROM audit_chain_lock('{table}') l",
        *values,
    )
    cols = ["id", *columns, "prev_hash", "hash", "chain_alg"]
    params = [row["next_id"], *values, row["prev_hash"], chain.mac(row["prev_hash"], row["canonical"]), ALG_HMAC]
    status = await conn.execute(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(f'${i}' for i in range(1, len(cols) + 1))}) "
        f"ON CONFLICT {conflict} DO NOTHING",
        *params,
    )
    return status.endswith(" 1")


async def append_event(conn: asyncpg.Connection, chain: ChainKey, kind: str, subject: str, e: LedgerEvent) -> bool:
    """Append one ledger event, keyed-chained, in the caller's transaction; a retry of the same
    (kind, subject, seq) writes nothing and returns False. True if new."""
    return await chained_insert(conn, chain, "ledger_events", {
        "subject_kind": kind, "subject_id": subject, "seq": e.seq, "event": e.event, "actor": e.actor,
        "agency": e.agency, "occurred_at": e.occurred_at, "data": e.data,
    }, "(subject_kind, subject_id, seq)")


async def read_anchor(pool: asyncpg.Pool) -> Anchor:
    async with pool.acquire() as conn:
        rows = {r["chain"]: r for r in await conn.fetch(
            "SELECT chain, last_id, rows, hash, keyed_after FROM audit_chain_heads")}
        at = await conn.fetchval("SELECT now()")
    return Anchor(at=at, heads=[
        ChainHead(chain=c, last_id=rows[c]["last_id"], rows=rows[c]["rows"], hash=rows[c]["hash"],
                  keyed_after=rows[c]["keyed_after"]) if c in rows else ChainHead(chain=c, missing=True)
        for c in CHAINS])


class LedgerActivities:
    def __init__(self, pool: asyncpg.Pool, chain: ChainKey) -> None:
        self.pool = pool
        self.chain = chain

    @activity.defn(name="ledger.record_clue")
    async def record_clue(self, req: RecordClue) -> bool:
        snap = req.snapshot
        async with self.pool.acquire() as conn, conn.transaction():
            await claim_subject(conn, "clues", "clue_no", snap.clue_no, snap.workflow_id)
            if not await append_event(conn, self.chain, "clue", snap.clue_no, req.event):
                return False  # already recorded by an earlier attempt: write nothing twice
            await upsert_snapshot(conn, "clues", "clue_no", snap)
            if req.details is not None:
                await conn.execute("UPDATE clues SET details = $2 WHERE clue_no = $1", snap.clue_no, req.details)
        return True

    @activity.defn(name="ledger.record_rectification")
    async def record_rectification(self, req: RecordRectification) -> bool:
        snap = req.snapshot
        async with self.pool.acquire() as conn, conn.transaction():
            await claim_subject(conn, "rectifications", "problem_no", snap.problem_no, snap.workflow_id)
            if not await append_event(conn, self.chain, "rectification", snap.problem_no, req.event):
                return False
            await upsert_snapshot(conn, "rectifications", "problem_no", snap)
            if req.text is not None:
                await conn.execute(
                    "UPDATE rectifications SET description = $2, basis = $3, opinion = $4 WHERE problem_no = $1",
                    snap.problem_no, req.text.description, req.text.basis, req.text.opinion,
                )
        return True

    @activity.defn(name="ledger.chain_heads")
    async def chain_heads(self) -> Anchor:
        """The head of every audit chain now, for LedgerAnchor to keep outside PostgreSQL. A
        missing head row is reported as an empty head (verification names it)."""
        return await read_anchor(self.pool)

    @activity.defn(name="ledger.routine_clues_due")
    async def routine_clues_due(self, q: DigestQuery) -> DigestGroups:
        """Routine clues still waiting for transfer whose deadline falls in [first_day, last_day]."""
        rows = await self.pool.fetch(
            "SELECT source, clue_no, workflow_id, due_on, stage FROM clues "
            "WHERE importance = 'routine' AND stage = 'registered' "
            "AND due_on BETWEEN $1 AND $2 ORDER BY source, due_on, clue_no",
            q.first_day, q.last_day,
        )
        groups: dict[str, list[DigestItem]] = {}
        for r in rows:
            groups.setdefault(r["source"], []).append(
                DigestItem(clue_no=r["clue_no"], workflow_id=r["workflow_id"], due_on=r["due_on"], stage=r["stage"])
            )
        return DigestGroups(groups=[DigestGroup(source=s, items=i) for s, i in groups.items()])
