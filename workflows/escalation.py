"""Escalation to the discipline commission (移送纪委监委): a missed duty becomes a new clue.

The new ClueTransfer (route to_discipline, channel overdue_duty) is a child that outlives its
parent (ParentClosePolicy.ABANDON): the commission's handling does not end when the problem or
clue that raised it does.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from schemas.clue import Channel, ClueStart, ClueTimings, Importance, Route
    from schemas.codes import AgencyCode
    from schemas.common import Link

from workflows.duty import CHINA


async def open_discipline_clue(
    *, clue_no: str, workflow_id: str, subject: str, title: str, summary: str,
    timings: ClueTimings | None = None,
) -> Link:
    """Start (once) the linked overdue-duty clue and return the link to it."""
    child = ClueStart(
        clue_no=clue_no, route=Route.TO_DISCIPLINE, source=AgencyCode.LAW_OFFICE,
        channel=Channel.OVERDUE_DUTY, importance=Importance.IMPORTANT,
        discovered_on=workflow.now().astimezone(CHINA).date(), subject_unit=subject,
        title=title[:100], reported_by="系统", auto_transfer=True,
        escalated_from=workflow.info().workflow_id, timings=timings or ClueTimings(),
    )
    try:
        await workflow.start_child_workflow(
            "ClueTransfer", child, id=workflow_id,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON, static_summary=summary,
        )
    except WorkflowAlreadyStartedError:
        pass  # opened already (an operator, or an earlier attempt): link to it
    return Link(relation="escalated_to", workflow_id=workflow_id)


async def transfer_misconduct_clue(
    *, clue_no: str, workflow_id: str, source: AgencyCode, subject: str, title: str,
    details: str, summary: str,
) -> Link:
    """Route b (督察中发现涉嫌违纪违法): an inspection finding about an officer becomes a clue to
    the discipline commission, already transferred, outliving the inspection (ABANDON)."""
    child = ClueStart(
        clue_no=clue_no, route=Route.TO_DISCIPLINE, source=source, channel=Channel.INSPECTION,
        importance=Importance.IMPORTANT, discovered_on=workflow.now().astimezone(CHINA).date(),
        subject_unit=subject, title=title[:100], details=details[:5000], reported_by="督察组",
        auto_transfer=True,
    )
    try:
        await workflow.start_child_workflow(
            "ClueTransfer", child, id=workflow_id,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON, static_summary=summary,
        )
    except WorkflowAlreadyStartedError:
        pass  # started by an earlier attempt of the same feedback
    return Link(relation="clue_to_discipline", workflow_id=workflow_id)
