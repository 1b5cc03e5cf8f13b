"""The `cases.step` activity on its own (real PostgreSQL, real receiver): one transaction, then
delivery from the outbox; operator actions carried by updates are recorded as not identity-
verified, and refused outright with DUCHA_REQUIRE_PRINCIPAL (Temporal records no sender for an
update: docs/deployment.md, 身份核验)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.callbacks import CallbackActivities
from activities.cases import CaseActivities
from config.chain_key import ChainKey
from schemas.case import CaseKind, StepRecord
from schemas.events import EventType, PublishEvent
from schemas.ledger import ClueSnapshot, LedgerEvent
from schemas.registry import AuthorizeInput

from .conftest import make_settings


def record(clue_no: str, seq: int, *, operator: str | None = "杨帆") -> StepRecord:
    now = datetime.now(UTC)
    wid = f"clue-{clue_no}"
    snap = ClueSnapshot(
        clue_no=clue_no, workflow_id=wid, year=2026, route="to_law_office", source="court",
        target="law_office", channel="judgment_enforcement", importance="important",
        subject_unit="market_regulation", title="测试", discovered_on=date(2026, 12, 1), stage="transferred",
        responsible="law_office", due_on=None, due_at=None, provisional=False, overdue=False,
        missed_deadlines=0, escalations=0, light="green", outcome=None, special_inspection_requested=False,
        escalated_from=None, registered_at=now, transferred_at=now, acknowledged_at=None, closed_at=None)
    return StepRecord(
        kind=CaseKind.CLUE, clue=snap, parties=["court", "law_office"],
        events=[LedgerEvent(seq=seq, event="transferred", actor=operator or "系统", agency="court",
                            occurred_at=now)],
        authorization=AuthorizeInput(operator=operator, agency="court", action="clue.transfer",
                                     workflow_id=wid) if operator else None,
        notify=PublishEvent(event_id=f"{wid}.{seq}", type=EventType.CLUE_TRANSFERRED,
                            recipients=["law_office"], workflow_id=wid, summary="移送", occurred_at=now))


@pytest.fixture
async def cases(pool, db_url, receiver):
    settings = make_settings(db_url, callback_allowlist=["127.0.0.1"])
    async with httpx.AsyncClient() as http:
        callbacks = CallbackActivities(pool, settings, client=None, http=http, task_queue="unused")
        yield lambda require: CaseActivities(pool, callbacks, ChainKey.generate(), require_principal=require)


async def test_a_step_is_recorded_once_and_delivered_once(cases, pool, receiver):
    clue_no = f"S{uuid.uuid4().hex[:8]}"
    step = cases(False)
    first = await step.step(record(clue_no, 0))
    again = await step.step(record(clue_no, 0))  # a retry of the same step
    assert (first.recorded, again.recorded) == (True, False)
    assert first.queued == ["law_office"] and first.operators and "杨帆" in first.operators
    rows = await pool.fetch("SELECT seq, data FROM ledger_events WHERE subject_id = $1", clue_no)
    assert [(r["seq"], r["data"]["identity_verified"]) for r in rows] == [(0, False)]
    status = await pool.fetchval("SELECT status FROM callback_deliveries WHERE event_id = $1", f"clue-{clue_no}.0")
    assert status == "delivered"
    assert len([r for r in receiver.events("clue.transferred") if r.body["id"] == f"clue-{clue_no}.0"]) == 1


async def test_require_principal_refuses_an_update_and_records_nothing(cases, pool, receiver):
    clue_no = f"S{uuid.uuid4().hex[:8]}"
    with pytest.raises(ApplicationError) as info:
        await cases(True).step(record(clue_no, 0))
    assert info.value.type == "Unauthorized" and "身份核验" in info.value.message
    assert await pool.fetchval("SELECT count(*) FROM ledger_events WHERE subject_id = $1", clue_no) == 0
    assert await pool.fetchval("SELECT count(*) FROM callback_events WHERE event_id = $1", f"clue-{clue_no}.0") == 0
    refused = await pool.fetchval("SELECT count(*) FROM authorization_log WHERE workflow_id = $1 AND NOT allowed",
                                  f"clue-{clue_no}")
    assert refused == 1
    # A step with no operator action (a timer's) is not an update: recorded as usual.
    assert (await cases(True).step(record(clue_no, 0, operator=None))).recorded
