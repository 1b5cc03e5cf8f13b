"""Helpers shared by the CLI command modules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg
import typer

from config.settings import Settings, load_settings
from workers.db import create_pool
from workers.logging import configure_logging

T = TypeVar("T")


def settings() -> Settings:
    s = load_settings()
    configure_logging(s.log_format, "warning" if s.log_level == "info" else s.log_level)
    return s


def run(fn: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(fn())


@asynccontextmanager
async def db_pool(s: Settings) -> AsyncIterator[asyncpg.Pool]:
    try:
        pool = await create_pool(s.postgres_url, max_size=4)
    except (OSError, asyncpg.PostgresError) as exc:
        fail(f"无法连接数据库 / cannot reach PostgreSQL at {s.postgres_url}: {exc}. "
             "Is `make up` running?")
    try:
        yield pool
    finally:
        await pool.close()


def fail(message: str, code: int = 2) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)
