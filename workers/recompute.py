"""Telling open cases that something they hold changed: after an official calendar year is
loaded, cases whose current deadline was computed provisionally compute it again (signal
`recompute_deadlines`); after the registry is loaded, every open case reads its parties'
operators again (signal `registry_changed`)."""

from __future__ import annotations

import asyncpg
import structlog
from temporalio.client import Client
from temporalio.service import RPCError

from workflows.case import Case

log = structlog.get_logger(__name__)

OPEN_PROVISIONAL = """
    SELECT workflow_id FROM clues
     WHERE provisional AND stage IN ('registered', 'transferred', 'handling')
    UNION ALL
    SELECT workflow_id FROM rectifications WHERE provisional AND stage = 'rectifying'
    UNION ALL
    SELECT workflow_id FROM inspections WHERE provisional AND stage <> 'completed'
"""


async def recompute_provisional(pool: asyncpg.Pool, client: Client) -> tuple[int, int]:
    """Signal every open workflow with a provisional deadline; returns (signalled, gone)."""
    return await _signal_each(pool, client, OPEN_PROVISIONAL, Case.recompute_deadlines)


OPEN_CASES = """
    SELECT workflow_id FROM clues WHERE stage IN ('registered', 'transferred', 'handling')
    UNION ALL
    SELECT workflow_id FROM rectifications WHERE stage <> 'closed'
    UNION ALL
    SELECT workflow_id FROM inspections WHERE stage <> 'completed'
"""


async def registry_changed(pool: asyncpg.Pool, client: Client) -> tuple[int, int]:
    """Signal every open case to refresh its copy of the registry; returns (signalled, gone)."""
    return await _signal_each(pool, client, OPEN_CASES, Case.registry_changed)


async def _signal_each(pool: asyncpg.Pool, client: Client, query: str, signal) -> tuple[int, int]:
    """Send `signal` (no input) to every workflow the query names; one finished or deleted
    meanwhile is counted as gone."""
    signalled = gone = 0
    for row in await pool.fetch(query):
        try:
            await client.get_workflow_handle(row["workflow_id"]).signal(signal)
            signalled += 1
        except RPCError as exc:
            log.info("workflow not signalled", workflow_id=row["workflow_id"], reason=str(exc))
            gone += 1
    return signalled, gone
