"""UnitInspection on the time-skipping server with real activities, PostgreSQL and receiver:
each step of the inspection chain, both deadlines, findings → rectifications and discipline
clues, joint feedback, special inspections opened by clues. Every test replays its history."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError

from schemas import ids
from schemas.inspection import InspectionStatus
from workflows.catalog import ALL_WORKFLOWS
from workflows.clue_transfer import ClueTransfer
from workflows.rectification import Rectification
from workflows.unit_inspection import UnitInspection

from .support import assert_replays, wait_for, wait_for_async

UNIT = "market_regulation"
TEAM = {"operator": "李娜", "agency": "law_office"}
ME = {"operator": "王晓东", "agency": UNIT}


async def start(env, *, unit: str = UNIT, kind: str = "routine", lead: str = "coordination_group",
                trigger: dict | None = None, **extra) -> tuple[str, object]:
    environment, tq = env
    year = (await environment.get_current_time()).year
    wid = ids.inspection(year, kind, f"{unit}-t{uuid.uuid4().hex[:6]}")  # a fresh id for each test
    inp = {"unit": unit, "year": year, "kind": kind, "lead": lead,
           "trigger": trigger or {"type": "request", "ref": "督察通知〔2026〕1号"},
           "areas": ["admin_enforcement", "admin_approval"], "focus": [], **extra}
    handle = await environment.client.start_workflow(UnitInspection.run, inp, id=wid, task_queue=tq)
    await wait_for_async(lambda: status(handle), lambda s: len(s.deadlines) == 2)
    return wid, handle


async def status(handle) -> InspectionStatus:
    return await handle.query(UnitInspection.status)


async def act(handle, update: Callable[..., Awaitable[InspectionStatus]], /, **arg) -> InspectionStatus:
    return await handle.execute_update(update, arg)


async def events(pool, wid: str) -> list[str]:
    rows = await pool.fetch("SELECT event FROM ledger_events WHERE subject_kind='inspection' "
                            "AND subject_id=$1 ORDER BY seq", wid)
    return [r["event"] for r in rows if r["event"] != "calendar.provisional"]


def mine(receiver, wid: str, type_: str) -> set[str]:
    return {r.recipient for r in receiver.events(type_) if r.body["workflow_id"] == wid}


async def drive_to_evaluation(h, *, team=TEAM, findings=()) -> None:
    await act(h, UnitInspection.submit_self_inspection, **ME, summary="已对照清单自查，发现2个问题并整改", problems_found=2)
    await act(h, UnitInspection.record_method, **team, method="hear_report", summary="听取局长汇报")
    await act(h, UnitInspection.record_method, **team, method="review_case_files", summary="评查行政处罚案卷30卷", count=30)
    for f in findings:
        await act(h, UnitInspection.record_finding, **team, **f)
    await act(h, UnitInspection.evaluate, **team, score=78.5, grade="pass", comments="执法程序总体规范，文书质量有待提高")


FINDING = {"description": "3卷行政处罚案卷缺少听证告知书", "category": "执法程序", "list": "individual",
           "basis": "《行政处罚法》第六十三条"}
MISCONDUCT = {"description": "执法人员对同类违法行为处罚畸轻畸重", "category": "执法公正", "list": "common",
              "severity": "serious", "suspected_misconduct": True,
              "misconduct_note": "执法人员张某涉嫌滥用职权", "opinion": "规范自由裁量，开展警示教育"}


async def test_full_chain_starts_rectifications_and_a_discipline_clue(env, pool, receiver):
    environment, _ = env
    wid, h = await start(env)
    st = await status(h)
    assert st.stage == "self_inspection" and st.responsible == UNIT
    await drive_to_evaluation(h, findings=[FINDING, MISCONDUCT])
    st = await act(h, UnitInspection.issue_feedback, **TEAM, opinion="请逐项整改，按期报告", due_in_working_days=20,
                   bulletin="西法督通〔2026〕3号")
    assert st.stage == "completed" and st.responsible is None
    result = await h.result()
    assert (result.findings, len(result.rectifications), len(result.clues)) == (2, 2, 1)
    stem = wid.removeprefix(ids.INSPECTION).replace("-routine-", "-R-")
    assert result.rectifications == [ids.rectification(f"{stem}-1"), ids.rectification(f"{stem}-2")]
    for n, rid in enumerate(result.rectifications, 1):
        r = await environment.client.get_workflow_handle(rid).query(Rectification.status)
        assert (r.problem_no, r.unit, r.origin.kind, r.origin.ref) == (f"{stem}-{n}", UNIT, "inspection", wid)
        assert r.stage == "rectifying" and r.deadlines
    second = environment.client.get_workflow_handle(result.rectifications[1])
    assert (await second.query(Rectification.status)).list == "common"
    clue_handle = environment.client.get_workflow_handle(result.clues[0])
    await wait_for_async(lambda: clue_handle.query(ClueTransfer.status), lambda c: c.stage == "transferred")
    clue = await clue_handle.query(ClueTransfer.status)
    assert (clue.route, clue.source, clue.subject_unit) == ("to_discipline", "coordination_group", UNIT)
    assert await events(pool, wid) == [
        "started", "self_inspection.submitted", "method.recorded", "method.recorded", "finding.recorded",
        "finding.recorded", "evaluated", "feedback_issued"]
    row = await pool.fetchrow("SELECT * FROM inspections WHERE workflow_id=$1", wid)
    assert (row["stage"], row["findings"], row["rectifications"], row["clues"], row["score"]) == (
        "completed", 2, 2, 1, 78.5)
    methods = await pool.fetch("SELECT method, count FROM inspection_methods WHERE workflow_id=$1 ORDER BY n", wid)
    assert [(m["method"], m["count"]) for m in methods] == [("hear_report", None), ("review_case_files", 30)]
    found = await pool.fetch("SELECT * FROM inspection_findings WHERE workflow_id=$1 ORDER BY n", wid)
    assert [f["rectification_id"] for f in found] == result.rectifications
    assert [f["clue_id"] for f in found] == [None, result.clues[0]]
    assert found[1]["misconduct_note"] == MISCONDUCT["misconduct_note"]
    assert found[0]["opinion"] == "请逐项整改，按期报告", "the feedback's opinion fills in"
    ev = await pool.fetchrow("SELECT score, grade, year FROM inspection_evaluations WHERE workflow_id=$1", wid)
    assert (ev["score"], ev["grade"]) == (78.5, "pass")
    await wait_for(lambda: mine(receiver, wid, "inspection.feedback_issued") == {UNIT})
    assert mine(receiver, wid, "inspection.started") == {UNIT, "coordination_group"}
    feedback = next(r for r in receiver.events("inspection.feedback_issued") if r.body["workflow_id"] == wid)
    assert feedback.body["data"]["findings"] == 2 and feedback.verified
    assert "张某" not in str(feedback.body), "misconduct details stay in the ledger and the clue"
    await assert_replays(h, ALL_WORKFLOWS)


async def test_self_inspection_reminder_then_missed_moves_to_joint_inspection(env, pool, receiver):
    environment, _ = env
    wid, h = await start(env)
    d = (await status(h)).deadlines[0]
    assert d.name == "self_inspection"
    await environment.sleep(d.due_at - await environment.get_current_time() + timedelta(minutes=1))
    await wait_for_async(lambda: status(h), lambda s: s.stage == "joint_inspection")
    st = await status(h)
    assert st.self_inspection_missed and st.responsible == "coordination_group"
    rows = await pool.fetch("SELECT event, occurred_at FROM ledger_events WHERE subject_kind='inspection' "
                            "AND subject_id=$1", wid)
    at = {r["event"]: r["occurred_at"] for r in rows}
    assert d.remind_at <= at["self_inspection.due_soon"] < d.due_at
    assert d.due_at <= at["self_inspection.missed"] < d.due_at + timedelta(minutes=5)
    await wait_for(lambda: mine(receiver, wid, "inspection.overdue") == {UNIT, "coordination_group", "law_office"})
    assert mine(receiver, wid, "inspection.due_soon") == {UNIT}
    # Too late for the unit now.
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await h.execute_update(UnitInspection.submit_self_inspection, {**ME, "summary": "迟交的自查报告"})
    assert re.search("联动检查|joint_inspection", str(info.value.cause))
    assert (await pool.fetchval("SELECT self_inspection_missed FROM inspections WHERE workflow_id=$1", wid))
    await assert_replays(h, ALL_WORKFLOWS)


async def test_team_deadline_overdue_is_reported_to_law_office_and_lead(env, pool, receiver):
    environment, _ = env
    wid, h = await start(env, timings={"team_working_days": 15, "self_inspection_working_days": 5})
    await act(h, UnitInspection.submit_self_inspection, **ME, summary="自查完毕")
    team = next(d for d in (await status(h)).deadlines if d.name == "team")
    await environment.sleep(team.due_at - await environment.get_current_time() + timedelta(minutes=1))
    await wait_for_async(lambda: status(h), lambda s: s.light == "red")
    st = await status(h)
    assert next(d for d in st.deadlines if d.name == "team").overdue
    await wait_for(lambda: mine(receiver, wid, "inspection.overdue") == {"law_office", "coordination_group"})
    assert mine(receiver, wid, "inspection.due_soon") == {"law_office", "coordination_group"}
    assert await pool.fetchval("SELECT overdue FROM inspections WHERE workflow_id=$1", wid)
    # Past the grace period the team is not escalated to 纪委监委: on record only.
    await environment.sleep(team.escalate_at - await environment.get_current_time() + timedelta(minutes=1))
    await wait_for_async(lambda: events(pool, wid), lambda e: "team.still_overdue" in e)
    escalations = [e for r in receiver.received if (e := ids.parse_escalation(r.body["workflow_id"]))]
    assert not [e for e in escalations if e.parent == wid]
    # The team still finishes.
    await act(h, UnitInspection.record_method, **TEAM, method="onsite_check", summary="现场检查执法窗口")
    await act(h, UnitInspection.evaluate, **TEAM, score=90, grade="good")
    await act(h, UnitInspection.issue_feedback, **TEAM, opinion="未发现问题，继续保持")
    result = await h.result()
    assert (result.stage, result.findings, result.rectifications) == ("completed", 0, [])
    assert await events(pool, wid) == ["started", "self_inspection.submitted", "team.due_soon", "team.overdue",
                                       "team.still_overdue", "method.recorded", "evaluated", "feedback_issued"]
    await assert_replays(h, ALL_WORKFLOWS)


@pytest.mark.parametrize(("lead", "clue_source"), [("discipline", "law_office"), ("tour_office", "tour_office")])
async def test_joint_inspection_feeds_back_together_with_the_lead(env, receiver, lead, clue_source):
    environment, _ = env
    team = {"operator": {"discipline": "刘洋", "tour_office": "孙丽"}[lead], "agency": lead}
    wid, h = await start(env, unit="natural_resources", kind="joint", lead=lead,
                         trigger={"type": "tour" if lead == "tour_office" else "request", "ref": "联合检查"})
    await act(h, UnitInspection.submit_self_inspection, operator="刘海燕", agency="natural_resources", summary="自查报告")
    await act(h, UnitInspection.record_method, **team, method="visit_public", summary="走访群众20人", count=20)
    await act(h, UnitInspection.record_method, **TEAM, method="random_test", summary="随机抽考执法人员5名", count=5)
    await act(h, UnitInspection.record_finding, **team, **MISCONDUCT)
    await act(h, UnitInspection.evaluate, **team, score=65, grade="fail")
    await act(h, UnitInspection.issue_feedback, **team, opinion="限期整改")
    result = await h.result()
    clue_handle = environment.client.get_workflow_handle(result.clues[0])
    await wait_for_async(lambda: clue_handle.query(ClueTransfer.status), lambda c: bool(c.history))
    clue = await clue_handle.query(ClueTransfer.status)
    assert clue.source == clue_source and clue.route == "to_discipline"
    await wait_for(lambda: mine(receiver, wid, "inspection.feedback_issued") == {"natural_resources", lead})
    body = next(r for r in receiver.events("inspection.feedback_issued") if r.body["workflow_id"] == wid).body
    assert body["data"]["joint_with"] == lead and "联合反馈" in body["data"]["summary"]
    await assert_replays(h, ALL_WORKFLOWS)


@pytest.mark.parametrize(
    ("stage", "update", "arg", "message"),
    [
        ("self_inspection", UnitInspection.submit_self_inspection, {"operator": "x", "agency": "transport", "summary": "代报"},
         "market_regulation"),
        ("self_inspection", UnitInspection.record_method, {**TEAM, "method": "onsite_check", "summary": "现场"}, "部门自查|stage"),
        ("joint_inspection", UnitInspection.record_method, {**ME, "method": "onsite_check", "summary": "自己检查"}, "law_office"),
        ("joint_inspection", UnitInspection.record_method, {**TEAM, "method": "guess", "summary": "猜"}, "method"),
        ("joint_inspection", UnitInspection.evaluate, {**TEAM, "score": 80, "grade": "good"}, "method"),
        ("joint_inspection", UnitInspection.record_finding, {**TEAM, **MISCONDUCT, "misconduct_note": ""}, "misconduct_note"),
        ("joint_inspection", UnitInspection.issue_feedback, {**TEAM, "opinion": "整改"}, "联动检查|stage"),
        ("evaluation", UnitInspection.issue_feedback, {**TEAM, "opinion": "整改", "due_on": "2020-01-06"}, "after today|晚于今天"),
        ("evaluation", UnitInspection.evaluate, {**TEAM, "score": 120, "grade": "good"}, "score"),
    ],
)
async def test_wrong_agency_stage_or_field_is_refused_and_changes_nothing(env, stage, update, arg, message):
    _, h = await start(env)
    if stage != "self_inspection":
        await act(h, UnitInspection.submit_self_inspection, **ME, summary="自查")
    if stage == "evaluation":
        await act(h, UnitInspection.record_method, **TEAM, method="hear_report", summary="听取汇报")
        await act(h, UnitInspection.evaluate, **TEAM, score=80, grade="good")
    before = await status(h)
    assert before.stage == stage
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await h.execute_update(update, arg)  # raw JSON: the workflow's own validation answers
    assert re.search(message, str(info.value.cause)), str(info.value.cause)
    after = await status(h)
    assert (after.stage, after.history, after.methods, after.findings) == (
        before.stage, before.history, before.methods, before.findings)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"unit": "no_such_unit"}, "no_such_unit"),
        ({"kind": "joint", "lead": "law_office"}, "discipline or tour_office"),
        ({"kind": "special", "trigger": {"type": "annual", "ref": ""}}, "annual"),
        ({"methods": []}, "methods"),
    ],
)
async def test_bad_start_fails_with_a_clear_message(env, overrides, message):
    environment, tq = env
    inp = {"unit": UNIT, "year": 2026, "kind": "routine", "lead": "coordination_group",
           "trigger": {"type": "request", "ref": ""}, **overrides}
    wid = ids.inspection(2026, "routine", f"{UNIT}-bad{uuid.uuid4().hex[:6]}")
    handle = await environment.client.start_workflow(UnitInspection.run, inp, id=wid, task_queue=tq)
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert re.search(message, str(info.value.cause)), str(info.value.cause)


async def test_refusal_to_rectify_opens_the_special_inspection(env, pool):
    environment, tq = env
    no = f"R{uuid.uuid4().hex[:8]}"
    h = await environment.client.start_workflow(
        Rectification.run, {"problem_no": no, "unit": "taxation", "origin": {"kind": "manual"},
                            "list": "individual", "category": "执法程序", "description": "逾期未整改的问题",
                            "opinion": "立即整改", "due_in_working_days": 1, "issued_by": "李娜",
                            "timings": {"remind_working_days_before": 0, "grace_working_days": 1}},
        id=ids.rectification(no), task_queue=tq)
    await wait_for_async(lambda: h.query(Rectification.status), lambda s: bool(s.deadlines))
    d = (await h.query(Rectification.status)).deadlines[0]
    await environment.sleep(d.escalate_at - await environment.get_current_time() + timedelta(minutes=1))
    await wait_for_async(lambda: h.query(Rectification.status), lambda s: s.escalated)
    st = await h.query(Rectification.status)
    special = next(link.workflow_id for link in st.links if link.relation == "special_inspection")
    year = (await environment.get_current_time()).year
    assert special in {ids.inspection(year, "special", "taxation", n) for n in range(1, 10)}
    inspection = environment.client.get_workflow_handle(special)
    await wait_for_async(lambda: inspection.query(UnitInspection.status), lambda s: bool(s.deadlines))
    s = await inspection.query(UnitInspection.status)
    assert (s.kind, s.lead, s.trigger.type, s.trigger.ref, s.focus) == (
        "special", "law_office", "refusal", ids.rectification(no), [no])
    await assert_replays(h, ALL_WORKFLOWS)
    await assert_replays(inspection, ALL_WORKFLOWS)
