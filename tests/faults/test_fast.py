"""The fast part of the fault suite, inside `make test`: one SIGKILL of the worker while a
handful of clues and rectifications are driven, with every callback answered 500, then not at
all (timeout), then 429 with Retry-After, then 204."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

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


async def test_one_worker_sigkill_and_receiver_faults(tmp_path):
    started = time.monotonic()
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:6]
    report = ScenarioReport("fast: 1 worker SIGKILL + receiver 500/timeout/429")
    report.stats["seed"] = seed
    cases = make_cases(tag, clues=4, rectifications=2)
    async with fault_stack(tmp_path) as stack:

        async def chaos(open_count) -> None:
            await asyncio.sleep(rng.uniform(3, 6))
            report.stats["cases in flight at the kill"] = open_count()
            await stack.kill_worker()
            say(f"worker SIGKILLed with {open_count()} cases in flight")
            await asyncio.sleep(1)
            await stack.worker.start()

        await run_cases(stack, cases, rng, spread=3, chaos=chaos)
        await wait_for_deliveries(stack, cases)
        await verify(stack, cases, report)
        conclude(report, stack, started)
