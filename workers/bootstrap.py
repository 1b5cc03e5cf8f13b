"""Idempotent set-up shared by `ducha up` and the tests: migrations, demo registry, calendar,
schedules. Running it twice changes nothing the second time."""

from __future__ import annotations

import structlog

from activities.calendar import CalendarActivities
from activities.registry import RegistryStore
from config.settings import Settings
from config.yaml_file import load_yaml_model
from schemas.registry import RegistryFile
from workers.db import create_pool
from workers.migrate import migrate_dsn

log = structlog.get_logger("ducha.bootstrap")


async def bootstrap(s: Settings) -> None:
    applied = await migrate_dsn(s.owner_url, app_role=s.app_role)
    log.info("migrations", applied=applied or "none pending")
    pool = await create_pool(s.postgres_url, max_size=2)
    try:
        if s.registry_file.exists():
            registry = load_yaml_model(s.registry_file, RegistryFile)
            report = await RegistryStore(pool).load(registry)
            log.info("registry loaded", file=str(s.registry_file), result=report.summary())
        # Official holiday schedules (data/calendar/*.yaml); unchanged years are not rewritten.
        await CalendarActivities(pool, s).load_dir(s.calendar_dir)
    finally:
        await pool.close()
