"""The fan-out bench's pure parts (bench/fanout.py): how the time left is shared between the
scales, and the per-1,000 cost segments read from the coverage samples. No server."""

from __future__ import annotations

import pytest

from bench.fanout import caps_for, next_cap, segments


def test_caps_share_the_budget_in_proportion_to_size():
    caps = caps_for(580)
    assert caps[0] == 70 and caps[1] * 2 == pytest.approx(caps[2])  # the smallest scale gets 70 s at least
    assert sum(caps) == pytest.approx(580 - 24)


def test_time_a_scale_leaves_unused_goes_to_the_later_ones():
    scales, planned = (1_000, 5_000, 10_000), (40.0, 172.0, 344.0)
    assert next_cap(planned, 0.0, scales, 0) == 40.0
    # 1,000 units took 25 s: the 15 s left over are shared 5:10 by the two bigger scales.
    assert next_cap(planned, 25.0, scales, 1) == pytest.approx(172.0 + 5.0)
    assert next_cap(planned, 25.0 + 150.0, scales, 2) == pytest.approx(556.0 - 175.0)
    # A scale that used all of its cap leaves the next one its planned share.
    assert next_cap(planned, 40.0, scales, 1) == pytest.approx(172.0)


def test_segments_give_wall_and_cpu_per_thousand_done():
    samples = [(0.0, 0, 0, {}), (1.0, 200, 0, {"worker": 1.0, "temporal": 0.5, "postgres": 0.1}),
               (20.0, 200, 600, {"worker": 15.0, "temporal": 5.0}),
               (31.0, 200, 1_000, {"worker": 25.0, "temporal": 9.5}),
               (70.0, 200, 2_100, {"worker": 52.0, "temporal": 30.5})]
    assert segments(samples) == [
        {"done": 1_000, "inspections": 1_000, "wall": 30.0, "worker": 24.0, "temporal": 9.0},
        {"done": 2_100, "inspections": 1_100, "wall": 39.0, "worker": 27.0, "temporal": 21.0},
    ]
    assert segments([]) == []


def _event(event_id: int, kind: str, **attrs):
    from temporalio.api.enums.v1 import EventType
    from temporalio.api.history.v1 import HistoryEvent

    e = HistoryEvent(event_id=event_id, event_type=getattr(EventType, f"EVENT_TYPE_{kind}"))
    getattr(e, {"ACTIVITY_TASK_SCHEDULED": "activity_task_scheduled_event_attributes",
                "ACTIVITY_TASK_COMPLETED": "activity_task_completed_event_attributes",
                "WORKFLOW_EXECUTION_SIGNALED": "workflow_execution_signaled_event_attributes"}[kind]).CopyFrom(
        attrs["attributes"])
    return e


def test_in_flight_counts_reports_and_inspections_the_describe_check_found_ended():
    import json

    from temporalio.api.common.v1 import ActivityType, Payload, Payloads
    from temporalio.api.history.v1 import (
        ActivityTaskCompletedEventAttributes,
        ActivityTaskScheduledEventAttributes,
        WorkflowExecutionSignaledEventAttributes,
    )
    from temporalio.client import WorkflowHistory

    from bench.fanout import in_flight

    def payloads(value) -> Payloads:
        return Payloads(payloads=[Payload(data=json.dumps(value).encode())])

    start = ActivityTaskScheduledEventAttributes(
        activity_type=ActivityType(name="inspection.start"),
        input=payloads({"items": [{"workflow_id": "w-a"}, {"workflow_id": "w-b"}, {"workflow_id": "w-c"}]}))
    describe = ActivityTaskScheduledEventAttributes(activity_type=ActivityType(name="inspection.describe"),
                                                    input=payloads({"workflow_ids": ["w-b", "w-c"]}))
    events = [
        _event(5, "ACTIVITY_TASK_SCHEDULED", attributes=start),
        _event(9, "WORKFLOW_EXECUTION_SIGNALED", attributes=WorkflowExecutionSignaledEventAttributes(
            signal_name="inspection_progress", input=payloads({"workflow_id": "w-c", "event": "overdue"}))),
        _event(10, "WORKFLOW_EXECUTION_SIGNALED", attributes=WorkflowExecutionSignaledEventAttributes(
            signal_name="inspection_progress", input=payloads({"workflow_id": "w-a", "event": "completed"}))),
        _event(14, "ACTIVITY_TASK_SCHEDULED", attributes=describe),
        _event(16, "ACTIVITY_TASK_COMPLETED", attributes=ActivityTaskCompletedEventAttributes(
            scheduled_event_id=14, result=payloads({"status": {"w-b": "completed", "w-c": "running"}}))),
    ]
    history = WorkflowHistory("annual-inspection-2027", events)
    assert in_flight([history]) == {"peak": 3, "started": 3, "reported": 1, "still_running": 1}
