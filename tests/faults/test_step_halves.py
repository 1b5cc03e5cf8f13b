"""A case's step is one transaction (ledger + outbox), then delivery from the outbox. Here the
worker is SIGKILLed between the two halves: the step is committed and its callback is on the
wire, unanswered. The next worker finds the step recorded (written once) and delivers the
outbox row (not lost); every callback the receiver ever saw belongs to a recorded step.
Part of `make test` (one short scenario, not marked `faults`)."""

from __future__ import annotations

import asyncio
import time
import uuid

from activities.callbacks import webhook_id

from .harness import clue_case, fault_stack, say
from .receiver import HANG


async def test_sigkill_between_the_transaction_and_the_delivery(tmp_path):
    async with fault_stack(tmp_path) as stack:
        stack.receiver.plan = [HANG]  # the first POST of every delivery is never answered
        case = clue_case(uuid.uuid4().hex[:6], 0)
        event_id = f"{case.workflow_id}.0"  # the registration's callback
        hook = webhook_id(event_id)
        await stack.start_case(case)

        deadline = time.monotonic() + 120
        while not any(h.webhook_id == hook for h in stack.receiver.hits):
            assert time.monotonic() < deadline, "the registration's callback never went out"
            await asyncio.sleep(0.05)
        await stack.kill_worker()  # mid-POST: committed, delivery not yet on record
        say("worker SIGKILLed between the step's transaction and its delivery")

        recorded = await stack.pool.fetch(
            "SELECT seq, event FROM ledger_events WHERE subject_kind = 'clue' AND subject_id = $1",
            case.number)
        assert [(r["seq"], r["event"]) for r in recorded] == [(0, "registered")]
        pending = await stack.pool.fetchrow(
            "SELECT status, attempts FROM callback_deliveries WHERE event_id = $1", event_id)
        assert (pending["status"], pending["attempts"]) == ("pending", 0)

        stack.receiver.plan = []  # from now on every request is answered 204
        await stack.worker.start()
        deadline = time.monotonic() + 180
        while True:
            row = await stack.pool.fetchrow(
                "SELECT status, attempts FROM callback_deliveries WHERE event_id = $1", event_id)
            if row["status"] == "delivered":
                break
            assert time.monotonic() < deadline, f"never delivered after the restart: {dict(row)}"
            await asyncio.sleep(0.2)

        recorded = await stack.pool.fetch(
            "SELECT seq, event FROM ledger_events WHERE subject_kind = 'clue' AND subject_id = $1",
            case.number)
        assert [(r["seq"], r["event"]) for r in recorded] == [(0, "registered")], "written once"
        accepted = [h for h in stack.receiver.hits if h.webhook_id == hook and h.accepted]
        assert len(accepted) == 1 and accepted[0].verified
        # Nothing was ever sent for a step that is not on record.
        sent = {h.webhook_id for h in stack.receiver.hits}
        outbox = {webhook_id(r["event_id"]) for r in await stack.pool.fetch(
            "SELECT e.event_id FROM callback_events e JOIN ledger_events l "
            "ON e.event_id = l.subject_kind || '-' || l.subject_id || '.' || l.seq")}
        assert sent <= outbox, sent - outbox
