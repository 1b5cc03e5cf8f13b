"""Versioned SQL migrations: `migrations/NNNN_name.sql`, applied in order.

Each file runs in its own transaction under a session advisory lock, and is recorded in
`schema_migrations`; running twice, or from two processes at once, applies each file once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

from config.settings import PROJECT_ROOT
from workers.db import grant_app_role

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
# Arbitrary but fixed: "ducha" in ASCII.
ADVISORY_LOCK_KEY = 0x6475636861

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    files = sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    return [Migration(version=p.stem, path=p) for p in files]


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the versions applied by this call."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    text PRIMARY KEY,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"]: r["checksum"] for r in await conn.fetch("SELECT * FROM schema_migrations")}
        for m in discover(directory):
            if m.version in done:
                if done[m.version] != m.checksum:
                    log.warning("migration changed after it was applied", version=m.version)
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                    m.version,
                    m.checksum,
                )
            applied_now.append(m.version)
            log.info("migration applied", version=m.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
    return applied_now


async def migrate_dsn(dsn: str, app_role: str | None = None) -> list[str]:
    """Migrate as the owner `dsn` connects as; then grant `app_role` what the service needs
    (workers/db.py `grant_app_role`), when given."""
    conn = await asyncpg.connect(dsn)
    try:
        applied = await migrate(conn)
        if app_role:
            await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
            try:
                if not await grant_app_role(conn, app_role):
                    log.warning("cannot create the application role: grant it by hand (docs/deployment.md)",
                                role=app_role)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
        return applied
    finally:
        await conn.close()
