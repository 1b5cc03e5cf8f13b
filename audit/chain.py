"""Verification of the tamper-evident ledger chain (migrations/0007_audit_chain.sql)."""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel


class ChainReport(BaseModel):
    rows: int
    ok: bool
    first_bad_id: int | None = None
    reason: str = ""


class AuditChain:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def verify(self, batch: int = 5000) -> ChainReport:
        """Walk the chain in id order: each row's hash must match its content and the hash of
        the row before it; the head must match the last row. Reports the first misfit."""
        prev: str | None = None
        rows = 0
        last_id = 0
        async with self.pool.acquire() as conn:
            while True:
                chunk = await conn.fetch(
                    "SELECT id, prev_hash, hash, ledger_event_hash(prev_hash, e) AS expected "
                    "FROM ledger_events e WHERE id > $1 ORDER BY id LIMIT $2",
                    last_id, batch,
                )
                for r in chunk:
                    if r["prev_hash"] != prev:
                        return ChainReport(rows=rows, ok=False, first_bad_id=r["id"],
                                           reason="链接断开：此前的记录被删除或改动 / "
                                                  "the link to the previous row is broken")
                    if r["hash"] != r["expected"]:
                        return ChainReport(rows=rows, ok=False, first_bad_id=r["id"],
                                           reason="内容被改动 / row content does not match its hash")
                    prev, last_id, rows = r["hash"], r["id"], rows + 1
                if len(chunk) < batch:
                    break
            head = await conn.fetchrow("SELECT last_id, hash FROM ledger_chain_head")
        if head is not None and head["hash"] != prev:
            return ChainReport(rows=rows, ok=False, first_bad_id=head["last_id"],
                               reason="链尾与记录不符：末尾记录被删除 / the newest rows were removed")
        return ChainReport(rows=rows, ok=True)
