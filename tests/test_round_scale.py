"""Scale: a round over 2,000 units completes on the time-skipping server with bounded in-flight
children, and no history of the round's runs exceeds 10,000 events (continue-as-new).

Children are a scaled-down UnitInspection (tests/fast_inspection.py: a few days, then the same
report to the round); the round, its activities and PostgreSQL are the real ones. The measured
figures are printed (run with -s) and recorded in docs/benchmarks.md."""

from __future__ import annotations

import asyncio
import json
import resource
import time
import uuid
from datetime import timedelta, timezone

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities import build_activities
from schemas import ids
from workflows.annual_round import CAN_AFTER_STARTS, AnnualInspectionRound

from .conftest import make_settings
from .fast_inspection import FastUnitInspection
from .support import assert_replays

CHINA = timezone(timedelta(hours=8))
UNITS = int(__import__("os").environ.get("SCALE_UNITS", "2000"))
MAX_PARALLEL = 200
HISTORY_LIMIT = 10_000
WALL_LIMIT_S = 240  # the target is well under 2 minutes on 2 cores; slack for a busy machine


async def add_units(pool, n: int) -> None:
    contact = json.dumps({"name": "联络员", "title": "", "phone": ""})
    await pool.executemany(
        "INSERT INTO parties (code, kind, name, level, category, leader, liaison, callback_enabled, active) "
        "VALUES ($1, 'unit', $2, $3, '行政执法', $4::jsonb, $4::jsonb, false, true)",
        [(f"unit_{i:04d}", f"执法单位{i:04d}", "township" if i % 3 else "county", contact) for i in range(n)])


async def run_histories(client, workflow_id: str, first_run_id: str) -> list:
    """The history of every run of a workflow that continued as new, in order."""
    histories, run_id = [], first_run_id
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.append(history)
        last = history.events[-1]
        run_id = (last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                  if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW else "")
    return histories


def max_in_flight(histories) -> int:
    """Inspections in flight at most across the whole round, read from the histories
    (bench/fanout.py `in_flight`: the `inspection.start` waves, the `inspection_progress` reports
    and the round's describe checks)."""
    from bench.fanout import in_flight

    return in_flight(histories)["peak"]


async def sample_in_progress(handle, samples: list[int]) -> None:
    """Coverage as an operator sees it, every half second while the round runs. While the round
    is still planning, the query answers "try again" (a failed query): the sampler goes on."""
    while True:
        try:
            samples.append((await handle.query(AnnualInspectionRound.coverage)).in_progress)
        except (RPCError, WorkflowQueryFailedError):
            pass
        await asyncio.sleep(0.5)


async def test_round_over_2000_units_stays_bounded_and_small(ts_env, pool, db_url):
    await add_units(pool, UNITS)
    tq = f"scale-{uuid.uuid4().hex[:8]}"
    settings = make_settings(db_url, task_queue=tq)
    year = (await ts_env.get_current_time()).astimezone(CHINA).year + 1
    async with httpx.AsyncClient() as http:
        worker = Worker(ts_env.client, task_queue=tq, workflows=[AnnualInspectionRound, FastUnitInspection],
                        activities=build_activities(pool, settings, ts_env.client, http),
                        max_concurrent_workflow_tasks=50)
        async with worker:
            began = time.monotonic()
            handle = await ts_env.client.start_workflow(
                AnnualInspectionRound.run, {"year": year, "start_on": f"{year}-01-05", "batches": 4,
                                            "max_parallel": MAX_PARALLEL},
                id=ids.annual_round(year), task_queue=tq)
            samples: list[int] = []
            sampler = asyncio.create_task(sample_in_progress(handle, samples))
            result = await handle.result()
            wall = time.monotonic() - began
            sampler.cancel()
            histories = await run_histories(ts_env.client, handle.id, handle.first_execution_run_id)
            final = await ts_env.client.get_workflow_handle(handle.id).query(AnnualInspectionRound.coverage)
            for h in histories:
                await assert_replays_history(h)
            await assert_replays(handle, [AnnualInspectionRound])
    lengths = [len(h.events) for h in histories]
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    in_flight = max_in_flight(histories)
    print(f"\n2,000-unit round: wall {wall:.1f} s, runs {len(histories)}, history events per run "
          f"max {max(lengths)} (all: {lengths}), max children in flight {in_flight}, "
          f"peak RSS {peak_rss_mb:.0f} MB, coverage samples {len(samples)} (max in progress {max(samples, default=0)})")
    assert (result.total, result.completed, result.not_covered) == (UNITS, UNITS, [])
    assert final.completed == UNITS and [b.total for b in final.batches] == [UNITS // 4] * 4
    assert await pool.fetchval("SELECT completed FROM inspection_rounds WHERE round_id=$1", handle.id) == UNITS
    assert result.runs == len(histories) >= UNITS // CAN_AFTER_STARTS
    assert samples and max(samples) <= MAX_PARALLEL
    assert max(lengths) < HISTORY_LIMIT
    assert 0 < in_flight <= MAX_PARALLEL
    assert wall < WALL_LIMIT_S


async def assert_replays_history(history) -> None:
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer

    await Replayer(workflows=[AnnualInspectionRound], data_converter=pydantic_data_converter).replay_workflow(history)
