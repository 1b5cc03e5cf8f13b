"""LedgerAnchor (台账锚定): keeps the heads of the audit chains outside PostgreSQL.

Every few minutes (and on demand, update `anchor_now`) an activity reads the head of each chain
(last id, row count, HMAC of the last row) and the workflow keeps it: in its history, which the
database owner of the ledger cannot rewrite, and in its state, which query `recent` returns to
`ducha audit verify`. A cut tail with a moved-back head then shows as a head behind an anchor.

Started by schedule `ledger-anchor` (workers/schedules.py, every 5 minutes, overlap SKIP): the
run stays open, so the schedule only starts a new one when the old one is gone. The run continues
as new when the history grows, carrying the last `keep` anchors.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.ledger import LedgerActivities
    from schemas.anchor import Anchor, AnchorStart

from workflows.inputs import require

RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                    maximum_interval=timedelta(minutes=1))


@workflow.defn(name="LedgerAnchor")
class LedgerAnchor:
    def __init__(self) -> None:
        self.anchors: list[Anchor] = []
        self.keep = 100
        self.taken = 0

    @workflow.run
    async def run(self, start: AnchorStart) -> None:
        start = require(start, AnchorStart)
        self.anchors, self.keep = list(start.anchors)[-start.keep:], start.keep
        every = timedelta(minutes=start.interval_minutes)
        while True:
            await self._anchor()
            await workflow.sleep(every, summary="下次锚定 / next anchor")
            # 500 anchors are about 6,000 history events: a compact state carries on.
            if self.taken >= start.anchors_per_run or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(start.model_copy(update={"anchors": self.anchors[-self.keep:]}))

    async def _anchor(self) -> Anchor:
        anchor = await workflow.execute_activity_method(
            LedgerActivities.chain_heads, start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY, summary="读取台账链头")
        self.anchors = sorted([*self.anchors, anchor], key=lambda a: a.at)[-self.keep:]
        self.taken += 1
        heads = "；".join(f"{h.chain} 第 {h.last_id} 条（共 {h.rows} 条）" for h in anchor.heads)
        workflow.set_current_details(f"**最近锚定** {anchor.at.isoformat(timespec='seconds')}：{heads}")
        return anchor

    @workflow.update
    async def anchor_now(self) -> Anchor:
        """Anchor the heads now (`ducha audit anchor`, or the Web UI with no input)."""
        return await self._anchor()

    @workflow.query
    def recent(self, limit: int = 20) -> list[Anchor]:
        """The latest anchors, newest first."""
        return list(reversed(self.anchors[-max(1, limit):]))
