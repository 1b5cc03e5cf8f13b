"""The ledger (台账) in PostgreSQL: snapshots per process and the append-only event log."""

from __future__ import annotations

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from schemas.digest import DigestGroup, DigestGroups, DigestItem, DigestQuery
from schemas.ledger import ClueSnapshot, LedgerEvent, RecordClue

_CLUE_COLUMNS = list(ClueSnapshot.model_fields)


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
        snap = req.snapshot.model_dump()
        cols = ", ".join(_CLUE_COLUMNS)
        params = ", ".join(f"${i}" for i in range(1, len(_CLUE_COLUMNS) + 1))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _CLUE_COLUMNS if c != "clue_no")
        async with self.pool.acquire() as conn, conn.transaction():
            owner = await conn.fetchval(
                "SELECT workflow_id FROM clues WHERE clue_no = $1", req.snapshot.clue_no
            )
            if owner is not None and owner != req.snapshot.workflow_id:
                raise ApplicationError(
                    f"线索编号 {req.snapshot.clue_no} 已由 {owner} 登记 / clue number already "
                    f"registered by workflow {owner}",
                    type="DuplicateClue",
                    non_retryable=True,
                )
            new = await insert_event(conn, "clue", req.snapshot.clue_no, req.event)
            if not new:
                return False  # already recorded by an earlier attempt: write nothing twice
            await conn.execute(
                f"INSERT INTO clues ({cols}) VALUES ({params}) "
                f"ON CONFLICT (clue_no) DO UPDATE SET {updates}, updated_at = now()",
                *[snap[c] for c in _CLUE_COLUMNS],
            )
            if req.details is not None:
                await conn.execute(
                    "UPDATE clues SET details = $2 WHERE clue_no = $1", req.snapshot.clue_no, req.details
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
