"""Typed, workflow-safe calls to the project's activities, with one timeout/retry policy.

Activities are called by method reference (the classes are passed through the sandbox: imported
once by the worker, never re-imported per run). Business failures from activities are
non-retryable ApplicationErrors; everything else (database restarts, network) is retried with
backoff for as long as it takes.

`local=True` runs a call as a local activity: short calls (a calendar look-up, one ledger
transaction) then cost one marker event instead of three activity events and no round trip
through the server's task queues.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.assessment import AssessmentActivities
    from activities.calendar import CalendarActivities
    from activities.callbacks import CallbackActivities
    from activities.cases import CaseActivities
    from activities.inspections import InspectionActivities
    from activities.ledger import LedgerActivities
    from activities.registry import RegistryStore
    from schemas.assessment import PublishScores, PublishSummary, ScoreYear, YearSummary
    from schemas.calendar import DeadlinePlan, DeadlineRequest
    from schemas.callbacks import AttemptInput, AttemptResult, MarkDeadInput
    from schemas.case import StepRecord, StepResult
    from schemas.digest import DigestGroups, DigestQuery
    from schemas.events import EventType, PublishEvent, PublishResult
    from schemas.inspection import (
        DescribeQuery,
        DescribeResult,
        RecordInspection,
        SpecialSlot,
        SpecialSlotQuery,
        StartedInspections,
        StartInspections,
    )
    from schemas.ledger import RecordClue, RecordRectification
    from schemas.registry import AuthorizeInput, LookupPartiesInput, LookupPartiesOutput
    from schemas.risk import IndicatorQuery, IndicatorRows
    from schemas.round import RecordRound, RoundInputs, RoundInputsQuery

RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                    maximum_interval=timedelta(minutes=1))
TIMEOUT = timedelta(seconds=30)
# A local step: one transaction plus the first delivery attempts (each bounded by
# callback_inline_timeout_seconds, 3 s by default), well inside a workflow task's heartbeat.
LOCAL_TIMEOUT = timedelta(seconds=20)
T = TypeVar("T")


async def business(call: Awaitable[T]) -> T:
    """Await an activity; a business refusal from it surfaces with its own clear message
    (instead of a generic "activity task failed") when it fails the workflow."""
    try:
        return await call
    except ActivityError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.non_retryable:
            raise ApplicationError(cause.message, type=cause.type, non_retryable=True) from exc
        raise


async def _run(method: Any, arg: object, summary: str, *, local: bool = False,
               timeout: timedelta = TIMEOUT) -> Any:
    if local:
        return await business(workflow.execute_local_activity_method(
            method, arg, start_to_close_timeout=min(timeout, LOCAL_TIMEOUT), retry_policy=RETRY,
            summary=summary))
    return await business(workflow.execute_activity_method(
        method, arg, start_to_close_timeout=timeout, retry_policy=RETRY, summary=summary))


# --- cases (the kernel's step) -------------------------------------------------------------


async def step(record: StepRecord) -> StepResult:
    """One step of a case in one transaction, then its notification from the outbox."""
    return await _run(CaseActivities.step, record, f"记录 {record.events[-1].event}", local=True)


async def require_parties(codes: list[str], *, local: bool = False) -> LookupPartiesOutput:
    return await _run(RegistryStore.require_parties, LookupPartiesInput(codes=codes), "核对登记册",
                      local=local)


async def plan_deadline(req: DeadlineRequest, summary: str, *, local: bool = False) -> DeadlinePlan:
    return await _run(CalendarActivities.plan_deadline, req, summary, local=local)


async def authorize(operator: str, agency: str, action: str) -> None:
    """The operator must be registered for `agency` and hold the role the action needs
    (rules/permissions.py); a refusal is logged and fails the update with its reason."""
    await _run(RegistryStore.authorize,
               AuthorizeInput(operator=operator, agency=agency, action=action,
                              workflow_id=workflow.info().workflow_id),
               f"核验操作权限 {action}")


# --- callbacks -----------------------------------------------------------------------------


async def publish(event: PublishEvent) -> PublishResult:
    return await workflow.execute_activity_method(
        CallbackActivities.publish, event, start_to_close_timeout=TIMEOUT, retry_policy=RETRY,
        summary=f"通知 {event.type}",
    )


def event_for(seq: int, kind: EventType, recipients: list[str], summary: str, data: dict) -> PublishEvent:
    """The callback event of the current workflow's action number `seq`.

    The event id `{workflow_id}.{seq}` is stable across retries and replays: it is the
    idempotency key end to end (ledger row, delivery workflow id, webhook-id)."""
    wf_id = workflow.info().workflow_id
    return PublishEvent(
        event_id=f"{wf_id}.{seq}", type=kind, recipients=list(dict.fromkeys(recipients)),
        workflow_id=wf_id, summary=summary, occurred_at=workflow.now(),
        data={k: v for k, v in data.items() if isinstance(v, str | int | bool | float) or v is None},
    )


async def notify(seq: int, kind: EventType, recipients: list[str], summary: str, data: dict) -> None:
    """Publish one callback event for action number `seq` (its own activity)."""
    await publish(event_for(seq, kind, recipients, summary, data))


async def deliver_attempt(req: AttemptInput, timeout: timedelta, retry: RetryPolicy) -> AttemptResult:
    return await workflow.execute_activity_method(
        CallbackActivities.deliver_attempt, req, start_to_close_timeout=timeout, retry_policy=retry,
        summary=f"第 {req.attempt} 次投递")


async def mark_dead(req: MarkDeadInput, timeout: timedelta, retry: RetryPolicy) -> bool:
    return await workflow.execute_activity_method(
        CallbackActivities.mark_dead, req, start_to_close_timeout=timeout, retry_policy=retry,
        summary="转入死信")


# --- the ledger, process by process (before the case kernel's step) ------------------------


async def record_clue(req: RecordClue) -> bool:
    return await _run(LedgerActivities.record_clue, req, f"台账 {req.event.event}")


async def record_rectification(req: RecordRectification) -> bool:
    return await _run(LedgerActivities.record_rectification, req, f"台账 {req.event.event}")


async def record_inspection(req: RecordInspection) -> bool:
    return await _run(InspectionActivities.record_inspection, req, f"台账 {req.event.event}")


async def routine_clues_due(q: DigestQuery) -> DigestGroups:
    return await _run(LedgerActivities.routine_clues_due, q, "读取待移送的一般线索")


# --- the yearly round and inspections -------------------------------------------------------


async def record_round(req: RecordRound) -> bool:
    return await _run(InspectionActivities.record_round, req,
                      f"台账 {req.event.event if req.event else '进度'}")


async def round_inputs(req: RoundInputsQuery) -> RoundInputs:
    return await _run(InspectionActivities.round_inputs, req, "读取登记册、结转问题和上年评分")


async def start_inspections(req: StartInspections) -> StartedInspections:
    return await _run(InspectionActivities.start_inspections, req,
                      f"启动 {len(req.items)} 个单位的督察", timeout=timedelta(minutes=2))


async def describe(req: DescribeQuery) -> DescribeResult:
    return await _run(InspectionActivities.describe, req, f"核对 {len(req.workflow_ids)} 个督察流程")


async def special_slot(req: SpecialSlotQuery) -> SpecialSlot:
    return await _run(InspectionActivities.special_slot, req, f"查找 {req.unit} 的专项督察")


async def risk_indicators(req: IndicatorQuery) -> IndicatorRows:
    return await _run(InspectionActivities.indicators, req,
                      f"读取风险指标 {req.first_period}~{req.last_period}")


# --- the yearly assessment ------------------------------------------------------------------


async def score_year(req: ScoreYear, timeout: timedelta) -> YearSummary:
    return await _run(AssessmentActivities.score_year, req, f"{req.year}年度考核计分", timeout=timeout)


async def publish_scores(req: PublishScores, timeout: timedelta, heartbeat: timedelta) -> PublishSummary:
    return await business(workflow.execute_activity_method(
        AssessmentActivities.publish_scores, req, start_to_close_timeout=timeout,
        heartbeat_timeout=heartbeat, retry_policy=RETRY, summary=f"发布{req.year}年度考核结果"))
