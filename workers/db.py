"""One asyncpg pool per process, with JSON/JSONB decoded to Python values."""

from __future__ import annotations

import json

import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename,
            encoder=lambda v: json.dumps(v, ensure_ascii=False, default=str),
            decoder=json.loads,
            schema="pg_catalog",
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """On release asyncpg always rolls back an open transaction and drops listeners; its default
    reset then also runs RESET ALL / UNLISTEN / CLOSE ALL / pg_advisory_unlock_all, one more round
    trip per release. The service sets no session state (its advisory locks are transaction-scoped),
    so that query is skipped."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection,
                                     reset=_keep_session)
    assert pool is not None
    return pool


# --- least privilege ------------------------------------------------------------------------
# The service's role may read everything and write the snapshot tables, but only append to the
# audit tables, and never move a chain head except through the SECURITY DEFINER functions of
# migrations/0015_keyed_chain.sql; it owns nothing, so it can neither alter a table nor switch a
# trigger off. Migrations run as the owner, which then calls `grant_app_role`.
APPEND_ONLY_TABLES = ("ledger_events", "authorization_log", "callback_attempts")
READ_ONLY_TABLES = ("audit_chain_heads", "schema_migrations")
APP_FUNCTIONS = ("audit_chain_lock(text)",)


async def grant_app_role(conn: asyncpg.Connection, role: str) -> bool:
    """Create `role` if missing (LOGIN, no other attribute; its password is set where it is
    created in production: deploy/postgres-init.sh) and grant it exactly what the service needs
    in this database. Idempotent; run after every migration. False (and nothing changed) when
    this connection may not create the role."""
    quoted = await conn.fetchval("SELECT quote_ident($1)", role)
    if await conn.fetchval("SELECT current_user = $1", role):
        return False  # migrating as the application role itself: nothing it could grant
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    if not exists:
        try:
            await conn.execute(f"CREATE ROLE {quoted} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION")
        except asyncpg.DuplicateObjectError:
            pass  # created meanwhile by another process (another test database's migration)
        except asyncpg.InsufficientPrivilegeError:
            return False
    tables = [r["tablename"] for r in await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
    async with conn.transaction():
        await conn.execute(f"GRANT CONNECT ON DATABASE {await conn.fetchval('SELECT quote_ident(current_database())')} "
                           f"TO {quoted}")
        await conn.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {quoted}")
        await conn.execute(f"GRANT USAGE ON SCHEMA public TO {quoted}")
        for table in tables:
            t = await conn.fetchval("SELECT quote_ident($1)", table)
            await conn.execute(f"REVOKE ALL ON {t} FROM {quoted}")
            if table in APPEND_ONLY_TABLES:
                await conn.execute(f"GRANT SELECT, INSERT ON {t} TO {quoted}")
            elif table in READ_ONLY_TABLES:
                await conn.execute(f"GRANT SELECT ON {t} TO {quoted}")
            else:
                await conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {t} TO {quoted}")
        await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}")
        for fn in APP_FUNCTIONS:
            await conn.execute(f"GRANT EXECUTE ON FUNCTION {fn} TO {quoted}")
    return True
