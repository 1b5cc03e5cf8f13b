"""The bare baseline for the overhead ratio: a workflow written with the plain SDK that does what a
ClueTransfer lifecycle does in Temporal terms (the same activities, updates and timers) and
nothing else: no PostgreSQL, no calendar, no callbacks, no search attributes.

Its `plan` is measured from a real ClueTransfer history (bench/overhead.py counts the events of
each phase: phase 0 is the run before the first update, phase k the k-th update), so the baseline
stays honest when the workflow changes:

    plan = {"activities": [a0, ..., an], "local_activities": [l0, ..., ln],
            "timers": [t0, t1, ..., tn], "updates": [names]}

Phase 0 runs a0 no-op activities and l0 no-op local activities, then waits for update 1 with t0 timers pending (each one a
`wait_condition` with a timeout, cancelled by the update, as a deadline watch is); update k runs
ak no-op activities; and so on.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow

TIMEOUT = timedelta(seconds=30)
WAIT = timedelta(days=1)


@activity.defn(name="bench.noop")
async def noop(n: int) -> int:
    return n


@workflow.defn(name="BenchBaseline")
class BenchBaseline:
    def __init__(self) -> None:
        self.plan: dict = {}
        self.phase = 0
        self.ready = False

    @workflow.run
    async def run(self, plan: dict) -> dict:
        self.plan = plan
        await self._activities(0)
        self.ready = True
        updates = len(plan["updates"])
        while self.phase < updates:
            await self._wait(self.phase, plan["timers"][self.phase])
        leftover = plan["timers"][updates] if len(plan["timers"]) > updates else 0
        if leftover:
            sleeps = [asyncio.create_task(workflow.sleep(WAIT)) for _ in range(leftover)]
            await asyncio.sleep(0)
            for task in sleeps:
                task.cancel()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return {"phase": self.phase}

    async def _activities(self, phase: int) -> None:
        for i in range(self.plan["activities"][phase]):
            await workflow.execute_activity(noop, i, start_to_close_timeout=TIMEOUT)
        for i in range(self.plan.get("local_activities", [0] * (phase + 1))[phase]):
            await workflow.execute_local_activity(noop, i, start_to_close_timeout=TIMEOUT)

    async def _wait(self, phase: int, timers: int) -> None:
        def moved() -> bool:
            return self.phase != phase

        if timers == 0:
            await workflow.wait_condition(moved)
            return

        async def one() -> None:
            try:
                await workflow.wait_condition(moved, timeout=WAIT)
            except TimeoutError:
                pass

        await asyncio.gather(*(one() for _ in range(timers)))

    async def _step(self, expected: int) -> dict:
        await workflow.wait_condition(lambda: self.ready and self.phase == expected - 1)
        await self._activities(expected)
        self.phase = expected
        return {"phase": expected}

    # The update names of a ClueTransfer lifecycle; each is phase k of the plan.
    @workflow.update
    async def transfer(self, _action: dict) -> dict:
        return await self._step(1)

    @workflow.update
    async def acknowledge(self, _action: dict) -> dict:
        return await self._step(2)

    @workflow.update
    async def report_result(self, _action: dict) -> dict:
        return await self._step(3)
