"""The audit chains are append-only and keyed; `ducha audit verify` finds tampering, and with
anchors kept outside PostgreSQL also what the database owner alone could do (cut the tail and
move the head back)."""

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import pytest_asyncio

from activities.ledger import append_event, read_anchor
from activities.registry import append_authorization
from audit.chain import AuditChain
from config.chain_key import ChainKey
from schemas.anchor import Anchor
from schemas.ledger import LedgerEvent
from schemas.registry import AuthorizeInput
from workers.db import create_pool
from workers.migrate import discover, migrate_dsn

from .support import assert_replays, run_cli

KEY = ChainKey.generate()


def cli_env(db_url: str, **extra: str) -> dict:
    return {**os.environ, "DUCHA_DATABASE_URL": db_url, "DUCHA_LEDGER_CHAIN_KEY": KEY.to_base64(),
            "DUCHA_TEMPORAL_ADDRESS": "127.0.0.1:1", **extra}


async def add(pool, subject: str, seq: int, data: dict | None = None, key: ChainKey = KEY) -> bool:
    async with pool.acquire() as conn, conn.transaction():
        return await append_event(conn, key, "clue", subject, LedgerEvent(
            seq=seq, event="registered", actor="杨帆", agency="court",
            occurred_at=datetime.now(UTC), data=data or {"n": seq, "x": [1.5, 1e20, "引号\"\\"]}))


async def decide(pool, n: int, key: ChainKey = KEY) -> None:
    async with pool.acquire() as conn:
        await append_authorization(conn, key, AuthorizeInput(
            operator="op", agency="court", action="clue.transfer", workflow_id=f"wf-{n}"),
            allowed=n % 2 == 0, reason="" if n % 2 == 0 else "无权", key=f"run/{n}")


@pytest_asyncio.fixture(loop_scope="session")
async def fresh(pg_server, request):
    """(url, pool) of a database of its own: the tests below break its chain on purpose."""
    name = f"t_audit_{request.node.name[5:30]}_{os.urandom(3).hex()}"
    pg_server.psql(f'CREATE DATABASE "{name}"')
    url = pg_server.admin_url(name)
    await migrate_dsn(url)
    p = await create_pool(url, max_size=4)
    yield url, p
    await p.close()


async def owner(pool, *sql: str) -> None:
    """What only the database owner can do: switch the guards off, edit, switch them on."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")  # no triggers
        for statement in sql:
            await conn.execute(statement)


async def verify(pool, anchors: list[Anchor] | None = None):
    return await AuditChain(pool, KEY).verify(batch=16, anchors=anchors)


async def test_concurrent_appends_form_one_intact_keyed_chain(pool):
    await asyncio.gather(*(add(pool, f"A{i % 7}", i) for i in range(60)), *(decide(pool, n) for n in range(10)))
    # Retried activities re-send the same (subject, seq) / activity key: skipped, head unmoved.
    before = await read_anchor(pool)
    assert not any(await asyncio.gather(*(add(pool, f"A{i % 7}", i) for i in range(0, 60, 5))))
    await asyncio.gather(*(decide(pool, n) for n in range(10)))
    assert (await read_anchor(pool)).heads == before.heads
    report = await verify(pool)  # several batches
    assert report.ok, report.findings
    assert report.rows == await pool.fetchval("SELECT count(*) FROM ledger_events") == 60
    assert report.chains["ledger_events"].keyed_rows == 60
    assert report.chains["authorization_log"].rows == 10
    links = await pool.fetch("SELECT prev_hash, hash, chain_alg FROM ledger_events ORDER BY id")
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(links, links[1:], strict=False))
    assert {r["chain_alg"] for r in links} == {"hmac-sha256"}
    head = before.head("ledger_events")
    assert head.rows == 60 and head.hash == links[-1]["hash"]


async def test_updates_and_deletes_are_refused(pool):
    await add(pool, "B1", 0)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("UPDATE ledger_events SET actor='改' WHERE subject_id='B1'")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("DELETE FROM ledger_events WHERE subject_id='B1'")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("TRUNCATE ledger_events")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("TRUNCATE authorization_log")
    with pytest.raises(asyncpg.RaiseError, match="链头"):
        await pool.execute("DELETE FROM audit_chain_heads")
    with pytest.raises(asyncpg.RaiseError, match="does not follow the chain head"):
        await pool.execute(
            "INSERT INTO ledger_events (subject_kind, subject_id, seq, event, occurred_at, prev_hash, hash, chain_alg) "
            "VALUES ('clue', 'B1', 9, 'forged', now(), 'x', 'y', 'hmac-sha256')")


async def test_verify_names_a_rewritten_row(fresh):
    url, pool = fresh
    for i in range(5):
        await add(pool, "C1", i)
    code, out, _ = await run_cli("audit", "verify", env=cli_env(url))
    assert code == 0 and "OK" in out, out
    target = await pool.fetchval("SELECT id FROM ledger_events WHERE subject_id='C1' AND seq=2")
    await owner(pool, f"UPDATE ledger_events SET actor='别人' WHERE id={target}")
    report = await verify(pool)
    assert not report.ok and report.first_bad_id == target
    assert [(f.kind, f.row_id) for f in report.findings] == [("rewritten", target)]
    code, _, err = await run_cli("audit", "verify", env=cli_env(url))
    assert code == 1 and str(target) in err and "改写" in err and "rewritten" in err, err
    code, _, err = await run_cli("audit", "verify", env=cli_env(url, DUCHA_LEDGER_CHAIN_KEY=ChainKey.generate().to_base64()))
    assert code == 1 and "is DUCHA_LEDGER_CHAIN_KEY the key" in err, err
    assert not (await verify(pool)).wrong_key, "one rewritten row is not a wrong key"
    # The owner cannot recompute the HMAC without the key: only restoring the content helps.
    await owner(pool, f"UPDATE ledger_events SET actor='杨帆' WHERE id={target}")
    assert (await verify(pool)).ok
    other = ChainKey.generate()  # a forger's key
    await add(pool, "C1", 5, key=other)
    assert [f.kind for f in (await verify(pool)).findings] == ["rewritten"]


async def test_a_rewritten_authorization_is_named(fresh):
    _, pool = fresh
    for n in range(4):
        await decide(pool, n)
    assert (await verify(pool)).ok
    target = await pool.fetchval("SELECT id FROM authorization_log WHERE workflow_id = 'wf-1'")
    await owner(pool, f"UPDATE authorization_log SET allowed = true, reason = '' WHERE id = {target}")
    report = await verify(pool)
    assert [(f.chain, f.kind, f.row_id) for f in report.findings] == [("authorization_log", "rewritten", target)]


async def test_a_deleted_row_breaks_the_link(fresh):
    _, pool = fresh
    for i in range(3):
        await add(pool, "D1", i)
    anchor = await read_anchor(pool)
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM ledger_events ORDER BY id")]
    await owner(pool, f"DELETE FROM ledger_events WHERE id={ids[1]}")
    report = await verify(pool)
    assert [(f.kind, f.row_id) for f in report.findings][:1] == [("link_broken", ids[2])]
    # Against the anchor: also the count up to the anchored row is short.
    kinds = {(f.kind, f.row_id) for f in (await verify(pool, [anchor])).findings}
    assert {("link_broken", ids[2]), ("anchor_count", ids[2])} <= kinds, kinds


async def test_a_cut_tail_is_named_by_the_head(fresh):
    _, pool = fresh
    for i in range(4):
        await add(pool, "E1", i)
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM ledger_events ORDER BY id")]
    await owner(pool, f"DELETE FROM ledger_events WHERE id >= {ids[2]}")
    report = await verify(pool)
    assert not report.ok and report.first_bad_id == ids[-1] and "removed" in report.reason
    assert [f.kind for f in report.findings] == ["truncated"]


async def test_cut_tail_and_moved_back_head_are_caught_by_the_anchor(fresh, tmp_path):
    url, pool = fresh
    for i in range(6):
        await add(pool, "F1", i)
    await decide(pool, 0)
    anchor = await read_anchor(pool)
    assert (await verify(pool, [anchor])).ok
    await add(pool, "F1", 6)  # the chain grows after the anchor: still fine
    assert (await verify(pool, [anchor])).ok
    rows = await pool.fetch("SELECT id, hash FROM ledger_events ORDER BY id")
    keep = rows[2]
    # The owner deletes the newest rows and moves the head back to the new last row.
    await owner(pool, f"DELETE FROM ledger_events WHERE id > {keep['id']}",
                f"UPDATE audit_chain_heads SET last_id = {keep['id']}, hash = '{keep['hash']}', rows = 3 "
                "WHERE chain = 'ledger_events'")
    assert (await verify(pool)).ok, "inside PostgreSQL alone the cut is invisible"
    report = await verify(pool, [anchor])
    kinds = {(f.kind, f.row_id) for f in report.findings}
    anchored_id = anchor.head("ledger_events").last_id
    assert ("truncated", anchored_id) in kinds and ("head_moved_back", keep["id"]) in kinds, kinds
    assert all(f.chain == "ledger_events" for f in report.findings)
    # the CLI, with the anchor recorded in an archive (`ducha archive`) and in a bare manifest.json
    from workers.cli.annual import build_archive

    manifest = tmp_path / "2026.zip"
    build_archive(2026, "演示县", {"clues": []}, {}, manifest, anchor.model_dump(mode="json"))
    code, _, err = await run_cli("archive", "verify", str(manifest), env=cli_env(url))
    assert code == 0, err
    bare = tmp_path / "manifest.json"
    bare.write_text(json.dumps({"audit_anchor": anchor.model_dump(mode="json")}), encoding="utf-8")
    code, _, err = await run_cli("audit", "verify", "--manifest", str(bare), "--no-temporal", env=cli_env(url))
    assert code == 1 and "head_moved_back" not in err and "回拨" in err, err
    code, _, err = await run_cli("audit", "verify", "--manifest", str(manifest), env=cli_env(url))
    assert code == 1 and "截断" in err and "tail truncated" in err and "回拨" in err and str(anchored_id) in err, err
    code, _, err = await run_cli("audit", "verify", "--manifest", str(tmp_path / "none.json"), env=cli_env(url))
    assert code == 2 and "none.json" in err and "Traceback" not in err, err


async def test_a_deleted_head_row_is_named(fresh):
    url, pool = fresh
    for i in range(2):
        await add(pool, "G1", i)
    await owner(pool, "DELETE FROM audit_chain_heads WHERE chain = 'ledger_events'")
    report = await verify(pool)
    assert [f.kind for f in report.findings] == ["head_missing"]
    code, _, err = await run_cli("audit", "verify", env=cli_env(url))
    assert code == 1 and "链头记录被删除" in err and "head row was deleted" in err, err
    with pytest.raises(asyncpg.RaiseError, match="no head row"):
        await add(pool, "G1", 2)


async def test_a_row_written_past_the_application_is_named(fresh):
    _, pool = fresh
    await add(pool, "H1", 0)
    await pool.execute("INSERT INTO ledger_events (subject_kind, subject_id, seq, event, occurred_at) "
                       "VALUES ('clue', 'H1', 1, 'forged', now())")
    report = await verify(pool)
    assert [f.kind for f in report.findings] == ["unkeyed"]


async def test_rows_of_the_sha256_era_still_verify(pg_server, tmp_path):
    """A ledger chained by 0007 (SHA-256 in PostgreSQL) is switched over by 0015 at its last row."""
    name = f"t_audit_era_{os.urandom(3).hex()}"
    pg_server.psql(f'CREATE DATABASE "{name}"')
    url = pg_server.admin_url(name)
    old = tmp_path / "migrations"
    old.mkdir()
    for m in discover():
        if m.version < "0015":
            (old / m.path.name).write_text(m.sql, encoding="utf-8")
    conn = await asyncpg.connect(url)
    try:
        from workers.migrate import migrate

        await migrate(conn, old)
        for seq in range(3):
            await conn.execute(
                "INSERT INTO ledger_events (subject_kind, subject_id, seq, event, occurred_at, data) "
                "VALUES ('clue', 'OLD', $1, 'registered', now(), '{\"a\": 1}')", seq)
        await conn.execute("INSERT INTO authorization_log (operator, agency, action, workflow_id, allowed) "
                           "VALUES ('op', 'court', 'clue.transfer', 'wf-old', true)")
        await migrate(conn)
    finally:
        await conn.close()
    pool = await create_pool(url, max_size=2)
    try:
        await add(pool, "NEW", 0)
        await decide(pool, 1)
        report = await verify(pool)
        assert report.ok, report.findings
        assert report.rows == 4 and report.chains["ledger_events"].keyed_rows == 1
        assert report.chains["authorization_log"].rows == 2
        heads = {h.chain: h for h in (await read_anchor(pool)).heads}
        old_last = await pool.fetchval("SELECT max(id) FROM ledger_events WHERE subject_id = 'OLD'")
        assert heads["ledger_events"].keyed_after == old_last
        await owner(pool, "UPDATE ledger_events SET actor = 'x' WHERE subject_id = 'OLD' AND seq = 1")
        assert [f.kind for f in (await verify(pool)).findings] == ["rewritten"]
    finally:
        await pool.close()


async def test_the_application_role_can_only_append(pool, app_pool):
    """The service's role appends through the chain, and can neither delete, update, truncate
    nor alter the audit tables, switch their triggers off, or move a chain head."""
    assert await app_pool.fetchval("SELECT current_user") == "ducha_app"
    assert await add(app_pool, "R1", 0)
    async with app_pool.acquire() as conn:
        await append_authorization(conn, KEY, AuthorizeInput(
            operator="op", agency="court", action="clue.transfer", workflow_id="wf-role"),
            allowed=True, reason="", key="role/1")
    assert (await verify(app_pool)).ok, "the role can read and verify"
    denied = [
        "DELETE FROM ledger_events", "UPDATE ledger_events SET actor = 'x'", "TRUNCATE ledger_events",
        "DELETE FROM authorization_log", "UPDATE authorization_log SET allowed = true",
        "TRUNCATE authorization_log", "DELETE FROM callback_attempts", "UPDATE callback_attempts SET attempt_no = 0",
        "UPDATE audit_chain_heads SET rows = 0", "DELETE FROM audit_chain_heads",
        "INSERT INTO audit_chain_heads (chain, keyed_after) VALUES ('x', 0)",
        "ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_no_update_delete",
        "ALTER TABLE ledger_events DISABLE TRIGGER ALL", "ALTER TABLE authorization_log DROP COLUMN hash",
        "DROP TABLE ledger_events", "DROP TRIGGER ledger_events_chain ON ledger_events",
        "CREATE TABLE mine (x int)", "SET session_replication_role = replica",
        "CREATE OR REPLACE FUNCTION audit_chain_advance() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$",
    ]
    for sql in denied:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_pool.execute(sql)
    assert await pool.fetchval("SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles "
                               "WHERE rolname = 'ducha_app'") is False
    assert await pool.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                               "AND tableowner = 'ducha_app'") == 0
    # ... while the snapshot tables stay writable (the ledger's upserts).
    await app_pool.execute("UPDATE clues SET light = light WHERE false")


# --- anchors in Temporal ------------------------------------------------------------------------


async def test_ledger_anchor_keeps_recent_heads_across_continue_as_new(ts_env, fresh):
    from temporalio.worker import Worker

    from activities.ledger import LedgerActivities
    from schemas.anchor import AnchorStart
    from workflows.ledger_anchor import LedgerAnchor

    _, pool = fresh
    client, queue = ts_env.client, f"anchor-{os.urandom(4).hex()}"
    await add(pool, "W1", 0)
    async with Worker(client, task_queue=queue, workflows=[LedgerAnchor],
                      activities=[LedgerActivities(pool, KEY).chain_heads]):
        handle = await client.start_workflow(
            LedgerAnchor.run, AnchorStart(interval_minutes=5, keep=3, anchors_per_run=2),
            id=f"ledger-anchor-{os.urandom(4).hex()}", task_queue=queue)
        await add(pool, "W1", 1)
        now = await handle.execute_update(LedgerAnchor.anchor_now)  # on demand
        assert now.head("ledger_events").rows == 2
        await ts_env.sleep(timedelta(minutes=16))  # timers: more anchors, and a continue-as-new
        recent = await handle.query(LedgerAnchor.recent, 10)
        assert len(recent) == 3, "keep=3 bounds the state"
        assert [a.at for a in recent] == sorted((a.at for a in recent), reverse=True)
        assert all(a.head("ledger_events").rows == 2 for a in recent)
        assert (await handle.describe()).run_id != handle.result_run_id, "continued as new"
        first = client.get_workflow_handle(handle.id, run_id=handle.result_run_id)
        history = await first.fetch_history()
        assert history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
        await assert_replays(first, [LedgerAnchor])  # the run with the update, timers and continue-as-new
        await handle.terminate("test done")
    # The anchors catch what the owner can do inside PostgreSQL.
    assert (await verify(pool, recent)).ok
    first_row = await pool.fetchrow("SELECT id, hash FROM ledger_events ORDER BY id LIMIT 1")
    await owner(pool, f"DELETE FROM ledger_events WHERE id > {first_row['id']}",
                f"UPDATE audit_chain_heads SET last_id = {first_row['id']}, hash = '{first_row['hash']}', rows = 1 "
                "WHERE chain = 'ledger_events'")
    assert {"truncated", "head_moved_back"} <= {f.kind for f in (await verify(pool, recent)).findings}


async def test_schedule_starts_the_anchor_and_verify_reads_it(dev_env, fresh):
    """`ducha schedules sync` creates schedule ledger-anchor, which starts LedgerAnchor at once;
    `ducha audit verify` finds it and compares with its anchors; a cut tail then fails."""
    from temporalio.worker import Worker

    from activities.ledger import LedgerActivities
    from workers.schedules import ANCHOR_SCHEDULE, anchor_handle, sync
    from workflows.ledger_anchor import LedgerAnchor

    from .conftest import make_settings

    url, pool = fresh
    for i in range(3):
        await add(pool, "S1", i)
    s = make_settings(url, task_queue=f"anchor-{os.urandom(4).hex()}",
                      temporal_address=dev_env.client.service_client.config.target_host)
    client = dev_env.client
    async with Worker(client, task_queue=s.task_queue, workflows=[LedgerAnchor],
                      activities=[LedgerActivities(pool, KEY).chain_heads]):
        try:
            await client.get_schedule_handle(ANCHOR_SCHEDULE).delete()
        except Exception:
            pass
        assert dict(await sync(client, s))[ANCHOR_SCHEDULE] == "created"
        handle = None
        for _ in range(100):
            try:
                handle = await anchor_handle(client)
                if await handle.query(LedgerAnchor.recent, 5):
                    break
            except (LookupError, Exception):
                await asyncio.sleep(0.2)
        assert handle is not None
        env = cli_env(url, DUCHA_TEMPORAL_ADDRESS=s.temporal_address, DUCHA_TASK_QUEUE=s.task_queue)
        code, out, err = await run_cli("audit", "verify", "--require-anchor", env=env)
        assert code == 0 and "对照锚点 1 个" in out, (out, err)
        code, out, err = await run_cli("audit", "anchor", env=env)
        assert code == 0 and "ledger_events: id" in out and "3 条" in out, (out, err)
        last = await pool.fetchrow("SELECT id, hash FROM ledger_events ORDER BY id LIMIT 1")
        await owner(pool, f"DELETE FROM ledger_events WHERE id > {last['id']}",
                    f"UPDATE audit_chain_heads SET last_id = {last['id']}, hash = '{last['hash']}', rows = 1 "
                    "WHERE chain = 'ledger_events'")
        code, out, err = await run_cli("audit", "verify", env=env)
        assert code == 1 and "截断" in err and "回拨" in err, (out, err)
        await client.get_schedule_handle(ANCHOR_SCHEDULE).delete()
        await handle.terminate("test done")
