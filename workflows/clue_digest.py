"""MonthlyClueDigest (线索月度汇总): on the 1st of each month, each source agency gets ONE
callback listing its routine clues due for transfer by the 10th — fewer messages for
grassroots units (基层减负) than one reminder per clue."""

from __future__ import annotations

import calendar
from datetime import date

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from schemas.digest import DigestQuery, DigestResult, DigestStart
    from schemas.events import EventType, PublishEvent

from workflows import calls
from workflows.duty import CHINA
from workflows.inputs import require


@workflow.defn(name="MonthlyClueDigest", failure_exception_types=[ValidationError])
class MonthlyClueDigest:
    @workflow.run
    async def run(self, start: DigestStart) -> DigestResult:
        start = require(start, DigestStart)
        if start.month:
            year, month = (int(p) for p in start.month.split("-"))
        else:
            today = workflow.now().astimezone(CHINA).date()
            year, month = today.year, today.month
        first = date(year, month, 1)
        last = date(year, month, calendar.monthrange(year, month)[1])
        label = f"{year}-{month:02d}"
        groups = await calls.routine_clues_due(DigestQuery(first_day=first, last_day=last))
        workflow.set_current_details(f"{label} 月度线索汇总：{len(groups.groups)} 个移送单位")
        for group in groups.groups:
            numbers = [i.clue_no for i in group.items]
            await calls.publish(PublishEvent(
                event_id=f"clue-digest-{label}-{group.source}", type=EventType.CLUE_MONTHLY_DIGEST,
                recipients=[group.source], workflow_id=workflow.info().workflow_id,
                summary=f"{label} 月有 {len(numbers)} 条一般线索须在10日前移送：{'、'.join(numbers[:20])}"
                + ("等" if len(numbers) > 20 else ""),
                data={"month": label, "count": len(numbers), "clue_nos": numbers[:200],
                      "due_on": [i.due_on.isoformat() for i in group.items][:200]},
                occurred_at=workflow.now(),
            ))
        return DigestResult(month=label, sources_notified=len(groups.groups),
                            clues_listed=sum(len(g.items) for g in groups.groups))
