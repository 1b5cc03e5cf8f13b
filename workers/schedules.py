"""Temporal schedules of the service; `ducha schedules sync` creates or updates them (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from schemas.digest import DigestStart
from workers.settings import Settings


@dataclass(frozen=True)
class Definition:
    schedule_id: str
    workflow: str
    arg: object
    calendar: ScheduleCalendarSpec
    note: str


def definitions(s: Settings) -> list[Definition]:
    return [
        Definition(
            "clue-monthly-digest", "MonthlyClueDigest", DigestStart(month=None),
            ScheduleCalendarSpec(day_of_month=[ScheduleRange(1)], hour=[ScheduleRange(8)]),
            "每月1日 08:00 向各移送单位汇总当月10日前须移送的一般线索",
        ),
    ]


def build(d: Definition, s: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            d.workflow, d.arg, id=f"{d.schedule_id}-run", task_queue=s.task_queue,
            static_summary=d.note,
        ),
        spec=ScheduleSpec(calendars=[d.calendar], time_zone_name=s.timezone),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def sync(client: Client, s: Settings) -> list[tuple[str, str]]:
    """Create missing schedules and update existing ones; returns (id, 'created'|'updated')."""
    results: list[tuple[str, str]] = []
    for d in definitions(s):
        schedule = build(d, s)
        try:
            await client.create_schedule(d.schedule_id, schedule)
            results.append((d.schedule_id, "created"))
        except ScheduleAlreadyRunningError:
            handle = client.get_schedule_handle(d.schedule_id)

            def replace(_: ScheduleUpdateInput, schedule: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=schedule)

            await handle.update(replace)
            results.append((d.schedule_id, "updated"))
    return results
