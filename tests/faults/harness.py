"""The fault-injection harness (docs/reliability.md).

One stack per scenario, on 127.0.0.1 only and under the scenario's own temp dir: an embedded
PostgreSQL, a file-backed headless Temporal dev server, the worker as a child process
(`python -m workers.cli worker`, so it can be SIGKILLed), and, in the test process, a
misbehaving callback receiver and the Temporal client that plays the operators. Cases are clues
and rectifications driven through their updates idempotently (a fixed update id per action,
retried until an overall bound, "already done" counts as done). `verify` then checks every
outcome from four independent sources: workflow results, the PostgreSQL ledger, the receiver's
own log and the workflows' Temporal histories.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
from pydantic import BaseModel
from temporalio.api.enums.v1 import EventType as HistoryEventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHistory,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError

from activities.calendar import CalendarActivities
from activities.registry import RegistryStore
from config.chain_key import ChainKey
from config.settings import PROJECT_ROOT, Settings
from config.yaml_file import load_yaml_model
from schemas import ids
from schemas.callbacks import AttemptResult, DeliveryInput, DeliveryOutput
from schemas.clue import ClueStart
from schemas.rectification import RectificationStart
from schemas.registry import RegistryFile
from workers.db import create_pool
from workers.embedded import EmbeddedPostgres, TemporalDevServer, free_port
from workers.migrate import migrate_dsn
from workflows.clue_transfer import ClueTransfer
from workflows.rectification import Rectification

from ..support import run_cli
from .receiver import HANG, Answer, FaultReceiver

DEMO_REGISTRY = PROJECT_ROOT / "data" / "registry" / "demo-county.yaml"
CHINA = timezone(timedelta(hours=8))

# The delivery schedule every scenario runs with (DUCHA_CALLBACK_RETRY_SCHEDULE). It never
# decreases, so gaps between logged attempts have a simple lower bound; its third wait (2 s) is
# shorter than the receiver's Retry-After (3 s), so honouring Retry-After is visible; its tail
# (8+16+32+64 s) outlasts a 30 s PostgreSQL outage and a few attempts lost to SIGKILLs.
SCHEDULE: list[float] = [0, 2, 2, 2, 8, 16, 32, 64]
CALLBACK_TIMEOUT_SECONDS = 2
RETRY_AFTER_SECONDS = 3
# What the receiver answers to the 1st, 2nd, 3rd… request of every delivery.
RECEIVER_PLAN: list[Answer] = [500, HANG, (429, RETRY_AFTER_SECONDS), 204]

# Bounds: generous, because the machine is small and shared. Nothing asserts on speed.
WORKER_READY_SECONDS = 180.0
DRIVE_SECONDS = 600.0  # one update or start, retried until this
SETTLE_SECONDS = 600.0  # every delivery done after the drivers finish
RPC_SECONDS = 20.0
TIMER_TOLERANCE_SECONDS = 0.001  # float rounding of protobuf timestamps

BUSINESS_TIMER_EVENTS = ("due_soon", "overdue", "escalated", "carried_over", "lookback_due")

# Every scenario's report; conftest.py prints the total at the end of the session.
REPORTS: list[ScenarioReport] = []


def say(message: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the worker process --------------------------------------------------------------------


class WorkerProcess:
    """`python -m workers.cli worker` (the `ducha worker` command) in its own session."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def _spawn(self) -> subprocess.Popen:
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "workers.cli", "worker"], cwd=PROJECT_ROOT, env=self.env,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )

    async def start(self) -> None:
        """Start the worker and wait until it says it polls."""
        mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = self._spawn()
        self.starts += 1
        deadline = time.monotonic() + WORKER_READY_SECONDS
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.tail(mark)}")
            if "worker started" in self.tail(mark):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker not ready in {WORKER_READY_SECONDS:.0f}s:\n{self.tail(mark)}")
            await asyncio.sleep(0.2)

    def tail(self, since: int = 0) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")[-4000:]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def kill(self) -> None:
        """SIGKILL: no graceful shutdown, in-flight tasks are simply lost."""
        assert self.proc is not None and self.alive(), "worker is not running"
        os.kill(self.proc.pid, signal.SIGKILL)
        await asyncio.to_thread(self.proc.wait, 30)

    async def stop(self) -> None:
        if self.proc is None or not self.alive():
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(self.proc.wait, 30)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            await asyncio.to_thread(self.proc.wait, 30)


# --- the stack -----------------------------------------------------------------------------


@dataclass
class FaultStack:
    root: Path
    pg: EmbeddedPostgres
    temporal: TemporalDevServer
    pool: asyncpg.Pool
    client: Client
    receiver: FaultReceiver
    worker: WorkerProcess
    env: dict[str, str]
    task_queue: str
    faults: Counter = field(default_factory=Counter)
    stats: Counter = field(default_factory=Counter)

    # faults ------------------------------------------------------------------------------

    async def kill_worker(self) -> None:
        await self.worker.kill()
        self.faults["worker SIGKILL"] += 1

    async def restart_temporal(self, down_seconds: float) -> None:
        """SIGTERM the dev server, leave it down, start it again on the same SQLite file."""
        await asyncio.to_thread(self.temporal.stop)
        self.faults["dev server stop+restart"] += 1
        await asyncio.sleep(down_seconds)
        await asyncio.to_thread(self.temporal.start, 180, self.root / "temporal.log")

    async def postgres_outage(self, seconds: float) -> None:
        """Fast shutdown of PostgreSQL (sessions are cut), `seconds` down, then start it again."""
        started = time.monotonic()
        await asyncio.to_thread(self.pg.stop)
        self.faults[f"PostgreSQL down {seconds:.0f}s"] += 1
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))
        self.stats["postgres down (measured s)"] = round(time.monotonic() - started)
        await asyncio.to_thread(self.pg.start, 120)

    async def pending_deliveries(self) -> int:
        """Callback deliveries started and not yet finished (-1 if PostgreSQL is away)."""
        try:
            return await self.pool.fetchval("SELECT count(*) FROM callback_deliveries WHERE status = 'pending'")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return -1

    async def until_deliveries_pending(self, n: int, limit: float = 180) -> int:
        """Wait (bounded) until at least `n` deliveries are in flight, so that a fault lands on
        running delivery schedules too; returns how many there are."""
        deadline = time.monotonic() + limit
        while True:
            pending = await self.pending_deliveries()
            if pending >= n or time.monotonic() > deadline:
                return pending
            await asyncio.sleep(0.2)

    # operators ---------------------------------------------------------------------------

    async def _retry(self, what: str, call: Callable[[], Awaitable[object]]) -> object:
        """Call until it answers; Temporal unreachable or no worker polling is retried."""
        deadline = time.monotonic() + DRIVE_SECONDS
        tries = 0
        while True:
            tries += 1
            try:
                result = await asyncio.wait_for(call(), RPC_SECONDS * 2)
                if tries > 1:
                    self.stats["client calls retried"] += 1
                return result
            except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError, WorkflowQueryFailedError,
                    TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{what}: no answer in {DRIVE_SECONDS:.0f}s: {exc!r}") from exc
                await asyncio.sleep(1)

    async def start_case(self, case: Case) -> None:
        async def go() -> None:
            try:
                await self.client.start_workflow(
                    case.workflow.run, case.start, id=case.workflow_id, task_queue=self.task_queue,
                    rpc_timeout=timedelta(seconds=RPC_SECONDS))
            except WorkflowAlreadyStartedError:
                self.stats["starts found already done"] += 1

        await self._retry(f"start {case.workflow_id}", go)

    async def stage(self, case: Case) -> str:
        handle = self.client.get_workflow_handle(case.workflow_id)
        status = await self._retry(f"query {case.workflow_id}", lambda: handle.query(
            case.workflow.status, rpc_timeout=timedelta(seconds=RPC_SECONDS)))
        return str(status.stage)

    async def act(self, case: Case, action: Action) -> None:
        """One operator action, idempotently: the same update id on every try, and a refusal
        because the workflow is already past the action's stage counts as done."""
        handle = self.client.get_workflow_handle(case.workflow_id)
        update_id = f"{action.name}-{case.workflow_id}"
        try:
            await self._retry(f"{action.name} {case.workflow_id}", lambda: handle.execute_update(
                action.update, action.arg, id=update_id, rpc_timeout=timedelta(seconds=RPC_SECONDS)))
        except WorkflowUpdateFailedError as exc:
            now = await self.stage(case)
            if case.stages.index(now) >= case.stages.index(action.reaches):
                self.stats["updates found already applied"] += 1
                return
            raise AssertionError(f"{case.workflow_id}: {action.name} refused in stage {now}: "
                                 f"{exc.cause}") from exc

    async def result(self, case: Case) -> BaseModel:
        handle = self.client.get_workflow_handle_for(case.workflow.run, case.workflow_id)
        return await self._retry(f"result {case.workflow_id}", lambda: handle.result(
            rpc_timeout=timedelta(seconds=RPC_SECONDS)))

    async def history(self, workflow_id: str) -> WorkflowHistory:
        handle = self.client.get_workflow_handle(workflow_id)
        return await self._retry(f"history {workflow_id}", lambda: handle.fetch_history(
            rpc_timeout=timedelta(seconds=RPC_SECONDS)))


@contextlib.asynccontextmanager
async def fault_stack(root: Path) -> AsyncIterator[FaultStack]:
    async with contextlib.AsyncExitStack() as stack:
        # PostgreSQL runs as another user and must traverse every parent of its data dir: not
        # under pytest's basetemp, whose root any concurrent pytest run may chmod back to 0700.
        pg_root = Path(tempfile.mkdtemp(prefix="ducha-faults-pg-"))
        stack.callback(_drop_pg_dir, pg_root, root)
        pg = EmbeddedPostgres(pg_root / "data", free_port(), database="ducha")
        stack.callback(pg.stop)  # registered before start: a start that times out is stopped too
        await asyncio.to_thread(pg.start, 120)
        temporal = TemporalDevServer(db_file=root / "temporal" / "dev.sqlite", port=free_port(), ui_port=None)
        stack.callback(temporal.stop)
        await asyncio.to_thread(temporal.start, 180, root / "temporal.log")
        await migrate_dsn(pg.url)
        pool = await create_pool(pg.url, max_size=4)
        stack.push_async_callback(pool.close)
        task_queue = f"faults-{uuid.uuid4().hex[:8]}"
        data_dir = root / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        settings = Settings(database_url=pg.url, task_queue=task_queue, data_dir=data_dir)
        store = RegistryStore(pool)
        await store.load(load_yaml_model(DEMO_REGISTRY, RegistryFile))
        await CalendarActivities(pool, settings).load_dir(settings.calendar_dir)
        receiver = await FaultReceiver(plan=list(RECEIVER_PLAN)).start()
        stack.push_async_callback(receiver.stop)
        for party in await store.list():
            receiver.secrets[party.code] = await store.set_endpoint(party.code, receiver.url(party.code), None)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DUCHA_")}
        env.update({
            "DUCHA_TEMPORAL_ADDRESS": temporal.address,
            "DUCHA_DATABASE_URL": pg.url,
            "DUCHA_TASK_QUEUE": task_queue,
            "DUCHA_CALLBACK_ALLOWLIST": '["127.0.0.1"]',
            "DUCHA_CALLBACK_RETRY_SCHEDULE": json.dumps(SCHEDULE),
            "DUCHA_CALLBACK_TIMEOUT_SECONDS": str(CALLBACK_TIMEOUT_SECONDS),
            "DUCHA_DATA_DIR": str(data_dir),  # no payload key from a developer's .data
            # the audit chains' key of this session (tests/conftest.py), or one of this stack's
            "DUCHA_LEDGER_CHAIN_KEY": os.environ.get("DUCHA_LEDGER_CHAIN_KEY") or ChainKey.generate().to_base64(),
            "DUCHA_LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
        })
        # The client's own retries while the server is away are expected: keep them off the output.
        quiet = Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
            filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))))
        client = await Client.connect(temporal.address, data_converter=pydantic_data_converter,
                                      runtime=quiet)
        worker = WorkerProcess(env, root / "worker.log")
        stack.push_async_callback(worker.stop)
        await worker.start()
        say(f"stack up in {root}: PostgreSQL :{pg.port}, Temporal {temporal.address}, "
            f"receiver :{receiver.port}, worker pid {worker.proc.pid}")
        yield FaultStack(root=root, pg=pg, temporal=temporal, pool=pool, client=client,
                         receiver=receiver, worker=worker, env=env, task_queue=task_queue)


def _drop_pg_dir(pg_root: Path, keep_log_in: Path) -> None:
    with contextlib.suppress(OSError):
        shutil.copyfile(pg_root / "data" / "server.log", keep_log_in / "postgres.log")
    shutil.rmtree(pg_root, ignore_errors=True)


# --- cases ---------------------------------------------------------------------------------


@dataclass
class Action:
    update: Callable[..., Awaitable[BaseModel]]  # the workflow class's update method
    arg: dict
    reaches: str  # the stage the workflow is in once the action is done

    @property
    def name(self) -> str:
        return self.update.__name__


@dataclass
class Case:
    kind: str  # "clue" or "rectification" (ledger_events.subject_kind)
    number: str  # clue_no / problem_no (ledger_events.subject_id)
    workflow: type[ClueTransfer] | type[Rectification]
    start: BaseModel
    actions: list[Action]
    stages: list[str]  # in order
    events: list[str]  # the ledger timeline, calendar.provisional left out
    recipients: dict[str, set[str]]  # ledger event -> callback recipients
    outcome: dict  # fields the result must have

    @property
    def workflow_id(self) -> str:
        return ids.clue(self.number) if self.kind == "clue" else ids.rectification(self.number)


CLUE_ROUTES = [
    # route, source, source operator, target, target operator, channel
    ("to_law_office", "court", "杨帆", "law_office", "李娜", "judgment_enforcement"),
    ("to_discipline", "law_office", "李娜", "discipline", "刘洋", "inspection"),
    ("to_justice", "discipline", "刘洋", "justice", "吴敏", "supervision_review"),
    ("to_law_office", "procuratorate", "黄静", "law_office", "李娜", "public_interest_litigation"),
]
UNITS = [("market_regulation", "王晓东"), ("transport", "赵春燕"), ("urban_management", "周玉兰"),
         ("natural_resources", "刘海燕"), ("ecology_environment", "杨雪梅")]
OUTCOMES = ["substantiated", "partly_substantiated", "unsubstantiated", "no_jurisdiction"]


def clue_case(tag: str, i: int) -> Case:
    route, source, source_op, target, target_op, channel = CLUE_ROUTES[i % len(CLUE_ROUTES)]
    outcome = OUTCOMES[i % len(OUTCOMES)]
    discovered = (datetime.now(CHINA) - timedelta(days=1)).date()
    start = ClueStart.model_validate(dict(
        clue_no=f"F{tag}-{i:02d}", route=route, source=source, channel=channel,
        importance="important", discovered_on=discovered.isoformat(),
        subject_unit=UNITS[i % len(UNITS)][0], title="故障注入测试线索", details="仅存于台账",
        reported_by=source_op))
    law = "law_office"
    return Case(
        kind="clue", number=start.clue_no, workflow=ClueTransfer, start=start,
        actions=[
            Action(ClueTransfer.transfer, {"operator": source_op, "agency": source, "note": "已移送"}, "transferred"),
            Action(ClueTransfer.acknowledge, {"operator": target_op, "agency": target}, "handling"),
            Action(ClueTransfer.report_result, {"operator": target_op, "agency": target, "outcome": outcome,
                                     "summary": "核查完毕"}, "concluded"),
        ],
        stages=["registered", "transferred", "handling", "concluded"],
        events=["registered", "transferred", "acknowledged", "concluded"],
        recipients={"registered": {source}, "transferred": {target, law}, "acknowledged": {source},
                    "concluded": {source, law}, "calendar.provisional": {law}},
        outcome={"stage": "concluded", "outcome": outcome, "escalations": 0},
    )


def rectification_case(tag: str, i: int) -> Case:
    unit, unit_op = UNITS[i % len(UNITS)]
    start = RectificationStart.model_validate(dict(
        problem_no=f"F{tag}-P{i:02d}", unit=unit, origin={"kind": "manual", "ref": "故障注入"},
        list="individual", category="执法程序", description="故障注入测试问题", opinion="限期整改",
        due_in_working_days=20, lookback_after_days=90, issued_by="李娜"))
    law = "law_office"
    return Case(
        kind="rectification", number=start.problem_no, workflow=Rectification, start=start,
        actions=[
            Action(Rectification.submit_report, {"operator": unit_op, "agency": unit, "measures": "已整改到位"}, "reported"),
            Action(Rectification.review, {"operator": "李娜", "agency": law, "decision": "accept"}, "accepted"),
            Action(Rectification.record_lookback, {"operator": "李娜", "agency": law, "result": "pass",
                                       "findings": "回头看未见反弹"}, "closed"),
        ],
        stages=["rectifying", "reported", "accepted", "lookback", "closed"],
        events=["required", "reported", "accepted", "closed"],
        recipients={"required": {unit, law}, "reported": {law}, "accepted": {unit, law},
                    "closed": {unit, law}, "calendar.provisional": {law}},
        outcome={"stage": "closed", "reopened": 0, "escalated": False, "carried_over": 0},
    )


def make_cases(tag: str, clues: int, rectifications: int) -> list[Case]:
    cases = [clue_case(tag, i) for i in range(clues)]
    cases += [rectification_case(tag, i) for i in range(rectifications)]
    return cases


async def drive(stack: FaultStack, case: Case, rng: random.Random, delay: float) -> None:
    """Start the case after `delay` seconds, then act with short pauses like an operator."""
    await asyncio.sleep(delay)
    await stack.start_case(case)
    for action in case.actions:
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        await stack.act(case, action)


async def run_cases(stack: FaultStack, cases: list[Case], rng: random.Random, spread: float,
                    chaos: Callable[[Callable[[], int]], Awaitable[None]]) -> None:
    """Drive every case (starts spread over `spread` seconds) while `chaos(open_count)` injects
    faults; returns when both are done. The worker is running again at the end."""
    delays = sorted(rng.uniform(0, spread) for _ in cases)
    drivers = [asyncio.create_task(drive(stack, c, rng, d)) for c, d in zip(cases, delays, strict=True)]

    def open_count() -> int:
        return sum(not d.done() for d in drivers)

    began = time.monotonic()
    try:
        await chaos(open_count)
        await asyncio.gather(*drivers)
        stack.stats["driving (s)"] = round(time.monotonic() - began)
    finally:
        for d in drivers:
            d.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
        if not stack.worker.alive():
            await stack.worker.start()


# --- verification --------------------------------------------------------------------------


@dataclass
class ScenarioReport:
    name: str
    faults: Counter = field(default_factory=Counter)
    receiver: Counter = field(default_factory=Counter)
    stats: Counter = field(default_factory=Counter)
    business_workflows: int = 0
    delivery_workflows: int = 0
    ledger_events: int = 0
    deliveries: int = 0
    timers_checked: int = 0
    attempt_gaps_checked: int = 0
    wall_seconds: float = 0.0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)  # wrong outcome, early timer, bad signature…

    def faults_text(self) -> str:
        injected = dict(self.faults)
        for answer in ("500", HANG, f"429 retry-after {RETRY_AFTER_SECONDS}"):
            if self.receiver.get(answer):
                injected[f"receiver {answer}"] = self.receiver[answer]
        return ", ".join(f"{k}={v}" for k, v in injected.items()) or "none"

    def line(self) -> str:
        return (f"FAULTS [{self.name}] injected: {self.faults_text()} | checked: "
                f"{self.business_workflows} business workflows, {self.delivery_workflows} delivery "
                f"workflows, {self.ledger_events} ledger events, {self.deliveries} deliveries, "
                f"{self.timers_checked} timers, {self.attempt_gaps_checked} attempt gaps | "
                f"lost={len(self.lost)} duplicated={len(self.duplicated)} wrong={len(self.wrong)} | "
                f"{self.wall_seconds:.0f}s")


async def wait_for_deliveries(stack: FaultStack, cases: list[Case]) -> None:
    """Every delivery of the cases' events has reached a final state (or the bound is hit:
    verify then reports what is still pending)."""
    ids = [c.workflow_id for c in cases]
    began = time.monotonic()
    deadline = began + SETTLE_SECONDS
    while time.monotonic() < deadline:
        try:
            pending = await stack.pool.fetchval(
                "SELECT count(*) FROM callback_deliveries d JOIN callback_events e USING (event_id) "
                "WHERE e.workflow_id = ANY($1::text[]) AND d.status = 'pending'", ids)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pending = -1
        if pending == 0:
            break
        await asyncio.sleep(1)
    # A delivery on record as delivered can still have its CallbackDelivery workflow running: a
    # SIGKILL after the accepted attempt was recorded and before the activity completed costs the
    # attempt's timeout and one more timer; the workflow then finds it delivered and ends.
    running = 0
    rows = await stack.pool.fetch(
        "SELECT d.delivery_workflow_id FROM callback_deliveries d JOIN callback_events e USING (event_id) "
        "WHERE e.workflow_id = ANY($1::text[]) AND d.delivery_workflow_id IS NOT NULL", ids)
    for r in rows:
        handle = stack.client.get_workflow_handle(r["delivery_workflow_id"])
        first = True
        while time.monotonic() < deadline:
            desc = await stack._retry(f"describe {handle.id}", lambda h=handle: h.describe(
                rpc_timeout=timedelta(seconds=RPC_SECONDS)))
            if desc.status != WorkflowExecutionStatus.RUNNING:
                break
            running += first
            first = False
            await asyncio.sleep(1)
    stack.stats["delivery workflows still running after their delivery was recorded"] = running
    stack.stats["deliveries settling after the drive (s)"] = round(time.monotonic() - began)


async def verify(stack: FaultStack, cases: list[Case], report: ScenarioReport) -> None:
    """Check everything the scenario promised; fill `report` (lost / duplicated / wrong)."""
    ids = [c.workflow_id for c in cases]
    by_id = {c.workflow_id: c for c in cases}
    began = time.monotonic()

    # 1. Every workflow completed with the right outcome.
    for case in cases:
        result = await stack.result(case)
        got = {k: getattr(result, k) for k in case.outcome}
        got = {k: v.value if hasattr(v, "value") else v for k, v in got.items()}
        if got != case.outcome:
            report.wrong.append(f"{case.workflow_id} ended {got}, expected {case.outcome}")
    report.business_workflows = len(cases)

    # 2. The ledger: each timeline exactly once, in order, no gap, no duplicate.
    rows = await stack.pool.fetch(
        "SELECT subject_kind, subject_id, seq, event FROM ledger_events "
        "WHERE (subject_kind, subject_id) IN (SELECT * FROM unnest($1::text[], $2::text[])) "
        "ORDER BY subject_kind, subject_id, seq",
        [c.kind for c in cases], [c.number for c in cases])
    report.ledger_events = len(rows)
    timeline: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for r in rows:
        timeline[f"{r['subject_kind']}-{r['subject_id']}"].append(r)
    expected_deliveries: dict[tuple[str, str], str] = {}
    for case in cases:
        mine = timeline.get(case.workflow_id, [])
        seqs = [r["seq"] for r in mine]
        if seqs != list(range(len(seqs))):
            report.lost.append(f"{case.workflow_id}: ledger seq {seqs} has a gap")
        events = [r["event"] for r in mine]
        for event, n in Counter(events).items():
            if n > 1:
                report.duplicated.append(f"{case.workflow_id}: ledger event {event} x{n}")
        plain = [e for e in events if e != "calendar.provisional"]
        if plain != case.events:
            missing = [e for e in case.events if e not in plain]
            (report.lost if missing else report.wrong).append(
                f"{case.workflow_id}: ledger timeline {plain}, expected {case.events}")
        early = [e for e in events if e.rsplit(".", 1)[-1] in BUSINESS_TIMER_EVENTS]
        if early:
            report.wrong.append(f"{case.workflow_id}: deadline steps {early} fired (deadlines are days away)")
        for r in mine:
            for recipient in case.recipients.get(r["event"], set()):
                expected_deliveries[(f"{case.workflow_id}.{r['seq']}", recipient)] = r["event"]
    snapshots = await stack.pool.fetch(
        "SELECT 'clue' AS kind, clue_no AS number, stage FROM clues WHERE clue_no = ANY($1::text[]) "
        "UNION ALL SELECT 'rectification', problem_no, stage FROM rectifications "
        "WHERE problem_no = ANY($1::text[])", [c.number for c in cases])
    snap = Counter(f"{r['kind']}-{r['number']}" for r in snapshots)
    for case in cases:
        if snap[case.workflow_id] != 1:
            report.lost.append(f"{case.workflow_id}: {snap[case.workflow_id]} ledger snapshot rows")
    for r in snapshots:
        case = by_id[f"{r['kind']}-{r['number']}"]
        if r["stage"] != case.outcome["stage"]:
            report.wrong.append(f"{case.workflow_id}: ledger snapshot stage {r['stage']}")

    # 3. Callback deliveries: exactly the expected ones, each delivered.
    deliveries = await stack.pool.fetch(
        "SELECT d.event_id, d.recipient, d.status, d.delivery_workflow_id, e.type "
        "FROM callback_deliveries d JOIN callback_events e USING (event_id) "
        "WHERE e.workflow_id = ANY($1::text[])", ids)
    report.deliveries = len(deliveries)
    recorded = Counter((d["event_id"], d["recipient"]) for d in deliveries)
    for key in expected_deliveries.keys() - recorded.keys():
        report.lost.append(f"delivery {key} was never recorded")
    for key in recorded.keys() - expected_deliveries.keys():
        report.wrong.append(f"unexpected delivery {key}")
    for key, n in recorded.items():
        if n > 1:
            report.duplicated.append(f"delivery {key} recorded {n} times")
    for d in deliveries:
        if d["status"] != "delivered":
            report.lost.append(f"delivery {d['event_id']} -> {d['recipient']} ended {d['status']}")
    types = {d["event_id"]: d["type"] for d in deliveries}

    # 4. The receiver: every delivery accepted (2xx, valid signature) at least once; after
    # deduplication by webhook-id (per recipient endpoint) exactly the expected set.
    ours = [h for h in stack.receiver.hits if h.webhook_id.rsplit(".", 1)[0] in by_id]
    report.receiver = Counter(h.answer for h in ours)
    for h in ours:
        if not h.verified:
            report.wrong.append(f"bad signature on {h.webhook_id} -> {h.recipient}")
        if types.get(h.webhook_id, h.type) != h.type:
            report.wrong.append(f"{h.webhook_id} arrived as {h.type}, recorded as {types[h.webhook_id]}")
    accepted = Counter((h.webhook_id, h.recipient) for h in ours if h.accepted and h.verified)
    for key in expected_deliveries.keys() - accepted.keys():
        report.lost.append(f"receiver never accepted {key}")
    unique = {(h.webhook_id, h.recipient) for h in ours}
    for key in unique - expected_deliveries.keys():
        report.wrong.append(f"receiver got an event nobody expected: {key}")
    if len(unique & expected_deliveries.keys()) != len(expected_deliveries):
        report.lost.append(f"deduplicated by webhook-id the receiver holds {len(unique)} "
                           f"deliveries, expected {len(expected_deliveries)}")
    report.stats["accepted more than once (deduplicated by webhook-id)"] = sum(
        n - 1 for n in accepted.values())

    # 5. Delivery timers from the histories: each wait as long as the schedule (or the
    # receiver's Retry-After) says, none fired early, none lost. A delivery publish made at its
    # first attempt has no workflow (its one attempt is in the attempt log, section 6).
    handed_over = [d for d in deliveries if d["delivery_workflow_id"]]
    report.delivery_workflows = len(handed_over)
    for d in handed_over:
        wf = d["delivery_workflow_id"]
        history = await stack.history(wf)
        checked, problems, output = check_timers(history, SCHEDULE)
        report.timers_checked += checked
        report.wrong.extend(f"{wf}: {p}" for p in problems)
        if output is None or output.status != "delivered":
            report.lost.append(f"{wf}: delivery workflow ended {output}")
    for case in cases:
        checked, problems, _ = check_timers(await stack.history(case.workflow_id), None)
        report.timers_checked += checked
        report.wrong.extend(f"{case.workflow_id}: {p}" for p in problems)

    # 6. The attempt log: consecutive attempts of one delivery are spaced at least by the
    # schedule (non-decreasing, so a lost attempt only widens a gap) and by Retry-After.
    attempts = await stack.pool.fetch(
        "SELECT a.event_id, a.recipient, a.http_status, a.at FROM callback_attempts a "
        "JOIN callback_events e USING (event_id) WHERE e.workflow_id = ANY($1::text[]) "
        "ORDER BY a.event_id, a.recipient, a.id", ids)
    per: dict[tuple[str, str], list[asyncpg.Record]] = defaultdict(list)
    for a in attempts:
        per[(a["event_id"], a["recipient"])].append(a)
    for key, log in per.items():
        for n, (before, after) in enumerate(zip(log, log[1:], strict=False), start=1):
            need = SCHEDULE[min(n, len(SCHEDULE) - 1)]
            if before["http_status"] == 429:
                need = max(need, RETRY_AFTER_SECONDS)
            gap = (after["at"] - before["at"]).total_seconds()
            report.attempt_gaps_checked += 1
            if gap < need:
                report.wrong.append(f"attempts {n}->{n + 1} of {key} {gap:.3f}s apart, schedule says {need}s")
    report.stats["attempts logged"] = len(attempts)

    # Not a business key: the authorization log records every decision, so an `authorize`
    # activity run again after a SIGKILL shows as one more row (reported, not asserted).
    decisions = await stack.pool.fetchval(
        "SELECT count(*) FROM authorization_log WHERE workflow_id = ANY($1::text[])", ids)
    report.stats["authorization_log rows"] = f"{decisions} for {sum(len(c.actions) for c in cases)} actions"

    # 7. The tamper-evident chain is intact.
    code, out, err = await run_cli("audit", "verify", env=stack.env)
    if code != 0:
        report.wrong.append(f"ducha audit verify exit {code}: {out}{err}")
    report.stats["audit verify"] = out.strip()[:60] if code == 0 else "FAILED"
    report.stats["verification (s)"] = round(time.monotonic() - began)


def check_timers(history: WorkflowHistory, schedule: list[float] | None
                 ) -> tuple[int, list[str], DeliveryOutput | None]:
    """(timers fired, problems, delivery output). Every fired timer waited at least its duration;
    with `schedule` (a CallbackDelivery; the configured schedule of the whole delivery) each
    timer's duration is max(schedule[attempts so far], the last attempt's Retry-After), counting
    the attempts publish made before the workflow (its input's previous_attempts and
    retry_after_seconds), and no timer is left unfired when the workflow is done."""
    converter = pydantic_data_converter.payload_converter
    problems: list[str] = []
    started: dict[int, tuple[datetime, float]] = {}
    activity_names: dict[int, str] = {}
    fired = attempts = 0
    retry_after = 0.0
    output: DeliveryOutput | None = None
    completed = False
    for ev in history.events:
        t = ev.event_type
        if t == HistoryEventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED and schedule is not None:
            payloads = ev.workflow_execution_started_event_attributes.input.payloads
            inp = converter.from_payloads(payloads, [DeliveryInput])[0]
            attempts, retry_after = inp.previous_attempts, inp.retry_after_seconds
            if inp.schedule != schedule[attempts:]:
                problems.append(f"started after {attempts} attempt(s) with schedule {inp.schedule}, "
                                f"configured {schedule}")
        elif t == HistoryEventType.EVENT_TYPE_TIMER_STARTED:
            duration = ev.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
            started[ev.event_id] = (ev.event_time.ToDatetime(), duration)
            if schedule is not None:
                want = max(schedule[attempts], retry_after)
                if abs(duration - want) > 1e-6:
                    problems.append(f"timer before attempt {attempts + 1} is {duration:g}s, schedule says {want:g}s")
        elif t == HistoryEventType.EVENT_TYPE_TIMER_FIRED:
            at, duration = started.pop(ev.timer_fired_event_attributes.started_event_id)
            waited = (ev.event_time.ToDatetime() - at).total_seconds()
            fired += 1
            if waited + TIMER_TOLERANCE_SECONDS < duration:
                problems.append(f"a {duration:g}s timer fired after {waited:.3f}s (early)")
        elif t == HistoryEventType.EVENT_TYPE_TIMER_CANCELED:
            started.pop(ev.timer_canceled_event_attributes.started_event_id, None)
        elif t == HistoryEventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activity_names[ev.event_id] = ev.activity_task_scheduled_event_attributes.activity_type.name
        elif t == HistoryEventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            a = ev.activity_task_completed_event_attributes
            if activity_names.get(a.scheduled_event_id) == "callbacks.deliver_attempt":
                attempts += 1
                result = converter.from_payloads(a.result.payloads, [AttemptResult])[0]
                retry_after = result.retry_after or 0.0
        elif t in (HistoryEventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
                   HistoryEventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT):
            attrs = (ev.activity_task_failed_event_attributes
                     if t == HistoryEventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
                     else ev.activity_task_timed_out_event_attributes)
            if activity_names.get(attrs.scheduled_event_id) == "callbacks.deliver_attempt":
                attempts += 1
                retry_after = 0.0
        elif t == HistoryEventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            completed = True
            if schedule is not None:
                payloads = ev.workflow_execution_completed_event_attributes.result.payloads
                output = converter.from_payloads(payloads, [DeliveryOutput])[0]
    if schedule is not None:
        if not completed:
            problems.append("delivery workflow not completed")
        if started:
            problems.append(f"{len(started)} timer(s) never fired (lost)")
    return fired, problems, output


def conclude(report: ScenarioReport, stack: FaultStack, started: float) -> None:
    """Print the scenario's line, keep it for the session summary, then fail on any finding."""
    report.faults.update(stack.faults)
    report.stats.update(stack.stats)
    report.stats["worker starts"] = stack.worker.starts
    log = stack.worker.log_path.read_text(errors="replace")
    # TMPRL1104: a workflow task took over 5 s in the worker (its timeout is 10 s); seen while
    # the worker's event loop is busy (docs/reliability.md, "Findings").
    report.stats["slow workflow tasks (worker log)"] = log.count("TMPRL1104")
    report.stats["tracebacks logged by the worker"] = log.count("Traceback (most recent call last)")
    report.wall_seconds = time.monotonic() - started
    REPORTS.append(report)
    print("\n" + report.line(), flush=True)
    details = ", ".join(f"{k}: {v}" for k, v in report.stats.items())
    print(f"       {details}", flush=True)
    problems = [f"LOST {x}" for x in report.lost] + [f"DUPLICATED {x}" for x in report.duplicated] \
        + [f"WRONG {x}" for x in report.wrong]
    assert not problems, f"{report.name}: {len(problems)} problem(s):\n" + "\n".join(problems[:50]) + \
        f"\n(worker log: {stack.worker.log_path})"
