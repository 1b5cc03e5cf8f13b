"""A scaled-down stand-in for UnitInspection, for the 2,000-unit round test: it takes one to five
days (by unit code) and then reports to its round exactly as the real one does."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from schemas.inspection import InspectionProgress, UnitInspectionStart

from workflows.annual_round import AnnualInspectionRound


@workflow.defn(name="UnitInspection")
class FastUnitInspection:
    @workflow.run
    async def run(self, start: UnitInspectionStart) -> int:
        days = _length(start)
        await workflow.sleep(timedelta(days=days))
        await _report_completed(start)
        return days


@workflow.defn(name="UnitInspection")
class SecondsUnitInspection:
    """The same stand-in in seconds instead of days, for rounds on the dev server (real time):
    the fan-out bench (bench/fanout.py) on the embedded dev server."""

    @workflow.run
    async def run(self, start: UnitInspectionStart) -> int:
        seconds = _length(start)
        await workflow.sleep(timedelta(seconds=seconds))
        await _report_completed(start)
        return seconds


def _length(start: UnitInspectionStart) -> int:
    """One to five (days or seconds), fixed per unit code."""
    return 1 + int(hashlib.sha1(start.unit.encode()).hexdigest(), 16) % 5


async def _report_completed(start: UnitInspectionStart) -> None:
    try:
        await workflow.get_external_workflow_handle(start.trigger.ref).signal(
            AnnualInspectionRound.inspection_progress,
            InspectionProgress(unit=start.unit, workflow_id=workflow.info().workflow_id, event="completed"))
    except FailureError as exc:  # as the real one: the round's weekly check finds it completed
        workflow.logger.warning("could not report to round %s: %s", start.trigger.ref, exc)
