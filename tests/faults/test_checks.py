"""The fault suite's timer check must catch what it is there to catch: a timer that fired
early, a timer that never fired, a wait that ignored Retry-After. Synthetic histories, no
servers: this runs in `make test`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from temporalio.api.common.v1 import ActivityType, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import (
    ActivityTaskCompletedEventAttributes,
    ActivityTaskScheduledEventAttributes,
    HistoryEvent,
    TimerFiredEventAttributes,
    TimerStartedEventAttributes,
    WorkflowExecutionCompletedEventAttributes,
    WorkflowExecutionStartedEventAttributes,
)
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from schemas.callbacks import (
    AttemptOutcome,
    AttemptResult,
    DeliveryInput,
    DeliveryOutput,
    DeliveryStatus,
)

from .harness import check_timers

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


class History:
    """Builds a CallbackDelivery-like history: attempts and timers at given seconds."""

    def __init__(self) -> None:
        self.events: list[HistoryEvent] = []

    def _add(self, at: float, kind: EventType, **attrs) -> int:
        event = HistoryEvent(event_id=len(self.events) + 1, event_type=kind, **attrs)
        event.event_time.FromDatetime(T0 + timedelta(seconds=at))
        self.events.append(event)
        return event.event_id

    def start(self, inp: DeliveryInput) -> None:
        payloads = pydantic_data_converter.payload_converter.to_payloads([inp])
        self._add(0, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
                  workflow_execution_started_event_attributes=WorkflowExecutionStartedEventAttributes(
                      input=Payloads(payloads=payloads)))

    def attempt(self, at: float, result: AttemptResult) -> None:
        scheduled = self._add(at, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
                              activity_task_scheduled_event_attributes=ActivityTaskScheduledEventAttributes(
                                  activity_type=ActivityType(name="callbacks.deliver_attempt")))
        payloads = pydantic_data_converter.payload_converter.to_payloads([result])
        self._add(at, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
                  activity_task_completed_event_attributes=ActivityTaskCompletedEventAttributes(
                      scheduled_event_id=scheduled, result=Payloads(payloads=payloads)))

    def timer(self, at: float, seconds: float, fired_after: float | None) -> None:
        started = self._add(at, EventType.EVENT_TYPE_TIMER_STARTED,
                            timer_started_event_attributes=TimerStartedEventAttributes(
                                timer_id=str(len(self.events)),
                                start_to_fire_timeout=Duration(seconds=int(seconds),
                                                               nanos=int(seconds % 1 * 1e9))))
        if fired_after is not None:
            self._add(at + fired_after, EventType.EVENT_TYPE_TIMER_FIRED,
                      timer_fired_event_attributes=TimerFiredEventAttributes(started_event_id=started))

    def complete(self, at: float) -> WorkflowHistory:
        output = DeliveryOutput(event_id="e", recipient="court", status=DeliveryStatus.DELIVERED, attempts=2)
        payloads = pydantic_data_converter.payload_converter.to_payloads([output])
        self._add(at, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
                  workflow_execution_completed_event_attributes=WorkflowExecutionCompletedEventAttributes(
                      result=Payloads(payloads=payloads)))
        return WorkflowHistory("callback-e-court", self.events)


RETRY = AttemptResult(outcome=AttemptOutcome.RETRY, final=False, http_status=500)
LIMITED = AttemptResult(outcome=AttemptOutcome.RETRY, final=False, http_status=429, retry_after=3)
DONE = AttemptResult(outcome=AttemptOutcome.DELIVERED, final=True, http_status=204)
SCHEDULE = [0, 2, 2, 8]


def test_a_delivery_on_schedule_passes():
    h = History()
    h.attempt(0, RETRY)
    h.timer(0.1, 2, fired_after=2.05)
    h.attempt(2.2, LIMITED)
    h.timer(2.3, 3, fired_after=3.0)
    h.attempt(5.4, DONE)
    fired, problems, output = check_timers(h.complete(5.5), SCHEDULE)
    assert (fired, problems, output.status) == (2, [], "delivered")


def test_an_early_timer_is_caught():
    h = History()
    h.attempt(0, RETRY)
    h.timer(0.1, 2, fired_after=1.5)
    h.attempt(1.7, DONE)
    _, problems, _ = check_timers(h.complete(2), SCHEDULE)
    assert problems == ["a 2s timer fired after 1.500s (early)"]


def test_a_timer_that_never_fired_is_caught():
    h = History()
    h.attempt(0, RETRY)
    h.timer(0.1, 2, fired_after=None)
    _, problems, _ = check_timers(h.complete(3), SCHEDULE)
    assert problems == ["1 timer(s) never fired (lost)"]


def test_a_wait_that_ignores_retry_after_is_caught():
    h = History()
    h.attempt(0, RETRY)
    h.timer(0.1, 2, fired_after=2)
    h.attempt(2.2, LIMITED)
    h.timer(2.3, 2, fired_after=2)  # Retry-After said 3
    h.attempt(4.4, DONE)
    _, problems, _ = check_timers(h.complete(4.5), SCHEDULE)
    assert problems == ["timer before attempt 3 is 2s, schedule says 3s"]


def test_a_workflow_started_after_publishs_attempt_is_checked_against_the_whole_schedule():
    """publish's own attempt answered 429 (Retry-After 3): the workflow's first wait is
    max(schedule[1], 3) = 3 s, its second schedule[2] = 2 s."""
    h = History()
    h.start(DeliveryInput(event_id="e", recipient="court", schedule=SCHEDULE[1:],
                          previous_attempts=1, retry_after_seconds=3))
    h.timer(0.1, 3, fired_after=3)
    h.attempt(3.2, RETRY)
    h.timer(3.3, 2, fired_after=2)
    h.attempt(5.4, DONE)
    fired, problems, _ = check_timers(h.complete(5.5), SCHEDULE)
    assert (fired, problems) == (2, [])

    wrong = History()
    wrong.start(DeliveryInput(event_id="e", recipient="court", schedule=SCHEDULE,
                              previous_attempts=1, retry_after_seconds=3))
    wrong.timer(0.1, 2, fired_after=2)  # the schedule restarted and Retry-After was lost
    wrong.attempt(2.2, DONE)
    _, problems, _ = check_timers(wrong.complete(2.3), SCHEDULE)
    assert problems == ["started after 1 attempt(s) with schedule [0.0, 2.0, 2.0, 8.0], configured [0, 2, 2, 8]",
                        "timer before attempt 2 is 2s, schedule says 3s"]
