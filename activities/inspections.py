"""Inspections in PostgreSQL and Temporal: the round's plan inputs, the ledger of rounds and unit
inspections (methods, findings, evaluations), risk indicators, and which special inspection of a
unit is open.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg
import structlog
from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.ledger import append_event, upsert_snapshot, write_inspection
from config.chain_key import ChainKey
from schemas import ids
from schemas.inspection import (
    DescribeQuery,
    DescribeResult,
    InspectionToStart,
    Kind,
    RecordInspection,
    SpecialSlot,
    SpecialSlotQuery,
    StartedInspections,
    StartInspections,
)
from schemas.risk import IndicatorQuery, IndicatorRow, IndicatorRows, UnitIndicators
from schemas.round import PlanUnitRow, RecordRound, RoundInputs, RoundInputsQuery

log = structlog.get_logger("ducha.inspections")

_STATUS = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "canceled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "continued_as_new",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
}
_CONCURRENCY = 20
MAX_SPECIAL_PER_YEAR = 99


@dataclass
class IndicatorLoadReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"新增 added {len(self.added)}, 更新 updated {len(self.updated)}, "
                f"未变 unchanged {len(self.unchanged)}")


class InspectionActivities:
    """`client` describes workflows; when None the activity's own client is used."""

    def __init__(self, pool: asyncpg.Pool, client: Client | None = None, chain: ChainKey | None = None) -> None:
        self.pool = pool
        self.client = client
        self.chain = chain  # the ledger chain key: needed by the activities that record events

    def _chain(self) -> ChainKey:
        if self.chain is None:
            raise ApplicationError("InspectionActivities needs the ledger chain key to record events",
                                   type="Misconfigured", non_retryable=True)
        return self.chain

    # --- the round ------------------------------------------------------------------------

    @activity.defn(name="inspection.round_inputs")
    async def round_inputs(self, q: RoundInputsQuery) -> RoundInputs:
        """Active registry units, their carried-over open problems and last year's worst score."""
        async with self.pool.acquire() as conn:
            units = await conn.fetch(
                "SELECT code, coalesce(level, 'county') AS level FROM parties "
                "WHERE kind = 'unit' AND active ORDER BY code")
            carried = {r["unit"]: r for r in await conn.fetch(
                "SELECT unit, count(*) AS n, array_agg(problem_no ORDER BY problem_no) AS nos "
                "FROM rectifications WHERE carried_over > 0 AND stage <> 'closed' GROUP BY unit")}
            scores = {r["unit"]: r["score"] for r in await conn.fetch(
                "SELECT unit, min(score) AS score FROM inspection_evaluations WHERE year = $1 GROUP BY unit",
                q.year - 1)}
        rows = []
        for u in units:
            c = carried.get(u["code"])
            rows.append(PlanUnitRow(
                code=u["code"], level=u["level"], carried_over=c["n"] if c else 0,
                last_score=scores.get(u["code"]), focus=list(c["nos"])[:200] if c else []))
        return RoundInputs(units=rows)

    @activity.defn(name="ledger.record_round")
    async def record_round(self, req: RecordRound) -> bool:
        snap = req.snapshot
        async with self.pool.acquire() as conn, conn.transaction():
            if req.event is not None and not await append_event(conn, self._chain(), "round", snap.round_id, req.event):
                return False  # recorded by an earlier attempt
            await upsert_snapshot(conn, "inspection_rounds", "round_id", snap)
            if req.units:
                await conn.executemany(
                    "INSERT INTO round_units (round_id, unit, batch, opens_on, priority, carried_over, "
                    "last_score, postponed, added) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) "
                    "ON CONFLICT (round_id, unit) DO UPDATE SET batch = EXCLUDED.batch, "
                    "opens_on = EXCLUDED.opens_on, postponed = EXCLUDED.postponed, "
                    "added = EXCLUDED.added, updated_at = now()",
                    [(snap.round_id, u.unit, u.batch, u.opens_on, u.priority, u.carried_over,
                      u.last_score, u.postponed, u.added) for u in req.units],
                )
        return True

    @activity.defn(name="inspection.start")
    async def start_inspections(self, req: StartInspections) -> StartedInspections:
        """Start a wave of unit inspections for the yearly round (see workflows/annual_round.py for
        why these are not child workflows). A retry, or an id already used, lands in `existing`."""
        client = self.client or activity.client()
        limit = asyncio.Semaphore(_CONCURRENCY)
        out = StartedInspections()

        async def one(item: InspectionToStart) -> None:
            async with limit:
                try:
                    await client.start_workflow(
                        "UnitInspection", item.start, id=item.workflow_id, task_queue=req.task_queue,
                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                        static_summary=item.summary or None)
                except WorkflowAlreadyStartedError:
                    out.existing.append(item.workflow_id)
                else:
                    out.started.append(item.workflow_id)

        await asyncio.gather(*(one(i) for i in req.items))
        out.started.sort()
        out.existing.sort()
        return out

    @activity.defn(name="inspection.describe")
    async def describe(self, q: DescribeQuery) -> DescribeResult:
        """Where each workflow stands (the round's check on inspections that never reported)."""
        limit = asyncio.Semaphore(_CONCURRENCY)

        async def one(wid: str) -> tuple[str, str]:
            async with limit:
                return wid, await self._status(wid)

        return DescribeResult(status=dict(await asyncio.gather(*(one(w) for w in q.workflow_ids))))

    async def _status(self, workflow_id: str) -> str:
        # The raw call: only the status is needed, and decoding every search attribute (as
        # WorkflowHandle.describe does) is not.
        client = self.client or activity.client()
        try:
            resp = await client.workflow_service.describe_workflow_execution(
                DescribeWorkflowExecutionRequest(
                    namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)))
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                return "not_found"
            raise
        status = resp.workflow_execution_info.status
        return _STATUS.get(WorkflowExecutionStatus(status), "running") if status else "running"

    # --- special inspections ----------------------------------------------------------------

    @activity.defn(name="inspection.special_slot")
    async def special_slot(self, q: SpecialSlotQuery) -> SpecialSlot:
        """The special inspection of a unit to link to (one is running) or to start (a free id).

        Never a second open special inspection of one unit: a running one found in the ledger (any
        year) or under this year's ids wins; else the first unused id of the year,
        `inspection-{year}-special-{unit}`, then `-2`, `-3`... (a finished one keeps its id)."""
        rows = await self.pool.fetch(
            "SELECT workflow_id FROM inspections WHERE unit = $1 AND kind = 'special' "
            "AND stage <> 'completed' ORDER BY started_at DESC LIMIT 5", q.unit)
        for r in rows:
            if await self._status(r["workflow_id"]) == "running":
                return SpecialSlot(workflow_id=r["workflow_id"], open=True)
        for n in range(1, MAX_SPECIAL_PER_YEAR + 1):
            wid = ids.inspection(q.year, Kind.SPECIAL, q.unit, n)
            status = await self._status(wid)
            if status == "not_found":
                return SpecialSlot(workflow_id=wid, open=False)
            if status == "running":
                return SpecialSlot(workflow_id=wid, open=True)
        raise ApplicationError(
            f"{q.unit} 本年度专项督察已达 {MAX_SPECIAL_PER_YEAR} 次 / too many special inspections of {q.unit}",
            type="TooManyInspections", non_retryable=True)

    # --- the unit inspection ledger -------------------------------------------------------

    @activity.defn(name="ledger.record_inspection")
    async def record_inspection(self, req: RecordInspection) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            return await write_inspection(conn, self._chain(), [req.event], req.snapshot, req.method,
                                          req.findings, req.evaluation)

    # --- risk indicators ------------------------------------------------------------------

    @activity.defn(name="risk.indicators")
    async def indicators(self, q: IndicatorQuery) -> IndicatorRows:
        """Each unit's indicator sums over the periods [first, last]."""
        rows = await self.pool.fetch(
            "SELECT unit, sum(complaints)::int AS complaints, sum(lost_lawsuits)::int AS lost_lawsuits, "
            "sum(revoked_decisions)::int AS revoked_decisions, count(*)::int AS periods "
            "FROM risk_indicators WHERE period BETWEEN $1 AND $2 GROUP BY unit ORDER BY unit",
            q.first_period, q.last_period)
        return IndicatorRows(rows=[UnitIndicators(**dict(r)) for r in rows])

    async def load_indicators(self, rows: list[IndicatorRow], source: str = "") -> IndicatorLoadReport:
        """Upsert indicator rows in one transaction (all or nothing); every unit must be registered."""
        report = IndicatorLoadReport()
        async with self.pool.acquire() as conn, conn.transaction():
            known = {r["code"] for r in await conn.fetch(
                "SELECT code FROM parties WHERE code = ANY($1::text[])", sorted({r.unit for r in rows}))}
            missing = sorted({r.unit for r in rows} - known)
            if missing:
                raise ValueError(f"登记册中没有这些单位 / unknown units: {', '.join(missing)}")
            for r in rows:
                old = await conn.fetchrow(
                    "SELECT complaints, lost_lawsuits, revoked_decisions FROM risk_indicators "
                    "WHERE unit = $1 AND period = $2 FOR UPDATE", r.unit, r.period)
                key = f"{r.unit} {r.period}"
                values = (r.complaints, r.lost_lawsuits, r.revoked_decisions)
                if old is not None and tuple(old.values()) == values:
                    report.unchanged.append(key)
                    continue
                await conn.execute(
                    "INSERT INTO risk_indicators (unit, period, complaints, lost_lawsuits, revoked_decisions, "
                    "source) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (unit, period) DO UPDATE SET "
                    "complaints = EXCLUDED.complaints, lost_lawsuits = EXCLUDED.lost_lawsuits, "
                    "revoked_decisions = EXCLUDED.revoked_decisions, source = EXCLUDED.source, "
                    "loaded_at = now()", r.unit, r.period, *values, source)
                (report.added if old is None else report.updated).append(key)
        log.info("risk indicators loaded", source=source, result=report.summary())
        return report
