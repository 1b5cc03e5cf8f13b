"""The case kernel's step (workflows/case.py): one PostgreSQL transaction, then delivery.

In one transaction: the authorization decision of the operator action (if any), the chained
ledger event(s), the case's snapshot (and its process records: problem text, inspection methods,
findings, evaluation) and the callback outbox rows (event + one delivery per recipient). Nothing
is notified that was not recorded, and nothing recorded lacks its outbox rows. After the commit,
each delivery's first attempt is made here (bounded; retries go to a CallbackDelivery workflow).

Idempotent: a retry (or a re-run after a worker died between the commit and the deliveries) finds
the step recorded, writes nothing again, and only delivers what is still pending.
"""

from __future__ import annotations

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.callbacks import CallbackActivities
from activities.ledger import write_clue, write_inspection, write_rectification
from activities.registry import authorization_refusal, log_authorization, operator_grants
from config.chain_key import ChainKey
from schemas.case import CaseKind, StepRecord, StepResult

# Temporal stamps the caller's verified identity (the principal) only on the events a caller's own
# request writes: a start, a signal. An update is accepted by the worker, so its event names the
# worker (docs/deployment.md, 身份核验). An operator action carried by an update therefore cannot be
# bound to a signed-in person here: it is recorded as identity_verified = false, and refused when
# DUCHA_REQUIRE_PRINCIPAL is on.
UNVERIFIED_UPDATE = ("须经身份核验（DUCHA_REQUIRE_PRINCIPAL）：Temporal 不记录更新请求的发送人，此操作无法核验身份 / "
                     "identity required (DUCHA_REQUIRE_PRINCIPAL): Temporal records no sender for an update, so "
                     "this action cannot be bound to a signed-in person")


class CaseActivities:
    def __init__(self, pool: asyncpg.Pool, callbacks: CallbackActivities, chain: ChainKey, *,
                 require_principal: bool = False) -> None:
        self.pool = pool
        self.callbacks = callbacks
        self.chain = chain  # the audit chains' key (config/chain_key.py)
        self.require_principal = require_principal

    @activity.defn(name="cases.step")
    async def step(self, req: StepRecord) -> StepResult:
        kind, subject = _subject(req)
        reason: str | None = None
        recorded = False
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                done = await conn.fetchval(
                    "SELECT true FROM ledger_events WHERE subject_kind = $1 AND subject_id = $2 AND seq = $3",
                    kind, subject, req.events[0].seq)
                if not done:  # a re-run of a recorded step is not authorized (or refused) again
                    if req.authorization is not None:
                        reason = await authorization_refusal(conn, req.authorization)
                        if reason is None and self.require_principal:
                            reason = UNVERIFIED_UPDATE
                        for e in req.events:
                            e.data["identity_verified"] = False
                    if reason is None:
                        # The outbox first: the chained appends (which lock the chains' heads until
                        # the commit) come last, so steps of other cases wait for them briefly.
                        if req.notify is not None:
                            await self.callbacks.write_outbox(conn, req.notify)
                        recorded = await self._write(conn, req)
                        if req.authorization is not None:
                            await log_authorization(conn, self.chain, req.authorization, None)
            if reason is not None:
                # The refusal is on record (its own row); the step wrote nothing.
                await log_authorization(conn, self.chain, req.authorization, reason)
                raise ApplicationError(reason, type="Unauthorized", non_retryable=True)
        grants = await operator_grants(self.pool, req.parties) if req.parties else None
        if req.notify is None:
            return StepResult(recorded=recorded, operators=grants)
        published = await self.callbacks.deliver_recorded(req.notify)
        return StepResult(recorded=recorded, queued=published.queued, skipped=published.skipped,
                          operators=grants)

    async def _write(self, conn: asyncpg.Connection, req: StepRecord) -> bool:
        if req.kind is CaseKind.CLUE and req.clue is not None:
            return await write_clue(conn, self.chain, req.events, req.clue, req.details)
        if req.kind is CaseKind.RECTIFICATION and req.rectification is not None:
            return await write_rectification(conn, self.chain, req.events, req.rectification, req.text)
        if req.kind is CaseKind.INSPECTION and req.inspection is not None:
            return await write_inspection(conn, self.chain, req.events, req.inspection, req.method, req.findings,
                                          req.evaluation)
        raise ApplicationError(f"step of kind {req.kind} carries no {req.kind} snapshot",
                               type="InvalidStep", non_retryable=True)


def _subject(req: StepRecord) -> tuple[str, str]:
    """The ledger's (subject_kind, subject_id) of the step's case."""
    if req.clue is not None:
        return CaseKind.CLUE.value, req.clue.clue_no
    if req.rectification is not None:
        return CaseKind.RECTIFICATION.value, req.rectification.problem_no
    if req.inspection is not None:
        return CaseKind.INSPECTION.value, req.inspection.workflow_id
    raise ApplicationError("step carries no snapshot", type="InvalidStep", non_retryable=True)
