"""Part 5b, the sandbox: what each workflow module imports, what the sandbox imports again for every
new workflow run, and how long the same histories take to replay with the default sandboxed
runner, with the project's own modules passed through, and without the sandbox.

Replaying recorded histories measures only the worker's workflow code path (activation, sandbox,
the workflow's Python), with no server and no activity in the way: the histories are the
ClueTransfer runs of the overhead part and the CallbackDelivery runs of the callbacks part (the
deliveries whose first attempt failed).
"""

from __future__ import annotations

import asyncio
import collections
import importlib._bootstrap_external as bootstrap_external
import json
import subprocess
import sys
import time

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.worker.workflow_sandbox._importer import Importer

from bench.stack import say
from config.settings import PROJECT_ROOT

PROJECT_PACKAGES = ("workflows", "schemas", "rules", "activities")
IO_LIBRARIES = ("asyncpg", "httpx", "httpcore", "structlog", "cryptography", "yaml", "holidays", "psutil")
WORKFLOW_MODULES = ("workflows.clue_transfer", "workflows.callback_delivery", "workflows.rectification",
                    "workflows.unit_inspection", "workflows.annual_round", "workflows.clue_digest",
                    "workflows.risk_scan")


def module_imports() -> list[dict]:
    """For each workflow module, in a fresh interpreter: the modules importing it loads."""
    code = ("import json, sys; before = set(sys.modules); import importlib; importlib.import_module(sys.argv[1]); "
            "print(json.dumps(sorted(set(sys.modules) - before)))")
    out = []
    for name in WORKFLOW_MODULES:
        try:
            proc = subprocess.run([sys.executable, "-c", code, name], cwd=PROJECT_ROOT, capture_output=True,
                                  text=True, timeout=120, check=True)
        except (subprocess.SubprocessError, OSError):
            continue
        mods = json.loads(proc.stdout.strip().splitlines()[-1])
        tops = collections.Counter(m.split(".")[0] for m in mods)
        out.append({
            "module": name, "modules": len(mods),
            "project": sorted(m for m in mods if m.split(".")[0] in PROJECT_PACKAGES),
            "io_libraries": sorted(t for t in tops if t in IO_LIBRARIES),
            "top_packages": dict(tops.most_common(12)),
        })
    return out


class _ExecCounter:
    """Counts modules executed (imported afresh) while a sandbox's importer is active."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._orig = bootstrap_external._LoaderBasics.exec_module

    def __enter__(self) -> _ExecCounter:
        orig, counts = self._orig, self.counts

        def exec_module(loader, module):
            if Importer.current_importer() is not None:
                counts[module.__name__] += 1
            return orig(loader, module)

        bootstrap_external._LoaderBasics.exec_module = exec_module
        return self

    def __exit__(self, *exc: object) -> None:
        bootstrap_external._LoaderBasics.exec_module = self._orig


def runners() -> dict:
    passthrough = SandboxRestrictions.default.with_passthrough_modules(*PROJECT_PACKAGES)
    return {
        "sandboxed (default)": SandboxedWorkflowRunner(),
        "sandboxed, project modules passed through": SandboxedWorkflowRunner(restrictions=passthrough),
        "unsandboxed": UnsandboxedWorkflowRunner(),
    }


async def replay(histories: list[WorkflowHistory], runner, count_imports: bool = False) -> tuple[float, dict]:
    from workflows.catalog import ALL_WORKFLOWS

    replayer = Replayer(workflows=ALL_WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=runner)
    await replayer.replay_workflow(histories[0])  # warm: first imports, caches
    counter = _ExecCounter()

    async def each():
        for h in histories:
            yield h

    t0 = time.perf_counter()
    if count_imports:
        with counter:
            result = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    else:
        result = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    wall = time.perf_counter() - t0
    failures = {k: str(v)[:200] for k, v in result.replay_failures.items()}
    return wall / len(histories), {"executed": dict(counter.counts.most_common()), "failures": failures}


async def collect_histories(n: int = 20) -> dict[str, list[WorkflowHistory]]:
    """ClueTransfer histories of n lifecycles (when the overhead part did not run in this
    process; their callbacks are delivered at publish, so there are no CallbackDelivery runs)."""
    import uuid

    from bench.overhead import Driver, _drain, _histories
    from bench.stack import WorkerProcess, stack

    async with stack("sandbox") as st:
        assert st.client is not None
        tq = f"bench-sb-{uuid.uuid4().hex[:6]}"
        worker = await WorkerProcess(st, {"mode": "full", "task_queue": tq}).start()
        try:
            driver = Driver(st.client, {"real": tq}, None)
            await driver.run("real", n, 10)
            await _drain(st)
            return {"ClueTransfer": await _histories(st.client, driver.ids["real"], n)}
        finally:
            await worker.stop()


async def run(histories: dict[str, list[WorkflowHistory]]) -> dict:
    out: dict = {"imports": await asyncio.to_thread(module_imports), "replay": {}}
    say(f"sandbox: module imports of {len(out['imports'])} workflow modules listed")
    for wf, hs in histories.items():
        if not hs:
            continue
        row: dict = {"histories": len(hs)}
        for label, runner in runners().items():
            per, info = await replay(hs, runner, count_imports=label == "sandboxed (default)")
            row[label] = {"ms_per_run": 1000 * per, "failures": len(info["failures"])}
            if info["executed"]:
                per_run = {k: v / len(hs) for k, v in info["executed"].items()}
                row["modules_executed_per_run"] = round(sum(per_run.values()), 1)
                row["modules_executed"] = sorted(k for k, v in per_run.items() if v >= 0.5)
        base = row["unsandboxed"]["ms_per_run"]
        for label in runners():
            row[label]["vs_unsandboxed"] = row[label]["ms_per_run"] / base if base else None
        out["replay"][wf] = row
        say(f"sandbox: {wf} replay {row['sandboxed (default)']['ms_per_run']:.1f} ms sandboxed, "
            f"{row['sandboxed, project modules passed through']['ms_per_run']:.1f} ms with the project's "
            f"modules passed through, {base:.1f} ms unsandboxed; "
            f"{row.get('modules_executed_per_run', 0)} modules imported again per run")
    return out
