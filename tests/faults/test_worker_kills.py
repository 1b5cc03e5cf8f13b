"""Repeated SIGKILLs of the worker while 12 clues and 4 rectifications are in flight, each
followed by a restart; every callback goes through the receiver's 500 / timeout / 429 script."""

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

KILLS = 8

pytestmark = pytest.mark.faults


async def test_repeated_worker_sigkill(tmp_path):
    started = time.monotonic()
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    report = ScenarioReport(f"worker SIGKILL x{KILLS}")
    report.stats["seed"] = seed
    cases = make_cases(uuid.uuid4().hex[:6], clues=12, rectifications=4)
    async with fault_stack(tmp_path) as stack:
        in_flight: list[str] = []

        async def chaos(open_count) -> None:
            for n in range(KILLS):
                await asyncio.sleep(rng.uniform(3, 7))
                in_flight.append(f"{open_count()}+{await stack.pending_deliveries()}")
                await stack.kill_worker()
                say(f"SIGKILL {n + 1}/{KILLS} with {in_flight[-1]} cases+deliveries in flight")
                await asyncio.sleep(rng.uniform(0.5, 2))
                await stack.worker.start()
            report.stats["cases+deliveries in flight at each kill"] = "/".join(map(str, in_flight))

        await run_cases(stack, cases, rng, spread=45, chaos=chaos)
        await wait_for_deliveries(stack, cases)
        await verify(stack, cases, report)
        conclude(report, stack, started)
