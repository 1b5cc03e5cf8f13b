"""The ledger (台账) in PostgreSQL: snapshots per process and the append-only event log.

`append_event` is the one way the application appends a ledger event: chained with the HMAC of
config/chain_key.py inside the caller's transaction (migrations/0015_keyed_chain.sql)."""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from config.chain_key import ALG_HMAC, ChainKey
from schemas.anchor import CHAINS, Anchor, ChainHead
from schemas.digest import DigestGroup, DigestGroups, DigestItem, DigestQuery
from schemas.inspection import EvaluationRow, FindingRow, InspectionSnapshot, MethodRow
from schemas.ledger import (
    ClueSnapshot,
    LedgerEvent,
    ProblemText,
    RecordClue,
    RecordRectification,
    RectificationSnapshot,
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


async def write_clue(conn: asyncpg.Connection, chain: ChainKey, events: list[LedgerEvent], snap: ClueSnapshot,
                     details: str | None = None) -> bool:
    """One clue step inside the caller's transaction; False (nothing written) when an earlier
    attempt recorded it already."""
    await claim_subject(conn, "clues", "clue_no", snap.clue_no, snap.workflow_id)
    if not await insert_events(conn, chain, "clue", snap.clue_no, events):
        return False  # already recorded by an earlier attempt: write nothing twice
    await upsert_snapshot(conn, "clues", "clue_no", snap)
    if details is not None:
        await conn.execute("UPDATE clues SET details = $2 WHERE clue_no = $1", snap.clue_no, details)
    return True


async def write_rectification(conn: asyncpg.Connection, chain: ChainKey, events: list[LedgerEvent],
                              snap: RectificationSnapshot, text: ProblemText | None = None) -> bool:
    await claim_subject(conn, "rectifications", "problem_no", snap.problem_no, snap.workflow_id)
    if not await insert_events(conn, chain, "rectification", snap.problem_no, events):
        return False
    await upsert_snapshot(conn, "rectifications", "problem_no", snap)
    if text is not None:
        await conn.execute(
            "UPDATE rectifications SET description = $2, basis = $3, opinion = $4 WHERE problem_no = $1",
            snap.problem_no, text.description, text.basis, text.opinion,
        )
    return True


async def write_inspection(conn: asyncpg.Connection, chain: ChainKey, events: list[LedgerEvent],
                           snap: InspectionSnapshot,
                           method: MethodRow | None = None, findings: list[FindingRow] = (),
                           evaluation: EvaluationRow | None = None) -> bool:
    owner = await conn.fetchval("SELECT run_id FROM inspections WHERE workflow_id = $1", snap.workflow_id)
    if owner is not None and owner != snap.run_id:
        raise ApplicationError(
            f"督察 {snap.workflow_id} 已有台账记录（另一次运行）；重复督察请用 -2、-3 后缀 / "
            "this inspection id was already used by another run: use a -{n} suffix",
            type="DuplicateInspection", non_retryable=True)
    if not await insert_events(conn, chain, "inspection", snap.workflow_id, events):
        return False
    await upsert_snapshot(conn, "inspections", "workflow_id", snap)
    if method is not None:
        m = method
        await conn.execute(
            "INSERT INTO inspection_methods (workflow_id, n, method, summary, done_on, count, agency, "
            "operator) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (workflow_id, n) DO NOTHING",
            snap.workflow_id, m.n, m.method, m.summary, m.on, m.count, m.agency, m.operator)
    for f in findings:
        await conn.execute(
            "INSERT INTO inspection_findings (workflow_id, n, problem_no, unit, year, description, "
            "category, list, basis, severity, suspected_misconduct, misconduct_note, opinion, agency, "
            "operator, rectification_id, clue_id) "
            "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17) "
            "ON CONFLICT (workflow_id, n) DO UPDATE SET opinion = EXCLUDED.opinion, "
            "rectification_id = EXCLUDED.rectification_id, clue_id = EXCLUDED.clue_id, "
            "updated_at = now()",
            snap.workflow_id, f.n, f.problem_no, snap.unit, snap.year, f.description, f.category,
            f.list, f.basis, f.severity, f.suspected_misconduct, f.misconduct_note, f.opinion,
            f.agency, f.operator, f.rectification_id, f.clue_id)
    if evaluation is not None:
        e = evaluation
        await conn.execute(
            "INSERT INTO inspection_evaluations (workflow_id, unit, year, kind, score, grade, comments, "
            "agency, operator) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (workflow_id) DO UPDATE "
            "SET score = EXCLUDED.score, grade = EXCLUDED.grade, comments = EXCLUDED.comments, "
            "agency = EXCLUDED.agency, operator = EXCLUDED.operator, evaluated_at = now()",
            snap.workflow_id, snap.unit, snap.year, snap.kind, e.score, e.grade, e.comments,
            e.agency, e.operator)
    return True


async def insert_events(conn: asyncpg.Connection, chain: ChainKey, kind: str, subject: str,
                        events: list[LedgerEvent]) -> bool:
    """Append a step's events (keyed chain); True if the first one is new (a step is recorded
    whole or not at all)."""
    new = False
    for n, e in enumerate(events):
        inserted = await append_event(conn, chain, kind, subject, e)
        new = new or (n == 0 and inserted)
    return new


class LedgerActivities:
    """The per-process ledger activities that case workflows used before the case kernel's
    one-transaction step (activities/cases.py); running workflows started before it still call them."""

    def __init__(self, pool: asyncpg.Pool, chain: ChainKey) -> None:
        self.pool = pool
        self.chain = chain

    @activity.defn(name="ledger.record_clue")
    async def record_clue(self, req: RecordClue) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            return await write_clue(conn, self.chain, [req.event], req.snapshot, req.details)

    @activity.defn(name="ledger.record_rectification")
    async def record_rectification(self, req: RecordRectification) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            return await write_rectification(conn, self.chain, [req.event], req.snapshot, req.text)

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
