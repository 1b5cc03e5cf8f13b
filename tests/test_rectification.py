"""Rectification on the time-skipping server with real activities, PostgreSQL and receiver."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

import pytest
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError

from schemas import ids
from schemas.rectification import RectificationStart, RectificationStatus
from workflows.catalog import ALL_WORKFLOWS
from workflows.clue_transfer import ClueTransfer
from workflows.rectification import Rectification

from .support import assert_replays, run_cli, wait_for, wait_for_async

CHINA = timezone(timedelta(hours=8))
TEAM = {"operator": "李娜", "agency": "law_office"}
UNIT = "market_regulation"
ME = {"operator": "王晓东", "agency": UNIT}


def problem(**overrides) -> dict:
    base = {
        "problem_no": f"P{uuid.uuid4().hex[:8]}", "unit": UNIT,
        "origin": {"kind": "inspection", "ref": "inspection-2026-routine-market_regulation"},
        "list": "individual", "category": "执法程序", "description": "行政处罚案卷缺少听证告知书",
        "basis": "《行政处罚法》第六十三条", "opinion": "补正听证告知程序，完善案卷", "due_in_working_days": 10,
        "lookback_after_days": 30, "severity": "general", "issued_by": "李娜",
    }
    base.update(overrides)
    return base


async def start(env, **overrides):
    environment, tq = env
    inp = RectificationStart.model_validate(problem(**overrides))
    handle = await environment.client.start_workflow(
        Rectification.run, inp, id=ids.rectification(inp.problem_no), task_queue=tq)
    await wait_for_async(lambda: status(handle), lambda s: bool(s.deadlines))
    return inp, handle


async def status(handle) -> RectificationStatus:
    return await handle.query(Rectification.status)


Update = Callable[..., Awaitable[RectificationStatus]]


async def act(handle, update: Update, /, **arg) -> RectificationStatus:
    return await handle.execute_update(update, arg)


async def refused(handle, update: Update, /, **arg) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await handle.execute_update(update, arg)
    return str(info.value.cause)


# Incidental to when a test runs (the shared time-skipping clock moves on): a deadline in a year
# without an official calendar, or a year end passing during a look-back wait.
INCIDENTAL = {"calendar.provisional", "carried_over"}


async def timeline(pool, problem_no: str) -> list[str]:
    rows = await pool.fetch("SELECT event FROM ledger_events WHERE subject_kind='rectification' "
                            "AND subject_id=$1 ORDER BY seq", problem_no)
    return [r["event"] for r in rows if r["event"] not in INCIDENTAL]


async def skip_to(environment, handle, stage: str, at: datetime) -> None:
    await environment.sleep(at - await environment.get_current_time() + timedelta(minutes=1))
    await wait_for_async(lambda: status(handle), lambda s: s.stage == stage)


async def test_accepted_first_time_then_lookback_pass_closes(env, pool, receiver):
    environment, _ = env
    inp, h = await start(env)
    await act(h, Rectification.submit_report, **ME, measures="已补正听证告知书并组织培训", evidence=["附件1.pdf"])
    st = await act(h, Rectification.review, **TEAM, decision="accept")
    assert st.stage == "accepted" and st.lookback_due_at
    await skip_to(environment, h, "lookback", datetime.fromisoformat(st.lookback_due_at))
    st = await act(h, Rectification.record_lookback, **TEAM, result="pass", findings="抽查案卷规范")
    assert st.stage == "closed"
    result = await h.result()
    assert (result.stage, result.reopened, result.escalated) == ("closed", 0, False)
    assert await timeline(pool, inp.problem_no) == ["required", "reported", "accepted", "lookback_due", "closed"]
    row = await pool.fetchrow("SELECT * FROM rectifications WHERE problem_no=$1", inp.problem_no)
    assert row["stage"] == "closed" and row["closed_at"] and row["opinion"] == inp.opinion
    await wait_for(lambda: any(r.type == "rectification.closed" and r.recipient == UNIT
                               and r.body["data"]["problem_no"] == inp.problem_no for r in receiver.received))
    required = [r for r in receiver.received if r.type == "rectification.required"
                and r.body["data"]["problem_no"] == inp.problem_no]
    assert {r.recipient for r in required} == {UNIT, "law_office"}
    assert required[0].body["data"]["opinion"] == inp.opinion, "point-to-point feedback carries the opinion"
    await assert_replays(h, ALL_WORKFLOWS)


async def test_rejected_then_accepted(env, pool):
    environment, _ = env
    inp, h = await start(env)
    first_due = (await status(h)).deadlines[0].due_on
    await act(h, Rectification.submit_report, **ME, measures="已整改")
    st = await act(h, Rectification.review, **TEAM, decision="reject", reason="证据不足")
    assert st.stage == "rectifying" and st.deadlines[0].due_on != first_due
    await act(h, Rectification.submit_report, **ME, measures="补充证据", evidence=["照片.zip"])
    st = await act(h, Rectification.review, **TEAM, decision="accept")
    await skip_to(environment, h, "lookback", datetime.fromisoformat(st.lookback_due_at))
    await act(h, Rectification.record_lookback, **TEAM, result="pass", findings="已整改到位")
    assert (await h.result()).stage == "closed"
    assert await timeline(pool, inp.problem_no) == [
        "required", "reported", "rejected", "reported", "accepted", "lookback_due", "closed"]
    await assert_replays(h, ALL_WORKFLOWS)


async def test_lookback_fail_reopens_then_closes(env, pool):
    environment, _ = env
    inp, h = await start(env)
    await act(h, Rectification.submit_report, **ME, measures="已整改")
    st = await act(h, Rectification.review, **TEAM, decision="accept")
    await skip_to(environment, h, "lookback", datetime.fromisoformat(st.lookback_due_at))
    st = await act(h, Rectification.record_lookback, **TEAM, result="fail", findings="问题反弹")
    assert st.stage == "rectifying" and st.reopened == 1
    await act(h, Rectification.submit_report, **ME, measures="再次整改")
    st = await act(h, Rectification.review, **TEAM, decision="accept")
    # An early look-back is allowed too.
    st = await act(h, Rectification.record_lookback, **TEAM, result="pass", findings="巩固成果")
    result = await h.result()
    assert (result.stage, result.reopened) == ("closed", 1)
    assert (await pool.fetchval("SELECT reopened FROM rectifications WHERE problem_no=$1", inp.problem_no)) == 1
    await assert_replays(h, ALL_WORKFLOWS)


async def test_ignored_past_deadline_escalates_to_special_inspection_and_discipline(env, pool, receiver):
    environment, _ = env
    inp, h = await start(env, due_in_working_days=3)
    d = (await status(h)).deadlines[0]
    await environment.sleep(d.escalate_at - await environment.get_current_time() + timedelta(minutes=1))
    await wait_for_async(lambda: status(h), lambda s: s.escalated)
    st = await status(h)
    relations = {link.relation: link.workflow_id for link in st.links}
    special = ids.parse_inspection(relations["special_inspection"])
    assert special is not None and (special.kind, special.unit_and_suffix) == ("special", UNIT)
    assert ids.parse_escalation(relations["escalated_to"]) == ids.Escalation(ids.rectification(inp.problem_no), 1)
    child = environment.client.get_workflow_handle(relations["escalated_to"])
    clue = await child.query(ClueTransfer.status)
    assert (clue.route, clue.subject_unit, clue.stage) == ("to_discipline", UNIT, "transferred")
    rows = await pool.fetch("SELECT event, occurred_at FROM ledger_events WHERE subject_kind='rectification' "
                            "AND subject_id=$1", inp.problem_no)
    at = {r["event"]: r["occurred_at"] for r in rows}
    assert d.remind_at <= at["due_soon"] < d.due_at
    assert d.due_at <= at["overdue"] < d.due_at + timedelta(minutes=5)
    assert d.escalate_at <= at["escalated"] < d.escalate_at + timedelta(minutes=5)
    assert (at["escalated"] - timedelta(minutes=5)).astimezone(CHINA).date() == d.escalate_on
    await wait_for(lambda: {r.recipient for r in receiver.received if r.type == "rectification.escalated"
                            and r.body["data"]["problem_no"] == inp.problem_no} == {UNIT, "law_office", "discipline"})
    overdue = [r for r in receiver.received if r.type == "rectification.overdue"
               and r.body["data"]["problem_no"] == inp.problem_no]
    assert {r.recipient for r in overdue} == {UNIT, "law_office"} and "分管领导" in overdue[0].body["data"]["summary"]
    row = await pool.fetchrow("SELECT escalated, overdue, light FROM rectifications WHERE problem_no=$1", inp.problem_no)
    assert (row["escalated"], row["overdue"], row["light"]) == (True, True, "red")
    # The unit can still rectify late.
    await act(h, Rectification.submit_report, **ME, measures="迟延整改")
    await assert_replays(h, ALL_WORKFLOWS)


async def test_extension_within_and_beyond_the_limit(env):
    inp, h = await start(env, timings={"max_extensions": 1})
    d = (await status(h)).deadlines[0]
    st = await act(h, Rectification.extend_deadline, **TEAM, new_due_on=(d.due_on + timedelta(days=30)).isoformat(),
                   reason="涉及多部门")
    assert st.deadlines[0].due_on >= d.due_on + timedelta(days=30) and st.deadlines[0].extensions == 1
    reason = await refused(h, Rectification.extend_deadline, **TEAM, new_due_on=(d.due_on + timedelta(days=60)).isoformat(),
                           reason="再次延期")
    assert re.search("上限|limit", reason), reason
    assert re.search("law_office", await refused(h, Rectification.extend_deadline, **ME,
                                                  new_due_on=(d.due_on + timedelta(days=60)).isoformat(),
                                                  reason="单位自行延期"))
    await assert_replays(h, ALL_WORKFLOWS)


async def test_open_problem_is_carried_over_at_year_end(env, pool, receiver):
    environment, _ = env
    now = (await environment.get_current_time()).astimezone(CHINA)
    inp, h = await start(env, due_in_working_days=None, due_on=f"{now.year + 1}-06-30")
    new_year = datetime(now.year + 1, 1, 1, tzinfo=CHINA)
    await environment.sleep(new_year - await environment.get_current_time() + timedelta(hours=1))
    await wait_for_async(lambda: status(h), lambda s: s.carried_over == 1)
    row = await pool.fetchrow("SELECT carried_over, stage FROM rectifications WHERE problem_no=$1", inp.problem_no)
    assert (row["carried_over"], row["stage"]) == (1, "rectifying")
    await wait_for(lambda: any(r.type == "rectification.carried_over" and r.body["data"]["problem_no"] == inp.problem_no
                               for r in receiver.received))
    await assert_replays(h, ALL_WORKFLOWS)


@pytest.mark.parametrize(
    ("update", "arg", "message"),
    [
        (Rectification.submit_report, {"operator": "x", "agency": "transport", "measures": "别的单位代报"}, "market_regulation"),
        (Rectification.review, {**TEAM, "decision": "accept"}, "stage|整改中"),
        (Rectification.review, {**ME, "decision": "accept"}, "law_office"),
        (Rectification.submit_report, {**ME}, "measures"),
        (Rectification.record_lookback, {**TEAM, "result": "maybe", "findings": "??"}, "result"),
    ],
)
async def test_bad_updates_are_refused_and_change_nothing(env, update, arg, message):
    _, h = await start(env)
    before = await status(h)
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await h.execute_update(update, arg)  # raw JSON: the workflow's own validation answers
    assert re.search(message, str(info.value.cause)), str(info.value.cause)
    after = await status(h)
    new_actions = [e.action for e in after.history if e not in before.history]
    assert after.stage == before.stage and set(new_actions) <= INCIDENTAL, new_actions


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"unit": "no_such_unit"}, "no_such_unit"),
        ({"due_on": "2026-01-05"}, "exactly one|之一"),
        ({"due_in_working_days": None, "due_on": "2020-01-06"}, "past|早于今天"),
        ({"list": "secret"}, "list"),
    ],
)
async def test_bad_start_fails_with_a_clear_message(env, overrides, message):
    environment, tq = env
    handle = await environment.client.start_workflow(
        Rectification.run, problem(**overrides), id=ids.rectification(f"bad-{uuid.uuid4().hex[:6]}"), task_queue=tq)
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert re.search(message, str(info.value.cause)), str(info.value.cause)


async def test_bulletin_and_ledger_match_the_ledger_rows(env, pool, db_url, receiver, tmp_path):
    """Runs last in this module: every problem above is in the bulletin and the ledger export."""
    import csv
    import io
    import os

    environment, tq = env
    rows = await pool.fetch("SELECT * FROM rectifications")
    assert rows, "earlier tests created problems"
    since = min(r["required_at"] for r in rows).astimezone(CHINA).date()
    until = max(r["required_at"] for r in rows).astimezone(CHINA).date()
    cli_env = {**os.environ, "DUCHA_DATABASE_URL": db_url, "DUCHA_TASK_QUEUE": tq,
               "DUCHA_TEMPORAL_ADDRESS": environment.client.service_client.config.target_host,
               "DUCHA_CALLBACK_ALLOWLIST": '["127.0.0.1"]'}
    code, _, err = await run_cli("bulletin", "--from", since.isoformat(), "--to", until.isoformat(),
                                 "--out", str(tmp_path / "bulletin"), env=cli_env)
    assert code == 0, err
    md = (tmp_path / "bulletin.md").read_text(encoding="utf-8")
    page = (tmp_path / "bulletin.html").read_text(encoding="utf-8")
    assert "共性问题清单" in md and "个性问题清单" in md and "<table>" in page
    for r in rows:
        assert r["problem_no"] in md and r["problem_no"] in page
    # The per-unit line agrees with the ledger's own counts.
    unit_rows = [r for r in rows if r["unit"] == UNIT]
    name = await pool.fetchval("SELECT name FROM parties WHERE code=$1", UNIT)
    expected = (f"| {name} | {len(unit_rows)} | {sum(r['missed_deadlines'] == 0 for r in unit_rows)} "
                f"| {sum(r['missed_deadlines'] > 0 for r in unit_rows)} | {sum(r['escalated'] for r in unit_rows)} "
                f"| {sum(r['stage'] == 'closed' for r in unit_rows)} | {sum(r['stage'] != 'closed' for r in unit_rows)} |")
    assert expected in md, md
    assert sum(r["escalated"] for r in unit_rows) >= 1, "the escalation test's problem is counted"
    await wait_for(lambda: any(r.type == "bulletin.published" and r.recipient == UNIT for r in receiver.received))

    code, out, err = await run_cli("ledger", "--status", "closed", "--csv", env=cli_env)
    assert code == 0, err
    closed = list(csv.DictReader(io.StringIO(out)))
    assert {c["problem_no"] for c in closed} == {r["problem_no"] for r in rows if r["stage"] == "closed"}
    assert all("closed" in c["timeline"] and "required" in c["timeline"] for c in closed)
    code, _, err = await run_cli("ledger", "--status", "lost", env=cli_env)
    assert code == 2 and "--status" in err
