"""After an official calendar year is loaded, open workflows whose current deadline was
computed provisionally are told to compute it again (signal `recompute_deadlines`)."""

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
    signalled = gone = 0
    for row in await pool.fetch(OPEN_PROVISIONAL):
        try:
            await client.get_workflow_handle(row["workflow_id"]).signal(Case.recompute_deadlines)
            signalled += 1
        except RPCError as exc:  # finished or deleted meanwhile: nothing to recompute
            log.info("workflow not signalled", workflow_id=row["workflow_id"], reason=str(exc))
            gone += 1
    return signalled, gone
