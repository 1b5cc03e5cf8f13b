"""The service's worker runs workflow code without the SDK's sandbox (workers.worker.workflow_runner,
DUCHA_WORKFLOW_SANDBOX=false by default: docs/benchmarks.md, "the sandbox"). Every other test worker
and every replay still runs it sandboxed. What stands in for the sandbox's two guards in the service:

1. Restrictions: no workflow module calls the clock, randomness, I/O or the environment, or imports a
   module that does (checked in the source; a planted call is caught).
2. Isolation: running cases on the production worker changes no state that runs share (every module
   and class attribute of the workflow modules is the same after a clue and a rectification ran
   through; a changed attribute is caught).
"""

from __future__ import annotations

import ast
import copy
import enum
import sys
import types
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities import build_activities
from activities.calendar import CalendarActivities
from config.settings import PROJECT_ROOT
from schemas.clue import ClueStart, Stage
from workers.worker import build_worker, workflow_runner
from workflows.clue_transfer import ClueTransfer
from workflows.rectification import Rectification

from .conftest import make_settings
from .support import wait_for_async

WORKFLOW_DIR = PROJECT_ROOT / "workflows"
CHINA = timezone(timedelta(hours=8))

# What the sandbox refuses at run time, refused in the source instead.
FORBIDDEN_IMPORTS = {"random", "secrets", "time", "os", "sys", "socket", "subprocess", "threading",
                     "multiprocessing", "urllib", "http", "asyncpg", "httpx", "requests", "structlog",
                     "logging", "tempfile", "shutil", "pathlib", "io"}
FORBIDDEN_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
                   ("uuid", "uuid1"), ("uuid", "uuid4"), ("asyncio", "to_thread"),
                   ("asyncio", "get_event_loop"), ("asyncio", "get_running_loop")}
FORBIDDEN_BUILTINS = {"open", "input", "print", "exec", "eval", "breakpoint"}


def forbidden_calls(source: str) -> list[str]:
    """Each place in `source` that reads the clock, randomness, I/O or the environment."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] in FORBIDDEN_IMPORTS]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in FORBIDDEN_IMPORTS:
                found.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in FORBIDDEN_BUILTINS:
                found.append(f"line {node.lineno}: {f.id}()")
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in FORBIDDEN_CALLS:
                found.append(f"line {node.lineno}: {f.value.id}.{f.attr}()")
    return found


def test_the_service_worker_runs_unsandboxed_and_sandboxed_on_request(db_url):
    assert isinstance(workflow_runner(make_settings(db_url)), UnsandboxedWorkflowRunner)
    assert isinstance(workflow_runner(make_settings(db_url, workflow_sandbox=True)), SandboxedWorkflowRunner)


@pytest.mark.parametrize("path", sorted(WORKFLOW_DIR.glob("*.py")), ids=lambda p: p.name)
def test_workflow_code_reads_no_clock_randomness_io_or_environment(path: Path):
    assert forbidden_calls(path.read_text()) == [], (
        f"{path.name}: use workflow.now() / workflow.random() / workflow.uuid4() / an activity instead")


def test_the_source_check_catches_what_the_sandbox_would():
    planted = ("import random\nfrom os import environ\nfrom datetime import datetime\nimport uuid\n"
               "def f():\n    datetime.now()\n    uuid.uuid4()\n    open('x')\n")
    assert len(forbidden_calls(planted)) == 5, forbidden_calls(planted)


# --- isolation: no shared state changes ------------------------------------------------------

PLAIN = (str, int, float, bool, bytes, type(None), enum.Enum, timedelta)


def shared_state() -> dict[str, object]:
    """A deep copy of every data attribute of the workflow modules and of the classes defined in
    them (what every run of an unsandboxed worker shares)."""
    out: dict[str, object] = {}

    def keep(name: str, value: object) -> None:
        if isinstance(value, types.MappingProxyType):
            value = dict(value)
        if isinstance(value, BaseModel):
            out[name] = value.model_dump()
        elif isinstance(value, (*PLAIN, dict, list, set, frozenset, tuple)):
            out[name] = copy.deepcopy(value)

    for mod_name, mod in sorted(sys.modules.items()):
        if not (mod_name == "workflows" or mod_name.startswith("workflows.")):
            continue
        for attr, value in vars(mod).items():
            if isinstance(value, type) and value.__module__ == mod_name:
                for cattr, cvalue in vars(value).items():
                    if not cattr.startswith("__"):
                        keep(f"{mod_name}.{attr}.{cattr}", cvalue)
            elif not attr.startswith("__"):
                keep(f"{mod_name}.{attr}", value)
    return out


def test_the_isolation_check_sees_a_changed_attribute(monkeypatch):
    before = shared_state()
    monkeypatch.setitem(ClueTransfer.STAGE_NAMES, Stage.REGISTERED, "被改动")
    assert shared_state() != before


async def test_cases_on_the_production_worker_change_no_shared_state(ts_env, pool, app_pool, db_url, receiver):
    """A clue through its whole lifecycle and a rectification through report and acceptance, on
    the worker `build_worker` makes (unsandboxed): the workflow modules' shared state is the same."""
    task_queue = f"runner-{uuid.uuid4().hex[:8]}"
    settings = make_settings(db_url, task_queue=task_queue, callback_allowlist=["127.0.0.1"])
    await CalendarActivities(pool, settings).load_dir(settings.calendar_dir)
    before = shared_state()
    async with httpx.AsyncClient() as http:
        worker = build_worker(ts_env.client, app_pool, settings, http, task_queue=task_queue,
                              activities=build_activities(app_pool, settings, ts_env.client, http))
        assert isinstance(worker._workflow_worker._workflow_runner, UnsandboxedWorkflowRunner)  # noqa: SLF001
        async with worker:
            clue_no = f"R{uuid.uuid4().hex[:8]}"
            clue = await ts_env.client.start_workflow(ClueTransfer.run, ClueStart.model_validate({
                "clue_no": clue_no, "route": "to_law_office", "source": "court",
                "channel": "judgment_enforcement", "importance": "important",
                "discovered_on": datetime.now(CHINA).date(), "subject_unit": "market_regulation",
                "title": "执行中发现行政处罚程序违法", "details": "（线索内容）", "reported_by": "杨帆"}),
                id=f"clue-{clue_no}", task_queue=task_queue)
            await clue.execute_update(ClueTransfer.transfer, {"operator": "杨帆", "agency": "court"})
            await clue.execute_update(ClueTransfer.acknowledge, {"operator": "李娜", "agency": "law_office"})
            await clue.execute_update(ClueTransfer.report_result, {
                "operator": "李娜", "agency": "law_office", "outcome": "substantiated", "summary": "经核查属实"})
            assert (await clue.result()).outcome == "substantiated"

            problem_no = f"R{uuid.uuid4().hex[:8]}"
            rect = await ts_env.client.start_workflow(Rectification.run, {
                "problem_no": problem_no, "unit": "market_regulation",
                "origin": {"kind": "inspection", "ref": "inspection-2026-routine-market_regulation"},
                "list": "individual", "category": "执法程序", "description": "行政处罚案卷缺少听证告知书",
                "opinion": "补正听证告知程序", "due_in_working_days": 10, "issued_by": "李娜"},
                id=f"rectification-{problem_no}", task_queue=task_queue)
            await wait_for_async(lambda: rect.query(Rectification.status), lambda s: bool(s.deadlines))
            await rect.signal(Rectification.add_note, {"operator": "王晓东", "text": "已安排专人整改"})
            await rect.execute_update(Rectification.submit_report, {
                "operator": "王晓东", "agency": "market_regulation", "measures": "已补正听证告知书"})
            status = await rect.query(Rectification.status)
            assert status.stage == "reported", status.stage
    assert shared_state() == before
