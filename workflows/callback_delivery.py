"""CallbackDelivery: deliver one event to one recipient, at least once, on a durable schedule.

Started by the `callbacks.publish` activity (id `callback-{event_id}-{recipient}`) when its own
first attempt needs a retry, or by `ducha callbacks redeliver` (same id plus `-r{suffix}`). Each
attempt is one activity doing one signed POST; this workflow owns the schedule: it waits
`schedule[i]` seconds before its attempt i (or longer when the endpoint asked for it with
Retry-After), stops at the first final answer and dead-letters the delivery when the schedule
runs out. Started by publish, its schedule is the configured one without the attempts publish
made (`previous_attempts`), so the whole delivery keeps the configured spacing. The webhook-id
header is the event id on every attempt, so receivers deduplicate repeats.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from schemas.callbacks import (
        AttemptInput,
        AttemptOutcome,
        AttemptResult,
        DeliveryInput,
        DeliveryOutput,
        DeliveryStatus,
        MarkDeadInput,
    )

from workflows import calls
from workflows.inputs import require

# One HTTP attempt per activity execution: the retry schedule is this workflow's business.
ATTEMPT_RETRY = RetryPolicy(maximum_attempts=1)
# Book-keeping must eventually succeed (PostgreSQL restarts are retried with backoff).
BOOKKEEPING_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
BOOKKEEPING_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name="CallbackDelivery", failure_exception_types=[ValidationError])
class CallbackDelivery:
    def __init__(self) -> None:
        self.attempts = 0
        self.state = "等待投递"

    @workflow.query
    def status(self) -> str:
        return f"{self.state}（已尝试 {self.attempts} 次）"

    @workflow.run
    async def run(self, inp: DeliveryInput) -> DeliveryOutput:
        inp = require(inp, DeliveryInput)
        last: AttemptResult | None = None
        # Attempts are numbered over the whole delivery, publish's first attempt included.
        self.attempts = inp.previous_attempts
        retry_after = inp.retry_after_seconds
        for index, delay in enumerate(inp.schedule):
            wait = max(float(delay), retry_after) if index or self.attempts else float(delay)
            number = self.attempts + 1
            if wait > 0:
                self._details(f"第 {number} 次投递将在 {_human(wait)} 后进行")
                await workflow.sleep(wait, summary=f"等待第 {number} 次投递（{_human(wait)}）")
            self.attempts = number
            last = await self._attempt(inp, number)
            if last.final:
                status = (
                    DeliveryStatus.DELIVERED
                    if last.outcome is AttemptOutcome.DELIVERED
                    else DeliveryStatus.FAILED
                )
                self._details(_final_text(status, last))
                return self._output(inp, status, last)
            retry_after = last.retry_after or 0.0
        self._details(f"重试用尽，已转入死信（共 {self.attempts} 次）")
        await calls.mark_dead(
            MarkDeadInput(
                event_id=inp.event_id, recipient=inp.recipient, attempts=self.attempts,
                last_error=last.error if last else None,
            ),
            BOOKKEEPING_TIMEOUT, BOOKKEEPING_RETRY,
        )
        return self._output(inp, DeliveryStatus.DEAD, last)

    async def _attempt(self, inp: DeliveryInput, number: int) -> AttemptResult:
        try:
            return await calls.deliver_attempt(
                AttemptInput(event_id=inp.event_id, recipient=inp.recipient, attempt=number),
                timedelta(seconds=inp.attempt_timeout_seconds), ATTEMPT_RETRY,
            )
        except ActivityError as err:
            cause = err.cause or err
            # A business refusal (e.g. the event row is missing) will not get better by waiting.
            final = bool(getattr(cause, "non_retryable", False))
            return AttemptResult(
                outcome=AttemptOutcome.FAILED if final else AttemptOutcome.RETRY,
                final=final, error=f"投递活动失败 attempt activity failed: {cause}"[:500],
            )

    def _details(self, text: str) -> None:
        self.state = text
        workflow.set_current_details(text)

    def _output(
        self, inp: DeliveryInput, status: DeliveryStatus, last: AttemptResult | None
    ) -> DeliveryOutput:
        return DeliveryOutput(
            event_id=inp.event_id, recipient=inp.recipient, status=status,
            attempts=self.attempts,
            last_http_status=last.http_status if last else None,
            last_error=last.error if last else None,
        )


def _final_text(status: DeliveryStatus, last: AttemptResult) -> str:
    if status is DeliveryStatus.DELIVERED:
        return f"已送达（HTTP {last.http_status}）"
    return f"投递失败：{last.error or last.outcome}"


def _human(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g} 秒"
    if seconds < 3600:
        return f"{seconds / 60:g} 分钟"
    return f"{seconds / 3600:g} 小时"
