"""Workflow-safe waiting on a statutory deadline: durable timers for due-soon, overdue and
escalation, woken early when the duty is done or the deadline is extended."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta, timezone

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from rules.deadline_steps import DeadlineState, Step, mark, next_step
    from schemas.common import DeadlineView

CHINA = timezone(timedelta(hours=8))  # Asia/Shanghai has no daylight saving

STEP_LABELS = {Step.REMIND: "即将到期提醒", Step.OVERDUE: "逾期", Step.ESCALATE: "逾期升级"}


async def watch(
    get_state: Callable[[], DeadlineState | None],
    done: Callable[[], bool],
    on_step: Callable[[DeadlineState, Step], Awaitable[None]],
) -> None:
    """Run the deadline's steps until `done()`.

    `get_state` is read afresh each round, so an extension (a new DeadlineState, or a new plan
    on the same one) takes effect at once. `on_step` does the step's I/O (callbacks, ledger,
    escalation); the state is marked before it runs so a step happens once.
    """
    while not done():
        state = get_state()
        if state is None:
            await workflow.wait_condition(lambda: done() or get_state() is not None)
            continue
        step, at = next_step(state, workflow.now())
        version = (state.name, state.plan.due_at, state.extensions)

        def changed(state: DeadlineState = state, version: tuple = version) -> bool:
            current = get_state()
            return current is None or (current.name, current.plan.due_at, current.extensions) != version

        if step is None or at is None:
            await workflow.wait_condition(lambda: done() or changed())
            continue
        delay = at - workflow.now()
        if delay > timedelta(0):
            label = f"{state.name}{STEP_LABELS[step]} {at.astimezone(CHINA):%Y-%m-%d %H:%M}"
            try:
                await workflow.wait_condition(
                    lambda: done() or changed(), timeout=delay, timeout_summary=label
                )
                continue  # woken by the duty or an extension: re-plan
            except TimeoutError:
                pass
        if done() or changed():
            continue
        mark(state, step)
        await on_step(state, step)


def view(d: DeadlineState) -> DeadlineView:
    """How a deadline shows in a `status` query."""
    return DeadlineView(name=d.name, due_on=d.plan.due_on, due_at=d.plan.due_at,
                        remind_at=d.plan.remind_at, escalate_on=d.plan.escalate_on,
                        escalate_at=d.plan.escalate_at, provisional=d.plan.provisional,
                        reminded=d.reminded, overdue=d.overdue, escalated=d.escalated,
                        met_at=d.met_at, extensions=d.extensions)
