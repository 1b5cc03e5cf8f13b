"""Temporal schedules of the service; `ducha schedules sync` creates or updates them (idempotent)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowHandle,
)

from config.settings import Settings
from schemas.anchor import AnchorStart
from schemas.assessment import AssessmentStart
from schemas.digest import DigestStart
from schemas.risk import RiskScanStart
from schemas.round import RoundStart
from workflows.annual_round import AnnualInspectionRound
from workflows.assessment import AnnualAssessment
from workflows.clue_digest import MonthlyClueDigest
from workflows.ledger_anchor import LedgerAnchor
from workflows.risk_scan import RiskScan


@dataclass(frozen=True)
class Definition:
    schedule_id: str
    workflow: Callable[..., Awaitable[Any]]  # the workflow's run method (its type name goes on the wire)
    arg: object
    calendar: ScheduleCalendarSpec | None
    note: str
    interval: timedelta | None = None  # instead of a calendar


def annual_inspection_at(s: Settings) -> tuple[int, int, int, int]:
    """(month, day, hour, minute) of DUCHA_ANNUAL_INSPECTION_AT ("MM-DD HH:MM", default 01-05 09:00)."""
    day, _, at = s.annual_inspection_at.partition(" ")
    month, dom = (int(p) for p in day.split("-"))
    hour, minute = (int(p) for p in at.split(":"))
    return month, dom, hour, minute


def definitions(s: Settings) -> list[Definition]:
    month, dom, hour, minute = annual_inspection_at(s)
    return [
        Definition(
            "annual-inspection", AnnualInspectionRound.run, RoundStart(year=None),
            ScheduleCalendarSpec(month=[ScheduleRange(month)], day_of_month=[ScheduleRange(dom)],
                                 hour=[ScheduleRange(hour)], minute=[ScheduleRange(minute)]),
            f"每年{month}月{dom}日 {hour:02d}:{minute:02d} 启动年度平时督察（全覆盖，分批进行）",
        ),
        Definition(
            "risk-scan", RiskScan.run, RiskScanStart(period=None),
            ScheduleCalendarSpec(day_of_month=[ScheduleRange(5)], hour=[ScheduleRange(8)]),
            "每月5日 08:00 按上月风险指标研判，超过阈值的单位启动专项督察",
        ),
        Definition(
            "clue-monthly-digest", MonthlyClueDigest.run, DigestStart(month=None),
            ScheduleCalendarSpec(day_of_month=[ScheduleRange(1)], hour=[ScheduleRange(8)]),
            "每月1日 08:00 向各移送单位汇总当月10日前须移送的一般线索",
        ),
        Definition(
            "annual-assessment", AnnualAssessment.run, AssessmentStart(year=None),
            ScheduleCalendarSpec(month=[ScheduleRange(1)], day_of_month=[ScheduleRange(10)],
                                 hour=[ScheduleRange(9)]),
            "每年1月10日 09:00 计算上一年度各单位法治建设绩效考核得分并报县委",
        ),
        # The anchor run stays open (overlap SKIP): the schedule starts a new one only when the
        # last one is gone, at most ANCHOR_EVERY later (workflows/ledger_anchor.py).
        Definition(
            ANCHOR_SCHEDULE, LedgerAnchor.run, AnchorStart(interval_minutes=ANCHOR_MINUTES), None,
            f"每 {ANCHOR_MINUTES} 分钟把台账链头锚定在 Temporal 历史中（防止数据库所有者截断台账）",
            interval=timedelta(minutes=ANCHOR_MINUTES),
        ),
    ]


ANCHOR_SCHEDULE = "ledger-anchor"
ANCHOR_MINUTES = 5


async def anchor_handle(client: Client) -> WorkflowHandle:
    """The running LedgerAnchor workflow (started by schedule `ledger-anchor`); LookupError when
    none is running."""
    desc = await client.get_schedule_handle(ANCHOR_SCHEDULE).describe()
    running = desc.info.running_actions
    if not running:
        raise LookupError("schedule ledger-anchor has no running LedgerAnchor workflow")
    return client.get_workflow_handle(running[-1].workflow_id)


def build(d: Definition, s: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            d.workflow, d.arg, id=f"{d.schedule_id}-run", task_queue=s.task_queue,
            static_summary=d.note,
        ),
        spec=(ScheduleSpec(intervals=[ScheduleIntervalSpec(every=d.interval)]) if d.interval else
              ScheduleSpec(calendars=[d.calendar] if d.calendar else [], time_zone_name=s.timezone)),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def sync(client: Client, s: Settings) -> list[tuple[str, str]]:
    """Create missing schedules and update existing ones; returns (id, 'created'|'updated')."""
    results: list[tuple[str, str]] = []
    for d in definitions(s):
        schedule = build(d, s)
        try:
            # the anchor starts at once; the calendar ones wait for their day
            await client.create_schedule(d.schedule_id, schedule, trigger_immediately=d.interval is not None)
            results.append((d.schedule_id, "created"))
        except ScheduleAlreadyRunningError:
            handle = client.get_schedule_handle(d.schedule_id)

            def replace(_: ScheduleUpdateInput, schedule: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=schedule)

            await handle.update(replace)
            results.append((d.schedule_id, "updated"))
    return results
