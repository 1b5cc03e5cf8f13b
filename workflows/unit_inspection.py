"""UnitInspection (督察): one unit's routine, special or joint inspection (DOMAIN.md §2-§5).

    self_inspection ──submit_self_inspection──▶ joint_inspection ──evaluate──▶ evaluation ──issue_feedback──▶ completed
      (unit, by the self-inspection deadline;     (team: record_method,         (re-evaluate,       (one Rectification per finding,
       missed: the team goes on without it)        record_finding)               more findings)      a clue to 纪委监委 per suspected
                                                                                                     misconduct, feedback callback)

Two deadlines on the working-day calendar: the unit's self-inspection (default 10 working days,
due-soon reminder, overdue) and the inspection team's own completion deadline (default 40 working
days from the start to the feedback: due-soon and overdue callbacks to the lead and law_office).
The team is not escalated to the discipline commission: an overdue team is 督办'd by law_office
(documented in docs/operators.md). A routine inspection started by the yearly round tells the
round when it is finished (signal `inspection_progress`).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import date

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from rules.deadline_steps import DeadlineState, Step, light
    from schemas.calendar import DeadlineRequest
    from schemas.clue import ROUTE_SOURCES, Route
    from schemas.codes import AGENCY_NAMES, AgencyCode
    from schemas.common import LAW_OFFICE, HistoryEntry, Link
    from schemas.events import EventType
    from schemas.inspection import (
        INSPECTION_TEAM,
        MAX_FINDINGS,
        MAX_METHODS,
        Evaluate,
        EvaluationRow,
        EvaluationView,
        FindingRow,
        FindingView,
        InspectionProgress,
        InspectionResult,
        InspectionSnapshot,
        InspectionStatus,
        IssueFeedback,
        Kind,
        MethodRow,
        MethodView,
        RecordFinding,
        RecordInspection,
        RecordMethod,
        Stage,
        SubmitSelfInspection,
        TriggerType,
        UnitInspectionStart,
    )
    from schemas.ledger import LedgerEvent
    from schemas.rectification import Origin, OriginKind, RectificationStart

from workflows import calls
from workflows.duty import CHINA, view, watch
from workflows.escalation import transfer_misconduct_clue
from workflows.inputs import require
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

STAGE_NAMES = {
    Stage.SELF_INSPECTION: "部门自查",
    Stage.JOINT_INSPECTION: "联动检查",
    Stage.EVALUATION: "重点评估（待反馈）",
    Stage.COMPLETED: "问题已反馈",
}
KIND_NAMES = {Kind.ROUTINE: "平时督察", Kind.SPECIAL: "专项督察", Kind.JOINT: "联合督察"}
DEADLINE_NAMES = {"self_inspection": "自查期限", "team": "督察完成期限"}
KIND_ABBR = {"routine": "R", "special": "S", "joint": "J"}


def _name(code: str) -> str:
    try:
        return AGENCY_NAMES[AgencyCode(code)]
    except ValueError:
        return code


def _refuse(zh: str, en: str) -> None:
    raise ApplicationError(f"{zh} / {en}", type="Rejected", non_retryable=True)


def short_id(workflow_id: str) -> str:
    """`inspection-2027-routine-market_regulation` → `2027-R-market_regulation`: the stem of the
    problem numbers (≤ 34 characters, NUMBER_PATTERN-safe; long ids end in a stable hash)."""
    s = workflow_id.removeprefix("inspection-")
    s = re.sub(r"-(routine|special|joint)-", lambda m: f"-{KIND_ABBR[m.group(1)]}-", s, count=1)
    s = re.sub(r"[^A-Za-z0-9_-]", "_", s).strip("-_") or "I"
    if len(s) > 34:
        s = f"{s[:21].rstrip('-_')}-{hashlib.sha1(workflow_id.encode()).hexdigest()[:12]}"
    return s


@workflow.defn(name="UnitInspection", failure_exception_types=[ValidationError])
class UnitInspection:
    @workflow.init
    def __init__(self, start: UnitInspectionStart) -> None:
        self.start = start
        self.stage = Stage.SELF_INSPECTION
        self.deadlines: dict[str, DeadlineState] = {}
        self.history: list[HistoryEntry] = []
        self.links: list[Link] = []
        self.methods: list[MethodView] = []
        self.findings: list[FindingRow] = []
        self.evaluation: EvaluationView | None = None
        self.self_missed = False
        self.seq = 0
        self.times: dict[str, object] = {}
        self.lock = asyncio.Lock()
        self.ready = False
        self.provisional_pending = False
        self.provisional_warned = False

    # --- the process ---------------------------------------------------------------------

    @workflow.run
    async def run(self, start: UnitInspectionStart) -> InspectionResult:
        start = require(start, UnitInspectionStart)
        try:
            return await self._run(start)
        except FailureError:
            await self._tell_round("failed")
            raise

    async def _run(self, start: UnitInspectionStart) -> InspectionResult:
        self.times["started_at"] = workflow.now()
        workflow.upsert_search_attributes([
            DUCHA_KIND.value_set("inspection"),
            DUCHA_UNIT.value_set(start.unit),
            DUCHA_YEAR.value_set(start.year),
        ])
        async with self.lock:
            await calls.require_parties(sorted({start.unit, start.lead.value, LAW_OFFICE}))
            t = start.timings
            await self._plan("self_inspection", t.self_inspection_working_days)
            await self._plan("team", t.team_working_days)
            await self._step("started", "系统", start.lead.value,
                             notify=(EventType.INSPECTION_STARTED, [start.unit, start.lead.value],
                                     f"{_name(start.lead)}对{start.unit}开展{KIND_NAMES[start.kind]}，"
                                     f"请于{self._due_text('self_inspection')}前提交自查报告"))
            await self._refresh()
            self.ready = True
        team = asyncio.create_task(watch(
            get_state=lambda: self.deadlines.get("team"),
            done=lambda: self.stage is Stage.COMPLETED,
            on_step=self._on_team_step,
        ))
        while self.stage is not Stage.COMPLETED:
            if self.stage is Stage.SELF_INSPECTION:
                await watch(get_state=lambda: self.deadlines.get("self_inspection"),
                            done=lambda: self.stage is not Stage.SELF_INSPECTION,
                            on_step=self._on_self_step)
            else:
                stage = self.stage
                await workflow.wait_condition(lambda stage=stage: self.stage is not stage)
        await team
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._tell_round("completed")
        return InspectionResult(
            workflow_id=workflow.info().workflow_id, unit=start.unit, kind=start.kind, stage=self.stage,
            findings=len(self.findings),
            rectifications=[f.rectification_id for f in self.findings if f.rectification_id],
            clues=[f.clue_id for f in self.findings if f.clue_id],
            score=self.evaluation.score if self.evaluation else None,
            grade=self.evaluation.grade if self.evaluation else None,
        )

    async def _on_self_step(self, state: DeadlineState, step: Step) -> None:
        async with self.lock:
            if self.stage is not Stage.SELF_INSPECTION or not state.open:
                return
            unit = self.start.unit
            if step is Step.REMIND:
                await self._step("self_inspection.due_soon", "系统", "",
                                 notify=(EventType.INSPECTION_DUE_SOON, [unit],
                                         f"请于{self._due_text('self_inspection')}前提交自查报告"))
            elif step is Step.OVERDUE:
                # The team goes on without the self-inspection report; the miss is on record.
                self.self_missed = True
                self.stage = Stage.JOINT_INSPECTION
                await self._step("self_inspection.missed", "系统", "",
                                 data={"responsible": unit, "deadline": "self_inspection"},
                                 notify=(EventType.INSPECTION_OVERDUE, [unit, self.start.lead.value, LAW_OFFICE],
                                         f"{unit} 未在{self._due_text('self_inspection')}前提交自查报告，"
                                         "督察组转入联动检查"))
            await self._refresh()

    async def _on_team_step(self, state: DeadlineState, step: Step) -> None:
        async with self.lock:
            if self.stage is Stage.COMPLETED or not state.open:
                return
            lead = self.start.lead.value
            if step is Step.REMIND:
                await self._step("team.due_soon", "系统", "",
                                 notify=(EventType.INSPECTION_DUE_SOON, [lead, LAW_OFFICE],
                                         f"对{self.start.unit}的{KIND_NAMES[self.start.kind]}须于"
                                         f"{self._due_text('team')}前完成问题反馈"))
            elif step is Step.OVERDUE:
                await self._step("team.overdue", "系统", "", data={"responsible": lead, "deadline": "team"},
                                 notify=(EventType.INSPECTION_OVERDUE, [LAW_OFFICE, lead],
                                         f"对{self.start.unit}的{KIND_NAMES[self.start.kind]}已超过督察完成期限"
                                         f"（{self._due_text('team')}），请督办"))
                await self._tell_round("overdue")
            else:
                # No escalation to the discipline commission for the team itself: on record only.
                await self._step("team.still_overdue", "系统", "", data={"responsible": lead})
            await self._refresh()

    async def _tell_round(self, event: str) -> None:
        """A routine inspection of the yearly round reports back by signal (the round may have
        continued as new since it started this one, so its run id is not used)."""
        trigger = self.start.trigger
        if trigger.type is not TriggerType.ANNUAL or not trigger.ref:
            return
        try:
            await workflow.get_external_workflow_handle(trigger.ref).signal(
                "inspection_progress",
                InspectionProgress(unit=self.start.unit, workflow_id=workflow.info().workflow_id,
                                   event=event, findings=len(self.findings)))
        except FailureError as exc:
            workflow.logger.warning("could not report to round %s: %s", trigger.ref, exc)

    # --- operator actions ----------------------------------------------------------------

    @workflow.update
    async def submit_self_inspection(self, action: SubmitSelfInspection) -> InspectionStatus:
        """部门自查: the unit submits its self-inspection report."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            self._check_submit(action)
            await self._authorize(action, "inspection.submit_self_inspection")
            self._meet("self_inspection")
            self.stage = Stage.JOINT_INSPECTION
            self.times["self_submitted_at"] = workflow.now()
            await self._step("self_inspection.submitted", action.operator, action.agency, note=action.summary,
                             data={"problems_found": action.problems_found,
                                   "attachments": len(action.attachments)})
            await self._refresh()
        return self.status()

    @submit_self_inspection.validator
    def _check_submit(self, action: SubmitSelfInspection) -> None:
        self._require(action, (self.start.unit,), {Stage.SELF_INSPECTION}, "提交自查报告")

    @workflow.update
    async def record_method(self, action: RecordMethod) -> InspectionStatus:
        """联动检查: the team records one inspection method used (听取汇报, 评查案卷, …)."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            self._check_method(action)
            await self._authorize(action, "inspection.record_method")
            m = MethodView(n=len(self.methods) + 1, method=action.method, summary=action.summary,
                           on=action.on or self._today(), count=action.count, agency=action.agency,
                           operator=action.operator)
            self.methods.append(m)
            await self._step("method.recorded", action.operator, action.agency, note=action.summary,
                             data={"n": m.n, "method": m.method.value, "count": m.count},
                             method=MethodRow(**m.model_dump(mode="json")))
            await self._refresh()
        return self.status()

    @record_method.validator
    def _check_method(self, action: RecordMethod) -> None:
        self._require(action, self._team(), {Stage.JOINT_INSPECTION}, "记录督察方式")
        if len(self.methods) >= MAX_METHODS:
            _refuse(f"督察方式记录已达上限 {MAX_METHODS} 条", f"at most {MAX_METHODS} methods")
        if action.on is not None and action.on > self._today():
            _refuse("日期不能晚于今天", "on must not be in the future")

    @workflow.update
    async def record_finding(self, action: RecordFinding) -> InspectionStatus:
        """督察发现: one problem, on the common or the individual problem list."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            self._check_finding(action)
            await self._authorize(action, "inspection.record_finding")
            n = len(self.findings) + 1
            row = FindingRow(
                n=n, problem_no=f"{short_id(workflow.info().workflow_id)}-{n}",
                description=action.description, category=action.category, list=action.list.value,
                basis=action.basis, severity=action.severity.value,
                suspected_misconduct=action.suspected_misconduct, misconduct_note=action.misconduct_note,
                opinion=action.opinion, agency=action.agency, operator=action.operator)
            self.findings.append(row)
            await self._step("finding.recorded", action.operator, action.agency,
                             data={"n": n, "problem_no": row.problem_no, "category": row.category,
                                   "list": row.list, "severity": row.severity,
                                   "suspected_misconduct": row.suspected_misconduct},
                             findings=[row])
            await self._refresh()
        return self.status()

    @record_finding.validator
    def _check_finding(self, action: RecordFinding) -> None:
        self._require(action, self._team(), {Stage.JOINT_INSPECTION, Stage.EVALUATION}, "记录发现问题")
        if len(self.findings) >= MAX_FINDINGS:
            _refuse(f"发现问题已达上限 {MAX_FINDINGS} 条", f"at most {MAX_FINDINGS} findings")
        if action.suspected_misconduct and len(action.misconduct_note) < 2:
            _refuse("涉嫌违纪违法须说明情况（misconduct_note）",
                    "a suspected misconduct needs a misconduct_note")

    @workflow.update
    async def evaluate(self, action: Evaluate) -> InspectionStatus:
        """重点评估: score and grade (may be given again until feedback is issued)."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            self._check_evaluate(action)
            await self._authorize(action, "inspection.evaluate")
            self.evaluation = EvaluationView(score=action.score, grade=action.grade, comments=action.comments,
                                             agency=action.agency, at=workflow.now())
            self.stage = Stage.EVALUATION
            self.times["evaluated_at"] = workflow.now()
            await self._step("evaluated", action.operator, action.agency, note=action.comments,
                             data={"score": action.score, "grade": action.grade.value},
                             evaluation=EvaluationRow(score=action.score, grade=action.grade.value,
                                                      comments=action.comments, agency=action.agency,
                                                      operator=action.operator))
            await self._refresh()
        return self.status()

    @evaluate.validator
    def _check_evaluate(self, action: Evaluate) -> None:
        self._require(action, self._team(), {Stage.JOINT_INSPECTION, Stage.EVALUATION}, "重点评估")
        if not self.methods:
            _refuse("尚未记录任何督察方式，不能评估", "record at least one method before evaluating")

    @workflow.update
    async def issue_feedback(self, action: IssueFeedback) -> InspectionStatus:
        """问题反馈: one Rectification per finding, a clue to 纪委监委 per suspected misconduct,
        and point-to-point feedback to the unit (and to the lead agency of a joint inspection)."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            self._check_feedback(action)
            await self._authorize(action, "inspection.issue_feedback")
            await asyncio.gather(*(self._rectify(f, action) for f in self.findings))
            await asyncio.gather(*(self._clue(f) for f in self.findings if f.suspected_misconduct))
            self._meet("team")
            self.stage = Stage.COMPLETED
            self.times["completed_at"] = workflow.now()
            unit, kind = self.start.unit, self.start.kind
            recipients = [unit] + ([self.start.lead.value] if kind is Kind.JOINT else [])
            common = sum(1 for f in self.findings if f.list == "common")
            text = (f"{KIND_NAMES[kind]}问题反馈：{unit} 发现问题 {len(self.findings)} 个"
                    f"（共性 {common}、个性 {len(self.findings) - common}），已逐项下达整改")
            if kind is Kind.JOINT:
                text += f"；与{_name(self.start.lead)}联合反馈"
            if not self.findings:
                text = f"{KIND_NAMES[kind]}问题反馈：{unit} 未发现问题"
            await self._step(
                "feedback_issued", action.operator, action.agency, note=action.opinion,
                data={"findings": len(self.findings), "common": common,
                      "rectifications": ",".join(f.rectification_id or "" for f in self.findings)[:2000],
                      "clues": sum(1 for f in self.findings if f.clue_id),
                      "score": self.evaluation.score if self.evaluation else None,
                      "grade": self.evaluation.grade.value if self.evaluation else None,
                      "bulletin": action.bulletin,
                      "joint_with": self.start.lead.value if kind is Kind.JOINT else None},
                notify=(EventType.INSPECTION_FEEDBACK_ISSUED, recipients, text),
                findings=list(self.findings))
            await self._refresh()
        return self.status()

    @issue_feedback.validator
    def _check_feedback(self, action: IssueFeedback) -> None:
        self._require(action, self._team(), {Stage.EVALUATION}, "反馈问题")
        if action.due_on is not None and action.due_on <= self._today():
            _refuse("整改时限须晚于今天", "due_on must be after today")

    async def _rectify(self, f: FindingRow, action: IssueFeedback) -> None:
        """One Rectification per finding; it outlives the inspection (ABANDON)."""
        wid = f"rectification-{f.problem_no}"
        due = ({"due_on": action.due_on} if action.due_on else
               {"due_in_working_days": action.due_in_working_days
                or self.start.timings.rectification_working_days})
        start = RectificationStart(
            problem_no=f.problem_no, unit=self.start.unit,
            origin=Origin(kind=OriginKind.INSPECTION, ref=workflow.info().workflow_id),
            list=f.list, category=f.category, description=f.description, basis=f.basis,
            opinion=f.opinion or action.opinion, severity=f.severity, issued_by=action.operator, **due)
        try:
            await workflow.start_child_workflow(
                "Rectification", start, id=wid, parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                static_summary=f"整改 {f.problem_no}（{self.start.unit}，{f.category}）")
        except WorkflowAlreadyStartedError:
            pass  # started by an earlier attempt of this feedback
        f.rectification_id = wid
        f.opinion = f.opinion or action.opinion
        self.links.append(Link(relation="rectification", workflow_id=wid))

    async def _clue(self, f: FindingRow) -> None:
        """Route b: suspected misconduct found by the inspection goes to 纪委监委."""
        lead = self.start.lead
        source = lead if lead in ROUTE_SOURCES[Route.TO_DISCIPLINE] else AgencyCode.LAW_OFFICE
        clue_no = f"{short_id(workflow.info().workflow_id)}-D{f.n}"
        link = await transfer_misconduct_clue(
            clue_no=clue_no, workflow_id=f"clue-{clue_no}", source=source, subject=self.start.unit,
            title=f"督察发现{self.start.unit}执法人员涉嫌违纪违法（问题 {f.problem_no}）",
            details=f"{f.description}\n\n{f.misconduct_note}",
            summary=f"线索 {clue_no}：督察发现涉嫌违纪违法 → 县纪委监委")
        f.clue_id = link.workflow_id
        self.links.append(link)

    @workflow.query
    def status(self) -> InspectionStatus:
        s = self.start
        return InspectionStatus(
            unit=s.unit, year=s.year, kind=s.kind, lead=s.lead.value, trigger=s.trigger, areas=s.areas,
            focus=s.focus, stage=self.stage, responsible=self._responsible(),
            light=light(self._current(), workflow.now()).value,
            deadlines=[view(d) for d in self.deadlines.values()], self_inspection_missed=self.self_missed,
            methods=list(self.methods),
            findings=[FindingView(n=f.n, problem_no=f.problem_no, category=f.category, list=f.list,
                                  severity=f.severity, suspected_misconduct=f.suspected_misconduct,
                                  description=f.description, rectification_id=f.rectification_id,
                                  clue_id=f.clue_id) for f in self.findings],
            evaluation=self.evaluation, history=list(self.history), links=list(self.links),
        )

    # --- helpers -------------------------------------------------------------------------

    def _team(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*INSPECTION_TEAM, self.start.lead.value)))

    async def _authorize(self, action, name: str) -> None:
        if workflow.patched("authorize-operators"):
            await calls.authorize(action.operator, action.agency, name)

    def _require(self, action, who: tuple[str, ...], stages: set[Stage], what: str) -> None:
        if action.agency not in who:
            _refuse(f"只有 {'、'.join(who)} 可以{what}，{action.agency} 无权操作",
                    f"only {', '.join(who)} may do this; {action.agency} may not")
        if self.stage not in stages:
            _refuse(f"督察当前为「{STAGE_NAMES[self.stage]}」，不能{what}",
                    f"cannot {what} in stage {self.stage.value}")

    def _today(self) -> date:
        return workflow.now().astimezone(CHINA).date()

    def _responsible(self) -> str | None:
        if self.stage is Stage.SELF_INSPECTION:
            return self.start.unit
        if self.stage is Stage.COMPLETED:
            return None
        return self.start.lead.value

    def _current(self) -> DeadlineState | None:
        if self.stage is Stage.COMPLETED:
            return None
        if self.stage is Stage.SELF_INSPECTION:
            state = self.deadlines.get("self_inspection")
            if state is not None and state.open:
                return state
        state = self.deadlines.get("team")
        return state if state is not None and state.open else None

    def _due_text(self, name: str) -> str:
        d = self.deadlines.get(name)
        return f"{d.plan.due_on:%Y年%m月%d日}" if d else "-"

    def _meet(self, name: str) -> None:
        state = self.deadlines.get(name)
        if state is not None and state.open:
            state.met_at = workflow.now()

    async def _plan(self, name: str, working_days: int) -> None:
        t = self.start.timings
        req = DeadlineRequest(start=self._today(), working_days=working_days,
                              remind_working_days_before=min(t.remind_working_days_before, working_days),
                              grace_working_days=t.grace_working_days)
        plan = await calls.plan_deadline(req, f"计算{DEADLINE_NAMES[name]}")
        self.deadlines[name] = DeadlineState(name=name, plan=plan, request=req)
        self.provisional_pending = self.provisional_pending or plan.provisional

    async def _warn_if_provisional(self) -> None:
        if self.provisional_pending and not self.provisional_warned:
            self.provisional_warned = True
            self.provisional_pending = False
            await self._step("calendar.provisional", "系统", "",
                             notify=(EventType.CALENDAR_PROVISIONAL, [LAW_OFFICE],
                                     f"对{self.start.unit}的督察期限按暂定日历计算（该年度官方节假日安排尚未导入）"))

    async def _step(self, event: str, operator: str, agency: str, *, note: str = "",
                    data: dict | None = None, notify: tuple | None = None,
                    method: MethodRow | None = None, findings: list[FindingRow] | None = None,
                    evaluation: EvaluationRow | None = None) -> None:
        """Record one action: history, ledger row + event (+ method/finding/evaluation rows), callback."""
        now = workflow.now()
        seq = self.seq
        self.seq += 1
        self.history.append(HistoryEntry(at=now, action=event, operator=operator, agency=agency,
                                         note=note[:200]))
        await calls.record_inspection(RecordInspection(
            snapshot=self._snapshot(),
            event=LedgerEvent(seq=seq, event=event, actor=operator, agency=agency, occurred_at=now,
                              data={"stage": self.stage.value, "note": note[:500], **(data or {})}),
            method=method, findings=findings or [], evaluation=evaluation,
        ))
        if notify is not None:
            kind, recipients, summary = notify
            await calls.notify(seq, kind, recipients, summary, {
                "unit": self.start.unit, "year": self.start.year, "kind": self.start.kind.value,
                "lead": self.start.lead.value, "stage": self.stage.value,
                "due_on": self._current().plan.due_on.isoformat() if self._current() else None,
                **(data or {}),
            })
        await self._warn_if_provisional()

    def _snapshot(self) -> InspectionSnapshot:
        s = self.start
        info = workflow.info()
        current = self._current()
        self_d, team_d = self.deadlines.get("self_inspection"), self.deadlines.get("team")
        return InspectionSnapshot(
            workflow_id=info.workflow_id, run_id=info.first_execution_run_id, year=s.year,
            kind=s.kind.value, unit=s.unit, lead=s.lead.value, trigger_type=s.trigger.type.value,
            trigger_ref=s.trigger.ref,
            round_id=s.trigger.ref if s.trigger.type is TriggerType.ANNUAL and s.trigger.ref else None,
            stage=self.stage.value, responsible=self._responsible(),
            self_due_on=self_d.plan.due_on if self_d else None,
            team_due_on=team_d.plan.due_on if team_d else None,
            due_at=current.plan.due_at if current else None,
            provisional=bool(current and current.plan.provisional),
            overdue=bool(current and current.overdue), self_inspection_missed=self.self_missed,
            light=light(current, workflow.now()).value, methods=len(self.methods),
            findings=len(self.findings),
            rectifications=sum(1 for f in self.findings if f.rectification_id),
            clues=sum(1 for f in self.findings if f.clue_id),
            score=self.evaluation.score if self.evaluation else None,
            grade=self.evaluation.grade.value if self.evaluation else None,
            started_at=self.times.get("started_at") or workflow.now(),
            self_submitted_at=self.times.get("self_submitted_at"),
            evaluated_at=self.times.get("evaluated_at"), completed_at=self.times.get("completed_at"),
        )

    async def _refresh(self) -> None:
        """Search attributes and the Chinese current details shown in the Web UI."""
        current = self._current()
        responsible = self._responsible()
        workflow.upsert_search_attributes([
            DUCHA_STAGE.value_set(self.stage.value),
            DUCHA_AGENCY.value_set(responsible) if responsible else DUCHA_AGENCY.value_unset(),
            DUCHA_DUE_AT.value_set(current.plan.due_at) if current else DUCHA_DUE_AT.value_unset(),
            DUCHA_OVERDUE.value_set(bool(current and current.overdue)),
            DUCHA_LIGHT.value_set(light(current, workflow.now()).value),
        ])
        s = self.start
        lines = [f"**{s.year}年{KIND_NAMES[s.kind]}：{s.unit}**（牵头：{_name(s.lead)}）",
                 f"阶段：{STAGE_NAMES[self.stage]}"]
        if current:
            flag = "（暂定日历）" if current.plan.provisional else ""
            state = "已逾期" if current.overdue else "正常"
            lines.append(f"{DEADLINE_NAMES[current.name]}：{current.plan.due_on:%Y-%m-%d}{flag}，"
                         f"责任：{_name(responsible or '')}，{state}")
        if self.self_missed:
            lines.append("单位未按期提交自查报告")
        lines.append(f"督察方式 {len(self.methods)} 项，发现问题 {len(self.findings)} 个"
                     + (f"，评估 {self.evaluation.score:g} 分" if self.evaluation else ""))
        if s.focus:
            lines.append(f"重点关注结转问题：{'、'.join(s.focus[:10])}")
        workflow.set_current_details("\n\n".join(lines))
