"""The case kernel (workflows/case.py), behaviour by behaviour, on the time-skipping server with
real activities, PostgreSQL and receiver: one step = one transaction (a refused operator leaves
nothing but the refusal), the provisional-calendar warning once per calendar year, reminders never
before a deadline's start, notes in the ledger, and a long-lived case that continues as new."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError

from schemas.clue import ClueResult, ClueStart, ClueStatus
from schemas.common import Note
from schemas.rectification import RectificationStart, RectificationStatus
from workflows import case
from workflows.catalog import ALL_WORKFLOWS
from workflows.clue_transfer import ClueTransfer
from workflows.rectification import Rectification

from .support import assert_replays, wait_for, wait_for_async

CHINA = timezone(timedelta(hours=8))
UNIT = "market_regulation"
ME = {"operator": "王晓东", "agency": UNIT}
SUPERVISOR = {"operator": "李娜", "agency": "law_office"}


def problem(**overrides) -> RectificationStart:
    base = {
        "problem_no": f"K{uuid.uuid4().hex[:8]}", "unit": UNIT,
        "origin": {"kind": "inspection", "ref": "inspection-2026-routine-market_regulation"},
        "list": "individual", "category": "执法程序", "description": "行政处罚案卷缺少听证告知书",
        "opinion": "补正听证告知程序", "due_in_working_days": 10, "issued_by": "李娜",
    }
    base.update(overrides)
    return RectificationStart.model_validate(base)


async def start_rectification(env, **overrides):
    environment, tq = env
    inp = problem(**overrides)
    handle = await environment.client.start_workflow(
        Rectification.run, inp, id=f"rectification-{inp.problem_no}", task_queue=tq)
    await wait_for_async(lambda: handle.query(Rectification.status), lambda s: bool(s.deadlines))
    return inp, handle


async def ledger(pool, problem_no: str) -> list:
    return await pool.fetch("SELECT seq, event, actor, data, occurred_at FROM ledger_events "
                            "WHERE subject_kind = 'rectification' AND subject_id = $1 ORDER BY seq", problem_no)


async def test_an_unregistered_operator_is_refused_before_the_update_is_accepted(env, pool, receiver):
    """The case holds a copy of its parties' operators: an operator the registry does not know
    is refused by the update's validator, so the refusal adds nothing to the history."""
    inp, h = await start_rectification(env)
    before = await h.query(Rectification.status)
    events_before = len((await h.fetch_history()).events)
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await h.execute_update(Rectification.submit_report,
                               {"operator": "冒名者", "agency": UNIT, "measures": "已整改"})
    assert "is not a registered operator of market_regulation" in str(info.value.cause)
    # (The time-skipping test server records the validator's workflow task; the real server drops
    # it: tests/test_refused_updates.py counts zero events there.)
    added = [EventType.Name(e.event_type) for e in (await h.fetch_history()).events[events_before:]]
    assert not [e for e in added if "UPDATE" in e], added
    assert (await h.query(Rectification.status)).history == before.history
    await assert_replays(h, ALL_WORKFLOWS)


async def test_a_refusal_in_the_step_leaves_only_the_refusal(env, pool, receiver):
    """The registry changed after the case read it (the operator was deactivated): the step's
    transaction refuses, the case is as it was, and only the refusal is on record."""
    await pool.execute("INSERT INTO operators (id, party, name, roles, active) VALUES "
                       "('临时经办人', $1, '临时经办人', '{clerk}', true) ON CONFLICT (id) DO UPDATE SET active = true",
                       UNIT)
    inp, h = await start_rectification(env)
    await pool.execute("UPDATE operators SET active = false WHERE id = '临时经办人'")
    before = await h.query(Rectification.status)
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await h.execute_update(Rectification.submit_report,
                               {"operator": "临时经办人", "agency": UNIT, "measures": "已整改"})
    assert "已停用" in str(info.value.cause)
    after = await h.query(Rectification.status)
    assert (after.stage, after.history, after.deadlines) == (before.stage, before.history, before.deadlines)
    assert "reported" not in [r["event"] for r in await ledger(pool, inp.problem_no)]
    refusals = await pool.fetch("SELECT operator, allowed FROM authorization_log WHERE workflow_id = $1",
                                h.id)
    assert [(r["operator"], r["allowed"]) for r in refusals] == [("临时经办人", False)]
    assert not [r for r in receiver.events("rectification.reported") if r.body["data"]["problem_no"] == inp.problem_no]

    st = await h.execute_update(Rectification.submit_report, {**ME, "measures": "已补正听证告知书"})
    assert st.stage == "reported"
    rows = await ledger(pool, inp.problem_no)
    assert [r["seq"] for r in rows] == list(range(len(rows)))  # the refused step took no number
    assert rows[-1]["event"] == "reported" and rows[-1]["actor"] == "王晓东"
    allowed = await pool.fetchval("SELECT count(*) FROM authorization_log WHERE workflow_id = $1 AND allowed", h.id)
    assert allowed == 1
    await wait_for(lambda: any(r.body["data"]["problem_no"] == inp.problem_no
                               for r in receiver.events("rectification.reported")))
    await assert_replays(h, ALL_WORKFLOWS)


async def test_the_provisional_calendar_is_announced_once_per_year(env, pool):
    """Deadlines in years without an official holiday schedule (here 2027 and 2028) are
    announced to law_office once per year, whatever the number of deadlines computed."""
    inp, h = await start_rectification(env, due_on=date(2027, 3, 1), due_in_working_days=None)
    await h.execute_update(Rectification.extend_deadline,
                           {**SUPERVISOR, "new_due_on": "2027-04-01", "reason": "涉及多部门协调"})
    await h.execute_update(Rectification.extend_deadline,
                           {**SUPERVISOR, "new_due_on": "2028-02-01", "reason": "需修订地方规范"})
    warnings = [r for r in await ledger(pool, inp.problem_no) if r["event"] == "calendar.provisional"]
    assert [r["data"]["years"] for r in warnings] == ["2027", "2028"]
    await assert_replays(h, ALL_WORKFLOWS)


async def test_a_reminder_never_falls_before_its_deadline_starts(env):
    """Five working days' notice of a one-working-day deadline would fall before the duty even
    began: the reminder is clamped to the start, for every deadline of every case."""
    environment, tq = env
    clue_no = f"K{uuid.uuid4().hex[:8]}"
    start = ClueStart.model_validate({
        "clue_no": clue_no, "route": "to_law_office", "source": "court", "channel": "judgment_enforcement",
        "importance": "important", "discovered_on": datetime.now(CHINA).date().isoformat(),
        "subject_unit": UNIT, "title": "执行中发现行政处罚程序违法", "reported_by": "杨帆",
        "timings": {"acknowledge_working_days": 1, "handling_working_days": 1, "remind_working_days_before": 5},
    })
    h = await environment.client.start_workflow(ClueTransfer.run, start, id=f"clue-{clue_no}", task_queue=tq)
    await h.execute_update(ClueTransfer.transfer, {"operator": "杨帆", "agency": "court"})
    st: ClueStatus = await h.execute_update(ClueTransfer.acknowledge, {"operator": "李娜", "agency": "law_office"})
    started = {e.action: e.at for e in st.history}
    for d, began in (("acknowledge", started["transferred"]), ("handling", started["acknowledged"])):
        deadline = next(x for x in st.deadlines if x.name == d)
        assert deadline.remind_at.astimezone(CHINA).date() >= began.astimezone(CHINA).date(), d
    await h.execute_update(ClueTransfer.report_result, {"operator": "李娜", "agency": "law_office",
                                                        "outcome": "unsubstantiated", "summary": "经核查不属实"})
    assert (await h.result()).stage == "concluded"
    assert isinstance(await h.result(), ClueResult)
    await assert_replays(h, ALL_WORKFLOWS)


async def test_notes_reach_the_ledger_and_status_keeps_the_latest(env, pool):
    inp, h = await start_rectification(env)
    await asyncio.gather(*(h.signal(Rectification.add_note, Note(operator="王晓东", text=f"进展 {i}"))
                           for i in range(250)))
    await wait_for_async(lambda: h.query(Rectification.status), lambda s: s.notes == 250)

    async def notes() -> int:
        return sum(1 for r in await ledger(pool, inp.problem_no) if r["event"] == "note")

    await wait_for_async(notes, lambda n: n == 250)
    st: RectificationStatus = await h.query(Rectification.status)
    rows = await ledger(pool, inp.problem_no)
    assert len(st.history) == case.HISTORY_KEPT and st.history_total == len(rows)  # the ledger has all
    assert st.history[-1].note.startswith("进展")
    texts = {r["data"]["note"] for r in await ledger(pool, inp.problem_no) if r["event"] == "note"}
    assert texts == {f"进展 {i}" for i in range(250)}
    await assert_replays(h, ALL_WORKFLOWS)


async def runs_of(client, workflow_id: str) -> list:
    """The histories of every run of a workflow, last to first (following continue-as-new back)."""
    histories = [await client.get_workflow_handle(workflow_id).fetch_history()]
    while True:
        first = histories[-1].events[0]
        assert first.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
        previous = first.workflow_execution_started_event_attributes.continued_execution_run_id
        if not previous:
            return histories
        histories.append(await client.get_workflow_handle(workflow_id, run_id=previous).fetch_history())


async def test_five_thousand_notes_keep_each_run_bounded_and_deadlines_on_time(env, pool):
    """A rectification that receives 5,000 notes continues as new: every run stays far below
    Temporal's history limits, the status query answers throughout, and the deadline still
    fires at its time."""
    environment, _ = env
    inp, h = await start_rectification(env, due_in_working_days=20)
    for chunk in range(0, 5000, 250):
        await asyncio.gather(*(h.signal(Rectification.add_note, Note(operator="王晓东", text=f"n{i}"))
                               for i in range(chunk, chunk + 250)))
    await wait_for_async(lambda: h.query(Rectification.status), lambda s: s.notes == 5000, timeout=300)

    async def recorded() -> int:
        return await pool.fetchval("SELECT count(*) FROM ledger_events WHERE subject_kind='rectification' "
                                   "AND subject_id=$1 AND event='note'", inp.problem_no)

    await wait_for_async(recorded, lambda n: n == 5000, timeout=300)
    st = await h.query(Rectification.status)
    assert st.stage == "rectifying" and st.notes == 5000 and len(st.history) == case.HISTORY_KEPT
    histories = await runs_of(environment.client, h.id)
    print(f"5,000 notes: {len(histories)} runs of {[len(x.events) for x in reversed(histories)]} events")
    assert len(histories) >= 2, "the case continued as new"
    assert max(len(x.events) for x in histories) < 10_000, [len(x.events) for x in histories]

    due_at = st.deadlines[0].due_at
    await environment.sleep(due_at - await environment.get_current_time() + timedelta(minutes=5))
    await wait_for_async(lambda: h.query(Rectification.status), lambda s: s.deadlines[0].overdue, timeout=60)
    overdue = [r for r in await ledger(pool, inp.problem_no) if r["event"] == "overdue"]
    assert len(overdue) == 1 and abs(overdue[0]["occurred_at"] - due_at) < timedelta(minutes=1)
    seqs = [r["seq"] for r in await ledger(pool, inp.problem_no)]
    assert seqs == list(range(len(seqs)))  # one numbering across every run
    st = await h.execute_update(Rectification.submit_report, {**ME, "measures": "已整改"})
    assert st.stage == "reported"
