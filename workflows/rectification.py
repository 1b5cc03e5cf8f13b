"""Rectification (督察督办): one problem from point-to-point feedback to close-off (销号).

    rectifying ──submit_report──▶ reported ──review: accept──▶ accepted ──(look-back timer)──▶
        ▲  (unit, by the deadline)     │ review: reject                         lookback
        └──────────────────────────────┘ (new deadline)      record_lookback: pass ─▶ closed
        ▲                                                     record_lookback: fail ─┐
        └──────────────────────────── reopened with a new deadline ◀────────────────┘

The rectification deadline has due-soon (催办 beforehand), overdue (催办 to the unit and its
leader in charge) and, after a grace period, 拒不整改: a special inspection of the unit and a
clue to the discipline commission. Every year end an unfinished problem is carried over so that
next year's round inspects its unit first.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import date, datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from rules.deadline_steps import DeadlineState, Step, light
    from schemas.calendar import DeadlineRequest
    from schemas.common import (
        LAW_OFFICE,
        ExtendDeadline,
        HistoryEntry,
        Link,
        Note,
    )
    from schemas.events import EventType
    from schemas.inspection import TriggerType
    from schemas.ledger import LedgerEvent, ProblemText, RecordRectification, RectificationSnapshot
    from schemas.rectification import (
        RecordLookback,
        RectificationResult,
        RectificationStart,
        RectificationStatus,
        Review,
        Stage,
        SubmitReport,
    )

from workflows import calls
from workflows.duty import CHINA, view, watch
from workflows.escalation import open_discipline_clue
from workflows.inputs import require, usable
from workflows.search_attributes import (
    DUCHA_AGENCY,
    DUCHA_DUE_AT,
    DUCHA_KIND,
    DUCHA_LIGHT,
    DUCHA_OVERDUE,
    DUCHA_STAGE,
    DUCHA_UNIT,
    DUCHA_YEAR,
)
from workflows.special import open_special_inspection

STAGE_NAMES = {
    Stage.RECTIFYING: "整改中",
    Stage.REPORTED: "待验收",
    Stage.ACCEPTED: "已验收，待回头看",
    Stage.LOOKBACK: "回头看",
    Stage.CLOSED: "已销号",
}
# Who may review and record look-backs: the inspection team (督察组).
INSPECTION_TEAM = ("law_office", "coordination_group", "justice")


def _refuse(zh: str, en: str) -> None:
    raise ApplicationError(f"{zh} / {en}", type="Rejected", non_retryable=True)


@workflow.defn(name="Rectification", failure_exception_types=[ValidationError])
class Rectification:
    @workflow.init
    def __init__(self, start: RectificationStart) -> None:
        self.start = start
        self.stage = Stage.RECTIFYING
        self.deadline: DeadlineState | None = None
        self.history: list[HistoryEntry] = []
        self.links: list[Link] = []
        self.notes: list[Note] = []
        self.seq = 0
        self.missed = 0
        self.reopened = 0
        self.extensions = 0
        self.escalated = False
        self.carried_over = 0
        self.lookback_due_at: datetime | None = None
        self.times: dict[str, datetime | None] = {}
        self.lock = asyncio.Lock()
        self.ready = False
        self.provisional_pending = False

    @property
    def closed(self) -> bool:
        return self.stage is Stage.CLOSED

    # --- the process ---------------------------------------------------------------------

    @workflow.run
    async def run(self, start: RectificationStart) -> RectificationResult:
        start = require(start, RectificationStart)
        self.times["required_at"] = workflow.now()
        workflow.upsert_search_attributes([
            DUCHA_KIND.value_set("rectification"),
            DUCHA_UNIT.value_set(start.unit),
            DUCHA_YEAR.value_set(self._today().year),
        ])
        async with self.lock:
            await calls.require_parties([start.unit, LAW_OFFICE])
            if start.due_on is not None and start.due_on < self._today():
                _refuse(f"整改时限 {start.due_on} 早于今天", "due_on is in the past")
            req = (DeadlineRequest(start=self._today(), due_on=start.due_on, **self._reminders())
                   if start.due_on else
                   DeadlineRequest(start=self._today(), working_days=start.due_in_working_days,
                                   **self._reminders()))
            await self._set_deadline(req)
            await self._step("required", start.issued_by, LAW_OFFICE,
                             text=ProblemText(description=start.description, basis=start.basis,
                                              opinion=start.opinion),
                             notify=(EventType.RECTIFICATION_REQUIRED, [start.unit, LAW_OFFICE],
                                     f"问题 {start.problem_no} 须于{self._due_text()}前整改到位"),
                             extra={"opinion": start.opinion[:500], "category": start.category,
                                    "list": start.list.value})
            await self._refresh()
            self.ready = True
        year_end = asyncio.create_task(self._carry_over_each_year_end())
        while not self.closed:
            if self.stage is Stage.RECTIFYING:
                await watch(get_state=lambda: self.deadline,
                            done=lambda: self.stage is not Stage.RECTIFYING,
                            on_step=self._on_deadline_step)
            elif self.stage is Stage.ACCEPTED:
                await self._await_lookback()
            else:
                stage = self.stage
                await workflow.wait_condition(lambda stage=stage: self.stage is not stage)
        year_end.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await year_end
        await workflow.wait_condition(workflow.all_handlers_finished)
        return RectificationResult(problem_no=start.problem_no, stage=self.stage,
                                   reopened=self.reopened, escalated=self.escalated,
                                   carried_over=self.carried_over, links=self.links)

    async def _await_lookback(self) -> None:
        """回头看: a durable timer of `lookback_after_days`, then the team re-checks."""
        assert self.lookback_due_at is not None
        delay = self.lookback_due_at - workflow.now()
        if delay > timedelta(0):
            try:
                await workflow.wait_condition(
                    lambda: self.stage is not Stage.ACCEPTED, timeout=delay,
                    timeout_summary=f"回头看 {self.lookback_due_at.astimezone(CHINA):%Y-%m-%d}")
                return
            except TimeoutError:
                pass
        async with self.lock:
            if self.stage is not Stage.ACCEPTED:
                return
            self.stage = Stage.LOOKBACK
            await self._step("lookback_due", "系统", "",
                             notify=(EventType.RECTIFICATION_LOOKBACK_DUE, [LAW_OFFICE, self.start.unit],
                                     f"问题 {self.start.problem_no} 已到回头看时间，请督察组复查"))
            await self._refresh()

    async def _on_deadline_step(self, state: DeadlineState, step: Step) -> None:
        async with self.lock:
            if self.stage is not Stage.RECTIFYING or not state.open:
                return
            unit, no = self.start.unit, self.start.problem_no
            if step is Step.REMIND:
                await self._step("due_soon", "系统", "",
                                 notify=(EventType.RECTIFICATION_DUE_SOON, [unit],
                                         f"问题 {no} 的整改时限为{self._due_text()}，即将到期"))
            elif step is Step.OVERDUE:
                self.missed += 1
                await self._step("overdue", "系统", "",
                                 notify=(EventType.RECTIFICATION_OVERDUE, [unit, LAW_OFFICE],
                                         f"催办：问题 {no} 已超过整改时限（{self._due_text()}），"
                                         "请单位分管领导督促整改"),
                                 extra={"attention": "分管领导"})
            else:
                await self._escalate()
            await self._refresh()

    async def _escalate(self) -> None:
        """拒不整改: a special inspection of the unit and a clue to the discipline commission."""
        self.escalated = True
        unit, no = self.start.unit, self.start.problem_no
        if workflow.patched("start-special-inspection"):
            link, _ = await open_special_inspection(
                unit, trigger=TriggerType.REFUSAL, ref=workflow.info().workflow_id, focus=[no])
            self.links.append(link)
        else:  # histories recorded before special inspections were started only linked one
            year = self._today().year
            self.links.append(Link(relation="special_inspection",
                                   workflow_id=f"inspection-{year}-special-{unit}"))
        n = self.missed
        self.links.append(await open_discipline_clue(
            clue_no=f"{no}-R{n}", workflow_id=f"{workflow.info().workflow_id}-esc{n}", subject=unit,
            title=f"{unit} 逾期拒不整改问题 {no}",
            summary=f"拒不整改：问题 {no}（{unit}）→ 县纪委监委",
        ))
        await self._step("escalated", "系统", "",
                         notify=(EventType.RECTIFICATION_ESCALATED, [unit, LAW_OFFICE, "discipline"],
                                 f"问题 {no} 超过整改时限宽限期仍未整改，视为拒不整改："
                                 "启动专项督察并移送县纪委监委"),
                         extra={"links": ",".join(link.workflow_id for link in self.links[-2:])})

    async def _carry_over_each_year_end(self) -> None:
        """结转: at each year end an open problem is carried over to next year's round."""
        while not self.closed:
            today = self._today()
            next_year = datetime(today.year + 1, 1, 1, tzinfo=CHINA)
            await workflow.sleep(next_year - workflow.now(), summary=f"{today.year}年末结转检查")
            async with self.lock:
                if self.closed:
                    return
                self.carried_over += 1
                await self._step("carried_over", "系统", "", extra={"into_year": today.year + 1},
                                 notify=(EventType.RECTIFICATION_CARRIED_OVER, [self.start.unit, LAW_OFFICE],
                                         f"问题 {self.start.problem_no} 至{today.year}年底未销号，"
                                         f"结转为{today.year + 1}年督察重点"))
                await self._refresh()

    # --- operator actions ----------------------------------------------------------------

    @workflow.update
    async def submit_report(self, action: SubmitReport) -> RectificationStatus:
        """整改报告: the unit reports the measures taken, with evidence references."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            self._check_report(action)
            await self._authorize(action, "rectification.submit_report")
            self._meet()
            self.stage = Stage.REPORTED
            self.times["reported_at"] = workflow.now()
            await self._step("reported", action.operator, action.agency, note=action.measures,
                             extra={"evidence": len(action.evidence)},
                             notify=(EventType.RECTIFICATION_REPORTED, [LAW_OFFICE],
                                     f"{self.start.unit} 已报告问题 {self.start.problem_no} 的整改情况，待验收"))
            await self._refresh()
        return self.status()

    @submit_report.validator
    def _check_report(self, action: SubmitReport) -> None:
        self._require(action, (self.start.unit,), {Stage.RECTIFYING}, "报告整改情况", "report on")

    @workflow.update
    async def review(self, action: Review) -> RectificationStatus:
        """验收: the inspection team accepts the rectification or sends it back."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            self._check_review(action)
            await self._authorize(action, "rectification.review")
            if action.decision == "accept":
                self.stage = Stage.ACCEPTED
                self.times["accepted_at"] = workflow.now()
                self.lookback_due_at = workflow.now() + timedelta(days=self.start.lookback_after_days)
                await self._step("accepted", action.operator, action.agency, note=action.reason,
                                 notify=(EventType.RECTIFICATION_ACCEPTED, [self.start.unit, LAW_OFFICE],
                                         f"问题 {self.start.problem_no} 整改已通过验收，"
                                         f"{self.lookback_due_at.astimezone(CHINA):%Y年%m月%d日}后回头看"))
            else:
                await self._reopen(action.new_due_on)
                await self._step("rejected", action.operator, action.agency, note=action.reason,
                                 notify=(EventType.RECTIFICATION_REJECTED, [self.start.unit],
                                         f"问题 {self.start.problem_no} 整改未通过验收：{action.reason[:100]}；"
                                         f"请于{self._due_text()}前重新整改"))
            await self._refresh()
        return self.status()

    @review.validator
    def _check_review(self, action: Review) -> None:
        self._require(action, INSPECTION_TEAM, {Stage.REPORTED}, "验收", "review")
        self._check_new_date(action.new_due_on)

    @workflow.update
    async def record_lookback(self, action: RecordLookback) -> RectificationStatus:
        """回头看结果: pass closes the problem off (销号); fail reopens it."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            self._check_lookback(action)
            await self._authorize(action, "rectification.record_lookback")
            if action.result == "pass":
                self.stage = Stage.CLOSED
                self.times["closed_at"] = workflow.now()
                await self._step("closed", action.operator, action.agency, note=action.findings,
                                 notify=(EventType.RECTIFICATION_CLOSED, [self.start.unit, LAW_OFFICE],
                                         f"问题 {self.start.problem_no} 回头看通过，予以销号"))
            else:
                self.reopened += 1
                await self._reopen(action.new_due_on)
                await self._step("reopened", action.operator, action.agency, note=action.findings,
                                 notify=(EventType.RECTIFICATION_REOPENED, [self.start.unit, LAW_OFFICE],
                                         f"问题 {self.start.problem_no} 回头看发现问题反弹，重新整改，"
                                         f"时限{self._due_text()}"))
            await self._refresh()
        return self.status()

    @record_lookback.validator
    def _check_lookback(self, action: RecordLookback) -> None:
        # A look-back may also be done early, while waiting for its timer.
        self._require(action, INSPECTION_TEAM, {Stage.LOOKBACK, Stage.ACCEPTED}, "记录回头看", "record a look-back on")
        self._check_new_date(action.new_due_on)

    @workflow.update
    async def extend_deadline(self, action: ExtendDeadline) -> RectificationStatus:
        """延期: law_office moves the rectification deadline, a limited number of times."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            self._check_extend(action)
            await self._authorize(action, "rectification.extend_deadline")
            self.extensions += 1
            await self._set_deadline(DeadlineRequest(start=self._today(), due_on=action.new_due_on,
                                                     **self._reminders()),
                                     extensions=self.extensions)
            await self._step("deadline_extended", action.operator, action.agency, note=action.reason,
                             notify=(EventType.RECTIFICATION_DEADLINE_EXTENDED, [self.start.unit],
                                     f"问题 {self.start.problem_no} 的整改时限延至{self._due_text()}"))
            await self._refresh()
        return self.status()

    @extend_deadline.validator
    def _check_extend(self, action: ExtendDeadline) -> None:
        self._require(action, (LAW_OFFICE,), {Stage.RECTIFYING}, "延期", "extend the deadline of")
        limit = self.start.timings.max_extensions
        if self.extensions >= limit:
            _refuse(f"已延期 {self.extensions} 次，达到上限 {limit} 次",
                    f"the deadline was already extended {self.extensions} times (limit {limit})")
        if self.deadline is not None and action.new_due_on <= self.deadline.plan.due_on:
            _refuse(f"新期限须晚于当前期限 {self.deadline.plan.due_on}",
                    f"new_due_on must be after the current due date {self.deadline.plan.due_on}")

    @workflow.signal
    async def recompute_deadlines(self) -> None:
        """Sent by `ducha calendar load`: recompute a provisional deadline on the official calendar."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            state = self.deadline
            if (self.stage is not Stage.RECTIFYING or state is None or state.request is None
                    or not state.plan.provisional):
                return
            before = state.plan.due_on
            await self._set_deadline(state.request, extensions=state.extensions)
            if self.deadline is not None and self.deadline.plan.due_on != before:
                await self._step("deadline_recomputed", "系统", "",
                                 notify=(EventType.RECTIFICATION_DEADLINE_RECOMPUTED, [self.start.unit],
                                         f"问题 {self.start.problem_no} 的整改时限按官方节假日安排重算为"
                                         f"{self._due_text()}"))
            await self._refresh()

    @workflow.signal
    def add_note(self, note: Note) -> None:
        """备注."""
        if not usable(note, Note):
            return
        self.notes.append(note)
        self.history.append(HistoryEntry(at=workflow.now(), action="note", operator=note.operator,
                                         note=note.text[:200]))

    @workflow.query
    def status(self) -> RectificationStatus:
        s = self.start
        return RectificationStatus(
            problem_no=s.problem_no, unit=s.unit, origin=s.origin, list=s.list, category=s.category,
            severity=s.severity, stage=self.stage, responsible=self._responsible(),
            light=light(self._open_deadline(), workflow.now()).value,
            deadlines=[view(self.deadline)] if self.deadline else [],
            lookback_due_at=self.lookback_due_at.isoformat() if self.lookback_due_at else None,
            reopened=self.reopened, escalated=self.escalated, carried_over=self.carried_over,
            history=list(self.history), links=list(self.links),
        )

    # --- helpers -------------------------------------------------------------------------

    def _require(self, action, who: tuple[str, ...], stages: set[Stage], what: str, what_en: str) -> None:
        if action.agency not in who:
            _refuse(f"只有 {'、'.join(who)} 可以{what}，{action.agency} 无权操作",
                    f"only {', '.join(who)} may do this; {action.agency} may not")
        if self.stage not in stages:
            _refuse(f"问题当前为「{STAGE_NAMES[self.stage]}」，不能{what}",
                    f"cannot {what_en} a problem in stage {self.stage.value}")

    def _check_new_date(self, new_due_on: date | None) -> None:
        if new_due_on is not None and new_due_on <= self._today():
            _refuse("新整改时限须晚于今天", "new_due_on must be after today")

    async def _authorize(self, action, name: str) -> None:
        if workflow.patched("authorize-operators"):
            await calls.authorize(action.operator, action.agency, name)

    def _today(self) -> date:
        return workflow.now().astimezone(CHINA).date()

    def _reminders(self) -> dict:
        t = self.start.timings
        return {"remind_working_days_before": t.remind_working_days_before,
                "grace_working_days": t.grace_working_days}

    def _responsible(self) -> str | None:
        if self.stage is Stage.RECTIFYING:
            return self.start.unit
        if self.stage in (Stage.REPORTED, Stage.LOOKBACK):
            return LAW_OFFICE
        return None

    def _open_deadline(self) -> DeadlineState | None:
        if self.stage is Stage.RECTIFYING and self.deadline is not None and self.deadline.open:
            return self.deadline
        return None

    def _due_text(self) -> str:
        return f"{self.deadline.plan.due_on:%Y年%m月%d日}" if self.deadline else "-"

    def _meet(self) -> None:
        if self.deadline is not None and self.deadline.open:
            self.deadline.met_at = workflow.now()

    async def _set_deadline(self, req: DeadlineRequest, extensions: int = 0) -> None:
        plan = await calls.plan_deadline(req, "计算整改时限")
        self.deadline = DeadlineState(name="rectification", plan=plan, request=req, extensions=extensions)
        self.provisional_pending = plan.provisional  # announced right after the next step

    async def _warn_if_provisional(self) -> None:
        if self.provisional_pending:
            self.provisional_pending = False
            await self._step("calendar.provisional", "系统", "",
                             notify=(EventType.CALENDAR_PROVISIONAL, [LAW_OFFICE],
                                     f"问题 {self.start.problem_no} 的整改时限按暂定日历计算"
                                     "（该年度官方节假日安排尚未导入）"))

    async def _reopen(self, new_due_on: date | None) -> None:
        """Back to rectifying with a new deadline (given, or the default working-day period)."""
        self.stage = Stage.RECTIFYING
        self.lookback_due_at = None
        req = (DeadlineRequest(start=self._today(), due_on=new_due_on, **self._reminders())
               if new_due_on else
               DeadlineRequest(start=self._today(), working_days=self.start.timings.reopen_working_days,
                               **self._reminders()))
        await self._set_deadline(req)

    async def _step(self, event: str, operator: str, agency: str, *, note: str = "",
                    extra: dict | None = None, notify: tuple | None = None,
                    text: ProblemText | None = None) -> None:
        """Record one action: history, ledger row + event, and its callback (if any)."""
        now = workflow.now()
        seq = self.seq
        self.seq += 1
        self.history.append(HistoryEntry(at=now, action=event, operator=operator, agency=agency,
                                         note=note[:200]))
        await calls.record_rectification(RecordRectification(
            snapshot=self._snapshot(),
            event=LedgerEvent(seq=seq, event=event, actor=operator, agency=agency, occurred_at=now,
                              data={"stage": self.stage.value, "note": note[:500], **(extra or {})}),
            text=text,
        ))
        if notify is not None:
            kind, recipients, summary = notify
            await calls.notify(seq, kind, recipients, summary, {
                "problem_no": self.start.problem_no, "unit": self.start.unit,
                "stage": self.stage.value, "category": self.start.category,
                "due_on": self.deadline.plan.due_on.isoformat() if self.deadline else None,
                **(extra or {}),
            })
        await self._warn_if_provisional()

    def _snapshot(self) -> RectificationSnapshot:
        s = self.start
        d = self.deadline
        return RectificationSnapshot(
            problem_no=s.problem_no, workflow_id=workflow.info().workflow_id,
            year=(self.times["required_at"] or workflow.now()).astimezone(CHINA).year,
            unit=s.unit, origin_kind=s.origin.kind.value, origin_ref=s.origin.ref, list=s.list.value,
            category=s.category, severity=s.severity.value, issued_by=s.issued_by,
            stage=self.stage.value, responsible=self._responsible(),
            due_on=d.plan.due_on if d else None, due_at=d.plan.due_at if d else None,
            provisional=bool(d and d.plan.provisional),
            overdue=bool(d and d.overdue and self.stage is Stage.RECTIFYING),
            missed_deadlines=self.missed, escalated=self.escalated, extensions=self.extensions,
            reopened=self.reopened, carried_over=self.carried_over,
            light=light(self._open_deadline(), workflow.now()).value,
            required_at=self.times["required_at"] or workflow.now(),
            reported_at=self.times.get("reported_at"), accepted_at=self.times.get("accepted_at"),
            lookback_due_at=self.lookback_due_at, closed_at=self.times.get("closed_at"),
        )

    async def _refresh(self) -> None:
        d = self._open_deadline()
        responsible = self._responsible()
        workflow.upsert_search_attributes([
            DUCHA_STAGE.value_set(self.stage.value),
            DUCHA_AGENCY.value_set(responsible) if responsible else DUCHA_AGENCY.value_unset(),
            DUCHA_DUE_AT.value_set(d.plan.due_at) if d else (
                DUCHA_DUE_AT.value_set(self.lookback_due_at) if self.lookback_due_at
                else DUCHA_DUE_AT.value_unset()),
            DUCHA_OVERDUE.value_set(bool(d and d.overdue)),
            DUCHA_LIGHT.value_set(light(d, workflow.now()).value),
        ])
        lines = [f"**问题 {self.start.problem_no}**（{self.start.unit}，{self.start.category}）",
                 f"阶段：{STAGE_NAMES[self.stage]}"]
        if d:
            lines.append(f"整改时限：{d.plan.due_on:%Y-%m-%d}{'（暂定日历）' if d.plan.provisional else ''}"
                         f"{'，已逾期' if d.overdue else ''}")
        if self.lookback_due_at and self.stage is Stage.ACCEPTED:
            lines.append(f"回头看：{self.lookback_due_at.astimezone(CHINA):%Y-%m-%d}")
        if self.escalated:
            lines.append("已按拒不整改升级")
        if self.reopened:
            lines.append(f"重新整改 {self.reopened} 次")
        workflow.set_current_details("\n\n".join(lines))

