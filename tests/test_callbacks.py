"""Signed callbacks end to end: real PostgreSQL, the time-skipping Temporal server running the
real CallbackDelivery workflow and CallbackActivities, and a real HTTP receiver on 127.0.0.1
that checks signatures with its own hmac/base64 code and answers scripted statuses."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import asyncpg
import httpx
import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.api.enums.v1 import EventType as HistoryEventType
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.callbacks import (
    MAX_BODY_BYTES,
    CallbackActivities,
    RedeliverRefused,
    build_body,
    classify_response,
    delivery_workflow_id,
    endpoint_label,
    keep_previous_secret,
    make_http_client,
    parse_retry_after,
    webhook_id,
    write_outbox,
)
from activities.pinned_http import HTTPFailure, is_pinned_client
from activities.registry import RegistryStore, new_secret
from config.settings import Settings
from config.yaml_file import load_yaml_model
from rules.address_guard import Target
from schemas.callbacks import (
    AttemptInput,
    AttemptOutcome,
    AttemptResult,
    DeliveryInput,
    DeliveryOutput,
    DeliveryStatus,
    MarkDeadInput,
)
from schemas.events import EventType, PublishEvent, PublishResult
from schemas.registry import RegistryFile
from tests import support
from workflows.callback_delivery import CallbackDelivery

from .conftest import DEMO_REGISTRY, make_settings

SCHEDULE = [0, 5, 300]


# --- an independent receiver ---------------------------------------------------------------------


def independent_verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks verification written from the spec, not from rules/signing.py."""
    key = base64.b64decode(secret[len("whsec_"):])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split(" "))


@dataclass
class Hit:
    code: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class ScriptedReceiver:
    """POST /hooks/{code}. Each request takes the next scripted answer for its code: an int
    status, (status, headers), or ("sleep", seconds) to stall past the sender's timeout. It
    "processes" every verified event once, deduplicating by webhook-id like an agency should."""

    secrets: dict[str, str] = field(default_factory=dict)
    scripts: dict[str, list] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    processed: dict[tuple[str, str], int] = field(default_factory=dict)
    port: int = 0
    server: asyncio.AbstractServer | None = None

    async def start(self) -> ScriptedReceiver:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def url(self, code: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{code}?token=abc"

    def for_code(self, code: str) -> list[Hit]:
        return [h for h in self.hits if h.code == code]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            path = head[0].split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in head[1:] if ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            code = path.split("?")[0].rsplit("/", 1)[-1]
            script = self.scripts.get(code)
            answer = script.pop(0) if script else 204
            extra: dict[str, str] = {}
            if isinstance(answer, tuple) and answer[0] == "sleep":
                await asyncio.sleep(answer[1])
                answer = 204
            elif isinstance(answer, tuple):
                answer, extra = answer
            verified = code in self.secrets and independent_verify(self.secrets[code], headers, body)
            self.hits.append(Hit(code, headers, body, verified, answer))
            if verified:
                key = (code, headers["webhook-id"])
                self.processed[key] = self.processed.get(key, 0) + 1
            lines = [f"HTTP/1.1 {answer} Scripted", "Content-Length: 0", "Connection: close"]
            lines += [f"{k}: {v}" for k, v in extra.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


# --- fixtures ------------------------------------------------------------------------------------


@dataclass
class Env:
    acts: CallbackActivities
    pool: asyncpg.Pool
    receiver: ScriptedReceiver
    client: Client
    settings: Settings
    task_queue: str
    ts_env: WorkflowEnvironment

    async def point(self, code: str, url: str | None = None) -> None:
        await self.pool.execute(
            "UPDATE parties SET callback_url = $2, callback_enabled = true, disabled_reason = NULL, "
            "callback_secret_previous = NULL, callback_secret_previous_until = NULL WHERE code = $1",
            code, url or self.receiver.url(code),
        )
        self.receiver.secrets[code] = await self.pool.fetchval(
            "SELECT callback_secret FROM parties WHERE code = $1", code
        )

    async def result(self, event_id: str, code: str) -> DeliveryOutput:
        """How the delivery ended: at publish's own first attempt (no workflow), or in the
        delivery workflow publish handed it to."""
        row = await self.delivery(event_id, code)
        if row["delivery_workflow_id"]:
            assert row["delivery_workflow_id"] == delivery_workflow_id(event_id, code)
            return await result_of(self.ts_env, row["delivery_workflow_id"])
        assert row["status"] != "pending", "publish hands every delivery it leaves pending to a workflow"
        return DeliveryOutput(event_id=event_id, recipient=code, status=row["status"],
                              attempts=row["attempts"], last_http_status=row["last_status"],
                              last_error=row["last_error"])

    def handle(self, event_id: str, code: str) -> WorkflowHandle:
        return self.client.get_workflow_handle(
            delivery_workflow_id(event_id, code), result_type=DeliveryOutput
        )

    async def delivery(self, event_id: str, code: str) -> asyncpg.Record:
        return await self.pool.fetchrow(
            "SELECT * FROM callback_deliveries WHERE event_id = $1 AND recipient = $2", event_id, code
        )

    async def attempts(self, event_id: str, code: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM callback_attempts WHERE event_id = $1 AND recipient = $2 ORDER BY id",
            event_id, code,
        )


def event(recipients: list[str], *, type: EventType = EventType.CLUE_TRANSFERRED,
          event_id: str | None = None, **data) -> PublishEvent:
    return PublishEvent(
        event_id=event_id or f"clue-2026-{uuid.uuid4().hex[:8]}.1",
        type=type, recipients=recipients, workflow_id="clue-2026-0007",
        summary="线索 2026-0007 已移送县纪委监委依规处置", data=data or {"clue_no": "2026-0007"},
        occurred_at=datetime(2026, 3, 2, 2, 15, 3, tzinfo=UTC),
    )


def cb_settings(db_url: str, **overrides) -> Settings:
    values = dict(callback_allowlist=["127.0.0.1"], callback_retry_schedule=SCHEDULE,
                  callback_timeout_seconds=2, callback_inline_timeout_seconds=2)
    values.update(overrides)
    return make_settings(db_url, **values)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def loaded(pool: asyncpg.Pool) -> asyncpg.Pool:
    await RegistryStore(pool).load(load_yaml_model(DEMO_REGISTRY, RegistryFile))
    return pool


@pytest_asyncio.fixture(loop_scope="session")
async def env(loaded, db_url, ts_env: WorkflowEnvironment, task_queue) -> AsyncIterator[Env]:
    receiver = await ScriptedReceiver().start()
    s = cb_settings(db_url)
    async with make_http_client(s) as http:
        acts = CallbackActivities(loaded, s, ts_env.client, http, task_queue=task_queue)
        async with Worker(ts_env.client, task_queue=task_queue, workflows=[CallbackDelivery],
                          activities=acts.activity_methods()):
            yield Env(acts, loaded, receiver, ts_env.client, s, task_queue, ts_env)
    await receiver.stop()


async def result_of(ts_env: WorkflowEnvironment, workflow_id: str) -> DeliveryOutput:
    """Wait for the result of a delivery started by the activity (not by this test's client).

    Only handles returned by the env client's own start_workflow unlock time skipping while
    awaiting a result, so do what they do. The handle carries the run id: without one the SDK
    gives up when a history long-poll ends without the close event."""
    client = ts_env.client
    run_id = (await client.get_workflow_handle(workflow_id).describe()).run_id
    handle = client.get_workflow_handle(workflow_id, run_id=run_id, result_type=DeliveryOutput)
    async with ts_env.time_skipping_unlocked():
        return await handle.result()


async def history_timers(handle: WorkflowHandle) -> list[timedelta]:
    history = await handle.fetch_history()
    return [
        e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        for e in history.events if e.event_type == HistoryEventType.EVENT_TYPE_TIMER_STARTED
    ]


async def attempt_times(handle: WorkflowHandle) -> list[datetime]:
    """Workflow time at which each HTTP attempt was scheduled."""
    history = await handle.fetch_history()
    return [
        e.event_time.ToDatetime()
        for e in history.events
        if e.event_type == HistoryEventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "callbacks.deliver_attempt"
    ]


async def assert_replays(handle: WorkflowHandle) -> None:
    await support.assert_replays(handle, [CallbackDelivery])


# --- delivery ------------------------------------------------------------------------------------


async def test_delivery_is_signed_verifiable_and_recorded(env: Env):
    await env.point("discipline")
    ev = event(["discipline"], clue_no="2026-0007", route="b")
    published = await env.acts.publish(ev)
    assert published.queued == ["discipline"] and published.skipped == []
    out = await env.result(ev.event_id, "discipline")
    assert (out.status, out.attempts, out.last_http_status) == (DeliveryStatus.DELIVERED, 1, 204)

    [hit] = env.receiver.for_code("discipline")
    assert hit.verified, "signature checked by an independent implementation"
    assert hit.headers["webhook-id"] == ev.event_id
    assert hit.headers["content-type"].startswith("application/json")
    assert abs(int(hit.headers["webhook-timestamp"]) - datetime.now(UTC).timestamp()) < 60
    body = hit.json
    assert set(body) == {"id", "type", "occurred_at", "recipient", "workflow_id", "data"}
    assert body["id"] == ev.event_id and body["type"] == "clue.transferred"
    assert body["recipient"] == "discipline" and body["workflow_id"] == "clue-2026-0007"
    assert body["occurred_at"] == "2026-03-02T10:15:03+08:00"
    assert body["data"] == {"clue_no": "2026-0007", "route": "b", "summary": ev.summary}
    assert len(hit.body) < MAX_BODY_BYTES

    row = await env.delivery(ev.event_id, "discipline")
    assert (row["status"], row["attempts"], row["last_status"]) == ("delivered", 1, 204)
    assert row["delivered_at"] is not None
    [attempt] = await env.attempts(ev.event_id, "discipline")
    assert attempt["http_status"] == 204 and attempt["attempt_no"] == 1 and attempt["latency_ms"] >= 0
    assert "token" not in attempt["endpoint"], "query strings (tokens) are not logged"
    assert row["delivery_workflow_id"] is None, "delivered at publish's first attempt: no workflow"
    with pytest.raises(RPCError) as missing:
        await env.handle(ev.event_id, "discipline").describe()
    assert missing.value.status is RPCStatusCode.NOT_FOUND


async def test_500_then_200_delivers_once_per_event_id(env: Env):
    await env.point("court")
    env.receiver.scripts["court"] = [500, 200]
    ev = event(["court"])
    await env.acts.publish(ev)
    out = await env.result(ev.event_id, "court")
    assert (out.status, out.attempts) == (DeliveryStatus.DELIVERED, 2)

    hits = env.receiver.for_code("court")
    assert [h.status for h in hits] == [500, 200]
    assert {h.headers["webhook-id"] for h in hits} == {ev.event_id}, "webhook-id is stable"
    assert all(h.verified for h in hits)
    assert env.receiver.processed[("court", ev.event_id)] == 2, "seen twice, deduplicated to one"
    assert len({k for k in env.receiver.processed if k[0] == "court"}) == 1

    row = await env.delivery(ev.event_id, "court")
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    assert [a["http_status"] for a in await env.attempts(ev.event_id, "court")] == [500, 200]
    handle = env.handle(ev.event_id, "court")
    assert await history_timers(handle) == [timedelta(seconds=5)]
    [retry] = await attempt_times(handle)  # the first attempt was publish's own
    started = (await handle.fetch_history()).events[0].event_time.ToDatetime()
    assert retry - started >= timedelta(seconds=5)
    history = json.dumps((await handle.fetch_history()).to_json_dict(), ensure_ascii=False)
    secret = env.receiver.secrets["court"]
    assert secret not in history and secret.removeprefix("whsec_") not in history
    await assert_replays(handle)


async def test_an_attempt_retried_after_its_delivery_was_recorded_sends_nothing(env: Env):
    """The worker died after a delivery's POST was accepted and recorded, before the activity
    completed: the workflow's next attempt finds it delivered and neither sends it again nor
    lets a different answer to a repeat undo the delivered state (found by `make soak`)."""
    await env.point("court")
    env.receiver.scripts["court"] = [200, 500]
    ev = event(["court"])
    await env.acts.publish(ev)  # the first attempt, at publish, is accepted
    row = await env.delivery(ev.event_id, "court")
    assert (row["status"], row["attempts"]) == ("delivered", 1)

    again = await env.acts.deliver_attempt(AttemptInput(event_id=ev.event_id, recipient="court"))
    assert again.outcome is AttemptOutcome.DELIVERED and again.final
    assert [h.status for h in env.receiver.for_code("court")] == [200], "not sent again"
    row = await env.delivery(ev.event_id, "court")
    assert (row["status"], row["attempts"]) == ("delivered", 1)
    assert [a["http_status"] for a in await env.attempts(ev.event_id, "court")] == [200]


def _http_date(seconds: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize("answer,low,high", [
    ((503, {"Retry-After": "120"}), 120, 120),
    ((429, {"Retry-After": "__date_600__"}), 590, 601),
    ((503, {"Retry-After": "1"}), 5, 5),  # the schedule wins when it is longer
    ((503, {"Retry-After": "soon"}), 5, 5),  # unparseable: the schedule
])
async def test_retry_after_is_honoured_in_workflow_time(env: Env, answer, low, high):
    status, headers = answer
    if headers["Retry-After"] == "__date_600__":
        headers = {"Retry-After": _http_date(600)}
    await env.point("procuratorate")
    env.receiver.scripts["procuratorate"] = [(status, headers), 204]
    ev = event(["procuratorate"])
    await env.acts.publish(ev)
    out = await env.result(ev.event_id, "procuratorate")
    assert (out.status, out.attempts) == (DeliveryStatus.DELIVERED, 2)
    handle = env.handle(ev.event_id, "procuratorate")
    [timer] = await history_timers(handle)
    assert low <= timer.total_seconds() <= high
    started = (await handle.fetch_history()).events[0].event_time.ToDatetime()
    [second] = await attempt_times(handle)
    assert second - started >= timedelta(seconds=low), "the second attempt waited in workflow time"
    await assert_replays(handle)


async def test_410_disables_the_endpoint_and_stops(env: Env):
    await env.point("justice")
    env.receiver.scripts["justice"] = [410]
    ev = event(["justice"])
    await env.acts.publish(ev)
    out = await env.result(ev.event_id, "justice")
    assert (out.status, out.attempts, out.last_http_status) == (DeliveryStatus.FAILED, 1, 410)
    party = await env.pool.fetchrow("SELECT * FROM parties WHERE code = 'justice'")
    assert party["callback_enabled"] is False and "410" in party["disabled_reason"]
    assert (await RegistryStore(env.pool).get("justice")).callback_enabled is False

    # later events skip the disabled endpoint; a delivery already under way stops without sending
    later = await env.acts.publish(event(["justice"]))
    assert later.skipped == ["justice"] and later.queued == []
    again = await env.acts.deliver_attempt(AttemptInput(event_id=ev.event_id, recipient="justice"))
    assert again.outcome is AttemptOutcome.DISABLED and again.final
    assert len(env.receiver.for_code("justice")) == 1

    # set-endpoint enables it again
    await RegistryStore(env.pool).set_endpoint("justice", env.receiver.url("justice"), None)
    assert (await RegistryStore(env.pool).get("justice")).callback_enabled is True


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422, 301])
async def test_other_4xx_and_redirects_are_final(env: Env, status):
    await env.point("tour_office")
    env.receiver.scripts["tour_office"] = [(status, {"Location": "http://10.0.0.1/"})]
    ev = event(["tour_office"])
    await env.acts.publish(ev)
    out = await env.result(ev.event_id, "tour_office")
    assert (out.status, out.attempts, out.last_http_status) == (DeliveryStatus.FAILED, 1, status)
    assert len(env.receiver.for_code("tour_office")) == 1, "redirects are not followed"
    row = await env.delivery(ev.event_id, "tour_office")
    assert (row["status"], row["last_status"]) == ("failed", status)


@pytest.mark.parametrize("first", [408, 429, 500, 502, 503, 504, ("sleep", 3)])
async def test_timeouts_408_429_and_5xx_are_retried(env: Env, first):
    await env.point("county_committee")
    env.receiver.scripts["county_committee"] = [first, 200]
    ev = event(["county_committee"])
    await env.acts.publish(ev)
    out = await env.result(ev.event_id, "county_committee")
    assert (out.status, out.attempts) == (DeliveryStatus.DELIVERED, 2)
    [failed, ok] = await env.attempts(ev.event_id, "county_committee")
    if isinstance(first, tuple):
        assert failed["http_status"] is None and "Timeout" in failed["error"]
    else:
        assert failed["http_status"] == first
    assert ok["http_status"] == 200


async def test_unreachable_endpoint_is_a_network_retry(env: Env):
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    await env.point("coordination_group", f"http://127.0.0.1:{port}/hooks/coordination_group")
    ev = event(["coordination_group"])
    await env.acts.publish(ev)
    out = await env.result(ev.event_id, "coordination_group")
    assert (out.status, out.attempts) == (DeliveryStatus.DEAD, 3)
    assert all("ConnectError" in a["error"] for a in await env.attempts(ev.event_id, "coordination_group"))


async def test_exhaustion_dead_letters_and_redeliver_works(env: Env):
    await env.point("law_office")
    env.receiver.scripts["law_office"] = [500, 502, 503]
    ev = event(["law_office"])
    await env.acts.publish(ev)
    out = await env.result(ev.event_id, "law_office")
    assert (out.status, out.attempts, out.last_http_status) == (DeliveryStatus.DEAD, 3, 503)
    handle = env.handle(ev.event_id, "law_office")
    assert await history_timers(handle) == [timedelta(seconds=5), timedelta(seconds=300)]
    await assert_replays(handle)

    row = await env.delivery(ev.event_id, "law_office")
    assert (row["status"], row["attempts"]) == ("dead", 3)
    listed = {r.id: r for r in await env.acts.list_failed()}
    assert listed[row["id"]].status is DeliveryStatus.DEAD and listed[row["id"]].type == "clue.transferred"

    workflow_id = await env.acts.redeliver(row["id"])
    assert workflow_id.startswith(delivery_workflow_id(ev.event_id, "law_office") + "-r")
    again = await result_of(env.ts_env, workflow_id)
    assert (again.status, again.attempts) == (DeliveryStatus.DELIVERED, 1)
    row = await env.delivery(ev.event_id, "law_office")
    assert (row["status"], row["attempts"], row["delivery_workflow_id"]) == ("delivered", 4, workflow_id)
    assert [a["attempt_no"] for a in await env.attempts(ev.event_id, "law_office")] == [1, 2, 3, 4]
    assert env.receiver.processed[("law_office", ev.event_id)] == 4
    assert row["id"] not in {r.id for r in await env.acts.list_failed()}

    with pytest.raises(RedeliverRefused, match="no delivery"):
        await env.acts.redeliver(10**9)


async def test_redeliver_refuses_a_delivery_still_under_way(env: Env):
    await env.point("court")
    env.receiver.scripts["court"] = [500]
    ev = event(["court"])
    await env.acts.publish(ev)
    row = await env.delivery(ev.event_id, "court")
    with pytest.raises(RedeliverRefused, match="pending"):
        await env.acts.redeliver(row["id"])
    out = await env.result(ev.event_id, "court")
    assert out.status is DeliveryStatus.DELIVERED


async def test_publish_twice_creates_no_duplicates(env: Env):
    await env.point("court")
    await env.point("procuratorate")
    unit = await env.pool.fetchval("SELECT code FROM parties WHERE kind = 'unit' ORDER BY code LIMIT 1")
    await env.pool.execute("UPDATE parties SET callback_url = NULL WHERE code = $1", unit)
    try:
        ev = event(["court", "procuratorate", unit, "no_such_code", "court"])
        first = await env.acts.publish(ev)
        second = await env.acts.publish(ev)  # while the deliveries run
        assert first == second
        assert first.queued == ["court", "procuratorate"]
        assert first.skipped == [unit, "no_such_code"]
        for code in first.queued:
            assert (await env.result(ev.event_id, code)).status is DeliveryStatus.DELIVERED
        third = await env.acts.publish(ev)  # after they finished
        assert third == first
        await asyncio.sleep(0.5)
        assert await env.pool.fetchval(
            "SELECT count(*) FROM callback_events WHERE event_id = $1", ev.event_id) == 1
        rows = await env.pool.fetch(
            "SELECT recipient, status, attempts FROM callback_deliveries WHERE event_id = $1 "
            "ORDER BY recipient", ev.event_id)
        assert {r["recipient"]: (r["status"], r["attempts"]) for r in rows} == {
            "court": ("delivered", 1), "procuratorate": ("delivered", 1),
            unit: ("skipped", 0), "no_such_code": ("skipped", 0),
        }
        for code in first.queued:
            assert len([h for h in env.receiver.for_code(code) if h.headers["webhook-id"] == ev.event_id]) == 1
            assert (await env.delivery(ev.event_id, code))["delivery_workflow_id"] is None
    finally:
        await env.point(unit)


class CrashingCallbacks(CallbackActivities):
    """Dies (as a killed worker would) at one step of publish, after what came before it."""

    def __init__(self, *args, crash_at: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.crash_at = crash_at

    async def _hand_over(self, *args, **kwargs) -> None:
        if self.crash_at == "hand_over":
            raise RuntimeError("worker killed after the first attempt")
        await super()._hand_over(*args, **kwargs)

    async def _start_delivery(self, *args, **kwargs) -> None:
        if self.crash_at == "start":
            raise RuntimeError("worker killed before the workflow started")
        await super()._start_delivery(*args, **kwargs)


@pytest.mark.parametrize("crash_at", ["hand_over", "start"])
async def test_publish_retried_after_a_crash_neither_repeats_nor_loses_an_attempt(env: Env, db_url, crash_at):
    """publish made its first attempt (500) and died before the delivery workflow ran: the retry
    of the activity hands the delivery over without a second immediate POST, and the workflow
    goes on with the schedule after attempt 1."""
    await env.point("court")
    env.receiver.scripts["court"] = [500, 200]
    ev = event(["court"])
    crashing = CrashingCallbacks(env.pool, env.settings, env.client, env.acts.http,
                                 task_queue=env.task_queue, crash_at=crash_at)
    with pytest.raises(RuntimeError, match="worker killed"):
        await crashing.publish(ev)
    row = await env.delivery(ev.event_id, "court")
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert await env.acts.publish(ev) == PublishResult(event_id=ev.event_id, queued=["court"], skipped=[])
    out = await env.result(ev.event_id, "court")
    assert (out.status, out.attempts) == (DeliveryStatus.DELIVERED, 2)
    assert [h.status for h in env.receiver.for_code("court") if h.headers["webhook-id"] == ev.event_id] == [500, 200]
    assert await history_timers(env.handle(ev.event_id, "court")) == [timedelta(seconds=5)]


# --- the outbox: write_outbox in the caller's transaction, then deliver_recorded ---------------


async def test_write_outbox_is_part_of_the_callers_transaction(env: Env):
    await env.point("court")
    ev = event(["court", "no_such_code"])
    with pytest.raises(RuntimeError, match="step failed"):
        async with env.pool.acquire() as conn, conn.transaction():
            await write_outbox(conn, ev)
            raise RuntimeError("step failed after writing its notifications")
    assert await env.pool.fetchval("SELECT count(*) FROM callback_events WHERE event_id = $1", ev.event_id) == 0
    assert await env.pool.fetchval(
        "SELECT count(*) FROM callback_deliveries WHERE event_id = $1", ev.event_id) == 0

    async with env.pool.acquire() as conn, conn.transaction():
        written = await write_outbox(conn, ev)
        assert await write_outbox(conn, ev) == written, "idempotent"
    assert (written.queued, written.skipped) == (["court"], ["no_such_code"])
    row = await env.delivery(ev.event_id, "court")
    assert (row["status"], row["attempts"], row["delivery_workflow_id"]) == ("pending", 0, None)
    assert (await env.delivery(ev.event_id, "no_such_code"))["status"] == "skipped"
    assert env.receiver.for_code("court") == [], "writing the outbox sends nothing"

    clash = ev.model_copy(update={"type": EventType.CLUE_OVERDUE, "recipients": ["procuratorate"]})
    async with env.pool.acquire() as conn, conn.transaction():
        with pytest.raises(ApplicationError) as info:
            await write_outbox(conn, clash)
    assert info.value.type == "CallbackEventConflict" and info.value.non_retryable
    assert await env.delivery(ev.event_id, "procuratorate") is None, "nothing written for a clash"


async def test_deliver_recorded_twice_posts_once(env: Env):
    await env.point("court")
    await env.point("procuratorate")
    env.receiver.scripts["procuratorate"] = [503, 204]
    ev = event(["court", "procuratorate", "no_such_code"])
    async with env.pool.acquire() as conn, conn.transaction():
        await write_outbox(conn, ev)
    first = await env.acts.deliver_recorded(ev)
    second = await env.acts.deliver_recorded(ev)
    assert first == second == PublishResult(event_id=ev.event_id, queued=["court", "procuratorate"],
                                            skipped=["no_such_code"])
    assert (await env.result(ev.event_id, "procuratorate")).status is DeliveryStatus.DELIVERED
    third = await env.acts.deliver_recorded(ev)  # after the retry workflow finished
    assert third == first
    for code, statuses in (("court", [204]), ("procuratorate", [503, 204])):
        hits = [h for h in env.receiver.for_code(code) if h.headers["webhook-id"] == ev.event_id]
        assert [h.status for h in hits] == statuses and all(h.verified for h in hits), code
    assert [a["attempt_no"] for a in await env.attempts(ev.event_id, "procuratorate")] == [1, 2]
    assert (await env.delivery(ev.event_id, "court"))["attempts"] == 1


class DiesBeforeRecording(CallbackActivities):
    """Made its POSTs, then died before recording them (a killed worker)."""

    async def _record(self, *args, **kwargs) -> None:
        raise RuntimeError("worker killed before recording")


async def test_killed_between_the_halves_deliver_recorded_later_delivers(env: Env, db_url):
    await env.point("court")
    await env.point("justice")
    ev = event(["court", "justice"])
    async with env.pool.acquire() as conn, conn.transaction():
        await write_outbox(conn, ev)
    # the process that wrote the outbox is gone; a fresh one (new client, new pool user) delivers
    async with make_http_client(env.settings) as http:
        fresh = CallbackActivities(env.pool, env.settings, env.client, http, task_queue=env.task_queue)
        assert (await fresh.deliver_recorded(ev)).queued == ["court", "justice"]
    for code in ("court", "justice"):
        row = await env.delivery(ev.event_id, code)
        assert (row["status"], row["attempts"]) == ("delivered", 1), code

    # killed half-way through deliver_recorded (posted, not recorded): the next call posts
    # again, with the same webhook-id, and the receiver's deduplication keeps one
    again = event(["court"])
    await write_outbox(env.pool, again)
    dying = DiesBeforeRecording(env.pool, env.settings, env.client, env.acts.http, task_queue=env.task_queue)
    with pytest.raises(RuntimeError, match="killed"):
        await dying.deliver_recorded(again)
    assert (await env.delivery(again.event_id, "court"))["attempts"] == 0
    await env.acts.deliver_recorded(again)
    assert (await env.delivery(again.event_id, "court"))["status"] == "delivered"
    assert env.receiver.processed[("court", again.event_id)] == 2, "both posts carried the same webhook-id"
    assert [a["attempt_no"] for a in await env.attempts(again.event_id, "court")] == [1]


async def test_deliver_recorded_of_an_unknown_or_different_event_is_refused(env: Env):
    with pytest.raises(ApplicationError) as info:
        await env.acts.deliver_recorded(event(["court"]))
    assert info.value.type == "UnknownCallbackEvent" and info.value.non_retryable
    await env.point("court")
    ev = event(["court"])
    await env.acts.publish(ev)
    with pytest.raises(ApplicationError) as info:
        await env.acts.deliver_recorded(ev.model_copy(update={"workflow_id": "clue-2026-9999"}))
    assert info.value.type == "CallbackEventConflict"


async def test_ip_literal_endpoints_are_checked_without_a_thread(env: Env, db_url, monkeypatch):
    """getaddrinfo runs in a thread only for names; an IP literal (or an allowlisted name) is
    checked in the event loop."""
    from activities import callbacks

    threads: list[str] = []
    real_to_thread = asyncio.to_thread

    async def counting(fn, *args, **kwargs):
        threads.append(getattr(fn, "__name__", "?"))
        return await real_to_thread(fn, *args, **kwargs)

    monkeypatch.setattr(callbacks.asyncio, "to_thread", counting)
    await env.point("court")
    await env.acts.publish(event(["court"]))
    assert threads == []

    def dns(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    named = CallbackActivities(env.pool, cb_settings(db_url, callback_allowlist=["127.0.0.0/8"]), env.client,
                               env.acts.http, task_queue=env.task_queue, resolver=dns)
    await env.point("court", f"http://hooks.court.example:{env.receiver.port}/hooks/court")
    ev = event(["court"])
    await named.publish(ev)
    assert threads == ["check_url"]
    assert (await env.delivery(ev.event_id, "court"))["status"] == "delivered"


async def test_a_schedule_of_one_attempt_dead_letters_at_publish(env: Env, db_url):
    await env.point("court")
    env.receiver.scripts["court"] = [503]
    once = CallbackActivities(env.pool, cb_settings(db_url, callback_retry_schedule=[0]), env.client,
                              env.acts.http, task_queue=env.task_queue)
    ev = event(["court"])
    await once.publish(ev)
    row = await env.delivery(ev.event_id, "court")
    assert (row["status"], row["attempts"], row["delivery_workflow_id"]) == ("dead", 1, None)


async def test_reusing_an_event_id_for_another_event_is_a_business_error(env: Env):
    await env.point("court")
    ev = event(["court"])
    await env.acts.publish(ev)
    clash = ev.model_copy(update={"type": EventType.CLUE_OVERDUE})
    with pytest.raises(ApplicationError) as info:
        await env.acts.publish(clash)
    assert info.value.non_retryable and info.value.type == "CallbackEventConflict"
    await env.result(ev.event_id, "court")


async def test_oversized_or_invalid_bodies_are_refused_at_publish(env: Env):
    with pytest.raises(ApplicationError) as info:
        await env.acts.publish(event(["court"], notes="字" * 7000))
    assert info.value.non_retryable and info.value.type == "CallbackTooLarge"
    with pytest.raises(ApplicationError) as info:
        await env.acts.publish(event(["court"], ratio=float("nan")))
    assert info.value.non_retryable and info.value.type == "CallbackInvalidData"


async def test_rotation_signs_with_old_and_new_secret(env: Env):
    await env.point("court")
    old = env.receiver.secrets["court"]
    new = await RegistryStore(env.pool).set_endpoint("court", env.receiver.url("court"), new_secret())
    await keep_previous_secret(env.pool, "court", old, 24)
    ev = event(["court"])
    await env.acts.publish(ev)
    assert (await env.result(ev.event_id, "court")).status is DeliveryStatus.DELIVERED
    [hit] = [h for h in env.receiver.for_code("court") if h.headers["webhook-id"] == ev.event_id]
    assert len(hit.headers["webhook-signature"].split(" ")) == 2
    assert independent_verify(old, hit.headers, hit.body) and independent_verify(new, hit.headers, hit.body)

    await keep_previous_secret(env.pool, "court", old, 0)
    ping = await env.acts.send_test("court")
    [hit] = [h for h in env.receiver.for_code("court") if h.headers["webhook-id"] == ping.event_id]
    assert len(hit.headers["webhook-signature"].split(" ")) == 1
    assert independent_verify(new, hit.headers, hit.body) and not independent_verify(old, hit.headers, hit.body)


async def test_event_ids_unsafe_for_headers_get_a_stable_webhook_id(env: Env):
    await env.point("court")
    env.receiver.scripts["court"] = [500, 204]
    ev = event(["court"], event_id="线索 2026-0007.转办")
    await env.acts.publish(ev)
    assert (await env.result(ev.event_id, "court")).attempts == 2
    hits = [h for h in env.receiver.for_code("court") if h.json["id"] == ev.event_id]
    assert len(hits) == 2 and all(h.verified for h in hits)
    assert {h.headers["webhook-id"] for h in hits} == {webhook_id(ev.event_id)}
    assert webhook_id(ev.event_id).startswith("evt_")


async def test_ping_test_sends_now_and_reports(env: Env):
    await env.point("court")
    outcome = await env.acts.send_test("court")
    assert outcome.outcome is AttemptOutcome.DELIVERED and outcome.http_status == 204
    assert outcome.latency_ms is not None and outcome.latency_ms >= 0
    [hit] = [h for h in env.receiver.for_code("court") if h.headers["webhook-id"] == outcome.event_id]
    assert hit.verified and hit.json["type"] == "ping"
    env.receiver.scripts["court"] = [503]
    failed = await env.acts.send_test("court")
    assert failed.outcome is AttemptOutcome.RETRY and failed.http_status == 503
    assert (await env.delivery(failed.event_id, "court"))["status"] == "failed"
    with pytest.raises(LookupError):
        await env.acts.send_test("no_such_code")


# --- the SSRF guard at send time ---------------------------------------------------------------

FORBIDDEN = [
    "http://127.0.0.1:9/hooks/x", "http://10.0.0.1/hooks/x", "http://169.254.169.254/latest",
    "http://[::1]/hooks/x", "http://[fc00::1]/hooks/x", "http://100.64.0.1/hooks/x",
    "http://0x7f000001/hooks/x", "http://2130706433/", "http://0177.0.0.1/",
    "http://hooks.evil.example/hooks/x",  # resolves to a private address (fake resolver)
    "http://localhost:9/hooks/x",  # the real resolver
]


def evil_dns(host: str, port: int) -> list[str]:
    from rules.address_guard import system_resolver

    return ["10.9.8.7"] if host == "hooks.evil.example" else system_resolver(host, port)


async def test_forbidden_addresses_are_refused_at_send_time(env: Env, db_url):
    strict = CallbackActivities(env.pool, cb_settings(db_url, callback_allowlist=[]), env.client,
                                env.acts.http, task_queue=env.task_queue, resolver=evil_dns)
    await env.point("discipline", "http://10.0.0.1/hooks/discipline")
    ev = event(["discipline"])
    await env.acts.publish(ev)
    out = await env.result(ev.event_id, "discipline")
    assert (out.status, out.attempts) == (DeliveryStatus.FAILED, 0), "refused before sending"
    assert "10.0.0.1" in out.last_error
    for url in FORBIDDEN:
        await env.point("discipline", url)
        result = await strict.deliver_attempt(AttemptInput(event_id=ev.event_id, recipient="discipline"))
        assert result.outcome is AttemptOutcome.FORBIDDEN and result.final, url
        ping = await strict.send_test("discipline")
        assert ping.outcome is AttemptOutcome.FORBIDDEN and ping.error, url
    assert await env.attempts(ev.event_id, "discipline") == [], "nothing was sent"
    assert env.receiver.for_code("discipline") == []


# --- workflow logic with stub activities -------------------------------------------------------


async def test_default_schedule_and_crashing_attempts(ts_env: WorkflowEnvironment, task_queue):
    """The workflow owns the schedule: 8 attempts over ~27 h by default; an attempt activity
    that crashes counts as a retryable attempt; exhaustion calls mark_dead."""
    calls: list[int] = []
    dead: list[MarkDeadInput] = []

    @activity.defn(name="callbacks.deliver_attempt")
    async def attempt(req: AttemptInput) -> AttemptResult:
        calls.append(req.attempt)
        if req.attempt % 2:
            raise RuntimeError("worker lost its database connection")
        return AttemptResult(outcome=AttemptOutcome.RETRY, final=False, http_status=500)

    @activity.defn(name="callbacks.mark_dead")
    async def mark_dead(req: MarkDeadInput) -> bool:
        dead.append(req)
        return True

    schedule = Settings().callback_retry_schedule
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[CallbackDelivery],
                      activities=[attempt, mark_dead]):
        handle = await ts_env.client.start_workflow(
            CallbackDelivery.run,
            DeliveryInput(event_id="e1", recipient="court", schedule=schedule),
            id=f"callback-stub-{uuid.uuid4().hex[:6]}", task_queue=task_queue,
        )
        out = await handle.result()
    assert (out.status, out.attempts) == (DeliveryStatus.DEAD, 8)
    assert calls == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [t.total_seconds() for t in await history_timers(handle)] == schedule[1:]
    assert [d.attempts for d in dead] == [8]
    times = await attempt_times(handle)
    assert times[-1] - times[0] >= timedelta(seconds=sum(schedule))
    await assert_replays(handle)


async def test_a_workflow_after_publishs_attempt_goes_on_with_the_schedule(ts_env: WorkflowEnvironment, task_queue):
    """Handed over after attempt 1 answered 429 with Retry-After 120: the first wait is the longer
    of the schedule's and the endpoint's, attempts are numbered from 2, dead-lettering counts all."""
    calls: list[int] = []
    dead: list[MarkDeadInput] = []

    @activity.defn(name="callbacks.deliver_attempt")
    async def attempt(req: AttemptInput) -> AttemptResult:
        calls.append(req.attempt)
        return AttemptResult(outcome=AttemptOutcome.RETRY, final=False, http_status=503)

    @activity.defn(name="callbacks.mark_dead")
    async def mark_dead(req: MarkDeadInput) -> bool:
        dead.append(req)
        return True

    async with Worker(ts_env.client, task_queue=task_queue, workflows=[CallbackDelivery],
                      activities=[attempt, mark_dead]):
        handle = await ts_env.client.start_workflow(
            CallbackDelivery.run,
            DeliveryInput(event_id="e3", recipient="court", schedule=[5, 300],
                          previous_attempts=1, retry_after_seconds=120),
            id=f"callback-stub-{uuid.uuid4().hex[:6]}", task_queue=task_queue,
        )
        out = await handle.result()
    assert (out.status, out.attempts) == (DeliveryStatus.DEAD, 3)
    assert calls == [2, 3] and [d.attempts for d in dead] == [3]
    assert [t.total_seconds() for t in await history_timers(handle)] == [120, 300]
    await assert_replays(handle)


async def test_a_non_retryable_activity_failure_ends_the_delivery(ts_env: WorkflowEnvironment, task_queue):
    @activity.defn(name="callbacks.deliver_attempt")
    async def attempt(req: AttemptInput) -> AttemptResult:
        raise ApplicationError("unknown callback event", non_retryable=True)

    @activity.defn(name="callbacks.mark_dead")
    async def mark_dead(req: MarkDeadInput) -> bool:
        raise AssertionError("not dead-lettered")

    async with Worker(ts_env.client, task_queue=task_queue, workflows=[CallbackDelivery],
                      activities=[attempt, mark_dead]):
        out = await ts_env.client.execute_workflow(
            CallbackDelivery.run, DeliveryInput(event_id="e2", recipient="court", schedule=[0, 5]),
            id=f"callback-stub-{uuid.uuid4().hex[:6]}", task_queue=task_queue,
        )
    assert (out.status, out.attempts) == (DeliveryStatus.FAILED, 1)
    assert "unknown callback event" in out.last_error


# --- pure helpers -------------------------------------------------------------------------------


def test_parse_retry_after():
    now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(" 0 ", now) == 0
    assert parse_retry_after("Mon, 02 Mar 2026 08:10:00 GMT", now) == 600
    assert parse_retry_after("Mon, 02 Mar 2026 07:00:00 GMT", now) == 0
    assert parse_retry_after("9999999", now) == 86_400
    for bad in (None, "", "soon", "-5", "1.5"):
        assert parse_retry_after(bad, now) is None


def test_classify_response():
    table = {
        200: (AttemptOutcome.DELIVERED, True), 204: (AttemptOutcome.DELIVERED, True),
        410: (AttemptOutcome.GONE, True), 400: (AttemptOutcome.FAILED, True),
        404: (AttemptOutcome.FAILED, True), 302: (AttemptOutcome.FAILED, True),
        408: (AttemptOutcome.RETRY, False), 429: (AttemptOutcome.RETRY, False),
        500: (AttemptOutcome.RETRY, False), 503: (AttemptOutcome.RETRY, False),
    }
    for status, expected in table.items():
        result = classify_response(status, 30.0, None)
        assert (result.outcome, result.final) == expected, status
        assert result.retry_after == (30.0 if not result.final else None)


def test_envelope_and_labels():
    body = build_body(event_id="e", type="ping", occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
                      recipient="court", workflow_id="w", summary="测试", data={"summary": "x", "n": 1},
                      zone=Settings().zone)
    assert json.loads(body) == {"id": "e", "type": "ping", "occurred_at": "2026-01-01T08:00:00+08:00",
                                "recipient": "court", "workflow_id": "w",
                                "data": {"summary": "测试", "n": 1}}
    assert "测试".encode() in body, "UTF-8, not \\u escapes"
    assert endpoint_label("https://a.example:8443/hooks/x?token=s#f") == "https://a.example:8443/hooks/x"
    assert webhook_id("clue-2026-0007.3") == "clue-2026-0007.3"
    assert webhook_id("a b") == webhook_id("a b") != webhook_id("a  b")


async def test_http_client_ignores_proxy_settings_and_keeps_connections_alive(db_url, loaded, monkeypatch):
    """A name is connected through the address the guard checked (it does not resolve at all
    here), with the URL's Host header; proxies from the environment are not used; one kept-alive
    connection carries consecutive deliveries; a target that does not match its URL is refused."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    receiver = await ScriptedKeepAlive().start()
    s = cb_settings(db_url, callback_allowlist=["127.0.0.0/8"])
    seen: list[str] = []

    def dns(host: str, port: int) -> list[str]:
        seen.append(host)
        return ["127.0.0.1"]

    async with make_http_client(s) as http:
        acts = CallbackActivities(loaded, s, None, http, resolver=dns)
        url = f"http://hooks.court.example:{receiver.port}/hooks/court?token=abc"
        await loaded.execute(
            "UPDATE parties SET callback_url = $1, callback_enabled = true WHERE code = 'court'", url)
        outcomes = [await acts.send_test("court") for _ in range(3)]
        wrong = Target(url, "http", "hooks.other.example", receiver.port, ("127.0.0.1",))
        with pytest.raises(HTTPFailure, match="was not checked"):
            await http.post(wrong, b"{}", {})
        assert http.connections_opened == 1
    await receiver.stop()
    assert [o.outcome for o in outcomes] == [AttemptOutcome.DELIVERED] * 3
    assert seen == ["hooks.court.example"] * 6, "checked at send_test and again at each send"
    assert receiver.heads == [f"POST /hooks/court?token=abc|hooks.court.example:{receiver.port}"] * 3
    assert receiver.connections == 1
    async with httpx.AsyncClient() as plain:
        own = CallbackActivities(loaded, s, None, plain)
        assert own.http is not plain and is_pinned_client(own.http), "a plain client is never used"


@dataclass
class ScriptedKeepAlive:
    """A receiver that keeps connections alive and records each request's line and Host."""

    heads: list[str] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    server: asyncio.AbstractServer | None = None

    async def start(self) -> ScriptedKeepAlive:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.heads.append(f"{lines[0].rsplit(' ', 1)[0]}|{headers['host']}")
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_an_attempt_waits_out_a_short_database_outage(monkeypatch):
    """PostgreSQL unreachable for a moment: the attempt's database calls wait (no slot of the
    endpoint's schedule is used up); unreachable for longer than the patience: the error is raised."""
    from activities import callbacks

    calls = 0

    async def flaky():
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionRefusedError("Connect call failed")
        return "row"

    assert await callbacks._patiently(flaky) == "row" and calls == 3

    async def down():
        raise ConnectionRefusedError("Connect call failed")

    monkeypatch.setattr(callbacks, "DB_PATIENCE_SECONDS", 0.6)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ConnectionRefusedError):
        await callbacks._patiently(down)
    assert 0.2 <= asyncio.get_running_loop().time() - started <= 0.6, "waits, but never past the patience"

    async def bug():
        raise ValueError("not a database outage")

    with pytest.raises(ValueError):
        await callbacks._patiently(bug)
