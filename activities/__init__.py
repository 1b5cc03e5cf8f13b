"""Activities: all I/O. `build_activities` binds every activity to its injected dependencies."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

    from workers.settings import Settings


def build_activities(pool: asyncpg.Pool, settings: Settings) -> list:
    from activities.registry import RegistryStore

    registry = RegistryStore(pool)
    return [registry.lookup_parties, registry.require_parties]
