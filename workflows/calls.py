"""Typed, workflow-safe calls to the project's activities, with one timeout/retry policy.

Activities are called by name so workflow modules import no I/O code. Business failures from
activities are non-retryable ApplicationErrors; everything else (database restarts, network)
is retried with backoff for as long as it takes.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from schemas.calendar import DeadlinePlan, DeadlineRequest
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


async def require_parties(codes: list[str]) -> LookupPartiesOutput:
    return await business(workflow.execute_activity(
        "registry.require_parties", LookupPartiesInput(codes=codes),
        result_type=LookupPartiesOutput, start_to_close_timeout=TIMEOUT, retry_policy=RETRY,
        summary="核对登记册",
    ))


async def plan_deadline(req: DeadlineRequest, summary: str) -> DeadlinePlan:
    return await business(workflow.execute_activity(
        "calendar.plan_deadline", req, result_type=DeadlinePlan,
        start_to_close_timeout=TIMEOUT, retry_policy=RETRY, summary=summary,
    ))


async def publish(event: PublishEvent) -> PublishResult:
    return await workflow.execute_activity(
        "callbacks.publish", event, result_type=PublishResult,
        start_to_close_timeout=TIMEOUT, retry_policy=RETRY, summary=f"通知 {event.type}",
    )


async def record_clue(req: RecordClue) -> bool:
    return await business(workflow.execute_activity(
        "ledger.record_clue", req, result_type=bool,
        start_to_close_timeout=TIMEOUT, retry_policy=RETRY, summary=f"台账 {req.event.event}",
    ))


async def notify(seq: int, kind: EventType, recipients: list[str], summary: str, data: dict) -> None:
    """Publish one callback event for the current workflow's action number `seq`.

    The event id `{workflow_id}.{seq}` is stable across retries and replays: it is the
    idempotency key end to end (ledger row, delivery workflow id, webhook-id)."""
    wf_id = workflow.info().workflow_id
    await publish(PublishEvent(
        event_id=f"{wf_id}.{seq}", type=kind, recipients=list(dict.fromkeys(recipients)),
        workflow_id=wf_id, summary=summary, occurred_at=workflow.now(),
        data={k: v for k, v in data.items() if isinstance(v, str | int | bool | float) or v is None},
    ))


async def record_rectification(req: RecordRectification) -> bool:
    return await business(workflow.execute_activity(
        "ledger.record_rectification", req, result_type=bool,
        start_to_close_timeout=TIMEOUT, retry_policy=RETRY, summary=f"台账 {req.event.event}",
    ))


async def _call(name: str, arg: object, result_type: type[T], summary: str) -> T:
    return await business(workflow.execute_activity(
        name, arg, result_type=result_type, start_to_close_timeout=TIMEOUT, retry_policy=RETRY,
        summary=summary,
    ))


async def record_inspection(req: RecordInspection) -> bool:
    return await _call("ledger.record_inspection", req, bool, f"台账 {req.event.event}")


async def record_round(req: RecordRound) -> bool:
    return await _call("ledger.record_round", req, bool,
                       f"台账 {req.event.event if req.event else '进度'}")


async def round_inputs(req: RoundInputsQuery) -> RoundInputs:
    return await _call("inspection.round_inputs", req, RoundInputs, "读取登记册、结转问题和上年评分")


async def start_inspections(req: StartInspections) -> StartedInspections:
    return await business(workflow.execute_activity(
        "inspection.start", req, result_type=StartedInspections,
        start_to_close_timeout=timedelta(minutes=2), retry_policy=RETRY,
        summary=f"启动 {len(req.items)} 个单位的督察",
    ))


async def describe(req: DescribeQuery) -> DescribeResult:
    return await _call("inspection.describe", req, DescribeResult, f"核对 {len(req.workflow_ids)} 个督察流程")


async def special_slot(req: SpecialSlotQuery) -> SpecialSlot:
    return await _call("inspection.special_slot", req, SpecialSlot, f"查找 {req.unit} 的专项督察")


async def risk_indicators(req: IndicatorQuery) -> IndicatorRows:
    return await _call("risk.indicators", req, IndicatorRows,
                       f"读取风险指标 {req.first_period}~{req.last_period}")


async def authorize(operator: str, agency: str, action: str) -> None:
    """The operator must be registered for `agency` and hold the role the action needs
    (rules/permissions.py); a refusal is logged and fails the update with its reason."""
    await business(workflow.execute_activity(
        "registry.authorize",
        AuthorizeInput(operator=operator, agency=agency, action=action,
                       workflow_id=workflow.info().workflow_id),
        result_type=bool, start_to_close_timeout=TIMEOUT, retry_policy=RETRY, summary=f"核验操作权限 {action}",
    ))
