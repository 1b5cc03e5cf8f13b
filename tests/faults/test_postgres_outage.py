"""PostgreSQL stopped (fast shutdown: sessions cut) for 30 s while clues and rectifications are
in flight, then started again. Activities retry with the workflows' policy (backoff up to one
minute), delivery attempts fail and wait their schedule; nothing may be lost or written twice."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest

from .harness import (
    ScenarioReport,
    conclude,
    fault_stack,
    make_cases,
    run_cases,
    say,
    verify,
    wait_for_deliveries,
)

OUTAGE_SECONDS = 30

pytestmark = pytest.mark.faults


async def test_postgres_down_for_30s(tmp_path):
    started = time.monotonic()
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    report = ScenarioReport(f"PostgreSQL outage {OUTAGE_SECONDS}s")
    report.stats["seed"] = seed
    cases = make_cases(uuid.uuid4().hex[:6], clues=8, rectifications=4)
    async with fault_stack(tmp_path) as stack:

        async def chaos(open_count) -> None:
            await asyncio.sleep(rng.uniform(4, 8))
            pending = await stack.until_deliveries_pending(8)
            report.stats["in flight when PostgreSQL stopped"] = f"{open_count()} cases, {pending} deliveries"
            say(f"PostgreSQL stop with {open_count()} cases and {pending} deliveries in flight")
            await stack.postgres_outage(OUTAGE_SECONDS)
            say("PostgreSQL started again")
            report.stats["worker alive after the outage"] = stack.worker.alive()

        await run_cases(stack, cases, rng, spread=20, chaos=chaos)
        await wait_for_deliveries(stack, cases)
        await verify(stack, cases, report)
        conclude(report, stack, started)
