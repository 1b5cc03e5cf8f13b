"""Pure decisions about one statutory deadline: what happens next, and which colour it shows.

A duty (transfer a clue, acknowledge it, report the outcome, rectify a problem) has a plan:
remind at `remind_at` (due soon), mark overdue at `due_at`, escalate at `escalate_at`. Each
step happens once; an extension gives a new plan and starts the steps again.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from schemas.calendar import DeadlineState  # the state of one deadline (re-exported)


class Step(StrEnum):
    REMIND = "remind"  # 即将到期
    OVERDUE = "overdue"  # 逾期
    ESCALATE = "escalate"  # 移交纪委监委 / 上报


class Light(StrEnum):
    """三色督办: green on track, yellow due soon, red overdue."""

    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


def next_step(state: DeadlineState, now: datetime) -> tuple[Step | None, datetime | None]:
    """The next step still to take and when it is due (possibly already past).

    A reminder whose deadline has already passed is skipped: the party hears "overdue" instead.
    """
    if not state.open:
        return None, None
    plan = state.plan
    if not state.reminded and not state.overdue and now < plan.due_at:
        return Step.REMIND, plan.remind_at
    if not state.overdue:
        return Step.OVERDUE, plan.due_at
    if not state.escalated:
        return Step.ESCALATE, plan.escalate_at
    return None, None


def mark(state: DeadlineState, step: Step) -> None:
    if step is Step.REMIND:
        state.reminded = True
    elif step is Step.OVERDUE:
        state.overdue = True
        state.reminded = True
    else:
        state.escalated = True


def light(state: DeadlineState | None, now: datetime) -> Light:
    if state is None or not state.open:
        return Light.GREEN
    if state.overdue or now >= state.plan.due_at:
        return Light.RED
    if state.reminded or now >= state.plan.remind_at:
        return Light.YELLOW
    return Light.GREEN
