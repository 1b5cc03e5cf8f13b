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
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from rules.deadline_steps import DeadlineState, Step
    from rules.permissions import Action
    from schemas import ids
    from schemas.case import CaseKind
    from schemas.clue import ROUTE_SOURCES, Route
    from schemas.codes import AgencyCode
    from schemas.common import LAW_OFFICE, Link
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
        InspectionState,
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
from workflows.annual_round import AnnualInspectionRound
from workflows.case import SYSTEM, Case, Notice, agency_name, refuse
from workflows.duty import view, watch
from workflows.escalation import transfer_misconduct_clue
from workflows.inputs import require
from workflows.rectification import Rectification

KIND_NAMES = {Kind.ROUTINE: "平时督察", Kind.SPECIAL: "专项督察", Kind.JOINT: "联合督察"}
KIND_ABBR = {"routine": "R", "special": "S", "joint": "J"}


def short_id(workflow_id: str) -> str:
    """`inspection-2027-routine-market_regulation` → `2027-R-market_regulation`: the stem of the
    problem numbers (≤ 34 characters, NUMBER_PATTERN-safe; long ids end in a stable hash)."""
    s = workflow_id.removeprefix(ids.INSPECTION)
    s = re.sub(r"-(routine|special|joint)-", lambda m: f"-{KIND_ABBR[m.group(1)]}-", s, count=1)
    s = re.sub(r"[^A-Za-z0-9_-]", "_", s).strip("-_") or "I"
    if len(s) > 34:
        s = f"{s[:21].rstrip('-_')}-{hashlib.sha1(workflow_id.encode()).hexdigest()[:12]}"
    return s


@workflow.defn(name="UnitInspection", failure_exception_types=[ValidationError])
class UnitInspection(Case):
    KIND = CaseKind.INSPECTION
    NOUN = ("督察", "inspection")
    STAGE_NAMES = {Stage.SELF_INSPECTION: "部门自查", Stage.JOINT_INSPECTION: "联动检查",
                   Stage.EVALUATION: "重点评估（待反馈）", Stage.COMPLETED: "问题已反馈"}
    DEADLINE_NAMES = {"self_inspection": "自查期限", "team": "督察完成期限"}
    LEGACY_PROVISIONAL = ("or", "once")

    s: InspectionState

    @workflow.init
    def __init__(self, start: UnitInspectionStart) -> None:
        self.start = start
        self.init_case(InspectionState())

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
        if not self.begin(start.resume, unit=start.unit, year=start.year):
            await self._open(start)
        team = asyncio.create_task(watch(
            get_state=lambda: self.s.deadlines.get("team"),
            done=lambda: self.s.stage is Stage.COMPLETED or self.should_continue(),
            on_step=self._on_team_step,
        ))
        while self.s.stage is not Stage.COMPLETED:
            if self.should_continue():
                await self.carry_on(start, team)
            if self.s.stage is Stage.SELF_INSPECTION:
                await watch(get_state=lambda: self.s.deadlines.get("self_inspection"),
                            done=lambda: self.s.stage is not Stage.SELF_INSPECTION or self.should_continue(),
                            on_step=self._on_self_step)
            else:
                stage = self.s.stage
                await workflow.wait_condition(lambda stage=stage: self.s.stage is not stage
                                              or self.should_continue())
        await team
        await self.settle()
        await self._tell_round("completed")
        findings = self.s.findings
        evaluation = self.s.evaluation
        return InspectionResult(
            workflow_id=workflow.info().workflow_id, unit=start.unit, kind=start.kind, stage=self.s.stage,
            findings=len(findings), rectifications=[f.rectification_id for f in findings if f.rectification_id],
            clues=[f.clue_id for f in findings if f.clue_id],
            score=evaluation.score if evaluation else None, grade=evaluation.grade if evaluation else None,
        )

    async def _open(self, start: UnitInspectionStart) -> None:
        """启动督察: the unit's self-inspection and the team's completion deadlines start."""
        self.s.times["started_at"] = workflow.now()
        async with self.lock:
            await self.load_parties([start.unit, start.lead.value, LAW_OFFICE, *INSPECTION_TEAM])
            t = start.timings
            for name, days in (("self_inspection", t.self_inspection_working_days), ("team", t.team_working_days)):
                await self.plan(name, self.request(working_days=days, remind=t.remind_working_days_before,
                                                   grace=t.grace_working_days))
            await self.step("started", SYSTEM, start.lead.value,
                            notify=Notice(EventType.INSPECTION_STARTED, [start.unit, start.lead.value],
                                          f"{agency_name(start.lead)}对{start.unit}开展{KIND_NAMES[start.kind]}，"
                                          f"请于{self.due_text('self_inspection')}前提交自查报告"))
            self.refresh()
            self.opened()

    async def _on_self_step(self, state: DeadlineState, step: Step) -> None:
        async with self.lock:
            if self.s.stage is not Stage.SELF_INSPECTION or not state.open:
                return
            unit = self.start.unit
            if step is Step.REMIND:
                await self.step("self_inspection.due_soon", SYSTEM, "",
                                notify=Notice(EventType.INSPECTION_DUE_SOON, [unit],
                                              f"请于{self.due_text('self_inspection')}前提交自查报告"))
            elif step is Step.OVERDUE:
                # The team goes on without the self-inspection report; the miss is on record.
                self.s.self_missed = True
                self.s.stage = Stage.JOINT_INSPECTION
                await self.step("self_inspection.missed", SYSTEM, "",
                                data={"responsible": unit, "deadline": "self_inspection"},
                                notify=Notice(EventType.INSPECTION_OVERDUE, [unit, self.start.lead.value, LAW_OFFICE],
                                              f"{unit} 未在{self.due_text('self_inspection')}前提交自查报告，"
                                              "督察组转入联动检查"))
            self.refresh()

    async def _on_team_step(self, state: DeadlineState, step: Step) -> None:
        async with self.lock:
            if self.s.stage is Stage.COMPLETED or not state.open:
                return
            lead, what = self.start.lead.value, f"对{self.start.unit}的{KIND_NAMES[self.start.kind]}"
            if step is Step.REMIND:
                await self.step("team.due_soon", SYSTEM, "",
                                notify=Notice(EventType.INSPECTION_DUE_SOON, [lead, LAW_OFFICE],
                                              f"{what}须于{self.due_text('team')}前完成问题反馈"))
            elif step is Step.OVERDUE:
                await self.step("team.overdue", SYSTEM, "", data={"responsible": lead, "deadline": "team"},
                                notify=Notice(EventType.INSPECTION_OVERDUE, [LAW_OFFICE, lead],
                                              f"{what}已超过督察完成期限（{self.due_text('team')}），请督办"))
                await self._tell_round("overdue")
            else:
                # No escalation to the discipline commission for the team itself: on record only.
                await self.step("team.still_overdue", SYSTEM, "", data={"responsible": lead})
            self.refresh()

    async def _tell_round(self, event: str) -> None:
        """A routine inspection of the yearly round reports back by signal (the round may have
        continued as new since it started this one, so its run id is not used)."""
        trigger = self.start.trigger
        if trigger.type is not TriggerType.ANNUAL or not trigger.ref:
            return
        try:
            await workflow.get_external_workflow_handle(trigger.ref).signal(
                AnnualInspectionRound.inspection_progress,
                InspectionProgress(unit=self.start.unit, workflow_id=workflow.info().workflow_id,
                                   event=event, findings=len(self.s.findings)))
        except FailureError as exc:
            workflow.logger.warning("could not report to round %s: %s", trigger.ref, exc)

    # --- operator actions ----------------------------------------------------------------

    @workflow.update
    async def submit_self_inspection(self, action: SubmitSelfInspection) -> InspectionStatus:
        """部门自查: the unit submits its self-inspection report."""
        async with self.acting(action, Action.INSPECTION_SUBMIT_SELF_INSPECTION, self._check_submit):
            self.meet("self_inspection")
            self.s.stage = Stage.JOINT_INSPECTION
            self.s.times["self_submitted_at"] = workflow.now()
            await self.step("self_inspection.submitted", action.operator, action.agency, note=action.summary,
                            data={"problems_found": action.problems_found,
                                  "attachments": len(action.attachments)})
        return self.status()

    @submit_self_inspection.validator
    def _check_submit(self, action: SubmitSelfInspection) -> None:
        self.require(action, Action.INSPECTION_SUBMIT_SELF_INSPECTION, (self.start.unit,), {Stage.SELF_INSPECTION}, "提交自查报告", "submit a self-inspection of")

    @workflow.update
    async def record_method(self, action: RecordMethod) -> InspectionStatus:
        """联动检查: the team records one inspection method used (听取汇报, 评查案卷, …)."""
        async with self.acting(action, Action.INSPECTION_RECORD_METHOD, self._check_method):
            m = MethodView(n=len(self.s.methods) + 1, method=action.method, summary=action.summary,
                           on=action.on or self.today(), count=action.count, agency=action.agency,
                           operator=action.operator)
            self.s.methods.append(m)
            await self.step("method.recorded", action.operator, action.agency, note=action.summary,
                            data={"n": m.n, "method": m.method.value, "count": m.count},
                            method=MethodRow(**m.model_dump(mode="json")))
        return self.status()

    @record_method.validator
    def _check_method(self, action: RecordMethod) -> None:
        self.require(action, Action.INSPECTION_RECORD_METHOD, self._team(), {Stage.JOINT_INSPECTION}, "记录督察方式", "record a method in")
        if len(self.s.methods) >= MAX_METHODS:
            refuse(f"督察方式记录已达上限 {MAX_METHODS} 条", f"at most {MAX_METHODS} methods")
        if action.on is not None and action.on > self.today():
            refuse("日期不能晚于今天", "on must not be in the future")

    @workflow.update
    async def record_finding(self, action: RecordFinding) -> InspectionStatus:
        """督察发现: one problem, on the common or the individual problem list."""
        async with self.acting(action, Action.INSPECTION_RECORD_FINDING, self._check_finding):
            n = len(self.s.findings) + 1
            row = FindingRow(
                n=n, problem_no=f"{short_id(workflow.info().workflow_id)}-{n}",
                description=action.description, category=action.category, list=action.list.value,
                basis=action.basis, severity=action.severity.value,
                suspected_misconduct=action.suspected_misconduct, misconduct_note=action.misconduct_note,
                opinion=action.opinion, agency=action.agency, operator=action.operator)
            self.s.findings.append(row)
            await self.step("finding.recorded", action.operator, action.agency,
                            data={"n": n, "problem_no": row.problem_no, "category": row.category,
                                  "list": row.list, "severity": row.severity,
                                  "suspected_misconduct": row.suspected_misconduct},
                            findings=[row])
        return self.status()

    @record_finding.validator
    def _check_finding(self, action: RecordFinding) -> None:
        self.require(action, Action.INSPECTION_RECORD_FINDING, self._team(), {Stage.JOINT_INSPECTION, Stage.EVALUATION}, "记录发现问题",
                     "record a finding in")
        if len(self.s.findings) >= MAX_FINDINGS:
            refuse(f"发现问题已达上限 {MAX_FINDINGS} 条", f"at most {MAX_FINDINGS} findings")
        if action.suspected_misconduct and len(action.misconduct_note) < 2:
            refuse("涉嫌违纪违法须说明情况（misconduct_note）", "a suspected misconduct needs a misconduct_note")

    @workflow.update
    async def evaluate(self, action: Evaluate) -> InspectionStatus:
        """重点评估: score and grade (may be given again until feedback is issued)."""
        async with self.acting(action, Action.INSPECTION_EVALUATE, self._check_evaluate):
            self.s.evaluation = EvaluationView(score=action.score, grade=action.grade, comments=action.comments,
                                               agency=action.agency, at=workflow.now())
            self.s.stage = Stage.EVALUATION
            self.s.times["evaluated_at"] = workflow.now()
            await self.step("evaluated", action.operator, action.agency, note=action.comments,
                            data={"score": action.score, "grade": action.grade.value},
                            evaluation=EvaluationRow(score=action.score, grade=action.grade.value,
                                                     comments=action.comments, agency=action.agency,
                                                     operator=action.operator))
        return self.status()

    @evaluate.validator
    def _check_evaluate(self, action: Evaluate) -> None:
        self.require(action, Action.INSPECTION_EVALUATE, self._team(), {Stage.JOINT_INSPECTION, Stage.EVALUATION}, "重点评估", "evaluate")
        if not self.s.methods:
            refuse("尚未记录任何督察方式，不能评估", "record at least one method before evaluating")

    @workflow.update
    async def issue_feedback(self, action: IssueFeedback) -> InspectionStatus:
        """问题反馈: one Rectification per finding, a clue to 纪委监委 per suspected misconduct,
        and point-to-point feedback to the unit (and to the lead agency of a joint inspection)."""
        async with self.acting(action, Action.INSPECTION_ISSUE_FEEDBACK, self._check_feedback):
            findings = self.s.findings
            if not self.v2:  # before the kernel the cases were opened before the feedback step
                await self._open_cases(action)
            else:  # their ids are known now; they are opened once the feedback is on record
                for f in findings:
                    f.opinion = f.opinion or action.opinion
                    f.rectification_id = ids.rectification(f.problem_no)
                    if f.suspected_misconduct:
                        f.clue_id = ids.clue(self._clue_no(f))
            self.meet("team")
            self.s.stage = Stage.COMPLETED
            self.s.times["completed_at"] = workflow.now()
            unit, kind = self.start.unit, self.start.kind
            recipients = [unit] + ([self.start.lead.value] if kind is Kind.JOINT else [])
            common = sum(1 for f in findings if f.list == "common")
            text = (f"{KIND_NAMES[kind]}问题反馈：{unit} 发现问题 {len(findings)} 个"
                    f"（共性 {common}、个性 {len(findings) - common}），已逐项下达整改")
            if kind is Kind.JOINT:
                text += f"；与{agency_name(self.start.lead)}联合反馈"
            if not findings:
                text = f"{KIND_NAMES[kind]}问题反馈：{unit} 未发现问题"
            evaluation = self.s.evaluation
            await self.step(
                "feedback_issued", action.operator, action.agency, note=action.opinion,
                data={"findings": len(findings), "common": common,
                      "rectifications": ",".join(f.rectification_id or "" for f in findings)[:2000],
                      "clues": sum(1 for f in findings if f.clue_id),
                      "score": evaluation.score if evaluation else None,
                      "grade": evaluation.grade.value if evaluation else None,
                      "bulletin": action.bulletin,
                      "joint_with": self.start.lead.value if kind is Kind.JOINT else None},
                notify=Notice(EventType.INSPECTION_FEEDBACK_ISSUED, recipients, text),
                findings=list(findings))
            if self.v2:
                await self._open_cases(action)
        return self.status()

    @issue_feedback.validator
    def _check_feedback(self, action: IssueFeedback) -> None:
        self.require(action, Action.INSPECTION_ISSUE_FEEDBACK, self._team(), {Stage.EVALUATION}, "反馈问题", "issue feedback in")
        if action.due_on is not None and action.due_on <= self.today():
            refuse("整改时限须晚于今天", "due_on must be after today")

    async def _open_cases(self, action: IssueFeedback) -> None:
        findings = self.s.findings
        await asyncio.gather(*(self._rectify(f, action) for f in findings))
        await asyncio.gather(*(self._clue(f) for f in findings if f.suspected_misconduct))

    async def _rectify(self, f: FindingRow, action: IssueFeedback) -> None:
        """One Rectification per finding; it outlives the inspection (ABANDON)."""
        wid = ids.rectification(f.problem_no)
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
                Rectification.run, start, id=wid, parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                static_summary=f"整改 {f.problem_no}（{self.start.unit}，{f.category}）")
        except WorkflowAlreadyStartedError:
            pass  # started by an earlier attempt of this feedback
        f.rectification_id = wid
        f.opinion = f.opinion or action.opinion
        self.s.links.append(Link(relation="rectification", workflow_id=wid))

    def _clue_no(self, f: FindingRow) -> str:
        return f"{short_id(workflow.info().workflow_id)}-D{f.n}"

    async def _clue(self, f: FindingRow) -> None:
        """Route b: suspected misconduct found by the inspection goes to 纪委监委."""
        lead = self.start.lead
        source = lead if lead in ROUTE_SOURCES[Route.TO_DISCIPLINE] else AgencyCode.LAW_OFFICE
        clue_no = self._clue_no(f)
        link = await transfer_misconduct_clue(
            clue_no=clue_no, workflow_id=ids.clue(clue_no), source=source, subject=self.start.unit,
            title=f"督察发现{self.start.unit}执法人员涉嫌违纪违法（问题 {f.problem_no}）",
            details=f"{f.description}\n\n{f.misconduct_note}",
            summary=f"线索 {clue_no}：督察发现涉嫌违纪违法 → 县纪委监委")
        f.clue_id = link.workflow_id
        self.s.links.append(link)

    async def recompute_open_deadlines(self) -> None:
        if self.s.stage is Stage.COMPLETED:
            return
        for name in ("self_inspection", "team"):
            await self.recompute(name, lambda new: Notice(
                EventType.INSPECTION_DEADLINE_RECOMPUTED, self._parties_of(new.name),
                f"对{self.start.unit}的{KIND_NAMES[self.start.kind]}的{self.DEADLINE_NAMES[new.name]}"
                f"按官方节假日安排重算为{new.plan.due_on:%Y年%m月%d日}"))
        self.refresh()

    def _parties_of(self, deadline: str) -> list[str]:
        return [self.start.unit] if deadline == "self_inspection" else [self.start.lead.value, LAW_OFFICE]

    @workflow.query
    def status(self) -> InspectionStatus:
        s, st = self.start, self.s
        return InspectionStatus(
            unit=s.unit, year=s.year, kind=s.kind, lead=s.lead.value, trigger=s.trigger, areas=s.areas,
            focus=s.focus, stage=st.stage, responsible=self.responsible(), light=self.light(),
            deadlines=[view(d) for d in st.deadlines.values()], self_inspection_missed=st.self_missed,
            methods=list(st.methods),
            findings=[FindingView(n=f.n, problem_no=f.problem_no, category=f.category, list=f.list,
                                  severity=f.severity, suspected_misconduct=f.suspected_misconduct,
                                  description=f.description, rectification_id=f.rectification_id,
                                  clue_id=f.clue_id) for f in st.findings],
            evaluation=st.evaluation, history=list(st.history), history_total=st.history_total, notes=st.notes,
            links=list(st.links),
        )

    # --- what the kernel asks of the process ---------------------------------------------

    def _team(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*INSPECTION_TEAM, self.start.lead.value)))

    def subject(self) -> str:
        return f"对{self.start.unit}的督察"

    def responsible(self) -> str | None:
        if self.s.stage is Stage.SELF_INSPECTION:
            return self.start.unit
        if self.s.stage is Stage.COMPLETED:
            return None
        return self.start.lead.value

    def current(self) -> DeadlineState | None:
        if self.s.stage is Stage.COMPLETED:
            return None
        if self.s.stage is Stage.SELF_INSPECTION:
            state = self.s.deadlines.get("self_inspection")
            if state is not None and state.open:
                return state
        state = self.s.deadlines.get("team")
        return state if state is not None and state.open else None

    def notice_data(self) -> dict:
        s, current = self.start, self.current()
        return {"unit": s.unit, "year": s.year, "kind": s.kind.value, "lead": s.lead.value,
                "stage": self.s.stage.value, "due_on": current.plan.due_on.isoformat() if current else None}

    def snapshot_record(self) -> dict:
        return {"inspection": self._snapshot()}

    async def record_legacy(self, event: LedgerEvent, records: dict) -> None:
        await calls.record_inspection(RecordInspection(
            snapshot=self._snapshot(), event=event, method=records.get("method"),
            findings=records.get("findings") or [], evaluation=records.get("evaluation")))

    def _snapshot(self) -> InspectionSnapshot:
        s, st = self.start, self.s
        info = workflow.info()
        current = self.current()
        self_d, team_d = st.deadlines.get("self_inspection"), st.deadlines.get("team")
        times: dict[str, datetime] = st.times
        return InspectionSnapshot(
            workflow_id=info.workflow_id, run_id=info.first_execution_run_id, year=s.year,
            kind=s.kind.value, unit=s.unit, lead=s.lead.value, trigger_type=s.trigger.type.value,
            trigger_ref=s.trigger.ref,
            round_id=s.trigger.ref if s.trigger.type is TriggerType.ANNUAL and s.trigger.ref else None,
            stage=st.stage.value, responsible=self.responsible(),
            self_due_on=self_d.plan.due_on if self_d else None,
            team_due_on=team_d.plan.due_on if team_d else None,
            due_at=current.plan.due_at if current else None,
            provisional=bool(current and current.plan.provisional),
            overdue=bool(current and current.overdue), self_inspection_missed=st.self_missed,
            light=self.light(), methods=len(st.methods), findings=len(st.findings),
            rectifications=sum(1 for f in st.findings if f.rectification_id),
            clues=sum(1 for f in st.findings if f.clue_id),
            score=st.evaluation.score if st.evaluation else None,
            grade=st.evaluation.grade.value if st.evaluation else None,
            started_at=times.get("started_at") or workflow.now(),
            self_submitted_at=times.get("self_submitted_at"),
            evaluated_at=times.get("evaluated_at"), completed_at=times.get("completed_at"),
        )

    def details(self) -> list[str]:
        s, current, responsible = self.start, self.current(), self.responsible()
        lines = [f"**{s.year}年{KIND_NAMES[s.kind]}：{s.unit}**（牵头：{agency_name(s.lead)}）",
                 f"阶段：{self.STAGE_NAMES[self.s.stage]}"]
        if current:
            flag = "（暂定日历）" if current.plan.provisional else ""
            state = "已逾期" if current.overdue else "正常"
            lines.append(f"{self.DEADLINE_NAMES[current.name]}：{current.plan.due_on:%Y-%m-%d}{flag}，"
                         f"责任：{agency_name(responsible or '')}，{state}")
        if self.s.self_missed:
            lines.append("单位未按期提交自查报告")
        evaluation = self.s.evaluation
        lines.append(f"督察方式 {len(self.s.methods)} 项，发现问题 {len(self.s.findings)} 个"
                     + (f"，评估 {evaluation.score:g} 分" if evaluation else ""))
        if s.focus:
            lines.append(f"重点关注结转问题：{'、'.join(s.focus[:10])}")
        return lines
