"""ClueTransfer (线索移送): one clue from discovery to its outcome, on statutory deadlines.

    registered ──transfer──▶ transferred ──acknowledge──▶ handling ──report_result──▶ concluded
        │  (source, by the transfer deadline)  (target signs)     (target's outcome;
        └─withdraw─▶ withdrawn                                      route c: fed back to 纪委监委)

Each open stage has one deadline watched by durable timers: due soon → overdue → after a grace
period escalation to the discipline commission (a new linked ClueTransfer about the missed duty).
Routine clues are transferred before the 10th of the next month, important ones within 5
working days of discovery. The case kernel (workflows/case.py) does the rest.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from rules.deadline_steps import DeadlineState, Step
    from rules.permissions import Action
    from schemas import ids
    from schemas.case import CaseKind
    from schemas.clue import (
        OUTCOME_NAMES,
        Acknowledge,
        ClueResult,
        ClueStart,
        ClueState,
        ClueStatus,
        Importance,
        ReportResult,
        Route,
        Stage,
        Transfer,
        Withdraw,
    )
    from schemas.common import DISCIPLINE, LAW_OFFICE, ExtendDeadline, Link
    from schemas.events import EventType
    from schemas.inspection import TriggerType
    from schemas.ledger import ClueSnapshot, LedgerEvent, RecordClue

from workflows import calls
from workflows.case import SYSTEM, Case, Notice, agency_name, refuse
from workflows.duty import view, watch
from workflows.escalation import open_discipline_clue
from workflows.inputs import require
from workflows.special import open_special_inspection

OPEN_STAGES = (Stage.REGISTERED, Stage.TRANSFERRED, Stage.HANDLING)
STAGE_DEADLINE = {Stage.REGISTERED: "transfer", Stage.TRANSFERRED: "acknowledge", Stage.HANDLING: "handling"}


@workflow.defn(name="ClueTransfer", failure_exception_types=[ValidationError])
class ClueTransfer(Case):
    KIND = CaseKind.CLUE
    NOUN = ("线索", "clue")
    STAGE_NAMES = {Stage.REGISTERED: "待移送", Stage.TRANSFERRED: "待签收", Stage.HANDLING: "办理中",
                   Stage.CONCLUDED: "已办结", Stage.WITHDRAWN: "已撤回"}
    DEADLINE_NAMES = {"transfer": "移送期限", "acknowledge": "签收期限", "handling": "办理期限"}
    LEGACY_PROVISIONAL = ("assign", "once")

    s: ClueState

    @workflow.init
    def __init__(self, start: ClueStart) -> None:
        self.start = start
        self.init_case(ClueState())

    # --- the process ---------------------------------------------------------------------

    @workflow.run
    async def run(self, start: ClueStart) -> ClueResult:
        start = require(start, ClueStart)
        if start.discovered_on > self.today():
            refuse(f"发现日期 {start.discovered_on} 晚于今天", "discovered_on is in the future")
        if not self.begin(start.resume, unit=start.subject_unit, year=start.discovered_on.year):
            await self._register(start)
        while self.s.stage in OPEN_STAGES:
            if self.should_continue():
                await self.carry_on(start)
            stage = self.s.stage
            await watch(
                get_state=lambda: self.s.deadlines.get(STAGE_DEADLINE.get(self.s.stage, "")),
                done=lambda stage=stage: self.s.stage != stage or self.should_continue(),
                on_step=self._on_deadline_step,
            )
        await self.settle()
        return ClueResult(clue_no=start.clue_no, stage=self.s.stage,
                          outcome=self.s.outcome.outcome if self.s.outcome else None,
                          escalations=self.s.escalations, links=self.s.links)

    async def _register(self, start: ClueStart) -> None:
        """登记: the clue is on record; the source must transfer it by the transfer deadline."""
        self.s.times["registered_at"] = workflow.now()
        async with self.lock:
            await self.load_parties([start.source.value, start.target.value, start.subject_unit, LAW_OFFICE])
            if not start.auto_transfer:
                await self.plan("transfer", self._transfer_rule())
            await self.step("registered", start.reported_by, start.source.value, details=start.details,
                            notify=Notice(EventType.CLUE_REGISTERED, [start.source.value],
                                          f"线索 {start.clue_no} 已登记，请按期移送{agency_name(start.target)}"))
            if start.auto_transfer:
                await self._transfer(start.reported_by, start.source.value, "系统自动移送")
            self.refresh()
            self.opened()

    def _transfer_rule(self):
        t = self.start.timings
        if self.start.importance is Importance.IMPORTANT:  # 重要线索: 5 working days
            return self.request(start=self.start.discovered_on, working_days=5,
                                remind=t.remind_working_days_before, grace=t.grace_working_days)
        return self.request(start=self.start.discovered_on, monthly=True,  # 一般线索: by the 10th
                            remind=t.remind_working_days_before, grace=t.grace_working_days)

    async def _transfer(self, operator: str, agency: str, note: str) -> None:
        self.meet("transfer")
        self.s.stage = Stage.TRANSFERRED
        self.s.times["transferred_at"] = workflow.now()
        target = self.start.target.value
        t = self.start.timings
        await self.plan("acknowledge", self.request(working_days=t.acknowledge_working_days,
                                                    remind=t.remind_working_days_before,
                                                    grace=t.grace_working_days))
        await self.step("transferred", operator, agency, note=note,
                        notify=Notice(EventType.CLUE_TRANSFERRED, [target, LAW_OFFICE],
                                      f"{agency_name(self.start.source)}向{agency_name(target)}"
                                      f"移送线索 {self.start.clue_no}，请签收"))

    async def _on_deadline_step(self, state: DeadlineState, step: Step) -> None:
        async with self.lock:
            if not state.open or self.s.stage not in OPEN_STAGES:
                return
            who = self.responsible()
            label = self.DEADLINE_NAMES[state.name]
            due = f"{state.plan.due_on:%Y年%m月%d日}"
            no = self.start.clue_no
            if step is Step.REMIND:
                await self.step(f"{state.name}.due_soon", SYSTEM, "",
                                notify=Notice(EventType.CLUE_DUE_SOON, [who],
                                              f"线索 {no} 的{label}为{due}，即将到期"))
            elif step is Step.OVERDUE:
                self.s.missed += 1
                await self.step(f"{state.name}.overdue", SYSTEM, "",
                                data={"responsible": who, "deadline": state.name},
                                notify=Notice(EventType.CLUE_OVERDUE, [who, LAW_OFFICE],
                                              f"线索 {no} 已超过{label}（{due}），{agency_name(who)}未履职"))
            else:
                await self._escalate(state, who)
            self.refresh()

    async def _escalate(self, state: DeadlineState, who: str) -> None:
        """逾期升级: the missed duty goes to the discipline commission as a new clue."""
        self.s.escalations += 1
        label = self.DEADLINE_NAMES[state.name]
        no = self.start.clue_no
        if who == DISCIPLINE:
            # The commission cannot be escalated to itself: the county committee hears of it.
            await self.step(f"{state.name}.escalated", SYSTEM, "", data={"responsible": who},
                            notify=Notice(EventType.CLUE_ESCALATED, ["county_committee", LAW_OFFICE],
                                          f"线索 {no} 超过{label}仍未办理，报县委督办"))
            return
        child_no = f"{no}-E{self.s.escalations}"
        child_id = ids.escalation(workflow.info().workflow_id, self.s.escalations)
        self.s.links.append(await open_discipline_clue(
            clue_no=child_no, workflow_id=child_id, subject=who,
            title=f"{agency_name(who)}逾期未履行线索{no}的{label}",
            summary=f"逾期升级线索 {child_no}：{agency_name(who)}未履职 → 县纪委监委",
            timings=self.start.timings,
        ))
        await self.step(f"{state.name}.escalated", SYSTEM, "",
                        data={"responsible": who, "escalation_clue": child_id},
                        notify=Notice(EventType.CLUE_ESCALATED, [DISCIPLINE, LAW_OFFICE],
                                      f"线索 {no} 超过{label}宽限期仍未办理，已移送县纪委监委（线索 {child_no}）"))

    # --- operator actions ----------------------------------------------------------------

    @workflow.update
    async def transfer(self, action: Transfer) -> ClueStatus:
        """移送: the source agency sends the clue to the target."""
        async with self.acting(action, Action.CLUE_TRANSFER, self._check_transfer):
            await self._transfer(action.operator, action.agency, action.note)
        return self.status()

    @transfer.validator
    def _check_transfer(self, action: Transfer) -> None:
        self.require(action, Action.CLUE_TRANSFER, [self.start.source.value], {Stage.REGISTERED}, "移送", "transfer")

    @workflow.update
    async def acknowledge(self, action: Acknowledge) -> ClueStatus:
        """签收: the target agency signs for the clue; the handling deadline starts."""
        async with self.acting(action, Action.CLUE_ACKNOWLEDGE, self._check_acknowledge):
            self.meet("acknowledge")
            self.s.stage = Stage.HANDLING
            self.s.times["acknowledged_at"] = workflow.now()
            t = self.start.timings
            await self.plan("handling", self.request(working_days=t.handling_working_days,
                                                     remind=t.remind_working_days_before,
                                                     grace=t.grace_working_days))
            await self.step("acknowledged", action.operator, action.agency, note=action.note,
                            notify=Notice(EventType.CLUE_ACKNOWLEDGED, [self.start.source.value],
                                          f"{agency_name(self.start.target)}已签收线索 {self.start.clue_no}"))
        return self.status()

    @acknowledge.validator
    def _check_acknowledge(self, action: Acknowledge) -> None:
        self.require(action, Action.CLUE_ACKNOWLEDGE, [self.start.target.value], {Stage.TRANSFERRED}, "签收", "acknowledge")

    @workflow.update
    async def report_result(self, action: ReportResult) -> ClueStatus:
        """办理结果: the target reports the outcome (route c: fed back to the commission)."""
        async with self.acting(action, Action.CLUE_REPORT_RESULT, self._check_report_result):
            self.meet("handling")
            self.s.outcome = action
            self.s.stage = Stage.CONCLUDED
            self.s.times["closed_at"] = workflow.now()
            verdict = OUTCOME_NAMES[action.outcome]
            text = f"线索 {self.start.clue_no} 已办结：{verdict}"
            if self.start.route is Route.TO_JUSTICE:
                text = f"县司法局已将线索 {self.start.clue_no} 的调查结果反馈县纪委监委：{verdict}"
            special = action.open_special_inspection
            if special:
                text += "；决定开展专项督察"
                if not self.v2:  # before the kernel the inspection was opened before the step
                    await self._open_special()
            await self.step("concluded", action.operator, action.agency, note=action.summary,
                            data={"outcome": action.outcome.value, "open_special_inspection": special},
                            notify=Notice(EventType.CLUE_CONCLUDED, [self.start.source.value, LAW_OFFICE], text))
            if special and self.v2:  # opened once the (authorized) outcome is on record
                await self._open_special()
        return self.status()

    async def _open_special(self) -> None:
        """Route a: the rule-of-law office opens a special inspection of the unit (专项督察)."""
        if workflow.patched("start-special-inspection"):
            link, _ = await open_special_inspection(
                self.start.subject_unit, trigger=TriggerType.CLUE, ref=workflow.info().workflow_id)
            self.s.links.append(link)
        else:  # histories recorded before special inspections were started only linked one
            link_id = ids.inspection(self.today().year, "special", self.start.subject_unit)
            self.s.links.append(Link(relation="special_inspection", workflow_id=link_id))

    @report_result.validator
    def _check_report_result(self, action: ReportResult) -> None:
        self.require(action, Action.CLUE_REPORT_RESULT, [self.start.target.value], {Stage.HANDLING}, "报告结果", "report a result on")
        if action.open_special_inspection and self.start.route is not Route.TO_LAW_OFFICE:
            refuse("只有移送依法治县办的线索（路径a）可以决定开展专项督察",
                   "only route to_law_office clues can open a special inspection")

    @workflow.update
    async def withdraw(self, action: Withdraw) -> ClueStatus:
        """撤回: the source withdraws the clue before transferring it."""
        async with self.acting(action, Action.CLUE_WITHDRAW, self._check_withdraw):
            self.meet("transfer")
            self.s.stage = Stage.WITHDRAWN
            self.s.times["closed_at"] = workflow.now()
            await self.step("withdrawn", action.operator, action.agency, note=action.reason,
                            notify=Notice(EventType.CLUE_WITHDRAWN, [LAW_OFFICE, self.start.source.value],
                                          f"线索 {self.start.clue_no} 已由{agency_name(self.start.source)}撤回"))
        return self.status()

    @withdraw.validator
    def _check_withdraw(self, action: Withdraw) -> None:
        self.require(action, Action.CLUE_WITHDRAW, [self.start.source.value], {Stage.REGISTERED}, "撤回", "withdraw")

    @workflow.update
    async def extend_deadline(self, action: ExtendDeadline) -> ClueStatus:
        """延期: the rule-of-law office moves the current deadline to a later date."""
        async with self.acting(action, Action.CLUE_EXTEND_DEADLINE, self._check_extend):
            state = self.current()
            assert state is not None
            t = self.start.timings
            new = await self.plan(state.name, self.request(due_on=action.new_due_on,
                                                           remind=t.remind_working_days_before,
                                                           grace=t.grace_working_days),
                                  extensions=state.extensions + 1, summary="计算延期后的期限")
            await self.step("deadline_extended", action.operator, action.agency, note=action.reason,
                            data={"deadline": state.name, "new_due_on": new.plan.due_on.isoformat()},
                            notify=Notice(EventType.CLUE_DEADLINE_EXTENDED, [self.responsible()],
                                          f"线索 {self.start.clue_no} 的{self.DEADLINE_NAMES[state.name]}"
                                          f"延至{new.plan.due_on:%Y年%m月%d日}"))
        return self.status()

    @extend_deadline.validator
    def _check_extend(self, action: ExtendDeadline) -> None:
        self.require(action, Action.CLUE_EXTEND_DEADLINE, [LAW_OFFICE], set(OPEN_STAGES), "延期", "extend the deadline of")
        state = self.current()
        if state is None:
            refuse("当前没有可延长的期限", "there is no open deadline to extend")
        elif action.new_due_on <= state.plan.due_on:
            refuse(f"新期限须晚于当前期限 {state.plan.due_on}",
                   f"new_due_on must be after the current due date {state.plan.due_on}")

    async def recompute_open_deadlines(self) -> None:
        state = self.current()
        if state is not None and await self.recompute(state.name, lambda new: Notice(
                EventType.CLUE_DEADLINE_RECOMPUTED, [self.responsible()],
                f"线索 {self.start.clue_no} 的{self.DEADLINE_NAMES[new.name]}按官方节假日安排"
                f"重算为{new.plan.due_on:%Y年%m月%d日}")):
            self.refresh()

    @workflow.query
    def status(self) -> ClueStatus:
        s, o = self.start, self.s.outcome
        return ClueStatus(
            clue_no=s.clue_no, route=s.route, source=s.source.value, target=s.target.value,
            subject_unit=s.subject_unit, importance=s.importance, title=s.title, stage=self.s.stage,
            responsible=self.responsible(), light=self.light(),
            deadlines=[view(d) for d in self.s.deadlines.values()],
            history=list(self.s.history), history_total=self.s.history_total, links=list(self.s.links),
            notes=self.s.notes, outcome=o.outcome if o else None,
            special_inspection_requested=bool(o and o.open_special_inspection),
        )

    # --- what the kernel asks of the process ---------------------------------------------

    def subject(self) -> str:
        return self.start.clue_no

    def current(self) -> DeadlineState | None:
        state = self.s.deadlines.get(STAGE_DEADLINE.get(self.s.stage, ""))
        return state if state is not None and state.open else None

    def responsible(self) -> str | None:
        if self.s.stage is Stage.REGISTERED:
            return self.start.source.value
        return self.start.target.value if self.s.stage in OPEN_STAGES else None

    def notice_data(self) -> dict:
        s = self.start
        return {"clue_no": s.clue_no, "stage": self.s.stage.value, "route": s.route.value,
                "subject_unit": s.subject_unit}

    def snapshot_record(self) -> dict:
        return {"clue": self._snapshot()}

    async def record_legacy(self, event: LedgerEvent, records: dict) -> None:
        await calls.record_clue(RecordClue(snapshot=self._snapshot(), event=event,
                                           details=records.get("details")))

    def _snapshot(self) -> ClueSnapshot:
        s, st = self.start, self.s
        current = self.current()
        times: dict[str, datetime] = st.times
        return ClueSnapshot(
            clue_no=s.clue_no, workflow_id=workflow.info().workflow_id, year=s.discovered_on.year,
            route=s.route.value, source=s.source.value, target=s.target.value,
            channel=s.channel.value, importance=s.importance.value, subject_unit=s.subject_unit,
            title=s.title, discovered_on=s.discovered_on, stage=st.stage.value,
            responsible=self.responsible(),
            due_on=current.plan.due_on if current else None,
            due_at=current.plan.due_at if current else None,
            provisional=bool(current and current.plan.provisional),
            overdue=bool(current and current.overdue), missed_deadlines=st.missed,
            escalations=st.escalations, light=self.light(),
            outcome=st.outcome.outcome.value if st.outcome else None,
            special_inspection_requested=bool(st.outcome and st.outcome.open_special_inspection),
            escalated_from=s.escalated_from,
            registered_at=times.get("registered_at") or workflow.now(),
            transferred_at=times.get("transferred_at"), acknowledged_at=times.get("acknowledged_at"),
            closed_at=times.get("closed_at"),
        )

    def details(self) -> list[str]:
        s = self.start
        current = self.current()
        lines = [f"**线索 {s.clue_no}** {agency_name(s.source)} → {agency_name(s.target)}",
                 f"阶段：{self.STAGE_NAMES[self.s.stage]}"]
        if current:
            flag = "（暂定日历）" if current.plan.provisional else ""
            state = "已逾期" if current.overdue else "正常"
            lines.append(f"{self.DEADLINE_NAMES[current.name]}：{current.plan.due_on:%Y-%m-%d}{flag}，"
                         f"责任单位：{agency_name(self.responsible() or '')}，{state}")
        if self.s.escalations:
            lines.append(f"已升级 {self.s.escalations} 次")
        return lines
