"""ClueTransfer (线索移送): one clue from discovery to its outcome, on statutory deadlines.

    registered ──transfer──▶ transferred ──acknowledge──▶ handling ──report_result──▶ concluded
        │  (source, by the transfer deadline)  (target signs)     (target's outcome;
        └─withdraw─▶ withdrawn                                      route c: fed back to 纪委监委)

Each open stage has one deadline watched by durable timers: due soon → overdue → after a grace
period escalation to the discipline commission (a new linked ClueTransfer about the missed duty).
"""

from __future__ import annotations

import asyncio
from datetime import date

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from rules.deadline_steps import DeadlineState, Step, light
    from schemas.calendar import DeadlineRequest
    from schemas.clue import (
        OUTCOME_NAMES,
        Acknowledge,
        ClueResult,
        ClueStart,
        ClueStatus,
        Importance,
        ReportResult,
        Route,
        Stage,
        Transfer,
        Withdraw,
    )
    from schemas.codes import AGENCY_NAMES, AgencyCode
    from schemas.common import (
        DISCIPLINE,
        LAW_OFFICE,
        ExtendDeadline,
        HistoryEntry,
        Link,
        Note,
    )
    from schemas.events import EventType
    from schemas.inspection import TriggerType
    from schemas.ledger import ClueSnapshot, LedgerEvent, RecordClue

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

OPEN_STAGES = (Stage.REGISTERED, Stage.TRANSFERRED, Stage.HANDLING)
STAGE_NAMES = {
    Stage.REGISTERED: "待移送",
    Stage.TRANSFERRED: "待签收",
    Stage.HANDLING: "办理中",
    Stage.CONCLUDED: "已办结",
    Stage.WITHDRAWN: "已撤回",
}
DEADLINE_NAMES = {"transfer": "移送期限", "acknowledge": "签收期限", "handling": "办理期限"}
STAGE_DEADLINE = {Stage.REGISTERED: "transfer", Stage.TRANSFERRED: "acknowledge", Stage.HANDLING: "handling"}


def _name(code: str) -> str:
    try:
        return AGENCY_NAMES[AgencyCode(code)]
    except ValueError:
        return code


def _refuse(message_zh: str, message_en: str) -> None:
    raise ApplicationError(f"{message_zh} / {message_en}", type="Rejected", non_retryable=True)


@workflow.defn(name="ClueTransfer", failure_exception_types=[ValidationError])
class ClueTransfer:
    @workflow.init
    def __init__(self, start: ClueStart) -> None:
        self.start = start
        self.stage = Stage.REGISTERED
        self.deadlines: dict[str, DeadlineState] = {}
        self.history: list[HistoryEntry] = []
        self.links: list[Link] = []
        self.notes: list[Note] = []
        self.outcome: ReportResult | None = None
        self.seq = 0
        self.escalations = 0
        self.missed = 0
        self.provisional_warned = False
        self.provisional_pending = False
        self.lock = asyncio.Lock()
        self.timestamps: dict[str, object] = {}
        self.ready = False  # set once registration is recorded; operator actions wait for it

    # --- the process ---------------------------------------------------------------------

    @workflow.run
    async def run(self, start: ClueStart) -> ClueResult:
        start = require(start, ClueStart)
        today = workflow.now().astimezone(CHINA).date()
        if start.discovered_on > today:
            _refuse(f"发现日期 {start.discovered_on} 晚于今天", "discovered_on is in the future")
        self.timestamps["registered_at"] = workflow.now()
        workflow.upsert_search_attributes([
            DUCHA_KIND.value_set("clue"),
            DUCHA_UNIT.value_set(start.subject_unit),
            DUCHA_YEAR.value_set(start.discovered_on.year),
        ])
        async with self.lock:
            await calls.require_parties(
                sorted({start.source.value, start.target.value, start.subject_unit}))
            if not start.auto_transfer:
                await self._plan("transfer", self._transfer_rule())
            await self._step("registered", start.reported_by, start.source.value,
                             notify=(EventType.CLUE_REGISTERED, [start.source.value],
                                     f"线索 {start.clue_no} 已登记，请按期移送{_name(start.target)}"),
                             details=start.details)
            if start.auto_transfer:
                await self._transfer(start.reported_by, start.source.value, "系统自动移送")
            await self._refresh()
            self.ready = True
        while self.stage in OPEN_STAGES:
            stage = self.stage
            await watch(
                get_state=lambda: self.deadlines.get(STAGE_DEADLINE.get(self.stage, "")),
                done=lambda stage=stage: self.stage != stage,
                on_step=self._on_deadline_step,
            )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ClueResult(clue_no=start.clue_no, stage=self.stage,
                          outcome=self.outcome.outcome if self.outcome else None,
                          escalations=self.escalations, links=self.links)

    def _transfer_rule(self) -> DeadlineRequest:
        t = self.start.timings
        if self.start.importance is Importance.IMPORTANT:
            return DeadlineRequest(start=self.start.discovered_on, working_days=5,
                                   remind_working_days_before=t.remind_working_days_before,
                                   grace_working_days=t.grace_working_days)
        return DeadlineRequest(start=self.start.discovered_on, monthly=True,
                               remind_working_days_before=t.remind_working_days_before,
                               grace_working_days=t.grace_working_days)

    async def _transfer(self, operator: str, agency: str, note: str) -> None:
        self._meet("transfer")
        self.stage = Stage.TRANSFERRED
        self.timestamps["transferred_at"] = workflow.now()
        target = self.start.target.value
        t = self.start.timings
        await self._plan("acknowledge", DeadlineRequest(
            start=self._today(), working_days=t.acknowledge_working_days,
            remind_working_days_before=min(t.remind_working_days_before, t.acknowledge_working_days),
            grace_working_days=t.grace_working_days))
        await self._step("transferred", operator, agency, note=note,
                         notify=(EventType.CLUE_TRANSFERRED, [target, LAW_OFFICE],
                                 f"{_name(self.start.source)}向{_name(target)}移送线索 {self.start.clue_no}，请签收"))
        await self._refresh()

    async def _on_deadline_step(self, state: DeadlineState, step: Step) -> None:
        async with self.lock:
            if not state.open or self.stage not in OPEN_STAGES:
                return
            who = self._responsible()
            label = DEADLINE_NAMES[state.name]
            due = f"{state.plan.due_on:%Y年%m月%d日}"
            if step is Step.REMIND:
                await self._step(f"{state.name}.due_soon", "系统", "",
                                 notify=(EventType.CLUE_DUE_SOON, [who],
                                         f"线索 {self.start.clue_no} 的{label}为{due}，即将到期"))
            elif step is Step.OVERDUE:
                self.missed += 1
                await self._step(f"{state.name}.overdue", "系统", "",
                                 data={"responsible": who, "deadline": state.name},
                                 notify=(EventType.CLUE_OVERDUE, [who, LAW_OFFICE],
                                         f"线索 {self.start.clue_no} 已超过{label}（{due}），{_name(who)}未履职"))
            else:
                await self._escalate(state, who)
            await self._refresh()

    async def _escalate(self, state: DeadlineState, who: str) -> None:
        """逾期升级: the missed duty goes to the discipline commission as a new clue."""
        self.escalations += 1
        label = DEADLINE_NAMES[state.name]
        if who == DISCIPLINE:
            # The commission cannot be escalated to itself: the county committee hears of it.
            await self._step(f"{state.name}.escalated", "系统", "", data={"responsible": who},
                             notify=(EventType.CLUE_ESCALATED, ["county_committee", LAW_OFFICE],
                                     f"线索 {self.start.clue_no} 超过{label}仍未办理，报县委督办"))
            return
        child_no = f"{self.start.clue_no}-E{self.escalations}"
        child_id = f"{workflow.info().workflow_id}-esc{self.escalations}"
        self.links.append(await open_discipline_clue(
            clue_no=child_no, workflow_id=child_id, subject=who,
            title=f"{_name(who)}逾期未履行线索{self.start.clue_no}的{label}",
            summary=f"逾期升级线索 {child_no}：{_name(who)}未履职 → 县纪委监委",
            timings=self.start.timings,
        ))
        await self._step(f"{state.name}.escalated", "系统", "",
                         data={"responsible": who, "escalation_clue": child_id},
                         notify=(EventType.CLUE_ESCALATED, [DISCIPLINE, LAW_OFFICE],
                                 f"线索 {self.start.clue_no} 超过{label}宽限期仍未办理，"
                                 f"已移送县纪委监委（线索 {child_no}）"))

    # --- operator actions ----------------------------------------------------------------

    @workflow.update
    async def transfer(self, action: Transfer) -> ClueStatus:
        """移送: the source agency sends the clue to the target."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            self._require(action, [self.start.source.value], {Stage.REGISTERED}, "移送", "transfer")
            await self._authorize(action, "clue.transfer")
            await self._transfer(action.operator, action.agency, action.note)
        return self.status()

    @transfer.validator
    def _check_transfer(self, action: Transfer) -> None:
        self._require(action, [self.start.source.value], {Stage.REGISTERED}, "移送", "transfer")

    @workflow.update
    async def acknowledge(self, action: Acknowledge) -> ClueStatus:
        """签收: the target agency signs for the clue; the handling deadline starts."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            self._require(action, [self.start.target.value], {Stage.TRANSFERRED}, "签收", "acknowledge")
            await self._authorize(action, "clue.acknowledge")
            self._meet("acknowledge")
            self.stage = Stage.HANDLING
            self.timestamps["acknowledged_at"] = workflow.now()
            t = self.start.timings
            await self._plan("handling", DeadlineRequest(
                start=self._today(), working_days=t.handling_working_days,
                remind_working_days_before=t.remind_working_days_before,
                grace_working_days=t.grace_working_days))
            await self._step("acknowledged", action.operator, action.agency, note=action.note,
                             notify=(EventType.CLUE_ACKNOWLEDGED, [self.start.source.value],
                                     f"{_name(self.start.target)}已签收线索 {self.start.clue_no}"))
            await self._refresh()
        return self.status()

    @acknowledge.validator
    def _check_acknowledge(self, action: Acknowledge) -> None:
        self._require(action, [self.start.target.value], {Stage.TRANSFERRED}, "签收", "acknowledge")

    @workflow.update
    async def report_result(self, action: ReportResult) -> ClueStatus:
        """办理结果: the target reports the outcome (route c: fed back to the commission)."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            self._require(action, [self.start.target.value], {Stage.HANDLING}, "报告结果", "report a result on")
            await self._authorize(action, "clue.report_result")
            self._check_special(action)
            self._meet("handling")
            self.outcome = action
            self.stage = Stage.CONCLUDED
            self.timestamps["closed_at"] = workflow.now()
            recipients = [self.start.source.value, LAW_OFFICE]
            verdict = OUTCOME_NAMES[action.outcome]
            text = f"线索 {self.start.clue_no} 已办结：{verdict}"
            if self.start.route is Route.TO_JUSTICE:
                text = f"县司法局已将线索 {self.start.clue_no} 的调查结果反馈县纪委监委：{verdict}"
            if action.open_special_inspection:
                if workflow.patched("start-special-inspection"):
                    link, _ = await open_special_inspection(
                        self.start.subject_unit, trigger=TriggerType.CLUE, ref=workflow.info().workflow_id)
                    self.links.append(link)
                else:  # histories recorded before special inspections were started only linked one
                    year = self._today().year
                    self.links.append(Link(relation="special_inspection",
                                           workflow_id=f"inspection-{year}-special-{self.start.subject_unit}"))
                text += "；决定开展专项督察"
            await self._step("concluded", action.operator, action.agency, note=action.summary,
                             data={"outcome": action.outcome.value,
                                   "open_special_inspection": action.open_special_inspection},
                             notify=(EventType.CLUE_CONCLUDED, recipients, text))
            await self._refresh()
        return self.status()

    @report_result.validator
    def _check_report_result(self, action: ReportResult) -> None:
        self._require(action, [self.start.target.value], {Stage.HANDLING}, "报告结果", "report a result on")
        self._check_special(action)

    def _check_special(self, action: ReportResult) -> None:
        if action.open_special_inspection and self.start.route is not Route.TO_LAW_OFFICE:
            _refuse("只有移送依法治县办的线索（路径a）可以决定开展专项督察",
                    "only route to_law_office clues can open a special inspection")

    @workflow.update
    async def withdraw(self, action: Withdraw) -> ClueStatus:
        """撤回: the source withdraws the clue before transferring it."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            self._require(action, [self.start.source.value], {Stage.REGISTERED}, "撤回", "withdraw")
            await self._authorize(action, "clue.withdraw")
            self._meet("transfer")
            self.stage = Stage.WITHDRAWN
            self.timestamps["closed_at"] = workflow.now()
            await self._step("withdrawn", action.operator, action.agency, note=action.reason,
                             notify=(EventType.CLUE_WITHDRAWN, [LAW_OFFICE, self.start.source.value],
                                     f"线索 {self.start.clue_no} 已由{_name(self.start.source)}撤回"))
            await self._refresh()
        return self.status()

    @withdraw.validator
    def _check_withdraw(self, action: Withdraw) -> None:
        self._require(action, [self.start.source.value], {Stage.REGISTERED}, "撤回", "withdraw")

    @workflow.update
    async def extend_deadline(self, action: ExtendDeadline) -> ClueStatus:
        """延期: the rule-of-law office moves the current deadline to a later date."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            self._check_extend(action)
            await self._authorize(action, "clue.extend_deadline")
            state = self._current()
            assert state is not None
            req = DeadlineRequest(
                start=self._today(), due_on=action.new_due_on,
                remind_working_days_before=self.start.timings.remind_working_days_before,
                grace_working_days=self.start.timings.grace_working_days)
            plan = await calls.plan_deadline(req, "计算延期后的期限")
            self.deadlines[state.name] = DeadlineState(
                name=state.name, plan=plan, request=req, extensions=state.extensions + 1)
            self.provisional_pending = plan.provisional
            await self._step("deadline_extended", action.operator, action.agency, note=action.reason,
                             data={"deadline": state.name, "new_due_on": plan.due_on.isoformat()},
                             notify=(EventType.CLUE_DEADLINE_EXTENDED, [self._responsible()],
                                     f"线索 {self.start.clue_no} 的{DEADLINE_NAMES[state.name]}"
                                     f"延至{plan.due_on:%Y年%m月%d日}"))
            await self._refresh()
        return self.status()

    @extend_deadline.validator
    def _check_extend(self, action: ExtendDeadline) -> None:
        self._require(action, [LAW_OFFICE], set(OPEN_STAGES), "延期", "extend the deadline of")
        state = self._current()
        if state is None:
            _refuse("当前没有可延长的期限", "there is no open deadline to extend")
        elif action.new_due_on <= state.plan.due_on:
            _refuse(f"新期限须晚于当前期限 {state.plan.due_on}",
                    f"new_due_on must be after the current due date {state.plan.due_on}")

    @workflow.signal
    async def recompute_deadlines(self) -> None:
        """Sent by `ducha calendar load` when an official schedule arrives: a provisional
        deadline is computed again on the official calendar (DESIGN.md §5)."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            state = self._current()
            if state is None or state.request is None or not state.plan.provisional:
                return
            plan = await calls.plan_deadline(state.request, "按官方日历重算期限")
            if plan == state.plan:
                return
            self.deadlines[state.name] = DeadlineState(
                name=state.name, plan=plan, request=state.request, extensions=state.extensions)
            await self._step("deadline_recomputed", "系统", "",
                             data={"deadline": state.name, "new_due_on": plan.due_on.isoformat()},
                             notify=(EventType.CLUE_DEADLINE_RECOMPUTED, [self._responsible()],
                                     f"线索 {self.start.clue_no} 的{DEADLINE_NAMES[state.name]}按官方节假日安排"
                                     f"重算为{plan.due_on:%Y年%m月%d日}"))
            await self._refresh()

    @workflow.signal
    def add_note(self, note: Note) -> None:
        """备注: a free note on the clue; kept in the status history."""
        if not usable(note, Note):
            return
        self.notes.append(note)
        self.history.append(HistoryEntry(at=workflow.now(), action="note", operator=note.operator,
                                         note=note.text[:200]))

    @workflow.query
    def status(self) -> ClueStatus:
        return ClueStatus(
            clue_no=self.start.clue_no, route=self.start.route, source=self.start.source.value,
            target=self.start.target.value, subject_unit=self.start.subject_unit,
            importance=self.start.importance, title=self.start.title, stage=self.stage,
            responsible=self._responsible() if self.stage in OPEN_STAGES else None,
            light=light(self._current(), workflow.now()).value,
            deadlines=[view(d) for d in self.deadlines.values()],
            history=list(self.history), links=list(self.links), notes=len(self.notes),
            outcome=self.outcome.outcome if self.outcome else None,
            special_inspection_requested=bool(self.outcome and self.outcome.open_special_inspection),
        )

    # --- helpers -------------------------------------------------------------------------

    def _require(self, action, agencies: list[str], stages: set[Stage], what: str, what_en: str) -> None:
        if action.agency not in agencies:
            _refuse(f"只有{'、'.join(_name(a) for a in agencies)}可以{what}，{action.agency} 无权操作",
                    f"only {', '.join(agencies)} may do this; {action.agency} may not")
        if self.stage not in stages:
            _refuse(f"线索当前为「{STAGE_NAMES[self.stage]}」，不能{what}",
                    f"cannot {what_en} a clue in stage {self.stage.value}")

    async def _authorize(self, action, name: str) -> None:
        if workflow.patched("authorize-operators"):
            await calls.authorize(action.operator, action.agency, name)

    def _today(self) -> date:
        return workflow.now().astimezone(CHINA).date()

    def _current(self) -> DeadlineState | None:
        state = self.deadlines.get(STAGE_DEADLINE.get(self.stage, ""))
        return state if state is not None and state.open else None

    def _responsible(self) -> str:
        if self.stage is Stage.REGISTERED:
            return self.start.source.value
        return self.start.target.value

    def _meet(self, name: str) -> None:
        state = self.deadlines.get(name)
        if state is not None and state.open:
            state.met_at = workflow.now()

    async def _plan(self, name: str, req: DeadlineRequest) -> None:
        """Compute a deadline; a provisional one is announced right after the next step."""
        plan = await calls.plan_deadline(req, f"计算{DEADLINE_NAMES[name]}")
        self.deadlines[name] = DeadlineState(name=name, plan=plan, request=req)
        self.provisional_pending = plan.provisional

    async def _warn_if_provisional(self) -> None:
        if self.provisional_pending and not self.provisional_warned:
            self.provisional_warned = True
            self.provisional_pending = False
            await self._step("calendar.provisional", "系统", "",
                             notify=(EventType.CALENDAR_PROVISIONAL, [LAW_OFFICE],
                                     f"线索 {self.start.clue_no} 的期限按暂定日历计算（该年度官方节假日安排尚未导入）"))

    async def _step(self, event: str, operator: str, agency: str, *, note: str = "",
                    data: dict | None = None, notify: tuple | None = None,
                    details: str | None = None) -> None:
        """Record one action: history, ledger row + event, and its callback (if any)."""
        now = workflow.now()
        seq = self.seq
        self.seq += 1
        self.history.append(HistoryEntry(at=now, action=event, operator=operator, agency=agency,
                                         note=note[:200]))
        await calls.record_clue(RecordClue(
            snapshot=self._snapshot(),
            event=LedgerEvent(seq=seq, event=event, actor=operator, agency=agency, occurred_at=now,
                              data=data or {}),
            details=details,
        ))
        if notify is not None:
            kind, recipients, summary = notify
            await calls.notify(seq, kind, recipients, summary, {
                "clue_no": self.start.clue_no, "stage": self.stage.value,
                "route": self.start.route.value, "subject_unit": self.start.subject_unit,
                **(data or {}),
            })
        await self._warn_if_provisional()

    def _snapshot(self) -> ClueSnapshot:
        s = self.start
        current = self._current()
        return ClueSnapshot(
            clue_no=s.clue_no, workflow_id=workflow.info().workflow_id, year=s.discovered_on.year,
            route=s.route.value, source=s.source.value, target=s.target.value,
            channel=s.channel.value, importance=s.importance.value, subject_unit=s.subject_unit,
            title=s.title, discovered_on=s.discovered_on, stage=self.stage.value,
            responsible=self._responsible() if self.stage in OPEN_STAGES else None,
            due_on=current.plan.due_on if current else None,
            due_at=current.plan.due_at if current else None,
            provisional=bool(current and current.plan.provisional),
            overdue=bool(current and current.overdue), missed_deadlines=self.missed,
            escalations=self.escalations, light=light(current, workflow.now()).value,
            outcome=self.outcome.outcome.value if self.outcome else None,
            special_inspection_requested=bool(self.outcome and self.outcome.open_special_inspection),
            escalated_from=s.escalated_from,
            registered_at=self.timestamps.get("registered_at") or workflow.now(),
            transferred_at=self.timestamps.get("transferred_at"),
            acknowledged_at=self.timestamps.get("acknowledged_at"),
            closed_at=self.timestamps.get("closed_at"),
        )

    async def _refresh(self) -> None:
        """Search attributes and the Chinese current details shown in the Web UI."""
        current = self._current()
        colour = light(current, workflow.now())
        responsible = self._responsible() if self.stage in OPEN_STAGES else ""
        workflow.upsert_search_attributes([
            DUCHA_STAGE.value_set(self.stage.value),
            DUCHA_AGENCY.value_set(responsible) if responsible else DUCHA_AGENCY.value_unset(),
            DUCHA_DUE_AT.value_set(current.plan.due_at) if current else DUCHA_DUE_AT.value_unset(),
            DUCHA_OVERDUE.value_set(bool(current and current.overdue)),
            DUCHA_LIGHT.value_set(colour.value),
        ])
        lines = [f"**线索 {self.start.clue_no}** {_name(self.start.source)} → {_name(self.start.target)}",
                 f"阶段：{STAGE_NAMES[self.stage]}"]
        if current:
            flag = "（暂定日历）" if current.plan.provisional else ""
            state = "已逾期" if current.overdue else "正常"
            lines.append(f"{DEADLINE_NAMES[current.name]}：{current.plan.due_on:%Y-%m-%d}{flag}，"
                         f"责任单位：{_name(responsible)}，{state}")
        if self.escalations:
            lines.append(f"已升级 {self.escalations} 次")
        workflow.set_current_details("\n\n".join(lines))

