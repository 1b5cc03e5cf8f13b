"""Opening a special inspection (专项督察) of a unit, from a route-a clue, a refusal to rectify, a
risk scan or by hand — never a second open one for the same unit.

The `inspection.special_slot` activity finds the unit's running special inspection (link to it)
or the id to use (`inspection-{year}-special-{unit}`, `-2`… when one already finished this
year); the child is started with ParentClosePolicy.ABANDON (it outlives the clue, problem or scan
that opened it) and REJECT_DUPLICATE, so two starters racing for one id end with one inspection.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from schemas.codes import AgencyCode
    from schemas.common import LAW_OFFICE, Link
    from schemas.inspection import Kind, SpecialSlotQuery, Trigger, TriggerType, UnitInspectionStart

from workflows import calls
from workflows.duty import CHINA

TRIGGER_NAMES = {
    TriggerType.CLUE: "线索移送",
    TriggerType.INDICATOR: "风险指标",
    TriggerType.REFUSAL: "拒不整改",
    TriggerType.REQUEST: "依申请",
}


async def open_special_inspection(
    unit: str, *, trigger: TriggerType, ref: str, focus: list[str] | None = None, lead: str = LAW_OFFICE,
) -> tuple[Link, bool]:
    """Start the unit's special inspection, or find the open one; returns (link, started)."""
    year = workflow.now().astimezone(CHINA).year
    slot = await calls.special_slot(SpecialSlotQuery(unit=unit, year=year))
    link = Link(relation="special_inspection", workflow_id=slot.workflow_id)
    if slot.open:
        return link, False
    start = UnitInspectionStart(
        unit=unit, year=year, kind=Kind.SPECIAL, lead=AgencyCode(lead),
        trigger=Trigger(type=trigger, ref=ref[:200]), focus=list(focus or [])[:200],
    )
    try:
        await workflow.start_child_workflow(
            "UnitInspection", start, id=slot.workflow_id,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"专项督察 {unit}（{TRIGGER_NAMES.get(trigger, trigger.value)}：{ref[:80]}）",
        )
    except WorkflowAlreadyStartedError:
        return link, False  # another starter was first: one inspection, linked
    return link, True
