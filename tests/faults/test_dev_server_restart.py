"""The Temporal dev server stopped (SIGTERM) and started again on the same SQLite file, twice,
while clues and rectifications are in flight. The worker process is left alone: it must
reconnect by itself (if it died instead, it is restarted and that is counted and reported)."""

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

RESTARTS = 2
DOWN_SECONDS = 5

pytestmark = pytest.mark.faults


async def test_dev_server_stop_and_restart(tmp_path):
    started = time.monotonic()
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    report = ScenarioReport(f"dev server restart x{RESTARTS}")
    report.stats["seed"] = seed
    cases = make_cases(uuid.uuid4().hex[:6], clues=8, rectifications=4)
    async with fault_stack(tmp_path) as stack:
        pid = stack.worker.proc.pid

        async def chaos(open_count) -> None:
            survived = died = 0
            for n in range(RESTARTS):
                await asyncio.sleep(rng.uniform(4, 8))
                pending = await stack.until_deliveries_pending(5)
                say(f"dev server stop {n + 1}/{RESTARTS} with {open_count()} cases and {pending} "
                    "deliveries in flight")
                await stack.restart_temporal(DOWN_SECONDS)
                say("dev server started again on the same file")
                await asyncio.sleep(5)
                if stack.worker.alive():
                    survived += 1
                else:
                    died += 1
                    say(f"worker exited ({stack.worker.proc.returncode}) while the server was away: restarting it")
                    stack.faults["worker died with the server (restarted)"] += 1
                    await stack.worker.start()
            report.stats["worker process survived restarts"] = f"{survived}/{RESTARTS}"
            report.stats["same worker pid throughout"] = stack.worker.proc.pid == pid

        await run_cases(stack, cases, rng, spread=30, chaos=chaos)
        await wait_for_deliveries(stack, cases)
        await verify(stack, cases, report)
        conclude(report, stack, started)
