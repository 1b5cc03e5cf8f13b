"""AnnualInspectionRound on the time-skipping server with the real UnitInspection, activities,
PostgreSQL and receiver: a small round end to end (carry-over priority, bounded parallelism),
mid-year add/postpone/pause/resume, the coverage gap at the due date, and a child that ends
without reporting. Every test replays the histories it produced.

Each test plans over its own few active registry units and a year of its own (the module's
time-skipping clock only moves forward)."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from temporalio.client import WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.service import RPCError

from schemas import ids
from schemas.inspection import InspectionStatus
from schemas.round import Coverage
from workflows.annual_round import AnnualInspectionRound
from workflows.catalog import ALL_WORKFLOWS
from workflows.unit_inspection import UnitInspection

from .support import assert_replays, unit_operator, wait_for, wait_for_async

CHINA = timezone(timedelta(hours=8))
TEAM = {"operator": "朱红", "agency": "coordination_group"}  # 执法协调小组's inspector
_years: list[int] = []


def routine(year: int, unit: str, attempt: int = 1) -> str:
    """The workflow id of a unit's `attempt`-th routine inspection in the round of `year`."""
    return ids.inspection(year, "routine", unit, attempt)


async def next_year(environment) -> int:
    """A year after the clock and after every year an earlier test used."""
    year = max([(await environment.get_current_time()).astimezone(CHINA).year + 1, *[y + 1 for y in _years]])
    _years.append(year)
    return year


async def only_active(pool, codes: list[str]) -> None:
    await pool.execute("UPDATE parties SET active = (code = ANY($1::text[])) WHERE kind = 'unit'", codes)


async def start_round(env, year: int, *, wid: str | None = None, **extra):
    environment, tq = env
    handle = await environment.client.start_workflow(
        AnnualInspectionRound.run, {"year": year, **extra}, id=wid or ids.annual_round(year), task_queue=tq)
    await wait_for_async(lambda: planned(handle), lambda c: c is not None and c.total > 0)
    return handle


async def planned(handle) -> Coverage | None:
    try:
        return await coverage(handle)
    except WorkflowQueryFailedError:
        return None  # "still being planned"


async def coverage(handle) -> Coverage:
    return await handle.query(AnnualInspectionRound.coverage)


async def until(environment, at: datetime) -> None:
    delay = at - await environment.get_current_time()
    if delay > timedelta(0):
        await environment.sleep(delay)


def opens(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 9, 1, tzinfo=CHINA)


async def child_status(environment, wid: str) -> InspectionStatus | None:
    try:
        return await environment.client.get_workflow_handle(wid).query(UnitInspection.status)
    except RPCError:
        return None


async def complete(environment, wid: str, unit: str) -> InspectionStatus:
    """Drive one unit inspection from wherever it is to its feedback."""
    await wait_for_async(lambda: child_status(environment, wid), lambda s: s is not None and len(s.deadlines) == 2)
    h = environment.client.get_workflow_handle(wid)
    st = await child_status(environment, wid)
    if st.stage == "self_inspection":
        await h.execute_update(UnitInspection.submit_self_inspection,
                               {"operator": unit_operator(unit), "agency": unit, "summary": "自查完毕"})
    await h.execute_update(UnitInspection.record_method,
                           {**TEAM, "method": "review_case_files", "summary": "评查案卷", "count": 10})
    await h.execute_update(UnitInspection.evaluate, {**TEAM, "score": 85, "grade": "good"})
    await h.execute_update(UnitInspection.issue_feedback, {**TEAM, "opinion": "继续规范执法"})
    return st


async def round_events(pool, round_id: str) -> list[str]:
    rows = await pool.fetch("SELECT event FROM ledger_events WHERE subject_kind='round' AND subject_id=$1 "
                            "ORDER BY seq", round_id)
    return [r["event"] for r in rows]


async def test_small_round_end_to_end_with_carry_over_priority(env, pool, receiver):
    environment, _ = env
    await only_active(pool, ["transport", "health", "education"])
    year = await next_year(environment)
    # transport has a problem carried over from last year; health scored worst last year.
    await pool.execute(
        "INSERT INTO rectifications (problem_no, workflow_id, year, unit, origin_kind, list, category, severity, "
        "issued_by, stage, required_at, carried_over) VALUES ('OLD-T-1', 'rectification-OLD-T-1', $1, 'transport', "
        "'inspection', 'individual', '执法程序', 'general', '李娜', 'rectifying', now(), 1)", year - 1)
    await pool.execute(
        "INSERT INTO inspections (workflow_id, run_id, year, kind, unit, lead, trigger_type, stage, started_at) "
        "VALUES ($1, 'old', $2, 'routine', 'health', 'coordination_group', 'annual', 'completed', now())",
        routine(year - 1, "health-old"), year - 1)
    await pool.execute(
        "INSERT INTO inspection_evaluations (workflow_id, unit, year, kind, score, grade, agency, operator) "
        "VALUES ($1, 'health', $2, 'routine', 55, 'fail', 'coordination_group', '李娜')",
        routine(year - 1, "health-old"), year - 1)
    h = await start_round(env, year, start_on=f"{year}-01-05", batches=2, max_parallel=1)
    rid = h.id
    c = await coverage(h)
    assert (c.total, c.planned, c.in_progress, len(c.batches)) == (3, 3, 0, 2)
    assert [b.total for b in c.batches] == [2, 1] and c.batches[0].opens_on == date(year, 1, 5)
    plan = await pool.fetch("SELECT unit, batch, priority, carried_over, last_score FROM round_units "
                            "WHERE round_id=$1 ORDER BY priority", rid)
    assert [(p["unit"], p["batch"]) for p in plan] == [("transport", 1), ("health", 1), ("education", 2)]
    assert plan[1]["last_score"] == 55

    await until(environment, opens(c.batches[0].opens_on))
    await wait_for_async(lambda: coverage(h), lambda c: c.in_progress == 1)
    first = await complete(environment, routine(year, "transport"), "transport")
    assert first.focus == ["OLD-T-1"] and first.trigger.ref == rid and first.kind == "routine"
    # Only after transport is done does health start (max_parallel 1).
    await wait_for_async(lambda: coverage(h), lambda c: c.completed == 1 and c.in_progress == 1)
    await complete(environment, routine(year, "health"), "health")
    await wait_for_async(lambda: coverage(h), lambda c: c.completed == 2)
    c = await coverage(h)
    assert (c.planned, c.in_progress, c.batches[1].opened) == (1, 0, False)
    assert await child_status(environment, routine(year, "education")) is None, "batch 2 not open yet"

    await until(environment, opens(c.batches[1].opens_on))
    await complete(environment, routine(year, "education"), "education")
    result = await h.result()
    assert (result.total, result.completed, result.not_covered) == (3, 3, [])
    assert await round_events(pool, rid) == ["planned", "batch_opened", "batch_opened", "completed"]
    row = await pool.fetchrow("SELECT * FROM inspection_rounds WHERE round_id=$1", rid)
    assert (row["stage"], row["total"], row["completed"], row["not_covered"]) == ("completed", 3, 3, 0)
    assert await pool.fetchval("SELECT count(*) FROM inspections WHERE round_id=$1 AND stage='completed'", rid) == 3
    # Children started one at a time: each started after the one before had finished.
    started = await pool.fetch("SELECT unit, started_at, completed_at FROM inspections WHERE round_id=$1 "
                               "ORDER BY started_at", rid)
    assert [s["unit"] for s in started] == ["transport", "health", "education"]
    assert all(a["completed_at"] <= b["started_at"] for a, b in zip(started, started[1:], strict=False))
    await assert_replays(h, ALL_WORKFLOWS)
    for unit in ("transport", "health", "education"):
        await assert_replays(environment.client.get_workflow_handle(routine(year, unit)), ALL_WORKFLOWS)


async def test_mid_year_add_postpone_pause_and_resume(env, pool):
    environment, _ = env
    await only_active(pool, ["agriculture", "forestry", "taxation"])
    year = await next_year(environment)
    h = await start_round(env, year, start_on=f"{year}-01-05", batches=3, max_parallel=5)
    c = await coverage(h)
    assert [b.total for b in c.batches] == [1, 1, 1]
    second, third = c.batches[1].opens_on, c.batches[2].opens_on
    await until(environment, opens(c.batches[0].opens_on))
    await wait_for_async(lambda: coverage(h), lambda c: c.in_progress == 1)

    # A unit registered mid-year joins the next batch that has not opened.
    c = await h.execute_update(AnnualInspectionRound.add_unit, {**TEAM, "unit": "commerce", "note": "新设立执法单位"})
    assert (c.total, c.added, c.batches[1].total) == (4, 1, 2)
    plan = {r["unit"]: r for r in await pool.fetch("SELECT * FROM round_units WHERE round_id=$1", h.id)}
    assert plan["commerce"]["added"] and plan["commerce"]["batch"] == 2
    # Postponed: forestry (batch 2) to the next batch; taxation (last batch) to a new batch later.
    c = await h.execute_update(AnnualInspectionRound.postpone_unit, {**TEAM, "unit": "forestry", "reason": "机构改革"})
    assert [b.total for b in c.batches] == [1, 1, 2] and c.postponed == 1
    c = await h.execute_update(AnnualInspectionRound.postpone_unit,
                               {**TEAM, "unit": "taxation", "reason": "系统上线", "until": f"{year}-11-20"})
    assert [(b.number, b.opens_on, b.total) for b in c.batches][2:] == [(3, third, 1), (4, date(year, 11, 20), 1)]

    # Paused: batch 2 opens but nothing starts until resumed.
    await h.execute_update(AnnualInspectionRound.pause, {**TEAM, "reason": "集中整改期间暂停"})
    await until(environment, opens(second))
    await wait_for_async(lambda: coverage(h), lambda c: c.batches[1].opened)
    c = await coverage(h)
    assert (c.stage, c.paused, c.batches[1].in_progress) == ("paused", True, 0)
    c = await h.execute_update(AnnualInspectionRound.resume, {**TEAM, "note": "恢复"})
    await wait_for_async(lambda: coverage(h), lambda c: c.batches[1].in_progress == 1)
    assert await child_status(environment, routine(year, "commerce")) is not None
    assert await child_status(environment, routine(year, "forestry")) is None
    events = await round_events(pool, h.id)
    assert events == ["planned", "batch_opened", "unit_added", "unit_postponed", "unit_postponed", "paused",
                      "batch_opened", "resumed"]
    await assert_replays(h, ALL_WORKFLOWS)


@pytest.mark.parametrize(
    ("update", "arg", "message"),
    [
        (AnnualInspectionRound.add_unit, {"operator": "x", "agency": "transport", "unit": "commerce"}, "coordination_group"),
        (AnnualInspectionRound.add_unit, {**TEAM, "unit": "culture_tourism"}, "already|已在"),
        (AnnualInspectionRound.add_unit, {**TEAM, "unit": "no_such_unit"}, "no_such_unit"),
        (AnnualInspectionRound.add_unit, {**TEAM, "unit": "discipline"}, "not an enforcement unit|不是"),
        (AnnualInspectionRound.postpone_unit, {**TEAM, "unit": "culture_tourism", "reason": "x"}, "reason"),
        (AnnualInspectionRound.postpone_unit, {**TEAM, "unit": "commerce", "reason": "不在本轮"}, "not in this round|不在"),
        (AnnualInspectionRound.postpone_unit, {**TEAM, "unit": "culture_tourism", "reason": "推迟", "until": "2020-01-01"}, "until"),
        (AnnualInspectionRound.resume, {**TEAM}, "not paused|未暂停"),
        (AnnualInspectionRound.pause, {"operator": "x", "agency": "law_office"}, "reason"),
    ],
)
async def test_bad_round_updates_are_refused_and_change_nothing(env, pool, update, arg, message):
    environment, _ = env
    await only_active(pool, ["culture_tourism"])
    # Far ahead and under an id of its own: this round never gets to start anything.
    h = await start_round(env, 2090, wid=f"{ids.annual_round(2090)}-{uuid.uuid4().hex[:6]}", batches=1)
    before = await coverage(h)
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await h.execute_update(update, arg)  # raw JSON: the workflow's own validation answers
    assert re.search(message, str(info.value.cause)), str(info.value.cause)
    after = await coverage(h)
    assert (after.total, after.planned, after.history, after.paused) == (
        before.total, before.planned, before.history, before.paused)
    await environment.client.get_workflow_handle(h.id).terminate("test over")


async def test_postponing_a_started_unit_is_refused(env, pool):
    environment, _ = env
    await only_active(pool, ["medical_security"])
    year = await next_year(environment)
    h = await start_round(env, year, start_on=f"{year}-01-05", batches=1)
    await until(environment, opens(date(year, 1, 5)))
    await wait_for_async(lambda: coverage(h), lambda c: c.in_progress == 1)
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await h.execute_update(AnnualInspectionRound.postpone_unit, {**TEAM, "unit": "medical_security", "reason": "来不及"})
    assert re.search("already started|已开始", str(info.value.cause))
    await complete(environment, routine(year, "medical_security"), "medical_security")
    assert (await h.result()).completed == 1
    await assert_replays(h, ALL_WORKFLOWS)


async def test_child_ending_without_report_is_caught_and_can_be_added_again(env, pool):
    environment, _ = env
    await only_active(pool, ["statistics"])
    year = await next_year(environment)
    h = await start_round(env, year, start_on=f"{year}-01-05", batches=1)
    await until(environment, opens(date(year, 1, 5)))
    wid = routine(year, "statistics")
    await wait_for_async(lambda: child_status(environment, wid), lambda s: s is not None)
    await environment.client.get_workflow_handle(wid).terminate("操作员误启动")
    # The weekly check finds it.
    await environment.sleep(timedelta(days=8))
    await wait_for_async(lambda: coverage(h), lambda c: c.failed == 1)
    c = await h.execute_update(AnnualInspectionRound.add_unit, {**TEAM, "unit": "statistics", "note": "重新督察"})
    assert (c.total, c.failed) == (1, 0)
    await complete(environment, routine(year, "statistics", 2), "statistics")
    result = await h.result()
    assert (result.completed, result.not_covered) == (1, [])
    await assert_replays(h, ALL_WORKFLOWS)


async def test_due_date_escalates_every_unit_not_covered_then_catches_up(env, pool, receiver):
    environment, _ = env
    units = ["fire_rescue", "tobacco", "town_xinhe"]
    await only_active(pool, units)
    year = await next_year(environment)
    h = await start_round(env, year, start_on=f"{year}-01-05", due_on=f"{year}-02-28", batches=1, max_parallel=2)
    await until(environment, opens(date(year, 1, 5)))
    await wait_for_async(lambda: coverage(h), lambda c: c.in_progress == 2)
    await until(environment, datetime(year, 3, 1, 0, 5, tzinfo=CHINA))
    await wait_for_async(lambda: coverage(h), lambda c: c.gap_escalated)
    c = await coverage(h)
    assert (c.stage, c.not_covered, sorted(c.not_covered_units)) == ("closing", 3, sorted(units))
    await wait_for(lambda: {r.recipient for r in receiver.events("inspection.coverage_gap")
                            if r.body["workflow_id"] == h.id} == {"law_office", "coordination_group"})
    gap = next(r for r in receiver.events("inspection.coverage_gap") if r.body["workflow_id"] == h.id)
    assert gap.body["data"]["not_covered"] == 3 and set(gap.body["data"]["units"].split(",")) == set(units)
    assert gap.verified
    row = await pool.fetchrow("SELECT stage, gap_escalated, not_covered FROM inspection_rounds WHERE round_id=$1", h.id)
    assert (row["stage"], row["gap_escalated"], row["not_covered"]) == ("closing", True, 3)
    # The teams' own deadlines pass too: the round counts its overdue inspections.
    await environment.sleep(timedelta(days=40))
    await wait_for_async(lambda: coverage(h), lambda c: c.overdue == 2)
    # Late, but every unit is still inspected.
    for unit in units:
        await complete(environment, routine(year, unit), unit)
    result = await h.result()
    assert (result.completed, result.not_covered) == (3, [])
    assert await round_events(pool, h.id) == ["planned", "batch_opened", "coverage_gap", "completed"]
    await assert_replays(h, ALL_WORKFLOWS)


def state_before_compact_format(year: int) -> dict:
    """A round's state mid-year as the round wrote it before the compact format (schemas/round.py
    at 7181a5b: `units` as {code: UnitSlot}, the queue by code): housing covered, water_resources
    in progress and overdue, civil_affairs waiting in the queue, development_reform postponed to
    batch 2, human_resources failed."""
    return {
        "year": year, "start_on": f"{year}-01-05", "due_on": f"{year}-12-31", "max_parallel": 2,
        "batches": [{"number": 1, "opens_on": f"{year}-01-05", "opened": True},
                    {"number": 2, "opens_on": f"{year}-06-01", "opened": False}],
        "units": {
            "housing": {"batch": 0, "priority": 0, "status": "completed", "workflow_id": routine(year, "housing"),
                        "attempts": 1, "last_score": 58.0},
            "water_resources": {"batch": 0, "priority": 1, "status": "in_progress", "attempts": 1,
                                "workflow_id": routine(year, "water_resources"), "overdue": True},
            "civil_affairs": {"batch": 0, "priority": 2, "status": "planned", "level": "township"},
            "human_resources": {"batch": 0, "priority": 3, "status": "failed", "attempts": 1,
                                "workflow_id": routine(year, "human_resources")},
            "development_reform": {"batch": 1, "priority": 4, "status": "planned", "postponed": "机构改革"},
        },
        "queue": ["civil_affairs"], "seq": 5, "runs": 2, "started": 3,
        "next_reconcile_at": f"{year}-01-12T01:00:00Z",
        "history": [{"at": f"{year}-01-05T01:00:00Z", "action": "batch_opened", "operator": "系统",
                     "agency": "coordination_group"}],
        "planned_at": f"{year - 1}-12-30T01:00:00Z",
    }


@pytest.mark.parametrize("fmt", ["old", "compact"])
async def test_a_run_continued_from_a_carried_state_goes_on(env, pool, fmt):
    """What continue-as-new hands over: a run whose input carries the state of an earlier run, in the
    format rounds used before the compact state (an old run continuing into this code) and in the
    compact one, picks up every unit where it was and finishes the round."""
    from schemas.round import RoundState

    environment, tq = env
    units = ["housing", "water_resources", "civil_affairs", "human_resources", "development_reform"]
    await only_active(pool, units)
    year = await next_year(environment)
    rid = f"{ids.annual_round(year)}-{fmt}-state"
    state = state_before_compact_format(year)
    if fmt == "compact":
        state = RoundState.model_validate(state).model_dump(mode="json")
        assert "table" in state and "units" not in state
    await until(environment, opens(date(year, 1, 5)))
    # The inspection the earlier run had started is running.
    await environment.client.start_workflow(
        UnitInspection.run, {"unit": "water_resources", "year": year, "kind": "routine", "lead": "coordination_group",
                           "trigger": {"type": "annual", "ref": rid}},
        id=routine(year, "water_resources"), task_queue=tq)
    h = await environment.client.start_workflow(
        AnnualInspectionRound.run, {"year": year, "batches": 2, "max_parallel": 2, "state": state}, id=rid,
        task_queue=tq)
    c = await wait_for_async(lambda: planned(h), lambda c: c is not None and c.in_progress == 2)
    c = await coverage(h)
    assert (c.total, c.completed, c.in_progress, c.overdue, c.failed, c.planned, c.postponed, c.added, c.runs) == (
        5, 1, 2, 1, 1, 1, 1, 0, 2)
    assert [(b.total, b.completed, b.in_progress, b.failed) for b in c.batches] == [(4, 1, 2, 1), (1, 0, 0, 0)]
    assert c.not_covered_units == ["water_resources", "civil_affairs", "human_resources", "development_reform"]
    await complete(environment, routine(year, "water_resources"), "water_resources")
    await complete(environment, routine(year, "civil_affairs"), "civil_affairs")
    # The failed unit is inspected again (its second attempt) with the next batch.
    c = await h.execute_update(AnnualInspectionRound.add_unit, {**TEAM, "unit": "human_resources", "note": "重新督察"})
    assert (c.failed, c.added, c.batches[1].total) == (0, 1, 2)
    await until(environment, opens(date(year, 6, 1)))
    await complete(environment, routine(year, "development_reform"), "development_reform")
    await complete(environment, routine(year, "human_resources", 2), "human_resources")
    result = await h.result()
    assert (result.total, result.completed, result.not_covered, result.runs) == (5, 5, [], 2)
    assert await round_events(pool, rid) == ["unit_added", "batch_opened", "completed"]
    await assert_replays(h, ALL_WORKFLOWS)
