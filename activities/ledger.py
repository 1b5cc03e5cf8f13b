"""The ledger (台账) in PostgreSQL: snapshots per process and the append-only event log."""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

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


async def insert_event(conn: asyncpg.Connection, kind: str, subject: str, e: LedgerEvent) -> bool:
    """Append one event; a retry of the same (kind, subject, seq) writes nothing. True if new."""
    status = await conn.execute(
        "INSERT INTO ledger_events (subject_kind, subject_id, seq, event, actor, agency, occurred_at, data) "
        "VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (subject_kind, subject_id, seq) DO NOTHING",
        kind, subject, e.seq, e.event, e.actor, e.agency, e.occurred_at, e.data,
    )
    return status.endswith(" 1")


async def write_clue(conn: asyncpg.Connection, events: list[LedgerEvent], snap: ClueSnapshot,
                     details: str | None = None) -> bool:
    """One clue step inside the caller's transaction; False (nothing written) when an earlier
    attempt recorded it already."""
    await claim_subject(conn, "clues", "clue_no", snap.clue_no, snap.workflow_id)
    if not await insert_events(conn, "clue", snap.clue_no, events):
        return False  # already recorded by an earlier attempt: write nothing twice
    await upsert_snapshot(conn, "clues", "clue_no", snap)
    if details is not None:
        await conn.execute("UPDATE clues SET details = $2 WHERE clue_no = $1", snap.clue_no, details)
    return True


async def write_rectification(conn: asyncpg.Connection, events: list[LedgerEvent],
                              snap: RectificationSnapshot, text: ProblemText | None = None) -> bool:
    await claim_subject(conn, "rectifications", "problem_no", snap.problem_no, snap.workflow_id)
    if not await insert_events(conn, "rectification", snap.problem_no, events):
        return False
    await upsert_snapshot(conn, "rectifications", "problem_no", snap)
    if text is not None:
        await conn.execute(
            "UPDATE rectifications SET description = $2, basis = $3, opinion = $4 WHERE problem_no = $1",
            snap.problem_no, text.description, text.basis, text.opinion,
        )
    return True


async def write_inspection(conn: asyncpg.Connection, events: list[LedgerEvent], snap: InspectionSnapshot,
                           method: MethodRow | None = None, findings: list[FindingRow] = (),
                           evaluation: EvaluationRow | None = None) -> bool:
    owner = await conn.fetchval("SELECT run_id FROM inspections WHERE workflow_id = $1", snap.workflow_id)
    if owner is not None and owner != snap.run_id:
        raise ApplicationError(
            f"督察 {snap.workflow_id} 已有台账记录（另一次运行）；重复督察请用 -2、-3 后缀 / "
            "this inspection id was already used by another run: use a -{n} suffix",
            type="DuplicateInspection", non_retryable=True)
    if not await insert_events(conn, "inspection", snap.workflow_id, events):
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


async def insert_events(conn: asyncpg.Connection, kind: str, subject: str, events: list[LedgerEvent]) -> bool:
    """Append a step's events; True if the first one is new (a step is recorded whole or not at all)."""
    new = False
    for n, e in enumerate(events):
        inserted = await insert_event(conn, kind, subject, e)
        new = new or (n == 0 and inserted)
    return new


class LedgerActivities:
    """The per-process ledger activities that case workflows used before the case kernel's
    one-transaction step (activities/cases.py); running workflows started before it still call them."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="ledger.record_clue")
    async def record_clue(self, req: RecordClue) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            return await write_clue(conn, [req.event], req.snapshot, req.details)

    @activity.defn(name="ledger.record_rectification")
    async def record_rectification(self, req: RecordRectification) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            return await write_rectification(conn, [req.event], req.snapshot, req.text)

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
