"""Part 1, the overhead ratio: N complete ClueTransfer lifecycles (start → transfer → acknowledge →
report_result, real activities, real PostgreSQL, signed callbacks to a local receiver) against the
bare baseline (bench/baseline.py) doing the same number of activities, updates and timers, on the
same dev server and the same worker process, in the same run.

Both run on one worker process built by the production `workers.worker.build_worker` (every
workflow and activity, the production settings) with the baseline's worker beside it.

Segments run baseline, same-runner baseline, mirror, real, then the same in reverse (N/2
lifecycles each), so that a drift in the machine's background load falls on every side alike. A real segment ends when its lifecycles have
finished *and* every callback they published has been delivered (callbacks are part of this
layer's cost, whether delivered at publish's first attempt or by a CallbackDelivery workflow).
While it runs, the worker samples its own stacks (bench/sampler.py) and every process's CPU time
is read: that is where the note on the cost comes from.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory

from bench.baseline import BenchBaseline
from bench.stack import CpuMeter, Stack, WorkerProcess, say, stack
from config.settings import Settings
from workers.worker import workflow_runner
from workflows.clue_transfer import ClueTransfer

# baseline: the same lifecycle written with the bare SDK the way its samples do it — the same
#   updates and timers, and each of the real lifecycle's activity calls (local or not) as a
#   regular no-op activity, on the SDK's default (sandboxed) workflow runner. The target ratio
#   is against this one.
# same_runner: that baseline on the production worker's workflow runner (workers.worker
#   .workflow_runner: unsandboxed by default), so the runner is not part of the comparison; the
#   issue's floor (0.8) is checked against it too.
# mirror: the real lifecycle's exact Temporal shape, local activities as local no-ops, on the
#   production runner: what is left is only this layer's own work (PostgreSQL, callbacks,
#   validation); reported, no target.
KINDS = ("baseline", "same_runner", "mirror", "real")
BASELINES = ("baseline", "same_runner", "mirror")
LOCAL_ACTIVITY_MARKER = "core_local_activity"

CHINA = timezone(timedelta(hours=8))
UPDATES = [
    (ClueTransfer.transfer, {"operator": "杨帆", "agency": "court", "note": "已移送"}),
    (ClueTransfer.acknowledge, {"operator": "李娜", "agency": "law_office"}),
    (ClueTransfer.report_result, {"operator": "李娜", "agency": "law_office", "outcome": "substantiated",
                                  "summary": "经核查属实，已督促整改"}),
]


def clue_input(clue_no: str, today) -> dict:
    return {"clue_no": clue_no, "route": "to_law_office", "source": "court",
            "channel": "judgment_enforcement", "importance": "important",
            "discovered_on": today.isoformat(), "subject_unit": "market_regulation",
            "title": "执行中发现行政处罚程序违法", "details": "（线索内容，只保存在台账中）",
            "reported_by": "杨帆"}


class Driver:
    def __init__(self, client: Client, queues: dict[str, str], plan: dict | None) -> None:
        self.client = client
        self.queues = queues
        self.plans: dict[str, dict] = {k: plan or {} for k in BASELINES}
        self.tag = uuid.uuid4().hex[:6]
        self.count = 0
        self.ids: dict[str, list[str]] = {k: [] for k in KINDS}

    async def lifecycle(self, kind: str) -> float:
        self.count += 1
        started = time.perf_counter()
        if kind in BASELINES:
            wid = f"{kind}-{self.tag}-{self.count:05d}"
            queue = self.queues["baseline"] + ("" if kind == "baseline" else "-same")
            handle = await self.client.start_workflow(
                BenchBaseline.run, self.plans[kind], id=wid, task_queue=queue)
        else:
            clue_no = f"B{self.tag}-{self.count:05d}"
            wid = f"clue-{clue_no}"
            day = datetime.now(CHINA).date()  # discovered today, Asia/Shanghai
            handle = await self.client.start_workflow(
                ClueTransfer.run, clue_input(clue_no, day), id=wid, task_queue=self.queues[kind])
        self.ids[kind].append(wid)
        for update, arg in UPDATES:
            if kind in BASELINES:  # the baseline's updates have the same names
                update = getattr(BenchBaseline, update.__name__)
            await handle.execute_update(update, arg)
        await handle.result()
        return time.perf_counter() - started

    async def run(self, kind: str, n: int, in_flight: int) -> list[float]:
        limit = asyncio.Semaphore(in_flight)

        async def one() -> float:
            async with limit:
                return await self.lifecycle(kind)

        return list(await asyncio.gather(*(one() for _ in range(n))))


def runner_name() -> str:
    """The production worker's workflow runner with the default settings (what the bench runs)."""
    return type(workflow_runner(Settings())).__name__


def phase_counts(history: WorkflowHistory) -> dict:
    """Activities (regular and local) and timers of each phase (phase k starts at the k-th
    accepted update)."""
    acts, local, timers = [0], [0], [0]
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            acts.append(0)
            local.append(0)
            timers.append(0)
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            acts[-1] += 1
        elif (e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
              and e.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER):
            local[-1] += 1
        elif e.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            timers[-1] += 1
    return {"activities": acts, "local_activities": local, "timers": timers}


def history_breakdown(histories: list[WorkflowHistory]) -> dict:
    """Per lifecycle: events, workflow tasks, and per activity type the count, the mean wait for a
    worker slot (scheduled → started) and the mean run time (started → completed), from the
    events' own timestamps."""
    per_type: dict[str, list] = defaultdict(lambda: [0, 0.0, 0.0])
    events = wfts = timeouts = 0
    wft_time = 0.0
    for h in histories:
        scheduled: dict[int, tuple[str, float]] = {}
        started: dict[int, float] = {}
        wft_sched = 0.0
        events += len(h.events)
        for e in h.events:
            t = e.event_time.ToDatetime().timestamp()
            et = e.event_type
            if et == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                scheduled[e.event_id] = (e.activity_task_scheduled_event_attributes.activity_type.name, t)
            elif et == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started[e.activity_task_started_event_attributes.scheduled_event_id] = t
            elif et == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                sid = e.activity_task_completed_event_attributes.scheduled_event_id
                name, ts = scheduled[sid]
                row = per_type[name]
                row[0] += 1
                row[1] += started.get(sid, ts) - ts
                row[2] += t - started.get(sid, ts)
            elif et == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                wft_sched = t
            elif et == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                wfts += 1
                wft_time += t - wft_sched
            elif et == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                timeouts += 1
    n = max(1, len(histories))
    return {
        "events": events / n, "workflow_tasks": wfts / n,
        "workflow_task_ms": 1000 * wft_time / max(1, wfts), "workflow_task_timeouts": timeouts / n,
        "activities": {name: {"per_lifecycle": c / n, "queue_ms": 1000 * q / max(1, c),
                              "run_ms": 1000 * r / max(1, c)}
                       for name, (c, q, r) in sorted(per_type.items(), key=lambda kv: -kv[1][2])},
    }


async def _pending_deliveries(st: Stack) -> int:
    return await st.pool.fetchval("SELECT count(*) FROM callback_deliveries WHERE status = 'pending'")


async def _drain(st: Stack, timeout: float = 300) -> None:
    """Until every queued callback has been delivered (or the timeout)."""
    for _ in range(int(timeout / 0.05)):
        if not await _pending_deliveries(st):
            return
        await asyncio.sleep(0.05)


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def _histories(client: Client, ids: list[str], limit: int) -> list[WorkflowHistory]:
    sample = ids[:: max(1, len(ids) // limit)][:limit]
    return [await client.get_workflow_handle(w).fetch_history() for w in sample]


async def run(n: int = 60, in_flight: int = 20, warmup: int = 5) -> dict:
    async with stack("overhead") as st:
        assert st.client is not None
        queues = {k: f"bench-{k}-{uuid.uuid4().hex[:6]}" for k in ("baseline", "real")}
        prod = await WorkerProcess(st, {"mode": "full", "task_queue": queues["real"],
                                        "baseline_task_queue": queues["baseline"]}).start()
        try:
            driver = Driver(st.client, queues, None)
            # One real lifecycle measures the plan the baseline mirrors.
            await driver.lifecycle("real")
            probe = await st.client.get_workflow_handle(driver.ids["real"][0]).fetch_history()
            plan = phase_counts(probe)
            plan["updates"] = [u.__name__ for u, _ in UPDATES]
            if len(plan["activities"]) != len(UPDATES) + 1:
                raise RuntimeError(f"expected {len(UPDATES)} accepted updates in the history, got {plan}")
            regular = {**plan, "local_activities": [0] * len(plan["local_activities"]),
                       "activities": [a + b for a, b in zip(plan["activities"], plan["local_activities"], strict=True)]}
            driver.plans = {"mirror": plan, "baseline": regular, "same_runner": regular}
            say(f"overhead: a ClueTransfer lifecycle does {sum(plan['activities'])} activities "
                f"{plan['activities']}, {sum(plan['local_activities'])} local activities "
                f"{plan['local_activities']}, {len(UPDATES)} updates, {sum(plan['timers'])} timers "
                f"{plan['timers']}; the baseline mirrors them")
            for kind in KINDS:
                await driver.run(kind, warmup, in_flight)
            await _drain(st)
            driver.ids = {k: [] for k in KINDS}

            wall = dict.fromkeys(KINDS, 0.0)
            lat: dict[str, list[float]] = {k: [] for k in KINDS}
            cpu: dict[str, Counter] = {k: Counter() for k in KINDS}
            prof: dict[str, dict[str, Counter]] = {k: defaultdict(Counter) for k in KINDS}
            busy = dict.fromkeys(KINDS, 0)
            deliveries = dict.fromkeys(KINDS, 0)
            interval = 0.005
            half = n // 2
            for kind in (*KINDS, *reversed(KINDS)):
                count = half
                worker = prod
                meter = CpuMeter(st, worker)
                worker.reset_profile()
                before = await st.pool.fetchval("SELECT count(*) FROM callback_deliveries")
                meter.start()
                t0 = time.perf_counter()
                lat[kind] += await driver.run(kind, count, in_flight)
                if kind not in BASELINES:
                    await _drain(st)
                wall[kind] += time.perf_counter() - t0
                cpu[kind].update(meter.stop())
                deliveries[kind] += await st.pool.fetchval("SELECT count(*) FROM callback_deliveries") - before
                profile = await worker.read_profile()
                for key in ("self", "within", "top"):
                    prof[kind][key].update(profile.get(key, {}))
                busy[kind] += profile.get("busy", 0)
                interval = profile.get("interval", interval)
                say(f"overhead: {count} {kind} lifecycles in {time.perf_counter() - t0:.1f}s")
            not_delivered = await st.pool.fetchval(
                "SELECT count(*) FROM callback_deliveries WHERE status <> 'delivered'")
            hist = {k: await _histories(st.client, driver.ids[k], 40) for k in KINDS}
            # Deliveries publish could not make at the first attempt (none, with a healthy receiver).
            delivery_ids = [r["delivery_workflow_id"] for r in await st.pool.fetch(
                "SELECT d.delivery_workflow_id FROM callback_deliveries d JOIN callback_events e "
                "USING (event_id) WHERE e.workflow_id = ANY($1::text[]) "
                "AND d.delivery_workflow_id IS NOT NULL ORDER BY d.id", driver.ids["real"])]
            delivery_hist = {"real": await _histories(st.client, delivery_ids, 40)} if delivery_ids else {}
            # Histories kept for the sandbox part (replayed with and without the sandbox).
            replay = {"ClueTransfer": await _histories(st.client, driver.ids["real"], 100)}
            rss = {"production": prod.peak_rss_mb()}
        finally:
            await prod.stop()

    out: dict = {"n": n, "in_flight": in_flight, "plan": plan, "not_delivered": not_delivered,
                 "delivery_workflows": len(delivery_ids), "worker_peak_rss_mb": rss, "replay_histories": replay}
    for kind in KINDS:
        values = lat[kind]
        per = 1000 * interval / len(values)
        out[kind] = {
            "throughput": len(values) / wall[kind], "p50": _pct(values, 50), "p95": _pct(values, 95),
            "wall": wall[kind], "lifecycles": len(values),
            "deliveries_per_lifecycle": deliveries[kind] / len(values),
            "cpu_per_lifecycle_ms": {k: 1000 * v / len(values) for k, v in cpu[kind].items()},
            "python_busy_ms_per_lifecycle": busy[kind] * per,
            "profile_self": {k: v * per for k, v in prof[kind]["self"].most_common()},
            "profile_within": {k: v * per for k, v in prof[kind]["within"].most_common()},
            "profile_top": {k: v * per for k, v in prof[kind]["top"].most_common(25)},
            "history": history_breakdown(hist[kind]),
        }
        if kind in delivery_hist:
            out[kind]["delivery_history"] = history_breakdown(delivery_hist[kind])
    out["real_throughput_ratio"] = out["real"]["throughput"] / out["baseline"]["throughput"]
    out["same_runner_throughput_ratio"] = out["real"]["throughput"] / out["same_runner"]["throughput"]
    out["mirror_throughput_ratio"] = out["real"]["throughput"] / out["mirror"]["throughput"]
    out["runner"] = runner_name()
    out["real_p50_ratio"] = out["real"]["p50"] / out["baseline"]["p50"]
    out["real_p95_ratio"] = out["real"]["p95"] / out["baseline"]["p95"]
    out["throughput_ratio"] = out["real_throughput_ratio"]
    return out
