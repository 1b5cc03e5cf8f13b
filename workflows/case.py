"""The case kernel (案件内核): what every case workflow has, written once.

A case (a clue transfer, a rectification, a unit inspection) has a stage and a party who must act
now, statutory deadlines watched by durable timers (due soon → overdue → grace → escalation),
operator actions as updates, free notes, a trail, and the Web UI's view of it (search attributes,
current details). `Case` owns all of that; `ClueTransfer`, `Rectification` and `UnitInspection`
declare their stages and write only their own process.

    update ─▶ validator (party, stage) ─▶ acting(): ready → lock → check again → the process's
              transition ─▶ step(): ONE `cases.step` call (authorization decision, ledger
              snapshot + chained event, callback outbox; then the first delivery attempts)
              ─▶ refresh(): search attributes + Chinese details

Bounded history: a case that lives for years continues as new when Temporal suggests it (or at
CONTINUE_AFTER_EVENTS events), carrying its compact state (`CaseState`) in the start input's
`resume`; `status` keeps the last HISTORY_KEPT entries, older ones are in the ledger.

Runs started before this kernel (no `case-kernel` marker in their history) replay the commands
they were started with: a separate authorization activity, a ledger activity and a publish
activity per step, and their own provisional-calendar warning rule (`LEGACY_PROVISIONAL`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from rules.deadline_steps import DeadlineState, light
    from rules.permissions import Action, refusal
    from schemas.calendar import DeadlineRequest
    from schemas.case import CaseKind, StepRecord
    from schemas.case_state import CaseState
    from schemas.codes import AGENCY_NAMES, AgencyCode
    from schemas.common import LAW_OFFICE, HistoryEntry, Note
    from schemas.events import EventType
    from schemas.ledger import LedgerEvent
    from schemas.registry import AuthorizeInput

from workflows import calls
from workflows.duty import CHINA
from workflows.inputs import usable
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

KERNEL_PATCH = "case-kernel"
SYSTEM = "系统"  # the actor of timer-driven steps
HISTORY_KEPT = 100  # status entries kept in the workflow; the ledger has them all
CONTINUE_AFTER_EVENTS = 4_000  # continue as new at this history length at the latest
NOTES_PER_STEP = 100  # notes arriving together are recorded together, this many per step


@dataclass(frozen=True)
class Notice:
    """The callback that goes with a step: type, recipients, one Chinese sentence."""

    type: EventType
    recipients: list[str]
    summary: str


def agency_name(code: str) -> str:
    try:
        return AGENCY_NAMES[AgencyCode(code)]
    except ValueError:
        return code


def refuse(zh: str, en: str) -> None:
    """A business refusal of an update or start: the operator reads the Chinese, then English."""
    raise ApplicationError(f"{zh} / {en}", type="Rejected", non_retryable=True)


class Case(abc.ABC):
    """Base class of the case workflows (not a workflow itself)."""

    KIND: ClassVar[CaseKind]
    NOUN: ClassVar[tuple[str, str]]  # ("线索", "clue")
    STAGE_NAMES: ClassVar[dict[Any, str]]
    DEADLINE_NAMES: ClassVar[dict[str, str]]
    # How runs started before the kernel announced a provisional calendar:
    # (how a new plan sets the flag: "assign" | "or", how often: "once" | "each")
    LEGACY_PROVISIONAL: ClassVar[tuple[str, str]]

    s: CaseState

    def init_case(self, state: CaseState) -> None:
        self.s = state
        self.lock = asyncio.Lock()
        self.ready = False  # set once the opening step is recorded; operator actions wait for it
        self.v2 = True  # False for runs started before the kernel (see `begin`)
        self._authorization: AuthorizeInput | None = None
        self._notes: list[HistoryEntry] = []
        self._notes_task: asyncio.Task | None = None
        self._closing = False
        self._shown: tuple | None = None

    # --- what each process provides ------------------------------------------------------

    @abc.abstractmethod
    def subject(self) -> str:
        """The case's number in Chinese sentences (clue_no, problem_no, the unit)."""

    @abc.abstractmethod
    def current(self) -> DeadlineState | None:
        """The open deadline of the current stage (what the light and DuchaDueAt show)."""

    @abc.abstractmethod
    def responsible(self) -> str | None:
        """Who must act now."""

    @abc.abstractmethod
    def snapshot_record(self) -> dict:
        """The case's ledger snapshot, as the StepRecord field of its kind."""

    @abc.abstractmethod
    def notice_data(self) -> dict:
        """The ids every callback of this case carries."""

    @abc.abstractmethod
    def details(self) -> list[str]:
        """Markdown lines of the Web UI's current details."""

    @abc.abstractmethod
    async def record_legacy(self, event: LedgerEvent, records: dict) -> None:
        """The ledger activity of runs started before the kernel."""

    @abc.abstractmethod
    async def recompute_open_deadlines(self) -> None:
        """After `ducha calendar load`: recompute (`recompute`) the process's provisional
        deadlines and refresh what the UI shows. Called under the lock."""

    def due_at(self) -> datetime | None:
        current = self.current()
        return current.plan.due_at if current else None

    # --- opening and closing -------------------------------------------------------------

    def begin(self, resume: dict | None, *, unit: str, year: int) -> bool:
        """First thing in `run`: which commands this run issues, and its carried state.
        Returns True for a continued run (its opening steps are done already)."""
        self.v2 = workflow.patched(KERNEL_PATCH)
        if resume is not None and workflow.info().continued_run_id is not None:
            self.s = type(self.s).model_validate(resume)
            self._notes, self.s.unrecorded = self.s.unrecorded, []
            self.ready = True
            self._start_notes()
            return True
        if resume is not None:
            refuse("resume 只用于流程自身的续跑", "resume is only for the workflow's own continue-as-new")
        workflow.upsert_search_attributes([
            DUCHA_KIND.value_set(self.KIND.value),
            DUCHA_UNIT.value_set(unit),
            DUCHA_YEAR.value_set(year),
        ])
        return False

    async def load_parties(self, codes: list[str]) -> None:
        """The case's parties must be in the registry; their operators are kept (v2)."""
        out = await calls.require_parties(sorted(set(codes)), local=self.v2)
        if self.v2:
            self.s.parties = sorted(set(codes))
            self.s.operators = out.operators

    def opened(self) -> None:
        """The opening step is recorded: operator actions may proceed."""
        self.ready = True
        self._start_notes()

    def should_continue(self) -> bool:
        """Time to continue as new (never for runs started before the kernel)."""
        if not self.v2:
            return False
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= CONTINUE_AFTER_EVENTS

    async def settle(self, *tasks: asyncio.Task, carry_notes: bool = False) -> None:
        """Before the run ends or continues: no step under way, the process's own tasks
        (`tasks`) stopped, every handler finished, and the notes waiting recorded (or, when
        continuing, carried to the next run: a stream of notes never holds a run open)."""
        if self.v2:
            self._closing = True
            await workflow.wait_condition(lambda: not self.lock.locked())
            if self._notes_task is not None:
                self._notes_task.cancel()
                tasks = (*tasks, self._notes_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while True:
            await workflow.wait_condition(workflow.all_handlers_finished)
            if not self._notes or carry_notes:
                return  # nothing awaits between here and the run's end: no note is left behind
            async with self.lock:
                await self._record_notes()

    async def carry_on(self, start: BaseModel, *tasks: asyncio.Task) -> None:
        """Continue as new with the compact state (never returns)."""
        await self.settle(*tasks, carry_notes=True)
        state = self.s.model_copy(update={"unrecorded": list(self._notes)})
        workflow.continue_as_new(start.model_copy(update={"resume": state.model_dump(mode="json")}))

    # --- operator actions ----------------------------------------------------------------

    def require(self, action: Any, name: Action, parties: tuple[str, ...] | list[str], stages: set,
                what: str, what_en: str) -> None:
        """The validator's checks, before the update is accepted (a refusal adds nothing to the
        history): the right party acts, in a stage that allows it, by a registered operator of
        that party with the role the action needs (from the case's copy of the registry)."""
        noun, noun_en = self.NOUN
        if action.agency not in parties:
            names = "、".join(agency_name(p) for p in parties)
            refuse(f"只有{names}可以{what}，{action.agency} 无权操作",
                   f"only {', '.join(parties)} may {what_en}; {action.agency} may not")
        if self.s.stage not in stages:
            refuse(f"{noun}当前为「{self.STAGE_NAMES[self.s.stage]}」，不能{what}",
                   f"cannot {what_en} a {noun_en} in stage {self.s.stage}")
        if self.v2 and self.s.operators:
            grant = self.s.operators.get(action.operator)
            if grant is None:  # not in the registry, or an operator of none of the case's parties
                reason = (f"操作人 {action.operator} 不是{agency_name(action.agency)}的登记操作人 / "
                          f"operator {action.operator!r} is not a registered operator of {action.agency}")
            else:
                reason = refusal(operator=action.operator, agency=action.agency, action=name.value,
                                 party=grant.party, roles=grant.roles, active=grant.active)
            if reason is not None:
                workflow.logger.warning("update refused before acceptance: %s", reason)
                raise ApplicationError(reason, type="Unauthorized", non_retryable=True)

    @contextlib.asynccontextmanager
    async def acting(self, action: Any, name: Action, check: Callable[[Any], None]) -> AsyncIterator[None]:
        """The update prologue and epilogue: wait until the case is open, take the lock, check
        again (the state may have moved since the validator ran), authorize, act, refresh.

        The authorization decision is made and recorded by the action's first step, in the same
        transaction as the ledger; a refusal there restores the state the action started from."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            check(action)
            if not self.v2:
                if workflow.patched("authorize-operators"):
                    await calls.authorize(action.operator, action.agency, name.value)
                yield
                self.refresh()
                return
            saved = self.s.model_copy(deep=True)
            self._authorization = AuthorizeInput(operator=action.operator, agency=action.agency,
                                                 action=name.value, workflow_id=workflow.info().workflow_id)
            try:
                yield
            except ApplicationError as err:
                if err.type == "Unauthorized":
                    self.s = saved
                raise
            finally:
                self._authorization = None
            self.refresh()

    # --- deadlines -----------------------------------------------------------------------

    def today(self) -> date:
        return workflow.now().astimezone(CHINA).date()

    def request(self, *, working_days: int | None = None, due_on: date | None = None,
                monthly: bool = False, start: date | None = None, remind: int, grace: int) -> DeadlineRequest:
        """A deadline request; the reminder never reaches back before the deadline's start."""
        if working_days is not None:
            remind = min(remind, working_days)
        return DeadlineRequest(start=start or self.today(), working_days=working_days, due_on=due_on,
                               monthly=monthly, remind_working_days_before=remind, grace_working_days=grace)

    async def plan(self, name: str, req: DeadlineRequest, *, extensions: int = 0, summary: str = "") -> DeadlineState:
        """Compute a deadline on the working-day calendar; a provisional one is announced
        right after the next step."""
        plan = await calls.plan_deadline(req, summary or f"计算{self.DEADLINE_NAMES[name]}", local=self.v2)
        state = DeadlineState(name=name, plan=plan, request=req, extensions=extensions)
        self.s.deadlines[name] = state
        if not self.v2:
            how, _ = self.LEGACY_PROVISIONAL
            self.s.legacy_pending = plan.provisional or (how == "or" and self.s.legacy_pending)
        elif plan.provisional:
            year = plan.due_on.year
            if year not in self.s.warned_years and year not in self.s.provisional_years:
                self.s.provisional_years.append(year)
        return state

    def meet(self, name: str) -> None:
        state = self.s.deadlines.get(name)
        if state is not None and state.open:
            state.met_at = workflow.now()

    def due_text(self, name: str) -> str:
        d = self.s.deadlines.get(name)
        return f"{d.plan.due_on:%Y年%m月%d日}" if d else "-"

    async def recompute(self, name: str, notice: Callable[[DeadlineState], Notice], *,
                        moved_only: bool = False) -> bool:
        """A provisional deadline computed again on the official calendar (`ducha calendar load`,
        DESIGN.md §5): the parties hear the official deadline (a new plan: its steps start again).
        With `moved_only` (rectifications started before the kernel) only a date that moved is
        announced. True when a step was recorded."""
        state = self.s.deadlines.get(name)
        if state is None or not state.open or state.request is None or not state.plan.provisional:
            return False
        new = await self.plan(name, state.request, extensions=state.extensions, summary="按官方日历重算期限")
        if moved_only and new.plan.due_on == state.plan.due_on:
            return False
        if new.plan == state.plan:
            self.s.deadlines[name] = state  # nothing changed: the steps taken stand
            return False
        await self.step("deadline_recomputed", SYSTEM, "",
                        data={"deadline": name, "new_due_on": new.plan.due_on.isoformat()},
                        notify=notice(new))
        return True

    # --- the step ------------------------------------------------------------------------

    async def step(self, event: str, operator: str, agency: str, *, note: str = "",
                   data: dict | None = None, notify: Notice | None = None, **records: Any) -> None:
        """Record one action: the status history, and in one transaction the ledger snapshot,
        the chained ledger event, the authorization decision and the callback outbox."""
        now = workflow.now()
        seq = self.s.seq
        self.s.seq += 1
        self.remember(HistoryEntry(at=now, action=event, operator=operator, agency=agency, note=note[:200]))
        ledger_event = LedgerEvent(seq=seq, event=event, actor=operator, agency=agency, occurred_at=now,
                                   data={"stage": str(self.s.stage), "note": note[:500], **(data or {})})
        publish = None
        if notify is not None:
            publish = calls.event_for(seq, notify.type, notify.recipients, notify.summary,
                                      {**self.notice_data(), **(data or {})})
        if self.v2:
            result = await calls.step(StepRecord(kind=self.KIND, events=[ledger_event], notify=publish,
                                                 authorization=self._authorization, parties=self.s.parties,
                                                 **self.snapshot_record(), **records))
            self._authorization = None  # recorded with this step
            if result.operators is not None:
                self.s.operators = result.operators
        else:
            await self.record_legacy(ledger_event, records)
            if publish is not None:
                await calls.publish(publish)
        await self._announce_provisional()

    def remember(self, entry: HistoryEntry) -> None:
        self.s.history.append(entry)
        self.s.history_total += 1
        if self.v2 and len(self.s.history) > HISTORY_KEPT:
            del self.s.history[: len(self.s.history) - HISTORY_KEPT]

    async def _announce_provisional(self) -> None:
        """暂定日历: a deadline computed without the year's official holiday schedule is announced
        to law_office once per calendar year of the case."""
        noun, _ = self.NOUN
        text = f"{noun} {self.subject()} 的期限按暂定日历计算（该年度官方节假日安排尚未导入）"
        if not self.v2:
            _, how_often = self.LEGACY_PROVISIONAL
            if self.s.legacy_pending and (how_often == "each" or not self.s.legacy_warned):
                self.s.legacy_warned = True
                self.s.legacy_pending = False
                await self.step("calendar.provisional", SYSTEM, "",
                                notify=Notice(EventType.CALENDAR_PROVISIONAL, [LAW_OFFICE], text))
            return
        if self.s.provisional_years:
            years = sorted(self.s.provisional_years)
            self.s.warned_years.extend(years)
            self.s.provisional_years = []
            await self.step("calendar.provisional", SYSTEM, "", data={"years": ",".join(map(str, years))},
                            notify=Notice(EventType.CALENDAR_PROVISIONAL, [LAW_OFFICE], text))

    @workflow.signal
    async def recompute_deadlines(self) -> None:
        """Sent by `ducha calendar load` when an official holiday schedule arrives: provisional
        deadlines are computed again on the official calendar (DESIGN.md §5)."""
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            await self.recompute_open_deadlines()

    @workflow.signal
    async def registry_changed(self) -> None:
        """Sent by `ducha registry load`: the case reads its parties' operators again."""
        if not self.v2:
            return
        await workflow.wait_condition(lambda: self.ready)
        async with self.lock:
            out = await calls.require_parties(self.s.parties, local=True)
            self.s.operators = out.operators

    # --- notes ---------------------------------------------------------------------------

    @workflow.signal
    def add_note(self, note: Note) -> None:
        """备注: a free note on the case; in the status history and (batched) in the ledger."""
        if not usable(note, Note):
            return
        entry = HistoryEntry(at=workflow.now(), action="note", operator=note.operator, note=note.text[:200])
        self.s.notes += 1
        self.remember(entry)
        if self.v2:
            self._notes.append(entry.model_copy(update={"note": note.text}))

    def _start_notes(self) -> None:
        if self.v2 and self._notes_task is None:
            self._notes_task = asyncio.create_task(self._note_recorder())

    async def _note_recorder(self) -> None:
        """Notes that arrive together are recorded in one step, until the run settles."""
        while True:
            await workflow.wait_condition(lambda: bool(self._notes) or self._closing)
            if not self._notes:
                return
            async with self.lock:
                await self._record_notes()

    async def _record_notes(self) -> None:
        """One step for up to NOTES_PER_STEP waiting notes (each its own ledger event)."""
        batch = self._notes[:NOTES_PER_STEP]
        events = []
        for entry in batch:
            events.append(LedgerEvent(seq=self.s.seq, event="note", actor=entry.operator,
                                      occurred_at=entry.at, data={"note": entry.note}))
            self.s.seq += 1
        await calls.step(StepRecord(kind=self.KIND, events=events, **self.snapshot_record()))
        del self._notes[: len(batch)]

    # --- what the Web UI shows -----------------------------------------------------------

    def refresh(self) -> None:
        """Search attributes (only when they changed) and the Chinese current details."""
        current = self.current()
        responsible = self.responsible() or ""
        due = self.due_at()
        overdue = bool(current and current.overdue)
        colour = light(current, workflow.now()).value
        shown = (str(self.s.stage), responsible, due, overdue, colour)
        if not self.v2 or shown != self._shown:
            workflow.upsert_search_attributes([
                DUCHA_STAGE.value_set(str(self.s.stage)),
                DUCHA_AGENCY.value_set(responsible) if responsible else DUCHA_AGENCY.value_unset(),
                DUCHA_DUE_AT.value_set(due) if due else DUCHA_DUE_AT.value_unset(),
                DUCHA_OVERDUE.value_set(overdue),
                DUCHA_LIGHT.value_set(colour),
            ])
            self._shown = shown
        workflow.set_current_details("\n\n".join(self.details()))

    def light(self) -> str:
        return light(self.current(), workflow.now()).value

