"""The goal-scale soak (`make soak`, docs/reliability.md): 100 SIGKILLs of the worker, 5 stops and
restarts of the dev server and one 30 s PostgreSQL outage, one after another over one long run,
while 60 clues and 20 rectifications go through their whole lifecycles and every callback goes
through the receiver's 500 / no answer / 429 Retry-After / 204 script.

Cases do not all start at once: case i starts once the chaos has made its share of kills, so
steps, deliveries and their retry timers are in flight from the first kill to the last. At each
kill the test records what was in flight (operator actions awaiting their update, cases open,
deliveries pending, deliveries waiting a retry timer in a CallbackDelivery workflow).
Not part of `make test` or `make faults`: 10–16 minutes on 2 cores (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import os
import random
import resource
import time
import uuid
from dataclasses import dataclass

import asyncpg
import pytest

from .harness import (
    Case,
    FaultStack,
    ScenarioReport,
    conclude,
    fault_stack,
    make_cases,
    say,
    verify,
    wait_for_deliveries,
)

KILLS = 100
SERVER_RESTARTS = 5
SERVER_DOWN_SECONDS = 5
OUTAGE_SECONDS = 30
CLUES = 60
RECTIFICATIONS = 20
# The other faults come between two kills: dev-server restarts after these kills, the outage
# after OUTAGE_AFTER_KILL. Cases start from the first kill until FEED_UNTIL_KILL.
RESTART_AFTER_KILLS = (12, 30, 55, 72, 88)
OUTAGE_AFTER_KILL = 42
FEED_UNTIL_KILL = 85
UP_SECONDS = (1.0, 4.0)  # the worker runs this long (after it said it polls) before a kill
DOWN_SECONDS = (0.5, 1.5)  # then stays dead this long
ACTION_PAUSE_SECONDS = (1.0, 8.0)  # between two operator actions on one case

pytestmark = pytest.mark.faults
assert len(RESTART_AFTER_KILLS) == SERVER_RESTARTS


@dataclass
class Progress:
    kills: int = 0
    acting: int = 0  # operator starts/updates sent and not yet answered
    open_cases: int = 0  # started, last action not yet done


def cpu_seconds() -> float:
    """CPU time of this process and of every child it has waited for (the worker processes,
    the dev server and PostgreSQL are children, stopped and waited at the end)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


async def in_flight(stack: FaultStack) -> tuple[int, int]:
    """(deliveries pending, of which waiting in a CallbackDelivery workflow); (-1, -1) if
    PostgreSQL is away."""
    try:
        row = await stack.pool.fetchrow(
            "SELECT count(*) AS pending, count(delivery_workflow_id) AS retrying "
            "FROM callback_deliveries WHERE status = 'pending'")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return -1, -1
    return row["pending"], row["retrying"]


async def test_soak_at_goal_scale(tmp_path):
    started = time.monotonic()
    cpu_before = cpu_seconds()
    seed = int(os.environ.get("DUCHA_SOAK_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    report = ScenarioReport(f"soak: worker SIGKILL x{KILLS}, dev server restart x{SERVER_RESTARTS}, "
                            f"PostgreSQL outage {OUTAGE_SECONDS}s")
    report.stats["seed"] = seed
    cases = make_cases(uuid.uuid4().hex[:6], clues=CLUES, rectifications=RECTIFICATIONS)
    rng.shuffle(cases)
    progress = Progress()
    killed = asyncio.Condition()  # cases wait on it for their turn to start
    landed = {"an operator action": 0, "an open case": 0, "a pending delivery": 0,
              "a delivery waiting its retry timer": 0}
    worker_up: list[float] = []

    async with fault_stack(tmp_path) as stack:

        async def drive(case: Case, after_kill: int) -> None:
            async with killed:
                await killed.wait_for(lambda: progress.kills >= after_kill)
            progress.open_cases += 1
            progress.acting += 1
            try:
                await stack.start_case(case)
            finally:
                progress.acting -= 1
            for action in case.actions:
                await asyncio.sleep(rng.uniform(*ACTION_PAUSE_SECONDS))
                progress.acting += 1
                try:
                    await stack.act(case, action)
                finally:
                    progress.acting -= 1
            progress.open_cases -= 1

        async def restart_worker() -> None:
            began = time.monotonic()
            await stack.worker.start()
            worker_up.append(time.monotonic() - began)

        async def server_restart(n: int) -> None:
            pending, _ = await in_flight(stack)
            say(f"dev server stop {n}/{SERVER_RESTARTS} with {progress.open_cases} cases and "
                f"{pending} deliveries in flight")
            await stack.restart_temporal(SERVER_DOWN_SECONDS)
            await asyncio.sleep(3)
            if not stack.worker.alive():
                say(f"worker exited ({stack.worker.proc.returncode}) while the server was away: restarting it")
                stack.faults["worker died with the server (restarted)"] += 1
                await restart_worker()

        async def outage() -> None:
            pending, _ = await in_flight(stack)
            report.stats["in flight when PostgreSQL stopped"] = \
                f"{progress.open_cases} cases, {pending} deliveries"
            say(f"PostgreSQL stop with {progress.open_cases} cases and {pending} deliveries in flight")
            await stack.postgres_outage(OUTAGE_SECONDS)
            say("PostgreSQL started again")
            report.stats["worker alive after the outage"] = stack.worker.alive()

        async def chaos() -> None:
            restarts = 0
            for n in range(1, KILLS + 1):
                await asyncio.sleep(rng.uniform(*UP_SECONDS))
                pending, retrying = await in_flight(stack)
                for what, yes in (("an operator action", progress.acting > 0),
                                  ("an open case", progress.open_cases > 0),
                                  ("a pending delivery", pending > 0),
                                  ("a delivery waiting its retry timer", retrying > 0)):
                    landed[what] += yes
                if not stack.worker.alive():  # it must only ever die by our hand
                    say(f"worker found dead ({stack.worker.proc.returncode}) before kill {n}: restarting it")
                    stack.faults["worker found dead (restarted)"] += 1
                    await restart_worker()
                await stack.kill_worker()
                async with killed:
                    progress.kills = n
                    killed.notify_all()
                if n % 10 == 0 or n == 1:
                    say(f"SIGKILL {n}/{KILLS}: {progress.acting} actions, {progress.open_cases} cases, "
                        f"{pending} deliveries ({retrying} in retry) in flight")
                await asyncio.sleep(rng.uniform(*DOWN_SECONDS))
                await restart_worker()
                if n in RESTART_AFTER_KILLS:
                    restarts += 1
                    await server_restart(restarts)
                if n == OUTAGE_AFTER_KILL:
                    await outage()

        step = FEED_UNTIL_KILL / len(cases)
        drivers = [asyncio.create_task(drive(c, int(i * step))) for i, c in enumerate(cases)]
        began = time.monotonic()
        try:
            await chaos()
            report.stats["chaos (s)"] = round(time.monotonic() - began)
            await asyncio.gather(*drivers)
            stack.stats["driving (s)"] = round(time.monotonic() - began)
        finally:
            for d in drivers:
                d.cancel()
            await asyncio.gather(*drivers, return_exceptions=True)
            if not stack.worker.alive():
                await stack.worker.start()
        await wait_for_deliveries(stack, cases)
        await verify(stack, cases, report)

    report.stats["kills landing on"] = ", ".join(f"{k} {v}/{KILLS}" for k, v in landed.items())
    report.stats["worker start (s) median/max"] = \
        f"{sorted(worker_up)[len(worker_up) // 2]:.1f}/{max(worker_up):.1f}"
    report.stats["CPU (s) test process + children"] = round(cpu_seconds() - cpu_before)
    report.stats["wall (s)"] = round(time.monotonic() - started)
    conclude(report, stack, started)
