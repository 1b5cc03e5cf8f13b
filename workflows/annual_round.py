"""AnnualInspectionRound (年度平时督察): every enforcement unit inspected once a year, in batches.

    plan (carried-over problems first, then last year's worst scores, then the rest)
      └▶ batch 1 opens ─▶ UnitInspection per unit (≤ max_parallel in flight) ─▶ … ─▶ batch n opens
           every unit covered ─▶ completed
           due date with units not covered ─▶ inspection.coverage_gap to law_office and
           coordination_group; the rest are still inspected (closing) until none is left

Unit inspections are started in waves by the `inspection.start` activity (REJECT_DUPLICATE: an id
taken already counts as in progress and is checked at once) rather than as child workflows: the
round continues as new along the year, and
- a unit inspection must outlive the run that started it (what ParentClosePolicy.ABANDON would
  give), while the run's history should not carry three child events per unit;
- the time-skipping test server stops skipping time for children whose parent continued as new
  (temporalio/sdk-java#1539), so a child-based round cannot be tested over a year.
Each inspection reports back by the signal `inspection_progress` (sent by workflow id, so it
reaches the current run). A weekly describe check catches one that ended without reporting
(terminated by an operator, failed before it could say so, or started by someone else under the
same id). The round's whole state travels in its input across continue-as-new, which happens every
CAN_AFTER_STARTS inspections started, or earlier when the history grows; the units are kept there as
compact columns and counted as they change (rules/round_units.py), so neither a report nor the
hand-over grows faster than the number of units.

Started by schedule `annual-inspection` with `{"year": null}`: the year is the scheduled start
time's year in Asia/Shanghai, and the scheduled run starts the round under its conventional id
`annual-inspection-{year}` and ends (a round already started for that year is left alone).
"""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import date, datetime, time, timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from rules.round_planning import (
        PlanningError,
        PlanUnit,
        later_batch,
        plan_round,
        priority_order,
    )
    from rules.round_units import RoundUnits
    from schemas.codes import AgencyCode
    from schemas.common import LAW_OFFICE, HistoryEntry
    from schemas.events import EventType
    from schemas.inspection import (
        DescribeQuery,
        InspectionProgress,
        InspectionToStart,
        Kind,
        StartInspections,
        Trigger,
        TriggerType,
        UnitInspectionStart,
    )
    from schemas.ledger import LedgerEvent
    from schemas.round import (
        ROUND_MANAGERS,
        AddUnit,
        BatchCoverage,
        BatchSlot,
        Coverage,
        PauseRound,
        PostponeUnit,
        RecordRound,
        ResumeRound,
        RoundInputsQuery,
        RoundResult,
        RoundSnapshot,
        RoundStage,
        RoundStart,
        RoundState,
        RoundUnitRow,
        UnitTable,
    )

from workflows import calls
from workflows.duty import CHINA
from workflows.inputs import require, usable
from workflows.search_attributes import (
    DUCHA_AGENCY,
    DUCHA_DUE_AT,
    DUCHA_KIND,
    DUCHA_LIGHT,
    DUCHA_OVERDUE,
    DUCHA_STAGE,
    DUCHA_YEAR,
)

COORDINATION_GROUP = AgencyCode.COORDINATION_GROUP.value
CAN_AFTER_STARTS = 500  # unit inspections started per run before continuing as new
START_WAVE = 100  # unit inspections started by one activity
CAN_AFTER_EVENTS = 4000  # or when the run's history grows past this
PLAN_ROWS_PER_CALL = 1000  # plan rows per ledger.record_round (about 130 KB; patch round-plan-rows-in-parts)
RECONCILE_EVERY = timedelta(days=7)
BATCH_OPENS_AT = time(9, 0)
HISTORY_KEPT = 50
GAP_LISTED = 150  # unit codes in the coverage_gap callback (the ledger keeps all)
SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
SCHEDULED_BY = SearchAttributeKey.for_keyword("TemporalScheduledById")

STAGE_NAMES = {
    RoundStage.RUNNING: "进行中",
    RoundStage.PAUSED: "已暂停",
    RoundStage.CLOSING: "已过截止日期，收尾中",
    RoundStage.COMPLETED: "已完成",
}


def _refuse(zh: str, en: str) -> None:
    raise ApplicationError(f"{zh} / {en}", type="Rejected", non_retryable=True)


def _at(day: date, at: time = BATCH_OPENS_AT) -> datetime:
    return datetime.combine(day, at, tzinfo=CHINA)


@workflow.defn(name="AnnualInspectionRound", failure_exception_types=[ValidationError])
class AnnualInspectionRound:
    @workflow.init
    def __init__(self, start: RoundStart) -> None:
        self.start = start
        # A non-object input is refused in run(); until then there is no state to carry.
        self.state: RoundState | None = start.state if isinstance(start, RoundStart) else None
        # The units live here while the run goes on (counted as they change, rules/round_units.py);
        # state.table and state.queue are written back only when the run continues as new.
        self.units: RoundUnits | None = None
        self.queue: deque[int] = deque()
        if self.state is not None:
            self._load(self.state)
        self.lock = asyncio.Lock()
        self.wake = False
        self.finished = False
        self.started_this_run = 0
        self.check_now: set[str] = set()
        self.alarms: dict[datetime, asyncio.Task] = {}
        self.shown: tuple | None = None

    # --- the process ---------------------------------------------------------------------

    @workflow.run
    async def run(self, start: RoundStart) -> RoundResult:
        start = require(start, RoundStart)
        if self.state is None:
            year = start.year or self._scheduled_year()
            canonical = f"annual-inspection-{year}"
            if start.year is None and self._by_schedule() and workflow.info().workflow_id != canonical:
                return await self._launch(year, canonical)
            await self._plan(year)
        return await self._drive()

    def _scheduled_year(self) -> int:
        at = workflow.info().typed_search_attributes.get(SCHEDULED_START)
        return (at or workflow.now()).astimezone(CHINA).year

    def _by_schedule(self) -> bool:
        return workflow.info().typed_search_attributes.get(SCHEDULED_BY) is not None

    async def _launch(self, year: int, canonical: str) -> RoundResult:
        """The scheduled run: start this year's round under its own id, then end."""
        s = self.start
        workflow.set_current_details(f"定时任务：启动 {year} 年度平时督察 {canonical}")
        try:
            await workflow.start_child_workflow(
                "AnnualInspectionRound",
                RoundStart(year=year, start_on=s.start_on, due_on=s.due_on, batches=s.batches,
                           max_parallel=s.max_parallel),
                id=canonical, parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"{year}年度平时督察（全覆盖）")
            already = False
        except WorkflowAlreadyStartedError:
            already = True
        return RoundResult(workflow_id=workflow.info().workflow_id, year=year, launched=canonical,
                           already_running=already)

    async def _plan(self, year: int) -> None:
        s, today = self.start, self._today()
        start_on = s.start_on or max(date(year, 1, 1), today)
        due_on = s.due_on or date(year, 12, 31)
        if start_on.year != year or due_on.year != year:
            _refuse(f"开始和截止日期须在 {year} 年内", f"start_on and due_on must be in {year}")
        if due_on < today:
            _refuse(f"截止日期 {due_on} 已过", f"due_on {due_on} has passed")
        inputs = await calls.round_inputs(RoundInputsQuery(year=year))
        units = [PlanUnit(code=u.code, level=u.level, carried_over=u.carried_over, last_score=u.last_score,
                          focus=tuple(u.focus)) for u in inputs.units]
        try:
            batches = plan_round(units, start_on=start_on, due_on=due_on, batches=s.batches, today=today)
        except PlanningError as exc:
            _refuse(str(exc), "the round cannot be planned")
        in_batch = {code: i for i, b in enumerate(batches) for code in b.units}
        ordered = priority_order(units)  # the batches cut this order, so plan order = priority
        self.units = RoundUnits.planned(
            year, [(u.code, in_batch[u.code]) for u in ordered],
            carried_over={u.code: u.carried_over for u in ordered},
            last_score={u.code: u.last_score for u in ordered}, focus={u.code: u.focus for u in ordered})
        self.state = RoundState(
            year=year, start_on=start_on, due_on=due_on, max_parallel=s.max_parallel,
            batches=[BatchSlot(number=b.number, opens_on=b.opens_on) for b in batches],
            table=UnitTable(codes=[], batch=[], status="", attempts=[]), planned_at=workflow.now())
        rows = [self._row(i) for i in range(len(self.units))]
        if len(rows) > PLAN_ROWS_PER_CALL and workflow.patched("round-plan-rows-in-parts"):
            # A plan of thousands of units in one activity input outgrows Temporal's payload limit
            # (about 134 bytes a row): the rows go in parts first, the last part with the event.
            while len(rows) > PLAN_ROWS_PER_CALL:
                part, rows = rows[:PLAN_ROWS_PER_CALL], rows[PLAN_ROWS_PER_CALL:]
                await calls.record_round(RecordRound(snapshot=self._snapshot(), units=part))
        await self._step("planned", "系统", COORDINATION_GROUP,
                         data={"units": len(self.units), "batches": len(batches),
                               "carried_over_units": sum(1 for u in units if u.carried_over),
                               "opens_on": [b.opens_on.isoformat() for b in batches]},
                         units=rows)

    def _load(self, st: RoundState) -> None:
        """The units and the queue of a run continued as new (O(units), once per run)."""
        t = st.table
        self.units = RoundUnits(st.year, t.codes, t.batch, t.status, t.attempts, postponed=t.postponed,
                                added=t.added, carried_over=t.carried_over, last_score=t.last_score,
                                focus=t.focus)
        self.queue = deque(st.queue)

    def _carry(self) -> RoundState:
        """The state to continue as new with: the units and queue written back, compact."""
        st = self._st
        st.table = UnitTable(**self._u.columns())
        st.queue = list(self.queue)
        return st

    async def _drive(self) -> RoundResult:
        st = self._st
        while True:
            self.wake = False
            async with self.lock:
                await self._open_batches()
                await self._start_ready()
                await self._reconcile_if_due()
                if self._past_due() and not st.gap_escalated:
                    await self._escalate_gap()
                if self._done():
                    break
                await self._refresh()
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                await self._record()  # the ledger's coverage at the hand-over
                st.runs += 1
                workflow.continue_as_new(RoundStart(year=st.year, batches=self.start.batches,
                                                    max_parallel=st.max_parallel, state=self._carry()))
            self._set_alarm(self._next_wake())
            await workflow.wait_condition(lambda: self.wake)
        async with self.lock:
            self.finished = True
            c = dict(self._u.counts)
            await self._step("completed", "系统", COORDINATION_GROUP,
                             data={"completed": c["completed"], "not_covered": c["total"] - c["completed"]})
            await self._refresh()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return RoundResult(workflow_id=workflow.info().workflow_id, year=st.year, total=c["total"],
                           completed=c["completed"], not_covered=self._u.not_covered(), runs=st.runs)

    async def _open_batches(self) -> None:
        st = self._st
        now = workflow.now()
        for index, b in enumerate(st.batches):
            if b.opened or self._opens_at(b) > now:
                continue
            b.opened = True
            ready = self._u.planned_in(index)  # in priority order
            queued = set(self.queue)
            self.queue.extend(i for i in ready if i not in queued)
            await self._step("batch_opened", "系统", COORDINATION_GROUP,
                             data={"batch": b.number, "units": len(ready)})

    async def _start_ready(self) -> None:
        """Start waiting units while there is a free slot (never more than max_parallel)."""
        st = self._st
        if st.paused:
            return
        units, queue = self._u, self.queue
        free = st.max_parallel - units.counts["in_progress"]
        take: list[int] = []
        while queue and len(take) < free and self.started_this_run + len(take) < CAN_AFTER_STARTS:
            i = queue.popleft()
            if units.is_planned(i):
                take.append(i)
        if not take:
            return
        for i in take:
            units.start(i)
        # Started through an activity in waves of START_WAVE (see the module docstring).
        items = [self._to_start(i) for i in take]
        waves = [items[i:i + START_WAVE] for i in range(0, len(items), START_WAVE)]
        results = await asyncio.gather(*(calls.start_inspections(
            StartInspections(task_queue=workflow.info().task_queue, items=wave)) for wave in waves))
        for r in results:
            # Taken already (an operator, or a retry of this wave): in progress, and checked at once.
            self.check_now.update(r.existing)
        self.started_this_run += len(take)
        st.started += len(take)
        if st.next_reconcile_at is None:
            st.next_reconcile_at = workflow.now() + RECONCILE_EVERY

    def _to_start(self, i: int) -> InspectionToStart:
        st, units = self._st, self._u
        code, wid = units.codes[i], units.workflow_id(i)
        assert wid is not None
        return InspectionToStart(
            workflow_id=wid,
            start=UnitInspectionStart(
                unit=code, year=st.year, kind=Kind.ROUTINE, lead=AgencyCode.COORDINATION_GROUP,
                trigger=Trigger(type=TriggerType.ANNUAL, ref=workflow.info().workflow_id),
                focus=list(units.focus.get(i, ()))),
            summary=f"{st.year}年度平时督察：{code}（第{st.batches[units.batch[i]].number}批）")

    async def _reconcile_if_due(self) -> None:
        st, units = self._st, self._u
        running = units.running  # workflow id -> unit, kept as units start and finish
        if not running:
            st.next_reconcile_at = None
            self.check_now.clear()
            return
        due = st.next_reconcile_at is not None and workflow.now() >= st.next_reconcile_at
        ids = sorted(running) if due else sorted(w for w in self.check_now if w in running)
        self.check_now.clear()
        if due:
            st.next_reconcile_at = workflow.now() + RECONCILE_EVERY
        if not ids:
            return
        asked = {wid: running[wid] for wid in ids}
        found = await calls.describe(DescribeQuery(workflow_ids=ids))
        for wid, status in found.status.items():
            i = asked.get(wid)
            if i is None or units.workflow_id(i) != wid or not units.in_progress(i):
                continue  # reported meanwhile
            if status == "completed":
                units.complete(i)
            elif status != "running":
                units.fail(i)

    async def _escalate_gap(self) -> None:
        """At the due date every unit not yet covered is escalated (责任追究)."""
        st = self._st
        st.gap_escalated = True
        gap = self._u.not_covered()
        st.gap_count = n = len(gap)
        if not gap:
            return
        listed = "、".join(gap[:20]) + ("等" if n > 20 else "")
        await self._step(
            "coverage_gap", "系统", "",
            data={"not_covered": n, "units": gap},
            notify=(EventType.INSPECTION_COVERAGE_GAP, [LAW_OFFICE, COORDINATION_GROUP],
                    f"{st.year}年度平时督察已到截止日期（{st.due_on:%Y年%m月%d日}），仍有 {n} 个执法单位"
                    f"未完成督察：{listed}，请督办"),
            notify_data={"not_covered": n, "units": ",".join(gap[:GAP_LISTED]),
                         "listed": min(n, GAP_LISTED), "due_on": st.due_on.isoformat()})

    def _done(self) -> bool:
        return self._u.done(gap_escalated=self._st.gap_escalated)

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return (self.started_this_run >= CAN_AFTER_STARTS
                or info.get_current_history_length() >= CAN_AFTER_EVENTS
                or info.is_continue_as_new_suggested())

    def _next_wake(self) -> datetime | None:
        st = self._st
        times = [self._opens_at(b) for b in st.batches if not b.opened]
        if not st.gap_escalated:
            times.append(self._due_at())
        if st.next_reconcile_at is not None:
            times.append(st.next_reconcile_at)
        return min(times) if times else None

    def _set_alarm(self, at: datetime | None) -> None:
        """A durable timer for the next thing to do. Timers are never cancelled (a signal from a
        child then costs no timer events, and the time-skipping test server strands a run that
        cancels a timer which fired meanwhile, temporalio/sdk-java#3088): a new one is started only
        when no pending one rings at or before `at`; one that rings too early just wakes an idle
        pass of the loop."""
        self.alarms = {t: task for t, task in self.alarms.items() if not task.done()}
        if at is None or any(t <= at for t in self.alarms):
            return
        delay = at - workflow.now()
        if delay <= timedelta(0):
            self.wake = True
            return

        async def ring() -> None:
            await workflow.sleep(delay, summary=f"下一步 {at.astimezone(CHINA):%Y-%m-%d %H:%M}")
            self.wake = True

        self.alarms[at] = asyncio.create_task(ring())

    # --- children report back ------------------------------------------------------------

    @workflow.signal
    def inspection_progress(self, p: InspectionProgress) -> None:
        """From a UnitInspection of this round: overdue, completed or failed."""
        units = self.units
        if units is None or not usable(p, InspectionProgress):
            return
        i = units.index.get(p.unit)
        if i is None or units.workflow_id(i) != p.workflow_id:
            return
        if p.event == "overdue":
            units.mark_overdue(i)  # only while in progress
        elif p.event == "completed":
            units.complete(i)
        elif p.event == "failed":
            units.fail(i)  # only while in progress
        self.wake = True

    # --- operator actions ----------------------------------------------------------------

    @workflow.update
    async def add_unit(self, action: AddUnit) -> Coverage:
        """新增单位: a unit added mid-year joins the next batch that has not opened (or starts
        at once when none is left); a failed unit is inspected again."""
        await workflow.wait_condition(lambda: self.state is not None)
        async with self.lock:
            self._check_add(action)
            if workflow.patched("authorize-operators"):
                await calls.authorize(action.operator, action.agency, "round.manage")
            st = self._st
            found = await calls.require_parties([action.unit])
            party = found.found[action.unit]
            if party.kind != "unit":
                _refuse(f"{action.unit} 不是行政执法单位", f"{action.unit} is not an enforcement unit")
            index, day = later_batch([(b.opens_on, b.opened) for b in st.batches], today=self._today(),
                                     not_before=self._today(), due_on=st.due_on)
            if index is None:
                index = self._new_batch(day)
            units = self._u
            i = units.index.get(action.unit)
            if i is None:
                i = units.add(action.unit, index)  # last in priority
            else:
                units.plan_again(i, index)
            b = st.batches[index]
            await self._step("unit_added", action.operator, action.agency, note=action.note,
                             data={"unit": action.unit, "batch": b.number, "opens_on": b.opens_on.isoformat()},
                             units=[self._row(i)])
            self.wake = True
        return self.coverage()

    @add_unit.validator
    def _check_add(self, action: AddUnit) -> None:
        self._manager(action, "新增督察单位")
        i = self.units.index.get(action.unit) if self.units else None
        if i is not None and not self.units.is_failed(i):
            _refuse(f"{action.unit} 已在本轮督察中", f"{action.unit} is already in this round")

    @workflow.update
    async def postpone_unit(self, action: PostponeUnit) -> Coverage:
        """推迟: a unit not yet started moves to a later batch (default: the next one)."""
        await workflow.wait_condition(lambda: self.state is not None)
        async with self.lock:
            self._check_postpone(action)
            if workflow.patched("authorize-operators"):
                await calls.authorize(action.operator, action.agency, "round.manage")
            st, units, today = self._st, self._u, self._today()
            i = units.index[action.unit]
            base = max(st.batches[units.batch[i]].opens_on, today)
            index, day = later_batch([(b.opens_on, b.opened) for b in st.batches], today=today,
                                     not_before=action.until or base + timedelta(days=1), due_on=st.due_on)
            if index is None:
                if action.until is None:
                    day = min(base + timedelta(days=30), st.due_on)  # a new batch a month later
                if day <= base:
                    _refuse("截止日期前已没有可推迟的日期", "there is no later day before the due date")
                index = self._new_batch(day)
            units.postpone(i, index, action.reason)
            if i in self.queue:
                self.queue.remove(i)
            b = st.batches[index]
            await self._step("unit_postponed", action.operator, action.agency, note=action.reason,
                             data={"unit": action.unit, "batch": b.number, "opens_on": b.opens_on.isoformat()},
                             units=[self._row(i)])
            self.wake = True
        return self.coverage()

    @postpone_unit.validator
    def _check_postpone(self, action: PostponeUnit) -> None:
        self._manager(action, "推迟督察")
        if self.state is None or self.units is None:
            return
        i = self.units.index.get(action.unit)
        if i is None:
            _refuse(f"{action.unit} 不在本轮督察中", f"{action.unit} is not in this round")
        elif not self.units.is_planned(i):
            _refuse(f"{action.unit} 的督察已开始或已结束，不能推迟",
                    f"the inspection of {action.unit} has already started")
        if action.until is not None and not self._today() < action.until <= self.state.due_on:
            _refuse(f"推迟日期须在今天之后、截止日期 {self.state.due_on} 之前",
                    "until must be after today and not after the due date")
        if (action.until is not None and i is not None
                and action.until <= self.state.batches[self.units.batch[i]].opens_on):
            _refuse("推迟日期须晚于该单位所在批次的开始日期",
                    "until must be after the opening day of the unit's batch")

    @workflow.update
    async def pause(self, action: PauseRound) -> Coverage:
        """暂停: no new unit inspection starts; those in progress go on."""
        await workflow.wait_condition(lambda: self.state is not None)
        async with self.lock:
            self._check_pause(action)
            if workflow.patched("authorize-operators"):
                await calls.authorize(action.operator, action.agency, "round.manage")
            self._st.paused, self._st.pause_reason = True, action.reason
            await self._step("paused", action.operator, action.agency, note=action.reason)
            await self._refresh()
        return self.coverage()

    @pause.validator
    def _check_pause(self, action: PauseRound) -> None:
        self._manager(action, "暂停")
        if self.state is not None and self.state.paused:
            _refuse("本轮督察已暂停", "the round is already paused")

    @workflow.update
    async def resume(self, action: ResumeRound) -> Coverage:
        """恢复: waiting units start again."""
        await workflow.wait_condition(lambda: self.state is not None)
        async with self.lock:
            self._check_resume(action)
            if workflow.patched("authorize-operators"):
                await calls.authorize(action.operator, action.agency, "round.manage")
            self._st.paused, self._st.pause_reason = False, ""
            await self._step("resumed", action.operator, action.agency, note=action.note)
            self.wake = True
        return self.coverage()

    @resume.validator
    def _check_resume(self, action: ResumeRound) -> None:
        self._manager(action, "恢复")
        if self.state is None or not self.state.paused:
            _refuse("本轮督察未暂停", "the round is not paused")

    @workflow.query
    def coverage(self) -> Coverage:
        st, units = self._st, self._u
        c = units.counts
        per = [BatchCoverage(number=b.number, opens_on=b.opens_on, opened=b.opened, **units.batch_counts(i))
               for i, b in enumerate(st.batches)]
        return Coverage(
            year=st.year, stage=self._stage(), paused=st.paused, start_on=st.start_on, due_on=st.due_on,
            max_parallel=st.max_parallel, total=c["total"], planned=c["planned"],
            in_progress=c["in_progress"], completed=c["completed"], overdue=c["overdue"],
            failed=c["failed"], not_covered=c["total"] - c["completed"], postponed=c["postponed"], added=c["added"],
            batches=per, gap_escalated=st.gap_escalated, not_covered_units=units.not_covered(200),
            runs=st.runs, history=list(st.history))

    # --- helpers -------------------------------------------------------------------------

    @property
    def _st(self) -> RoundState:
        if self.state is None:
            _refuse("本轮督察尚在计划中，请稍后再试", "the round is still being planned; try again")
        return self.state

    def _manager(self, action, what: str) -> None:
        if action.agency not in ROUND_MANAGERS:
            _refuse(f"只有 {'、'.join(ROUND_MANAGERS)} 可以{what}，{action.agency} 无权操作",
                    f"only {', '.join(ROUND_MANAGERS)} may do this; {action.agency} may not")
        if self.finished:
            _refuse("本轮督察已完成", "the round has completed")

    def _today(self) -> date:
        return workflow.now().astimezone(CHINA).date()

    def _opens_at(self, b: BatchSlot) -> datetime:
        """When batch `b` opens: 09:00 (China) on its day, except a batch of the day the round was
        planned, which opens when it was planned if that is earlier: a round started at 03:00
        starts its inspections at once instead of six hours later (patch first-batch-opens-at-start;
        the bench no longer depends on the time of day)."""
        at, planned = _at(b.opens_on), self._st.planned_at
        if (at > planned and b.opens_on == planned.astimezone(CHINA).date()
                and workflow.patched("first-batch-opens-at-start")):
            return planned
        return at

    def _due_at(self) -> datetime:
        return _at(self._st.due_on + timedelta(days=1), time(0, 0))

    def _past_due(self) -> bool:
        return workflow.now() >= self._due_at()

    def _new_batch(self, day: date) -> int:
        """A batch opening on `day`: an unopened one of that day is reused."""
        st = self._st
        for i, b in enumerate(st.batches):
            if not b.opened and b.opens_on == day:
                return i
        st.batches.append(BatchSlot(number=len(st.batches) + 1, opens_on=day))
        return len(st.batches) - 1

    def _stage(self) -> RoundStage:
        if self.finished:
            return RoundStage.COMPLETED
        if self._st.paused:
            return RoundStage.PAUSED
        if self._past_due():
            return RoundStage.CLOSING
        return RoundStage.RUNNING

    @property
    def _u(self) -> RoundUnits:
        if self.units is None:
            _refuse("本轮督察尚在计划中，请稍后再试", "the round is still being planned; try again")
        return self.units

    def _row(self, i: int) -> RoundUnitRow:
        units, b = self._u, self._st.batches[self._u.batch[i]]
        return RoundUnitRow(unit=units.codes[i], batch=b.number, opens_on=b.opens_on, priority=i,
                            carried_over=units.carried_over.get(i, 0), last_score=units.last_score.get(i),
                            postponed=units.postponed.get(i, ""), added=i in units.added)

    def _snapshot(self) -> RoundSnapshot:
        st, c = self._st, self._u.counts
        return RoundSnapshot(
            round_id=workflow.info().workflow_id, year=st.year, stage=self._stage().value,
            start_on=st.start_on, due_on=st.due_on, batches=len(st.batches), max_parallel=st.max_parallel,
            total=c["total"], planned=c["planned"], in_progress=c["in_progress"], completed=c["completed"],
            overdue=c["overdue"], failed=c["failed"], not_covered=c["total"] - c["completed"], paused=st.paused,
            gap_escalated=st.gap_escalated, runs=st.runs, planned_at=st.planned_at,
            closed_at=workflow.now() if self.finished else None)

    async def _record(self) -> None:
        await calls.record_round(RecordRound(snapshot=self._snapshot()))

    async def _step(self, event: str, operator: str, agency: str, *, note: str = "",
                    data: dict | None = None, notify: tuple | None = None, notify_data: dict | None = None,
                    units: list[RoundUnitRow] | None = None) -> None:
        """Record one round event: history, ledger (snapshot, event, plan rows), callback."""
        st = self._st
        now = workflow.now()
        seq = st.seq
        st.seq += 1
        st.history.append(HistoryEntry(at=now, action=event, operator=operator, agency=agency, note=note[:200]))
        del st.history[:-HISTORY_KEPT]
        await calls.record_round(RecordRound(
            snapshot=self._snapshot(),
            event=LedgerEvent(seq=seq, event=event, actor=operator, agency=agency, occurred_at=now,
                              data={"note": note[:500], **(data or {})}),
            units=units or []))
        if notify is not None:
            kind, recipients, summary = notify
            await calls.notify(seq, kind, recipients, summary,
                               {"year": st.year, "round_id": workflow.info().workflow_id, **(notify_data or {})})

    async def _refresh(self) -> None:
        """Search attributes (only when they change: each upsert is a history event) and the
        Chinese current details."""
        st, c = self._st, self._u.counts
        not_covered = c["total"] - c["completed"]
        stage = self._stage()
        gap = self._past_due() and not_covered > 0
        if gap:
            colour = "red"
        elif not_covered and workflow.now() >= self._due_at() - timedelta(days=30):
            colour = "yellow"
        else:
            colour = "green"
        shown = (stage, colour, gap)
        if shown != self.shown:
            self.shown = shown
            workflow.upsert_search_attributes([
                DUCHA_KIND.value_set("round"),
                DUCHA_YEAR.value_set(st.year),
                DUCHA_STAGE.value_set(stage.value),
                DUCHA_AGENCY.value_unset() if self.finished else DUCHA_AGENCY.value_set(COORDINATION_GROUP),
                DUCHA_DUE_AT.value_unset() if self.finished else DUCHA_DUE_AT.value_set(self._due_at()),
                DUCHA_OVERDUE.value_set(gap and not self.finished),
                DUCHA_LIGHT.value_set(colour),
            ])
        opened = sum(b.opened for b in st.batches)
        lines = [f"**{st.year}年度平时督察**（{st.start_on:%m-%d} 至 {st.due_on:%Y-%m-%d}）",
                 f"阶段：{STAGE_NAMES[stage]}" + (f"（{st.pause_reason}）" if st.paused else ""),
                 f"单位 {c['total']} 个：已完成 {c['completed']}，督察中 {c['in_progress']}"
                 f"（逾期 {c['overdue']}），待督察 {c['planned']}，异常 {c['failed']}",
                 f"批次：已开启 {opened}/{len(st.batches)}，同时督察上限 {st.max_parallel}"]
        nxt = next((b for b in st.batches if not b.opened), None)
        if nxt:
            lines.append(f"下一批：第{nxt.number}批 {nxt.opens_on:%Y-%m-%d}")
        if st.gap_escalated and st.gap_count:
            lines.append(f"截止时未覆盖 {st.gap_count} 个单位，已报送依法治县办和执法协调小组")
        workflow.set_current_details("\n\n".join(lines))
