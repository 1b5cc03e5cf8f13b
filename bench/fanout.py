"""Part 2, fan-out: AnnualInspectionRound over 1,000 / 5,000 / 10,000 enforcement units, with
the real round, its real activities and PostgreSQL. The unit inspections are the scaled-down
UnitInspection of the round's own scale test (tests/fast_inspection.py, then the same
`inspection_progress` report to the round): driving 10,000 real inspections through their four
human updates would measure the inspections, not the round.

The server is the embedded dev server (BENCH_FANOUT_SERVER=dev, the default: this year's round in
one batch, inspections of one to five seconds, real time) or the time-skipping test server
(BENCH_FANOUT_SERVER=time-skipping: next year's round in four batches, inspections of one to five
days of skipped time). The dev server is the one `make up` runs and scales like a real one; the
test server is faster at 1,000 units but its own work per timer grows with everything it has
handled, so its growth is not the round's (docs/benchmarks.md keeps both findings).

Each scale gets a fresh PostgreSQL, server and worker process; the units are inserted into
`parties` (kind 'unit') next to the demo registry's. Per scale: wall time, the round's runs
(continue-as-new) and the largest history among them, the largest payload it wrote (its whole
state is its continue-as-new input), the unit inspections' history size, the most in flight
(from the round's histories: the `inspection.start` waves minus the reports; and as operators see
it, the `coverage` query every two seconds), the worker's peak RSS and each process's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from time import perf_counter

import psutil
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle, WorkflowHistory, WorkflowQueryFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from bench.stack import CpuMeter, Stack, WorkerProcess, say, stack
from schemas import ids
from workers.embedded import temporal_cli_path
from workflows.annual_round import AnnualInspectionRound
from workflows.search_attributes import ALL_KEYS

CHINA = timezone(timedelta(hours=8))
SCALES = (1_000, 5_000, 10_000)
MAX_PARALLEL = 200  # as the round's own scale test (tests/test_round_scale.py)
BATCHES = 4
HISTORY_LIMIT = 10_000
UNCAPPED_S = 3600.0  # a scale's cap when the run has no budget: only a stuck round reaches it


def test_server_path() -> str:
    return shutil.which("temporal-test-server") or str(Path(temporal_cli_path()).with_name("temporal-test-server"))


async def add_units(st: Stack, total: int) -> None:
    """Active enforcement units in `parties` up to `total` (the demo registry's count)."""
    have = await st.pool.fetchval("SELECT count(*) FROM parties WHERE kind = 'unit' AND active")
    start = await st.pool.fetchval("SELECT count(*) FROM parties WHERE code LIKE 'fanout_%'")
    rows = [(f"fanout_{start + i:05d}", f"第{start + i}号执法单位", "township" if i % 3 else "county",
             {"name": "负责人", "title": "分管领导"}, {"name": "联络员", "title": "法制员"})
            for i in range(max(0, total - have))]
    await st.pool.executemany(
        "INSERT INTO parties (code, kind, name, level, category, leader, liaison, callback_enabled) "
        "VALUES ($1, 'unit', $2, $3, '综合执法', $4, $5, false)", rows)


async def run_histories(client: Client, wid: str, first_run: str) -> list[WorkflowHistory]:
    """Every run of the round, following continue-as-new."""
    out = []
    run_id: str | None = first_run
    while run_id:
        h = await client.get_workflow_handle(wid, run_id=run_id).fetch_history()
        out.append(h)
        last = h.events[-1]
        run_id = None
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return out


def _payload_bytes(payloads) -> int:
    return sum(len(p.data) for p in payloads.payloads)


def in_flight(histories: list[WorkflowHistory]) -> dict:
    """Unit inspections in flight along the round, read from its histories: started by an
    `inspection.start` wave (the activity's input), ended by an `inspection_progress` report
    (completed or failed) or, for one that never reported, by the round's `inspection.describe`
    check finding it no longer running. `peak` is the most in flight at once."""
    running: set[str] = set()
    peak = started = reported = 0
    for h in histories:
        activity_types: dict[int, str] = {}
        for e in h.events:
            et = e.event_type
            if et == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                a = e.activity_task_scheduled_event_attributes
                activity_types[e.event_id] = a.activity_type.name
                if a.activity_type.name == "inspection.start":
                    ids = [i["workflow_id"] for i in json.loads(a.input.payloads[0].data)["items"]]
                    running.update(ids)
                    started += len(ids)
            elif et == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                a = e.activity_task_completed_event_attributes
                if activity_types.get(a.scheduled_event_id) == "inspection.describe" and a.result.payloads:
                    status = json.loads(a.result.payloads[0].data).get("status", {})
                    running.difference_update(w for w, s in status.items() if s != "running")
            elif et == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                a = e.workflow_execution_signaled_event_attributes
                if a.signal_name == "inspection_progress" and a.input.payloads:
                    p = json.loads(a.input.payloads[0].data)
                    if p.get("event") in ("completed", "failed"):
                        reported += 1
                        running.discard(p.get("workflow_id", ""))
            peak = max(peak, len(running))
    return {"peak": peak, "started": started, "reported": reported, "still_running": len(running)}


def round_facts(histories: list[WorkflowHistory]) -> dict:
    """Largest history and payload, and the most inspections in flight (`in_flight`)."""
    biggest_input = biggest_activity = wft_failures = 0
    causes: dict[str, int] = {}
    for h in histories:
        for e in h.events:
            et = e.event_type
            if et == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                a = e.activity_task_scheduled_event_attributes
                biggest_activity = max(biggest_activity, _payload_bytes(a.input))
            elif et == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                biggest_input = max(biggest_input, _payload_bytes(e.workflow_execution_started_event_attributes.input))
            elif et == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                wft_failures += 1
                cause = WorkflowTaskFailedCause.Name(e.workflow_task_failed_event_attributes.cause)
                cause = cause.removeprefix("WORKFLOW_TASK_FAILED_CAUSE_")
                causes[cause] = causes.get(cause, 0) + 1
    flight = in_flight(histories)
    return {"runs": len(histories), "max_events": max(len(h.events) for h in histories),
            "run_events": [len(h.events) for h in histories],
            "inspections_started": flight["started"], "inspections_reported": flight["reported"],
            "max_in_flight": flight["peak"],
            "max_state_kb": biggest_input / 1024, "max_activity_input_kb": biggest_activity / 1024,
            "workflow_task_failures": wft_failures, "workflow_task_failure_causes": causes}


def _test_server_pid() -> int | None:
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "temporal-test" in " ".join(child.cmdline()):
                return child.pid
    return None


SAMPLE_EVERY_S = 2.0  # the coverage query once the round runs (every 0.5 s while it plans)


async def _sample_in_progress(handle: WorkflowHandle, samples: list[tuple], meter: CpuMeter | None = None) -> None:
    """Coverage as an operator sees it while the round runs: (seconds since start, in progress,
    completed, CPU seconds of each process so far). Every half second until the first inspection is
    in progress (the planning time), then every SAMPLE_EVERY_S: each query is a query task on the
    time-skipping server, which holds its clock while the query is answered (every 0.5 s, the
    queries alone made a 3,000-unit round about a quarter slower: 85 s against 68 s)."""
    t0 = perf_counter()
    while True:
        # A query can fail while the round is busy or continuing as new; anything else (a changed
        # query type, say) ends the sampler and fails the part (one_scale awaits it).
        with contextlib.suppress(RPCError, WorkflowQueryFailedError):
            cov = await handle.query(AnnualInspectionRound.coverage)
            cpu = meter._read() if meter is not None else {}
            samples.append((perf_counter() - t0, cov.in_progress, cov.completed, cpu))
        running = any(x[1] or x[2] for x in samples[-1:])
        await asyncio.sleep(SAMPLE_EVERY_S if running else 0.5)


def segments(samples: list[tuple], step: int = 1000) -> list[dict]:
    """Wall and CPU seconds for each `step` inspections completed, from the samples: how the cost
    of an inspection changes along the round (the same at the end as at the start when the
    round's work per inspection does not grow)."""
    out: list[dict] = []
    marks = [s for s in samples if s[3]]
    if not marks:
        return out
    last = marks[0]
    for s in marks[1:]:
        if s[2] - last[2] >= step:
            out.append({"done": s[2], "inspections": s[2] - last[2], "wall": round(s[0] - last[0], 1),
                        **{k: round(v - last[3].get(k, 0.0), 1) for k, v in s[3].items() if k != "postgres"}})
            last = s
    return out


@contextlib.asynccontextmanager
async def _server(st: Stack, server: str):
    """(client, address, pid of a test server or None): the stack's dev server, or a fresh
    time-skipping test server with the project's search attributes."""
    if server == "dev":
        assert st.client is not None and st.temporal is not None
        yield st.client, st.temporal.address, None
        return
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=test_server_path())
    try:
        await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={key.name: key.indexed_value_type for key in ALL_KEYS}))
        yield env.client, env.client.service_client.config.target_host, _test_server_pid()
    finally:
        await env.shutdown()


def round_input(server: str, year: int) -> dict:
    """On the time-skipping server a round over a whole future year (time is skipped); on the dev
    server this year's round in one batch (its batches would be spread over the days left until
    the end of the year), which runs in real time with inspections of seconds. Its batch is
    today's, so it opens when the round starts at any time of day (not at 09:00 China time:
    workflows/annual_round.py `_opens_at`)."""
    if server == "dev":  # one batch: the round spreads batches over the days left until due_on
        return {"year": year, "start_on": date(year, 1, 5).isoformat(), "due_on": date(year, 12, 31).isoformat(),
                "batches": 1, "max_parallel": MAX_PARALLEL}
    return {"year": year, "start_on": date(year, 1, 5).isoformat(), "batches": BATCHES,
            "max_parallel": MAX_PARALLEL}


async def one_scale(st: Stack, units: int, year: int, timeout: float, server: str = "dev") -> dict:
    await add_units(st, units)
    async with _server(st, server) as (client, address, test_server_pid):
        tq = f"bench-fanout-{uuid.uuid4().hex[:6]}"
        config = {"mode": "fanout", "task_queue": tq, "temporal_address": address,
                  "stand_in": "seconds" if server == "dev" else "days"}
        worker = await WorkerProcess(st, config).start()
        meter = CpuMeter(st, worker, test_server_pid)
        wid = ids.annual_round(year)
        samples: list[tuple] = []
        try:
            meter.start()
            t0 = perf_counter()
            handle = await client.start_workflow(AnnualInspectionRound.run, round_input(server, year),
                                                 id=wid, task_queue=tq)
            sampler = asyncio.ensure_future(_sample_in_progress(handle, samples, meter))
            error = None
            try:
                result = await asyncio.wait_for(handle.result(), timeout)
            except TimeoutError:
                result, error = None, f"not finished after {timeout:.0f}s"
            except Exception as exc:  # the round failed: reported, not hidden
                result, error = None, f"{type(exc).__name__}: {exc}"
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler  # a sampler that failed fails the part instead of reporting nothing
            wall = perf_counter() - t0
            cpu = meter.stop()
            rss = worker.peak_rss_mb()
            profile = await worker.read_profile()
        finally:
            await worker.stop()
        histories = await run_histories(client, wid, handle.first_execution_run_id or "")
        facts = round_facts(histories)
        child_events = []
        for code in await st.pool.fetch("SELECT code FROM parties WHERE kind = 'unit' AND active "
                                        "ORDER BY code LIMIT 3"):
            with contextlib.suppress(Exception):
                h = await client.get_workflow_handle(ids.inspection(year, "routine", code["code"])).fetch_history()
                child_events.append(len(h.events))
    completed = result.completed if result is not None else None
    out = {"units": units, "wall": wall, "error": error,
           "completed": completed, "worker_peak_rss_mb": rss,
           "cpu_s": {k: round(v, 1) for k, v in cpu.items()},
           "child_events": max(child_events) if child_events else None,
           "coverage_samples": len(samples), "segments": segments(samples), "coverage_max_in_progress": max((x[1] for x in samples), default=0),
           # Planning (reading the registry, planning, recording every unit's row) until the first
           # inspection is in progress, then the inspections.
           "planning_s": next((x[0] for x in samples if x[1] or x[2]), wall),
           "profile_within_s": {k: round(v * profile.get("interval", 0.005), 1)
                                for k, v in list(profile.get("within", {}).items())[:8]},
           "profile_top_s": {k: round(v * profile.get("interval", 0.005), 1)
                             for k, v in list(profile.get("top", {}).items())[:12]},
           **facts}
    out["ok"] = (error is None and completed == units and facts["max_events"] <= HISTORY_LIMIT
                 and 0 < facts["max_in_flight"] <= MAX_PARALLEL and out["coverage_max_in_progress"] <= MAX_PARALLEL)
    return out


def caps_for(seconds: float, scales: tuple[int, ...] = SCALES) -> tuple[float, ...]:
    """Split the time left between the scales in proportion to their size (after about 8 s of
    setup and history fetching each), the smallest getting at least 70 s (1,000 units on the dev
    server take about 50 s on 2 cores)."""
    left = max(60.0, seconds - 8 * len(scales))
    first = max(70.0, left * scales[0] / sum(scales))
    rest = max(30.0, left - first)
    return (first, *(rest * u / sum(scales[1:]) for u in scales[1:]))


def next_cap(planned: tuple[float, ...], spent: float, scales: tuple[int, ...], k: int) -> float:
    """The cap of scale k: its planned cap, or more when the scales before it finished early (the
    time they left unused goes to the scales still to run, in proportion to their size)."""
    left = sum(planned) - spent
    return max(planned[k], left * scales[k] / sum(scales[k:]))


async def run(scales: tuple[int, ...] = SCALES, caps: tuple[float, ...] = (90.0, 110.0, 110.0),
              server: str = "dev") -> dict:
    """Each scale runs until the round completes or its cap (seconds) is reached: make bench has
    15 minutes for everything. A capped scale is reported with what it did by then; its rate
    after planning (seconds per 1,000 inspections reported) still shows how the cost grows."""
    results = []
    used: list[float] = []
    label = "dev server, inspections of 1-5 s" if server == "dev" else "time-skipping server, inspections of 1-5 days"
    year = datetime.now(CHINA).year + (0 if server == "dev" else 1)
    for k, units in enumerate(scales):
        cap = next_cap(caps, sum(r["wall"] for r in results), scales, k)
        used.append(cap)
        say(f"fan-out: AnnualInspectionRound over {units:,} units "
            f"(max_parallel {MAX_PARALLEL}, {round_input(server, year)['batches']} batch(es), {label}, cap {cap:.0f}s)")
        # A fresh PostgreSQL and server for each scale: no scale runs on the last one's leftovers.
        async with stack(f"fanout-{units}", temporal=server == "dev") as st:
            r = await one_scale(st, units, year, timeout=cap, server=server)
            results.append(r)
        done = r["completed"] or r["inspections_reported"]
        say(f"fan-out: {units:,} units: {done:,} done in {r['wall']:.0f}s, {r['runs']} runs, max history "
            f"{r['max_events']:,} events, max in flight {r['max_in_flight']}, worker peak RSS "
            f"{r['worker_peak_rss_mb']:.0f} MB{', ' + r['error'] if r['error'] else ''}")
    for r in results:
        done = r["completed"] or r["inspections_reported"]
        r["done"] = done
        r["per_1000_units_s"] = 1000 * r["wall"] / max(1, done)
        r["per_1000_after_planning_s"] = 1000 * max(0.0, r["wall"] - r["planning_s"]) / max(1, done)
    first = results[0]
    for r in results:
        r["per_unit_vs_smallest"] = r["per_1000_after_planning_s"] / max(1e-9, first["per_1000_after_planning_s"])
        r["planning_vs_smallest"] = r["planning_s"] / max(1e-9, first["planning_s"]) / (r["units"] / first["units"])
    # Linear only if every scale's inspections were seen running (samples after planning).
    linear = all(r["per_unit_vs_smallest"] < 1.5 and r["planning_s"] < r["wall"] for r in results)
    return {"scales": results, "max_parallel": MAX_PARALLEL, "batches": BATCHES, "linear": linear,
            "caps": used,
            "history_limit": HISTORY_LIMIT, "server": label}
