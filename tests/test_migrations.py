import asyncio
import uuid

import asyncpg

from workers.migrate import discover, migrate_dsn


async def test_migrations_apply_once_even_concurrently(pg_server):
    name = f"mig_{uuid.uuid4().hex[:8]}"
    pg_server.psql(f'CREATE DATABASE "{name}"')
    url = pg_server.admin_url(name)
    results = await asyncio.gather(*(migrate_dsn(url) for _ in range(4)))
    applied = [v for r in results for v in r]
    expected = [m.version for m in discover()]
    assert sorted(applied) == sorted(expected), "each migration applied exactly once across racers"
    assert await migrate_dsn(url) == [], "second run applies nothing"
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == expected
    finally:
        await conn.close()


async def test_failed_migration_leaves_nothing_half_done(pg_server, tmp_path):
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE b (x int); SELECT * FROM no_such_table;")
    name = f"mig_{uuid.uuid4().hex[:8]}"
    pg_server.psql(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(pg_server.admin_url(name))
    from workers.migrate import migrate

    try:
        try:
            await migrate(conn, tmp_path)
        except asyncpg.PostgresError:
            pass
        else:
            raise AssertionError("bad migration should raise")
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
        assert "a" in tables and "b" not in tables
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        assert versions == ["0001_ok"]
    finally:
        await conn.close()
