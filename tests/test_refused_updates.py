"""Hostile input wedges nothing: thousands of refused updates (an unregistered operator, the wrong
agency, the wrong stage) and of oversized ones (past every input cap) against one running clue on
the dev server leave it running, its history untouched (a refused update is never accepted, so it
writes no event), its deadlines as they were, and the next good update works."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.worker import Worker

from schemas import ids
from schemas.clue import ClueStart
from workflows.catalog import ALL_WORKFLOWS
from workflows.clue_transfer import ClueTransfer

from .conftest import make_settings
from .support import wait_for_async

CHINA = timezone(timedelta(hours=8))
HISTORY_WARN_EVENTS = 10_240  # Temporal's default history-count warning limit
IN_FLIGHT = 8  # the server accepts at most 10 updates in flight per workflow (frontend limit)


@pytest.fixture
async def worker(dev_env, pool, db_url, receiver):
    import httpx

    from activities import build_activities
    from activities.calendar import CalendarActivities

    s = make_settings(db_url, task_queue=f"refused-{uuid.uuid4().hex[:6]}", callback_allowlist=["127.0.0.1"])
    await CalendarActivities(pool, s).load_dir(s.calendar_dir)
    async with httpx.AsyncClient() as http:
        async with Worker(dev_env.client, task_queue=s.task_queue, workflows=ALL_WORKFLOWS,
                          activities=build_activities(pool, s, dev_env.client, http),
                          max_concurrent_workflow_tasks=20):
            yield s.task_queue


BAD = [
    {"operator": "冒名者", "agency": "court"},  # not in the registry
    {"operator": "李娜", "agency": "court"},  # registered, but for law_office
    {"operator": "杨帆", "agency": "law_office"},  # the wrong party for this action
]
OVERSIZED = [
    {"operator": "杨帆", "agency": "court", "note": "长" * 501},  # note > 500
    {"operator": "杨" * 51, "agency": "court"},  # operator > 50
    {"operator": "杨帆", "agency": "court", "extra": "x" * 1000},  # unknown field
]


errors: list[str] = []


async def _storm(handle, inputs: list[dict], n: int) -> tuple[int, int]:
    """Send n updates (cycling through inputs), IN_FLIGHT at a time; returns (refused, other errors)."""
    refused = other = 0
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> None:
        nonlocal refused, other
        async with limit:
            try:
                await handle.execute_update(ClueTransfer.transfer, inputs[i % len(inputs)])
            except WorkflowUpdateFailedError:
                refused += 1
            except RPCError as exc:
                other += 1
                errors.append(str(exc))

    await asyncio.gather(*(one(i) for i in range(n)))
    return refused, other


async def test_refused_and_oversized_updates_leave_a_clue_untouched(dev_env, worker):
    """In `make test`: 300 of each."""
    await _refused_and_oversized(dev_env, worker, int(os.environ.get("DUCHA_REFUSED_UPDATES", "300")))


@pytest.mark.faults
async def test_ten_thousand_refused_and_ten_thousand_oversized_updates(dev_env, worker):
    """In `make faults`: the issue's scale, 10,000 of each."""
    await _refused_and_oversized(dev_env, worker, 10_000)


async def _refused_and_oversized(dev_env, worker, n: int) -> None:
    clue_no = f"H{uuid.uuid4().hex[:8]}"
    start = ClueStart.model_validate({
        "clue_no": clue_no, "route": "to_law_office", "source": "court", "channel": "judgment_enforcement",
        "importance": "important", "discovered_on": datetime.now(CHINA).date().isoformat(),
        "subject_unit": "market_regulation", "title": "执行中发现行政处罚程序违法", "reported_by": "杨帆"})
    h = await dev_env.client.start_workflow(ClueTransfer.run, start, id=ids.clue(clue_no), task_queue=worker)
    await wait_for_async(lambda: h.query(ClueTransfer.status), lambda s: bool(s.deadlines) and bool(s.history))
    await asyncio.sleep(1)  # the opening steps' last events
    before = await h.query(ClueTransfer.status)
    events_before = len((await h.fetch_history()).events)

    started = time.monotonic()
    refused, other = await _storm(h, BAD, n)
    oversized, other2 = await _storm(h, OVERSIZED, n)
    seconds = time.monotonic() - started
    print(f"{n} refused + {n} oversized updates in {seconds:.0f}s ({2 * n / seconds:.0f}/s)")
    assert (refused, oversized) == (n, n) and other == other2 == 0, errors[:3]

    history = await h.fetch_history()
    assert len(history.events) == events_before, "a refused update wrote to the history"
    assert len(history.events) < HISTORY_WARN_EVENTS
    after = await h.query(ClueTransfer.status)
    assert (after.stage, after.deadlines, after.history) == (before.stage, before.deadlines, before.history)
    assert (await h.describe()).status.name == "RUNNING"

    st = await h.execute_update(ClueTransfer.transfer, {"operator": "杨帆", "agency": "court", "note": "已移送"})
    assert st.stage == "transferred"
