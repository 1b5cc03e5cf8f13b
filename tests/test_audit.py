"""The ledger is append-only and hash-chained; `ducha audit verify` finds tampering."""

import asyncio
import os
from datetime import UTC, datetime

import asyncpg
import pytest

from activities.ledger import insert_event
from audit.chain import AuditChain
from schemas.ledger import LedgerEvent

from .support import run_cli


async def add(pool, subject: str, seq: int, data: dict | None = None) -> None:
    async with pool.acquire() as conn:
        await insert_event(conn, "clue", subject, LedgerEvent(
            seq=seq, event="registered", actor="杨帆", agency="court",
            occurred_at=datetime.now(UTC), data=data or {"n": seq}))


async def test_concurrent_appends_form_one_intact_chain(pool):
    await asyncio.gather(*(add(pool, f"A{i % 7}", i) for i in range(60)))
    # Retried activities re-send the same (subject, seq): skipped, and the chain stays whole.
    await asyncio.gather(*(add(pool, f"A{i % 7}", i) for i in range(0, 60, 5)))
    report = await AuditChain(pool).verify(batch=16)  # several batches
    assert report.ok and report.rows == await pool.fetchval("SELECT count(*) FROM ledger_events")
    links = await pool.fetch("SELECT prev_hash, hash FROM ledger_events ORDER BY id")
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(links, links[1:], strict=False))


async def test_updates_and_deletes_are_refused(pool):
    await add(pool, "B1", 0)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("UPDATE ledger_events SET actor='改' WHERE subject_id='B1'")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("DELETE FROM ledger_events WHERE subject_id='B1'")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("TRUNCATE ledger_events")


async def _tamper(pool, sql: str) -> None:
    """What only someone bypassing the application could do: disable the guard and edit."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_no_update_delete")
        await conn.execute(sql)
        await conn.execute("ALTER TABLE ledger_events ENABLE TRIGGER ledger_events_no_update_delete")


async def test_verify_names_the_first_tampered_row(pool, db_url):
    for i in range(5):
        await add(pool, "C1", i)
    env = {**os.environ, "DUCHA_DATABASE_URL": db_url}
    code, out, _ = await run_cli("audit", "verify", env=env)
    assert code == 0 and "OK" in out
    target = await pool.fetchval("SELECT id FROM ledger_events WHERE subject_id='C1' AND seq=2")
    await _tamper(pool, f"UPDATE ledger_events SET actor='别人' WHERE id={target}")
    report = await AuditChain(pool).verify()
    assert not report.ok and report.first_bad_id == target
    code, _, err = await run_cli("audit", "verify", env=env)
    assert code == 1 and str(target) in err
    # Restore the content: the chain is whole again.
    await _tamper(pool, f"UPDATE ledger_events SET actor='杨帆' WHERE id={target}")
    assert (await AuditChain(pool).verify()).ok


async def test_verify_detects_deleted_rows(pool):
    for i in range(3):
        await add(pool, "D1", i)
    middle = await pool.fetchval("SELECT id FROM ledger_events WHERE subject_id='D1' AND seq=1")
    await _tamper(pool, f"DELETE FROM ledger_events WHERE id={middle}")
    report = await AuditChain(pool).verify()
    assert not report.ok and report.first_bad_id > middle
    last = await pool.fetchval("SELECT max(id) FROM ledger_events")
    await _tamper(pool, f"DELETE FROM ledger_events WHERE id >= {middle}")
    report = await AuditChain(pool).verify()
    assert not report.ok and report.first_bad_id == last and "removed" in report.reason
