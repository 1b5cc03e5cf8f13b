"""Special inspections opened by route-a clue outcomes: one per unit at a time, a new one (`-2`)
once the first has finished. Each clue, its special inspection and the replays.

In a module of its own: the special inspection finishes after the clue that started it (an
abandoned child outliving its parent), and the time-skipping test server then stops skipping time
for the rest of its life (temporalio/sdk-typescript#1101), so no test may sleep after this one on
the same server."""

from __future__ import annotations

import uuid

from schemas import ids
from workflows.catalog import ALL_WORKFLOWS
from workflows.clue_transfer import ClueTransfer
from workflows.unit_inspection import UnitInspection

from .support import assert_replays, unit_operator, wait_for_async

TEAM = {"operator": "李娜", "agency": "law_office"}


async def open_by_clue(env, unit: str) -> str:
    environment, tq = env
    today = (await environment.get_current_time()).date()
    no = f"S{uuid.uuid4().hex[:8]}"
    h = await environment.client.start_workflow(
        ClueTransfer.run, {"clue_no": no, "route": "to_law_office", "source": "procuratorate",
                           "channel": "public_interest_litigation", "importance": "important",
                           "discovered_on": today.isoformat(), "subject_unit": unit,
                           "title": "公益诉讼中发现未履行法定职责", "reported_by": "黄静"},
        id=ids.clue(no), task_queue=tq)
    await wait_for_async(lambda: h.query(ClueTransfer.status), lambda s: bool(s.history))
    await h.execute_update(ClueTransfer.transfer, {"operator": "黄静", "agency": "procuratorate"})
    await h.execute_update(ClueTransfer.acknowledge, {"operator": "李娜", "agency": "law_office"})
    await h.execute_update(ClueTransfer.report_result, {
        "operator": "李娜", "agency": "law_office", "outcome": "substantiated",
        "summary": "属实，开展专项督察", "open_special_inspection": True})
    st = await h.query(ClueTransfer.status)
    await assert_replays(h, ALL_WORKFLOWS)
    return next(link.workflow_id for link in st.links if link.relation == "special_inspection")


async def test_clue_outcome_opens_one_special_inspection_per_unit_at_a_time(env, pool):
    environment, _ = env
    unit = "housing"
    year = (await environment.get_current_time()).year
    first = await open_by_clue(env, unit)
    assert first == ids.inspection(year, "special", unit)
    special = environment.client.get_workflow_handle(first)
    await wait_for_async(lambda: special.query(UnitInspection.status),
                         lambda s: len(s.deadlines) == 2)
    st = await special.query(UnitInspection.status)
    assert (st.kind, st.lead, st.trigger.type) == ("special", "law_office", "clue")
    assert await open_by_clue(env, unit) == first, "a second clue links to the open special inspection"
    # Once it has finished, the next trigger opens a new one with the -2 suffix.
    await special.execute_update(UnitInspection.submit_self_inspection,
                                 {"operator": unit_operator(unit), "agency": unit, "summary": "自查"})
    await special.execute_update(UnitInspection.record_method,
                                 {**TEAM, "method": "onsite_check", "summary": "现场检查"})
    await special.execute_update(UnitInspection.evaluate, {**TEAM, "score": 70, "grade": "pass"})
    await special.execute_update(UnitInspection.issue_feedback, {**TEAM, "opinion": "整改"})
    await special.result()
    assert await open_by_clue(env, unit) == ids.inspection(year, "special", unit, 2)
    assert await pool.fetchval("SELECT count(*) FROM inspections WHERE unit=$1 AND kind='special'", unit) == 2
    await assert_replays(special, ALL_WORKFLOWS)
