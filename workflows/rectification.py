"""Rectification (督察督办): one problem from point-to-point feedback to close-off (销号).

    rectifying ──submit_report──▶ reported ──review: accept──▶ accepted ──(look-back timer)──▶
        ▲  (unit, by the deadline)     │ review: reject                         lookback
        └──────────────────────────────┘ (new deadline)      record_lookback: pass ─▶ closed
        ▲                                                     record_lookback: fail ─┐
        └──────────────────────────── reopened with a new deadline ◀────────────────┘

The rectification deadline has due-soon (催办 beforehand), overdue (催办 to the unit and its
leader in charge) and, after a grace period, 拒不整改: a special inspection of the unit and a
clue to the discipline commission. Every year end an unfinished problem is carried over so that
next year's round inspects its unit first. The case kernel (workflows/case.py) does the rest.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from rules.deadline_steps import DeadlineState, Step
    from rules.permissions import Action
    from schemas import ids
    from schemas.calendar import DeadlineRequest
    from schemas.case import CaseKind
    from schemas.common import DISCIPLINE, LAW_OFFICE, ExtendDeadline, Link
    from schemas.events import EventType
    from schemas.inspection import TriggerType
    from schemas.ledger import LedgerEvent, ProblemText, RecordRectification, RectificationSnapshot
    from schemas.rectification import (
        RecordLookback,
        RectificationResult,
        RectificationStart,
        RectificationState,
        RectificationStatus,
        Review,
        Stage,
        SubmitReport,
    )

from workflows import calls
from workflows.case import SYSTEM, Case, Notice, refuse
from workflows.duty import CHINA, view, watch
from workflows.escalation import open_discipline_clue
from workflows.inputs import require
from workflows.special import open_special_inspection

# Who may review and record look-backs: the inspection team (督察组).
INSPECTION_TEAM = ("law_office", "coordination_group", "justice")
DEADLINE = "rectification"


@workflow.defn(name="Rectification", failure_exception_types=[ValidationError])
class Rectification(Case):
    KIND = CaseKind.RECTIFICATION
    NOUN = ("问题", "problem")
    STAGE_NAMES = {Stage.RECTIFYING: "整改中", Stage.REPORTED: "待验收", Stage.ACCEPTED: "已验收，待回头看",
                   Stage.LOOKBACK: "回头看", Stage.CLOSED: "已销号"}
    DEADLINE_NAMES = {DEADLINE: "整改时限"}
    LEGACY_PROVISIONAL = ("assign", "each")

    s: RectificationState

    @workflow.init
    def __init__(self, start: RectificationStart) -> None:
        self.start = start
        self.init_case(RectificationState())

    @property
    def closed(self) -> bool:
        return self.s.stage is Stage.CLOSED

    # --- the process ---------------------------------------------------------------------

    @workflow.run
    async def run(self, start: RectificationStart) -> RectificationResult:
        start = require(start, RectificationStart)
        if not self.begin(start.resume, unit=start.unit, year=self.today().year):
            await self._require_rectification(start)
        year_end = asyncio.create_task(self._carry_over_each_year_end())
        while not self.closed:
            if self.should_continue():
                await self.carry_on(start, year_end)
            if self.s.stage is Stage.RECTIFYING:
                await watch(get_state=lambda: self.s.deadlines.get(DEADLINE),
                            done=lambda: self.s.stage is not Stage.RECTIFYING or self.should_continue(),
                            on_step=self._on_deadline_step)
            elif self.s.stage is Stage.ACCEPTED:
                await self._await_lookback()
            else:
                stage = self.s.stage
                await workflow.wait_condition(lambda stage=stage: self.s.stage is not stage
                                              or self.should_continue())
        await self.settle(year_end)
        return RectificationResult(problem_no=start.problem_no, stage=self.s.stage,
                                   reopened=self.s.reopened, escalated=self.s.escalated,
                                   carried_over=self.s.carried_over, links=self.s.links)

    async def _require_rectification(self, start: RectificationStart) -> None:
        """下达整改: the unit must rectify by the deadline."""
        self.s.times["required_at"] = workflow.now()
        async with self.lock:
            await self.load_parties([start.unit, LAW_OFFICE, *INSPECTION_TEAM])
            if start.due_on is not None and start.due_on < self.today():
                refuse(f"整改时限 {start.due_on} 早于今天", "due_on is in the past")
            await self.plan(DEADLINE, self._deadline_request(start.due_on, start.due_in_working_days))
            await self.step("required", start.issued_by, LAW_OFFICE,
                            text=ProblemText(description=start.description, basis=start.basis,
                                             opinion=start.opinion),
                            notify=Notice(EventType.RECTIFICATION_REQUIRED, [start.unit, LAW_OFFICE],
                                          f"问题 {start.problem_no} 须于{self.due_text(DEADLINE)}前整改到位"),
                            data={"opinion": start.opinion[:500], "category": start.category,
                                  "list": start.list.value})
            self.refresh()
            self.opened()

    def _deadline_request(self, due_on: date | None, working_days: int | None) -> DeadlineRequest:
        t = self.start.timings
        if due_on is not None:
            return self.request(due_on=due_on, remind=t.remind_working_days_before, grace=t.grace_working_days)
        return self.request(working_days=working_days, remind=t.remind_working_days_before,
                            grace=t.grace_working_days)

    async def _await_lookback(self) -> None:
        """回头看: a durable timer of `lookback_after_days`, then the team re-checks."""
        due = self.s.lookback_due_at
        assert due is not None
        delay = due - workflow.now()
        if delay > timedelta(0):
            try:
                await workflow.wait_condition(
                    lambda: self.s.stage is not Stage.ACCEPTED or self.should_continue(), timeout=delay,
                    timeout_summary=f"回头看 {due.astimezone(CHINA):%Y-%m-%d}")
                return
            except TimeoutError:
                pass
        async with self.lock:
            if self.s.stage is not Stage.ACCEPTED:
                return
            self.s.stage = Stage.LOOKBACK
            await self.step("lookback_due", SYSTEM, "",
                            notify=Notice(EventType.RECTIFICATION_LOOKBACK_DUE, [LAW_OFFICE, self.start.unit],
                                          f"问题 {self.start.problem_no} 已到回头看时间，请督察组复查"))
            self.refresh()

    async def _on_deadline_step(self, state: DeadlineState, step: Step) -> None:
        async with self.lock:
            if self.s.stage is not Stage.RECTIFYING or not state.open:
                return
            unit, no, due = self.start.unit, self.start.problem_no, self.due_text(DEADLINE)
            if step is Step.REMIND:
                await self.step("due_soon", SYSTEM, "",
                                notify=Notice(EventType.RECTIFICATION_DUE_SOON, [unit],
                                              f"问题 {no} 的整改时限为{due}，即将到期"))
            elif step is Step.OVERDUE:
                self.s.missed += 1
                await self.step("overdue", SYSTEM, "", data={"attention": "分管领导"},
                                notify=Notice(EventType.RECTIFICATION_OVERDUE, [unit, LAW_OFFICE],
                                              f"催办：问题 {no} 已超过整改时限（{due}），请单位分管领导督促整改"))
            else:
                await self._escalate()
            self.refresh()

    async def _escalate(self) -> None:
        """拒不整改: a special inspection of the unit and a clue to the discipline commission."""
        self.s.escalated = True
        unit, no = self.start.unit, self.start.problem_no
        if workflow.patched("start-special-inspection"):
            link, _ = await open_special_inspection(
                unit, trigger=TriggerType.REFUSAL, ref=workflow.info().workflow_id, focus=[no])
            self.s.links.append(link)
        else:  # histories recorded before special inspections were started only linked one
            self.s.links.append(Link(relation="special_inspection",
                                     workflow_id=ids.inspection(self.today().year, "special", unit)))
        n = self.s.missed
        self.s.links.append(await open_discipline_clue(
            clue_no=f"{no}-R{n}", workflow_id=ids.escalation(workflow.info().workflow_id, n), subject=unit,
            title=f"{unit} 逾期拒不整改问题 {no}",
            summary=f"拒不整改：问题 {no}（{unit}）→ 县纪委监委",
        ))
        await self.step("escalated", SYSTEM, "",
                        data={"links": ",".join(link.workflow_id for link in self.s.links[-2:])},
                        notify=Notice(EventType.RECTIFICATION_ESCALATED, [unit, LAW_OFFICE, DISCIPLINE],
                                      f"问题 {no} 超过整改时限宽限期仍未整改，视为拒不整改："
                                      "启动专项督察并移送县纪委监委"))

    async def _carry_over_each_year_end(self) -> None:
        """结转: at each year end an open problem is carried over to next year's round."""
        while not self.closed:
            today = self.today()
            next_year = datetime(today.year + 1, 1, 1, tzinfo=CHINA)
            await workflow.sleep(next_year - workflow.now(), summary=f"{today.year}年末结转检查")
            async with self.lock:
                if self.closed:
                    return
                self.s.carried_over += 1
                await self.step("carried_over", SYSTEM, "", data={"into_year": today.year + 1},
                                notify=Notice(EventType.RECTIFICATION_CARRIED_OVER, [self.start.unit, LAW_OFFICE],
                                              f"问题 {self.start.problem_no} 至{today.year}年底未销号，"
                                              f"结转为{today.year + 1}年督察重点"))
                self.refresh()

    # --- operator actions ----------------------------------------------------------------

    @workflow.update
    async def submit_report(self, action: SubmitReport) -> RectificationStatus:
        """整改报告: the unit reports the measures taken, with evidence references."""
        async with self.acting(action, Action.RECTIFICATION_SUBMIT_REPORT, self._check_report):
            self.meet(DEADLINE)
            self.s.stage = Stage.REPORTED
            self.s.times["reported_at"] = workflow.now()
            await self.step("reported", action.operator, action.agency, note=action.measures,
                            data={"evidence": len(action.evidence)},
                            notify=Notice(EventType.RECTIFICATION_REPORTED, [LAW_OFFICE],
                                          f"{self.start.unit} 已报告问题 {self.start.problem_no} 的整改情况，待验收"))
        return self.status()

    @submit_report.validator
    def _check_report(self, action: SubmitReport) -> None:
        self.require(action, Action.RECTIFICATION_SUBMIT_REPORT, (self.start.unit,), {Stage.RECTIFYING}, "报告整改情况", "report on")

    @workflow.update
    async def review(self, action: Review) -> RectificationStatus:
        """验收: the inspection team accepts the rectification or sends it back."""
        async with self.acting(action, Action.RECTIFICATION_REVIEW, self._check_review):
            no = self.start.problem_no
            if action.decision == "accept":
                self.s.stage = Stage.ACCEPTED
                self.s.times["accepted_at"] = workflow.now()
                due = workflow.now() + timedelta(days=self.start.lookback_after_days)
                self.s.lookback_due_at = due
                await self.step("accepted", action.operator, action.agency, note=action.reason,
                                notify=Notice(EventType.RECTIFICATION_ACCEPTED, [self.start.unit, LAW_OFFICE],
                                              f"问题 {no} 整改已通过验收，"
                                              f"{due.astimezone(CHINA):%Y年%m月%d日}后回头看"))
            else:
                await self._reopen(action.new_due_on)
                await self.step("rejected", action.operator, action.agency, note=action.reason,
                                notify=Notice(EventType.RECTIFICATION_REJECTED, [self.start.unit],
                                              f"问题 {no} 整改未通过验收：{action.reason[:100]}；"
                                              f"请于{self.due_text(DEADLINE)}前重新整改"))
        return self.status()

    @review.validator
    def _check_review(self, action: Review) -> None:
        self.require(action, Action.RECTIFICATION_REVIEW, INSPECTION_TEAM, {Stage.REPORTED}, "验收", "review")
        self._check_new_date(action.new_due_on)

    @workflow.update
    async def record_lookback(self, action: RecordLookback) -> RectificationStatus:
        """回头看结果: pass closes the problem off (销号); fail reopens it."""
        async with self.acting(action, Action.RECTIFICATION_RECORD_LOOKBACK, self._check_lookback):
            no = self.start.problem_no
            if action.result == "pass":
                self.s.stage = Stage.CLOSED
                self.s.times["closed_at"] = workflow.now()
                await self.step("closed", action.operator, action.agency, note=action.findings,
                                notify=Notice(EventType.RECTIFICATION_CLOSED, [self.start.unit, LAW_OFFICE],
                                              f"问题 {no} 回头看通过，予以销号"))
            else:
                self.s.reopened += 1
                await self._reopen(action.new_due_on)
                await self.step("reopened", action.operator, action.agency, note=action.findings,
                                notify=Notice(EventType.RECTIFICATION_REOPENED, [self.start.unit, LAW_OFFICE],
                                              f"问题 {no} 回头看发现问题反弹，重新整改，时限{self.due_text(DEADLINE)}"))
        return self.status()

    @record_lookback.validator
    def _check_lookback(self, action: RecordLookback) -> None:
        # A look-back may also be done early, while waiting for its timer.
        self.require(action, Action.RECTIFICATION_RECORD_LOOKBACK, INSPECTION_TEAM, {Stage.LOOKBACK, Stage.ACCEPTED}, "记录回头看", "record a look-back on")
        self._check_new_date(action.new_due_on)

    @workflow.update
    async def extend_deadline(self, action: ExtendDeadline) -> RectificationStatus:
        """延期: law_office moves the rectification deadline, a limited number of times."""
        async with self.acting(action, Action.RECTIFICATION_EXTEND_DEADLINE, self._check_extend):
            self.s.extensions += 1
            await self.plan(DEADLINE, self._deadline_request(action.new_due_on, None),
                            extensions=self.s.extensions)
            await self.step("deadline_extended", action.operator, action.agency, note=action.reason,
                            notify=Notice(EventType.RECTIFICATION_DEADLINE_EXTENDED, [self.start.unit],
                                          f"问题 {self.start.problem_no} 的整改时限延至{self.due_text(DEADLINE)}"))
        return self.status()

    @extend_deadline.validator
    def _check_extend(self, action: ExtendDeadline) -> None:
        self.require(action, Action.RECTIFICATION_EXTEND_DEADLINE, (LAW_OFFICE,), {Stage.RECTIFYING}, "延期", "extend the deadline of")
        limit = self.start.timings.max_extensions
        if self.s.extensions >= limit:
            refuse(f"已延期 {self.s.extensions} 次，达到上限 {limit} 次",
                   f"the deadline was already extended {self.s.extensions} times (limit {limit})")
        d = self.s.deadlines.get(DEADLINE)
        if d is not None and action.new_due_on <= d.plan.due_on:
            refuse(f"新期限须晚于当前期限 {d.plan.due_on}",
                   f"new_due_on must be after the current due date {d.plan.due_on}")

    async def recompute_open_deadlines(self) -> None:
        d = self.s.deadlines.get(DEADLINE)
        if self.s.stage is not Stage.RECTIFYING or d is None or d.request is None or not d.plan.provisional:
            return
        await self.recompute(DEADLINE, lambda new: Notice(
            EventType.RECTIFICATION_DEADLINE_RECOMPUTED, [self.start.unit],
            f"问题 {self.start.problem_no} 的整改时限按官方节假日安排重算为"
            f"{new.plan.due_on:%Y年%m月%d日}"), moved_only=not self.v2)
        self.refresh()

    @workflow.query
    def status(self) -> RectificationStatus:
        s, d = self.start, self.s.deadlines.get(DEADLINE)
        return RectificationStatus(
            problem_no=s.problem_no, unit=s.unit, origin=s.origin, list=s.list, category=s.category,
            severity=s.severity, stage=self.s.stage, responsible=self.responsible(), light=self.light(),
            deadlines=[view(d)] if d else [],
            lookback_due_at=self.s.lookback_due_at.isoformat() if self.s.lookback_due_at else None,
            reopened=self.s.reopened, escalated=self.s.escalated, carried_over=self.s.carried_over,
            history=list(self.s.history), history_total=self.s.history_total, notes=self.s.notes, links=list(self.s.links),
        )

    # --- helpers -------------------------------------------------------------------------

    def _check_new_date(self, new_due_on: date | None) -> None:
        if new_due_on is not None and new_due_on <= self.today():
            refuse("新整改时限须晚于今天", "new_due_on must be after today")

    async def _reopen(self, new_due_on: date | None) -> None:
        """Back to rectifying with a new deadline (given, or the default working-day period)."""
        self.s.stage = Stage.RECTIFYING
        self.s.lookback_due_at = None
        await self.plan(DEADLINE, self._deadline_request(new_due_on, self.start.timings.reopen_working_days))

    # --- what the kernel asks of the process ---------------------------------------------

    def subject(self) -> str:
        return self.start.problem_no

    def current(self) -> DeadlineState | None:
        d = self.s.deadlines.get(DEADLINE)
        return d if self.s.stage is Stage.RECTIFYING and d is not None and d.open else None

    def responsible(self) -> str | None:
        if self.s.stage is Stage.RECTIFYING:
            return self.start.unit
        if self.s.stage in (Stage.REPORTED, Stage.LOOKBACK):
            return LAW_OFFICE
        return None

    def due_at(self) -> datetime | None:
        d = self.current()
        return d.plan.due_at if d else self.s.lookback_due_at

    def notice_data(self) -> dict:
        d = self.s.deadlines.get(DEADLINE)
        return {"problem_no": self.start.problem_no, "unit": self.start.unit, "stage": self.s.stage.value,
                "category": self.start.category, "due_on": d.plan.due_on.isoformat() if d else None}

    def snapshot_record(self) -> dict:
        return {"rectification": self._snapshot()}

    async def record_legacy(self, event: LedgerEvent, records: dict) -> None:
        await calls.record_rectification(RecordRectification(snapshot=self._snapshot(), event=event,
                                                             text=records.get("text")))

    def _snapshot(self) -> RectificationSnapshot:
        s, st = self.start, self.s
        d = st.deadlines.get(DEADLINE)
        required_at = st.times.get("required_at") or workflow.now()
        return RectificationSnapshot(
            problem_no=s.problem_no, workflow_id=workflow.info().workflow_id,
            year=required_at.astimezone(CHINA).year,
            unit=s.unit, origin_kind=s.origin.kind.value, origin_ref=s.origin.ref, list=s.list.value,
            category=s.category, severity=s.severity.value, issued_by=s.issued_by,
            stage=st.stage.value, responsible=self.responsible(),
            due_on=d.plan.due_on if d else None, due_at=d.plan.due_at if d else None,
            provisional=bool(d and d.plan.provisional),
            overdue=bool(d and d.overdue and st.stage is Stage.RECTIFYING),
            missed_deadlines=st.missed, escalated=st.escalated, extensions=st.extensions,
            reopened=st.reopened, carried_over=st.carried_over, light=self.light(),
            required_at=required_at, reported_at=st.times.get("reported_at"),
            accepted_at=st.times.get("accepted_at"), lookback_due_at=st.lookback_due_at,
            closed_at=st.times.get("closed_at"),
        )

    def details(self) -> list[str]:
        d = self.current()
        lines = [f"**问题 {self.start.problem_no}**（{self.start.unit}，{self.start.category}）",
                 f"阶段：{self.STAGE_NAMES[self.s.stage]}"]
        if d:
            lines.append(f"整改时限：{d.plan.due_on:%Y-%m-%d}{'（暂定日历）' if d.plan.provisional else ''}"
                         f"{'，已逾期' if d.overdue else ''}")
        if self.s.lookback_due_at and self.s.stage is Stage.ACCEPTED:
            lines.append(f"回头看：{self.s.lookback_due_at.astimezone(CHINA):%Y-%m-%d}")
        if self.s.escalated:
            lines.append("已按拒不整改升级")
        if self.s.reopened:
            lines.append(f"重新整改 {self.s.reopened} 次")
        return lines
