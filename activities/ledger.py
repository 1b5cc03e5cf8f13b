"""The ledger (台账) in PostgreSQL: snapshots per process and the append-only event log."""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

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


async def insert_event(conn: asyncpg.Connection, kind: str, subject: str, e: LedgerEvent) -> bool:
    """Append one event; a retry of the same (kind, subject, seq) writes nothing. True if new."""
    status = await conn.execute(
        "INSERT INTO ledger_events (subject_kind, subject_id, seq, event, actor, agency, occurred_at, data) "
        "VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (subject_kind, subject_id, seq) DO NOTHING",
        kind, subject, e.seq, e.event, e.actor, e.agency, e.occurred_at, e.data,
    )
    return status.endswith(" 1")


class LedgerActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="ledger.record_clue")
    async def record_clue(self, req: RecordClue) -> bool:
        snap = req.snapshot
        async with self.pool.acquire() as conn, conn.transaction():
            await claim_subject(conn, "clues", "clue_no", snap.clue_no, snap.workflow_id)
            if not await insert_event(conn, "clue", snap.clue_no, req.event):
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
            if not await insert_event(conn, "rectification", snap.problem_no, req.event):
                return False
            await upsert_snapshot(conn, "rectifications", "problem_no", snap)
            if req.text is not None:
                await conn.execute(
                    "UPDATE rectifications SET description = $2, basis = $3, opinion = $4 WHERE problem_no = $1",
                    snap.problem_no, req.text.description, req.text.basis, req.text.opinion,
                )
        return True

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
