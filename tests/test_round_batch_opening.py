"""When the yearly round's batches open: 09:00 China time on their day, except a batch of the day
the round is planned, which opens when it is planned (patch first-batch-opens-at-start). A round
started at 02:00 used to wait until 09:00 for its first inspection (the fan-out bench, started at
02:58 China time, ran 0 of 1,000 units in 91 s)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from schemas import ids
from schemas.round import Coverage
from workflows.annual_round import AnnualInspectionRound
from workflows.catalog import ALL_WORKFLOWS

from .support import assert_replays, wait_for_async
from .test_annual_round import CHINA, coverage, only_active, planned, until


async def test_a_batch_of_the_planning_day_opens_when_planned_not_at_nine(env, pool):
    environment, tq = env
    await only_active(pool, ["transport", "health"])
    now = (await environment.get_current_time()).astimezone(CHINA)
    two_am = datetime.combine(now.date() + timedelta(days=1), time(2, 0), tzinfo=CHINA)
    await until(environment, two_am)
    day = two_am.date()
    handle = await environment.client.start_workflow(
        AnnualInspectionRound.run,
        {"year": day.year, "start_on": day.isoformat(), "due_on": date(day.year, 12, 31).isoformat(),
         "batches": 2, "max_parallel": 5},
        id=ids.annual_round(day.year), task_queue=tq)
    # Queries do not move the test server's clock: without the patch batch 1 stays shut until 09:00.
    await wait_for_async(lambda: planned(handle), lambda c: c is not None and c.total == 2)
    await wait_for_async(lambda: coverage(handle), lambda c: c.batches[0].opened and c.in_progress == 1)
    c: Coverage = await coverage(handle)
    assert (await environment.get_current_time()).astimezone(CHINA) < datetime.combine(day, time(9), tzinfo=CHINA)
    # The second batch is on a later day and still opens at 09:00 there.
    assert c.batches[1].opens_on > day and not c.batches[1].opened
    await handle.terminate("test over")
    await assert_replays(handle, ALL_WORKFLOWS)
