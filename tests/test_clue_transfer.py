"""ClueTransfer on the time-skipping server with real activities (PostgreSQL, calendar, signed
callbacks to a real receiver on 127.0.0.1). Every test replays its workflow's history."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta, timezone

import pytest
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy

from schemas import ids
from schemas.clue import ClueStart, ClueStatus
from schemas.digest import DigestStart
from workflows.catalog import ALL_WORKFLOWS
from workflows.clue_digest import MonthlyClueDigest
from workflows.clue_transfer import ClueTransfer

from .conftest import make_settings
from .support import assert_replays, wait_for, wait_for_async

CHINA = timezone(timedelta(hours=8))


def start_input(today: date, **overrides) -> ClueStart:
    base = dict(
        clue_no=f"T{uuid.uuid4().hex[:8]}", route="to_law_office", source="court",
        channel="judgment_enforcement", importance="important", discovered_on=today.isoformat(),
        subject_unit="market_regulation", title="执行中发现行政处罚程序违法",
        details="机密内容：某执法人员……", reported_by="杨帆",
    )
    base.update(overrides)
    return ClueStart.model_validate(base)


async def start(env, **overrides):
    environment, tq = env
    inp = start_input(await server_today(environment), **overrides)
    handle = await environment.client.start_workflow(
        ClueTransfer.run, inp, id=ids.clue(inp.clue_no), task_queue=tq,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )
    await wait_for_stage_deadline(handle)  # registration recorded
    return inp, handle


async def status(handle) -> ClueStatus:
    return await handle.query(ClueTransfer.status)


async def update(handle, method: Callable[..., Awaitable[ClueStatus]], /, **arg) -> ClueStatus:
    return await handle.execute_update(method, arg)


async def server_today(environment) -> date:
    """Today on the test server's clock (which moves on as tests skip time)."""
    return (await environment.get_current_time()).astimezone(CHINA).date()


async def refused(handle, method: Callable[..., Awaitable[ClueStatus]], /, **arg) -> str:
    """Send an update that must be refused; return the operator-facing reason."""
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await handle.execute_update(method, arg)
    return str(info.value.cause)


async def ledger_events(pool, clue_no: str) -> list[str]:
    """The clue's timeline, without the warning that depends on which years have an official
    calendar loaded when the test runs."""
    rows = await pool.fetch(
        "SELECT event FROM ledger_events WHERE subject_kind='clue' AND subject_id=$1 ORDER BY seq", clue_no
    )
    return [r["event"] for r in rows if r["event"] != "calendar.provisional"]


# --- every route end to end ------------------------------------------------------------------


async def test_route_a_court_to_law_office_concludes_and_requests_special_inspection(env, pool, receiver):
    inp, h = await start(env)
    await update(h, ClueTransfer.transfer, operator="杨帆", agency="court")
    await update(h, ClueTransfer.acknowledge, operator="李娜", agency="law_office")
    st = await update(h, ClueTransfer.report_result, operator="李娜", agency="law_office", outcome="substantiated",
                      summary="经核查属实", open_special_inspection=True)
    assert st.stage == "concluded" and st.special_inspection_requested
    result = await h.result()
    assert result.stage == "concluded" and result.outcome == "substantiated"
    year = (await server_today(env[0])).year
    assert [link.workflow_id for link in result.links] == [ids.inspection(year, "special", "market_regulation")]
    assert await ledger_events(pool, inp.clue_no) == ["registered", "transferred", "acknowledged", "concluded"]
    row = await pool.fetchrow("SELECT * FROM clues WHERE clue_no=$1", inp.clue_no)
    assert row["stage"] == "concluded" and row["special_inspection_requested"]
    assert row["details"] == inp.details, "details are kept in the ledger"
    await wait_for(lambda: len([r for r in receiver.received if inp.clue_no in str(r.body)]) >= 6)
    mine = [r for r in receiver.received if r.body.get("data", {}).get("clue_no") == inp.clue_no]
    got = {(r.type, r.recipient) for r in mine}
    assert {("clue.registered", "court"), ("clue.transferred", "law_office"),
            ("clue.acknowledged", "court"), ("clue.concluded", "court"),
            ("clue.concluded", "law_office")} <= got
    assert all(r.verified for r in mine), "every callback carries a valid signature"
    assert not any("机密" in str(r.body) for r in mine), "clue details never leave the ledger"
    await assert_replays(h, ALL_WORKFLOWS)


async def test_route_c_discipline_to_justice_feeds_back_to_discipline(env, receiver):
    inp, h = await start(env, route="to_justice", source="discipline", channel="supervision_review",
                         importance="routine", subject_unit="natural_resources")
    await update(h, ClueTransfer.transfer, operator="刘洋", agency="discipline")
    await update(h, ClueTransfer.acknowledge, operator="吴敏", agency="justice")
    await update(h, ClueTransfer.report_result, operator="吴敏", agency="justice", outcome="partly_substantiated",
                 summary="依行政执法监督程序调查，部分属实")
    assert (await h.result()).stage == "concluded"
    await wait_for(lambda: any(r.type == "clue.concluded" and r.recipient == "discipline"
                               and r.body["data"]["clue_no"] == inp.clue_no for r in receiver.received))
    feedback = next(r for r in receiver.received if r.type == "clue.concluded"
                    and r.recipient == "discipline" and r.body["data"]["clue_no"] == inp.clue_no)
    assert "反馈" in feedback.body["data"]["summary"]
    await assert_replays(h, ALL_WORKFLOWS)


async def test_route_b_inspection_to_discipline(env):
    _, h = await start(env, route="to_discipline", source="law_office", channel="inspection",
                       subject_unit="urban_management")
    st = await update(h, ClueTransfer.transfer, operator="李娜", agency="law_office")
    assert st.stage == "transferred" and st.responsible == "discipline"
    await update(h, ClueTransfer.acknowledge, operator="刘洋", agency="discipline")
    await update(h, ClueTransfer.report_result, operator="刘洋", agency="discipline", outcome="substantiated",
                 summary="已立案审查")
    assert (await h.result()).stage == "concluded"
    await assert_replays(h, ALL_WORKFLOWS)


# --- deadlines -----------------------------------------------------------------------------


async def test_untouched_important_clue_reminds_goes_overdue_and_escalates_to_discipline(env, pool, receiver):
    environment, _ = env
    inp, h = await start(env)
    st = await status(h)
    transfer = st.deadlines[0]
    assert transfer.name == "transfer" and st.light == "green"
    # The 5-working-day deadline ends at 24:00 Asia/Shanghai on its day.
    assert transfer.due_at == datetime.combine(transfer.due_on + timedelta(days=1), datetime.min.time(), CHINA)
    # Skip past the reminder: yellow.
    await environment.sleep(transfer.remind_at - await environment.get_current_time() + timedelta(minutes=1))
    await wait_for(lambda: any(r.type == "clue.due_soon" and r.body["data"]["clue_no"] == inp.clue_no
                               for r in receiver.received))
    assert (await status(h)).light == "yellow"
    # Past the deadline: red, overdue to the court and law_office.
    await environment.sleep(transfer.due_at - await environment.get_current_time() + timedelta(minutes=1))
    await wait_for(lambda: {r.recipient for r in receiver.received if r.type == "clue.overdue"
                            and r.body["data"]["clue_no"] == inp.clue_no} == {"court", "law_office"})
    st = await status(h)
    assert st.light == "red" and st.deadlines[0].overdue and not st.deadlines[0].escalated
    # Past the grace period: escalated to the discipline commission with a linked clue.
    await environment.sleep(transfer.escalate_at - await environment.get_current_time() + timedelta(minutes=1))
    await wait_for(lambda: any(r.type == "clue.escalated" and r.recipient == "discipline"
                               and r.body["data"]["clue_no"] == inp.clue_no for r in receiver.received))
    st = await status(h)
    assert st.deadlines[0].escalated and st.links[0].relation == "escalated_to"
    child = environment.client.get_workflow_handle(st.links[0].workflow_id)
    child_status = await status(child)
    assert (child_status.route, child_status.source, child_status.stage, child_status.subject_unit) == (
        "to_discipline", "law_office", "transferred", "court")
    # The steps happened at their planned instants, not before.
    rows = await pool.fetch(
        "SELECT event, occurred_at FROM ledger_events WHERE subject_kind='clue' AND subject_id=$1", inp.clue_no)
    at = {r["event"]: r["occurred_at"] for r in rows}
    assert transfer.remind_at <= at["transfer.due_soon"] < transfer.remind_at + timedelta(minutes=5)
    assert transfer.due_at <= at["transfer.overdue"] < transfer.due_at + timedelta(minutes=5)
    assert transfer.escalate_at <= at["transfer.escalated"] < transfer.escalate_at + timedelta(minutes=5)
    # Escalation fires as the last grace working day ends (24:00 of escalate_on).
    assert (at["transfer.escalated"] - timedelta(minutes=5)).astimezone(CHINA).date() == transfer.escalate_on
    row = await pool.fetchrow("SELECT overdue, escalations, light FROM clues WHERE clue_no=$1", inp.clue_no)
    assert (row["overdue"], row["escalations"], row["light"]) == (True, 1, "red")
    # The duty is still owed: transferring late still works and ends the red light.
    st = await update(h, ClueTransfer.transfer, operator="杨帆", agency="court", note="迟延移送")
    assert st.stage == "transferred" and st.light == "green"
    await assert_replays(h, ALL_WORKFLOWS)


async def test_deadline_across_national_day_2026(env):
    # Discovered Mon 2026-09-28; working days after it: 9/29, 9/30, (10/1-10/7 holiday),
    # 10/8, 10/9, Sat 10/10 (make-up working day) -> due 2026-10-10.
    _, h = await start(env, discovered_on="2026-09-28")
    await wait_for_stage_deadline(h)
    st = await status(h)
    d = st.deadlines[0]
    assert d.due_on == date(2026, 10, 10) and not d.provisional
    # 5 more working days of grace: 10/12..10/16 -> escalation on Fri 2026-10-16 (long past now).
    assert d.escalate_on == date(2026, 10, 16)
    assert d.escalate_at == datetime(2026, 10, 17, tzinfo=CHINA)  # 24:00 at the end of 10-16
    await wait_for_async(lambda: status(h), lambda s: s.deadlines[0].escalated)
    await assert_replays(h, ALL_WORKFLOWS)


@pytest.mark.parametrize(
    ("discovered", "due"),
    [
        # Sun 2026-05-10 is a rest day (the make-up day was Sat 05-09): moved to Mon 05-11.
        ("2026-04-20", date(2026, 5, 11)),
        # Sat 2026-10-10 is a make-up working day after National Day: it stays.
        ("2026-09-15", date(2026, 10, 10)),
    ],
)
async def test_routine_clue_is_due_on_the_tenth_of_next_month(env, discovered, due):
    _, h = await start(env, importance="routine", discovered_on=discovered)
    await wait_for_stage_deadline(h)
    d = (await status(h)).deadlines[0]
    assert d.due_on == due and not d.provisional
    await update(h, ClueTransfer.withdraw, operator="杨帆", agency="court", reason="测试完毕")
    await assert_replays(h, ALL_WORKFLOWS)


async def test_extension_by_law_office_moves_the_deadline(env, receiver):
    inp, h = await start(env)
    before = (await status(h)).deadlines[0]
    new_date = before.due_on + timedelta(days=20)
    st = await update(h, ClueTransfer.extend_deadline, operator="李娜", agency="law_office",
                      new_due_on=new_date.isoformat(), reason="案情复杂")
    after = st.deadlines[0]
    assert after.due_on >= new_date and after.extensions == 1
    assert re.search("law_office|依法治县办", await refused(
        h, ClueTransfer.extend_deadline, operator="杨帆", agency="court",
        new_due_on=(new_date + timedelta(days=5)).isoformat(), reason="想延期"))
    assert re.search("after|晚于", await refused(
        h, ClueTransfer.extend_deadline, operator="李娜", agency="law_office",
        new_due_on=before.due_on.isoformat(), reason="提前"))
    await wait_for(lambda: any(r.type == "clue.deadline_extended" and r.body["data"]["clue_no"] == inp.clue_no
                               for r in receiver.received))
    await update(h, ClueTransfer.withdraw, operator="杨帆", agency="court", reason="测试完毕")
    await assert_replays(h, ALL_WORKFLOWS)


async def test_withdraw_before_transfer_only(env, pool):
    inp, h = await start(env)
    st = await update(h, ClueTransfer.withdraw, operator="杨帆", agency="court", reason="重复登记")
    assert st.stage == "withdrawn"
    assert (await h.result()).stage == "withdrawn"
    assert await ledger_events(pool, inp.clue_no) == ["registered", "withdrawn"]
    _, h2 = await start(env)
    await update(h2, ClueTransfer.transfer, operator="杨帆", agency="court")
    assert re.search("withdraw|撤回", await refused(
        h2, ClueTransfer.withdraw, operator="杨帆", agency="court", reason="太晚了"))
    await assert_replays(h, ALL_WORKFLOWS)


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_update", "arg", "message"),
    [
        (ClueTransfer.acknowledge, {"operator": "李娜", "agency": "law_office"}, "stage|待移送"),  # wrong stage
        (ClueTransfer.transfer, {"operator": "李娜", "agency": "law_office"}, "court|县人民法院"),  # wrong agency
        (ClueTransfer.transfer, {"agency": "court"}, "operator"),  # missing field
        (ClueTransfer.transfer, {"operator": "杨帆", "agency": "court", "colour": "red"}, "colour"),  # unknown field
        (ClueTransfer.report_result, {"operator": "李娜", "agency": "law_office", "outcome": "maybe",
                                      "summary": "x"}, "outcome"),  # bad enum
        (ClueTransfer.extend_deadline, {"operator": "李娜", "agency": "law_office", "new_due_on": "31/12/2026",
                                        "reason": "日期格式"}, "new_due_on"),  # bad date
        (ClueTransfer.withdraw, "not an object", "validation|Withdraw"),
    ],
)
async def test_bad_updates_are_refused_and_change_nothing(env, pool, bad_update, arg, message):
    inp, h = await start(env)
    await wait_for_stage_deadline(h)
    before = await status(h)
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await h.execute_update(bad_update, arg)  # raw JSON: the workflow's own validation answers
    assert re.search(message, str(info.value.cause)), str(info.value.cause)
    after = await status(h)
    new_actions = [e.action for e in after.history if e not in before.history]
    assert after.stage == before.stage and set(new_actions) <= {"calendar.provisional"}, new_actions
    # Still healthy: a valid action goes through.
    await update(h, ClueTransfer.withdraw, operator="杨帆", agency="court", reason="测试完毕")
    assert (await h.result()).stage == "withdrawn"
    assert await ledger_events(pool, inp.clue_no) == ["registered", "withdrawn"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"subject_unit": "no_such_unit"}, "no_such_unit"),
        ({"source": "procuratorate", "route": "to_justice", "channel": "supervision_review"}, "source"),
        ({"discovered_on": "2099-01-01"}, "future|晚于今天"),
    ],
)
async def test_bad_start_fails_at_once_with_a_clear_message(env, overrides, message):
    environment, tq = env
    base = start_input(await server_today(environment)).model_dump(mode="json")
    base.update(overrides)
    # Sent as raw JSON, as the Web UI does, so the workflow's own validation is exercised.
    handle = await environment.client.start_workflow(
        ClueTransfer.run, base, id=ids.clue(f"bad-{uuid.uuid4().hex[:6]}"), task_queue=tq)
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert re.search(message, str(info.value.cause)), str(info.value.cause)


# --- monthly digest --------------------------------------------------------------------------


async def test_monthly_digest_sends_one_callback_per_source(env, receiver):
    environment, tq = env
    # All three are due on Thu 2026-12-10.
    a, ha = await start(env, importance="routine", discovered_on="2026-11-02")
    b, hb = await start(env, importance="routine", discovered_on="2026-11-16")
    c, hc = await start(env, importance="routine", discovered_on="2026-11-05", route="to_justice",
                        source="discipline", channel="supervision_review")
    for h in (ha, hb, hc):
        await wait_for_stage_deadline(h)
    digest = await environment.client.start_workflow(
        MonthlyClueDigest.run, DigestStart(month="2026-12"), id=f"digest-{uuid.uuid4().hex[:6]}",
        task_queue=tq)
    run = await digest.result()
    await assert_replays(digest, ALL_WORKFLOWS)
    assert run.sources_notified >= 2 and run.clues_listed >= 3
    await wait_for(lambda: any(r.type == "clue.monthly_digest" and r.recipient == "discipline"
                               for r in receiver.received))
    court = [r for r in receiver.received if r.type == "clue.monthly_digest" and r.recipient == "court"]
    assert len({r.webhook_id for r in court}) == 1
    assert {a.clue_no, b.clue_no} <= set(court[0].body["data"]["clue_nos"])
    for h in (ha, hb):
        await update(h, ClueTransfer.withdraw, operator="杨帆", agency="court", reason="测试完毕")
    await update(hc, ClueTransfer.withdraw, operator="刘洋", agency="discipline", reason="测试完毕")


# --- helpers ---------------------------------------------------------------------------------


async def wait_for_stage_deadline(handle) -> None:
    await wait_for_async(lambda: status(handle), lambda s: bool(s.deadlines))


async def test_loading_an_official_year_recomputes_provisional_deadlines(env, pool, receiver):
    """Runs last in this module: it loads a (made-up) official schedule for a future year."""
    from activities.calendar import CalendarActivities, CalendarFile
    from workers.recompute import recompute_provisional

    environment, _ = env
    today = await server_today(environment)
    far = today.year + 3  # no official schedule ships for it: provisional
    inp, h = await start(env, importance="routine", discovered_on=today.isoformat())
    # Make the routine deadline fall in the far year: extend it there first.
    await update(h, ClueTransfer.extend_deadline, operator="李娜", agency="law_office",
                 new_due_on=f"{far}-03-10", reason="测试暂定日历")
    d = (await status(h)).deadlines[0]
    assert d.provisional and d.due_on.year == far
    # The official notice (made up for the test) declares that day and the next a holiday.
    official = CalendarFile.model_validate({
        "year": far, "source": "测试用通知",
        "days": [{"date": d.due_on.isoformat(), "workday": False, "name": "测试假日"},
                 {"date": (d.due_on + timedelta(days=1)).isoformat(), "workday": False, "name": "测试假日"}],
    })
    settings = make_settings("postgresql://unused")
    await CalendarActivities(pool, settings).load_year(official)
    signalled, _ = await recompute_provisional(pool, environment.client)
    assert signalled >= 1
    await wait_for_async(lambda: status(h), lambda s: s.deadlines[0].due_on != d.due_on)
    after = (await status(h)).deadlines[0]
    assert not after.provisional and after.due_on > d.due_on + timedelta(days=1)
    row = await pool.fetchrow("SELECT due_on, provisional FROM clues WHERE clue_no=$1", inp.clue_no)
    assert (row["due_on"], row["provisional"]) == (after.due_on, False)
    await wait_for(lambda: any(r.type == "clue.deadline_recomputed" and r.body["data"]["clue_no"] == inp.clue_no
                               for r in receiver.received))
    await assert_replays(h, ALL_WORKFLOWS)


async def test_operators_must_be_registered_for_the_agency_they_act_for(env, pool):
    """Refused by the update's validator, from the case's copy of the registry: before the
    update is accepted, so nothing is recorded (tests/test_refused_updates.py counts the events)."""
    _, h = await start(env)
    reason = await refused(h, ClueTransfer.transfer, operator="张三", agency="court")
    assert "不是" in reason and "is not a registered operator of court" in reason
    reason = await refused(h, ClueTransfer.transfer, operator="吴敏", agency="court")  # a justice operator
    assert "is not a registered operator of court" in reason
    reason = await refused(h, ClueTransfer.transfer, operator="李娜", agency="court")  # law_office's, a party of the clue
    assert "belongs to law_office" in reason
    st = await status(h)
    assert st.stage == "registered"
    assert await pool.fetchval("SELECT count(*) FROM authorization_log WHERE workflow_id=$1", h.id) == 0
    await update(h, ClueTransfer.transfer, operator="陈国华", agency="court")  # the court's leader may
    assert await pool.fetchval("SELECT count(*) FROM authorization_log WHERE workflow_id=$1 AND allowed", h.id) == 1
    await assert_replays(h, ALL_WORKFLOWS)
