"""Signed callbacks to agencies and units (docs/agencies.md).

Two halves, usable apart:

- `write_outbox(conn, event)` records the event and one delivery per recipient, in one SQL
  statement on the caller's connection (inside the caller's transaction when there is one: a
  step that writes the ledger and its notifications together, DESIGN.md §7);
- `deliver_recorded(event)` makes the first signed POST of each pending delivery of a recorded
  event (all recipients at once, each bounded by `callback_inline_timeout_seconds`, so a business
  workflow waits seconds at most, never for a retry), records every attempt in one statement,
  and hands each delivery that needs a retry to one `CallbackDelivery` workflow, which owns the
  rest of the retry schedule and calls `deliver_attempt` for each single signed POST. Calling it
  again posts nothing that was already attempted.

`publish` is the two in a row. Most events are delivered at the first attempt and cost no
workflow at all (docs/benchmarks.md). Signing secrets are read here, inside the activity, and
never travel through workflow inputs, outputs or logs. Every POST goes through the pinned client
(activities/pinned_http.py): it connects only to the addresses the SSRF guard checked.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg
import structlog
from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities.pinned_http import HTTPFailure, PinnedClient, is_pinned_client
from rules.address_guard import (
    Allowlist,
    ForbiddenAddress,
    ResolutionError,
    Resolver,
    Target,
    check_url,
    check_url_offline,
    system_resolver,
)
from rules.signing import SecretError, webhook_headers
from schemas import ids
from schemas.callbacks import (
    AttemptInput,
    AttemptOutcome,
    AttemptResult,
    DeliveryInput,
    DeliveryStatus,
    MarkDeadInput,
)
from schemas.events import EventType, PublishEvent, PublishResult

if TYPE_CHECKING:
    import ssl

    from config.settings import Settings

log = structlog.get_logger(__name__)

DELIVERY_WORKFLOW = "CallbackDelivery"
MAX_BODY_BYTES = 20_000
MAX_RETRY_AFTER_SECONDS = 86_400.0
USER_AGENT = "fazhi-ducha-callbacks/1"
CLI_WORKFLOW_ID = "ducha-cli"
# webhook-id travels in an HTTP header: other ids are replaced by a stable hash (see webhook_id).
_HEADER_SAFE_ID = re.compile(r"^[A-Za-z0-9._:~-]{1,200}$")
_DELIVER_CONCURRENCY = 10
# How long one attempt waits out an unreachable PostgreSQL, before its POST and again before it
# records the answer: an attempt that never reached the endpoint because our own database was
# down should not use up a slot of the endpoint's schedule (docs/reliability.md, finding 2).
# Twice this plus the HTTP timeout stays inside the attempt's start-to-close (HTTP timeout + 30 s).
DB_PATIENCE_SECONDS = 12.0
_DB_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, asyncpg.InterfaceError)


class DeliveryRecord(BaseModel):
    id: int
    event_id: str
    type: str
    recipient: str
    status: DeliveryStatus
    attempts: int
    last_status: int | None
    last_error: str | None
    delivery_workflow_id: str | None
    updated_at: datetime


class PingOutcome(BaseModel):
    code: str
    url: str
    event_id: str | None
    outcome: AttemptOutcome
    http_status: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    endpoint_enabled: bool = True


class RedeliverRefused(Exception):
    """The delivery cannot be redelivered now; the message is for operators."""


# --- pure helpers -------------------------------------------------------------------------------


def webhook_id(event_id: str) -> str:
    """The `webhook-id` header: the event id when header-safe, else a stable hash of it."""
    if _HEADER_SAFE_ID.match(event_id):
        return event_id
    return "evt_" + hashlib.sha256(event_id.encode()).hexdigest()[:40]


def delivery_workflow_id(event_id: str, recipient: str) -> str:
    return ids.callback_delivery(event_id, recipient)


def build_body(
    *,
    event_id: str,
    type: str,
    occurred_at: datetime,
    recipient: str,
    workflow_id: str,
    summary: str,
    data: dict[str, Any],
    zone: tzinfo,
) -> bytes:
    """The JSON envelope agencies receive; `data` carries the Chinese `summary`."""
    when = occurred_at if occurred_at.tzinfo else occurred_at.replace(tzinfo=UTC)
    envelope = {
        "id": event_id,
        "type": type,
        "occurred_at": when.astimezone(zone).isoformat(),
        "recipient": recipient,
        "workflow_id": workflow_id,
        "data": {**data, "summary": summary},
    }
    # allow_nan=False: NaN/Infinity are not JSON and would be refused by receivers.
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), capped at one day."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(int(text))
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def classify_response(status: int, retry_after: float | None, location: str | None) -> AttemptResult:
    """What one HTTP answer means for the delivery."""
    if 200 <= status < 300:
        return AttemptResult(outcome=AttemptOutcome.DELIVERED, final=True, http_status=status)
    if status == 410:
        return AttemptResult(
            outcome=AttemptOutcome.GONE, final=True, http_status=status,
            error="接收方返回 410，已停用该回调地址 endpoint answered 410 Gone and was disabled",
        )
    if status in (408, 429) or status >= 500:
        return AttemptResult(
            outcome=AttemptOutcome.RETRY, final=False, http_status=status,
            retry_after=retry_after, error=f"HTTP {status}",
        )
    if 300 <= status < 400:
        return AttemptResult(
            outcome=AttemptOutcome.FAILED, final=True, http_status=status,
            error=f"重定向不被跟随 redirect not followed (HTTP {status} → {(location or '?')[:200]})",
        )
    return AttemptResult(
        outcome=AttemptOutcome.FAILED, final=True, http_status=status,
        error=f"接收方拒绝 rejected by endpoint: HTTP {status}",
    )


def endpoint_label(url: str) -> str:
    """The URL without query or fragment (they may carry tokens): what the attempt log keeps."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(invalid URL)"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"[:500]


def make_http_client(settings: Settings, *, verify: ssl.SSLContext | bool = True) -> PinnedClient:
    """The HTTP client callbacks expect (activities/pinned_http.py): connections only to checked
    addresses, kept alive per endpoint, no redirects, no proxies from the environment. `verify`
    is for tests (a local CA). Close it with `aclose()` or `async with`."""
    return PinnedClient(user_agent=USER_AGENT, verify=verify)


# --- the outbox ---------------------------------------------------------------------------------

_SKIP_UNKNOWN = "登记册中没有该代码 / unknown registry code"
_SKIP_INACTIVE = "该单位已停用 / party inactive"
_SKIP_NO_URL = "没有登记回调地址 / no callback endpoint"
_SKIP_DISABLED = "回调地址已停用 / endpoint disabled: "

# One statement, so it is atomic on its own and adds one round trip to a caller's transaction.
# The sub-statements of a WITH see the tables as they were before the statement: `clash` and
# the last SELECT see only rows that existed already, `ins` returns the rows it added.
_OUTBOX_SQL = """
WITH ev AS (
    INSERT INTO callback_events (event_id, type, workflow_id, summary, data, occurred_at)
    VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
), clash AS (
    SELECT type, workflow_id FROM callback_events
    WHERE event_id = $1 AND (type <> $2 OR workflow_id <> $3)
), want AS (
    SELECT r.code, CASE
        WHEN p.code IS NULL THEN $8
        WHEN NOT p.active THEN $9
        WHEN coalesce(p.callback_url, '') = '' THEN $10
        WHEN NOT p.callback_enabled THEN $11 || coalesce(p.disabled_reason, '-')
    END AS reason
    FROM unnest($7::text[]) AS r (code) LEFT JOIN parties p ON p.code = r.code
), ins AS (
    INSERT INTO callback_deliveries (event_id, recipient, status, last_error)
    SELECT $1, code, CASE WHEN reason IS NULL THEN 'pending' ELSE 'skipped' END, reason
    FROM want WHERE NOT EXISTS (SELECT 1 FROM clash)
    ON CONFLICT (event_id, recipient) DO NOTHING
    RETURNING recipient, status
)
SELECT recipient, status, NULL AS clash_type, NULL AS clash_workflow FROM ins
UNION ALL
SELECT recipient, status, NULL, NULL FROM callback_deliveries
WHERE event_id = $1 AND recipient = ANY($7::text[])
UNION ALL
SELECT NULL, NULL, type, workflow_id FROM clash
"""


def check_event(event: PublishEvent) -> None:
    """Refuse (non-retryable) an event whose body would not be valid JSON or is too large."""
    recipients = event.recipients or [""]
    try:
        body = build_body(
            event_id=event.event_id, type=str(event.type), occurred_at=event.occurred_at,
            recipient=max(recipients, key=len), workflow_id=event.workflow_id,
            summary=event.summary, data=dict(event.data), zone=UTC,  # same length as any "+hh:mm"
        )
    except ValueError as exc:
        raise ApplicationError(
            f"回调数据不是有效的 JSON / callback data is not valid JSON: {exc}",
            type="CallbackInvalidData", non_retryable=True,
        ) from None
    if len(body) >= MAX_BODY_BYTES:
        raise ApplicationError(
            f"回调内容过大 / callback body too large: {len(body)} bytes "
            f"(limit {MAX_BODY_BYTES}); send ids and links, not contents",
            type="CallbackTooLarge", non_retryable=True,
        )


def _clash_error(event: PublishEvent, old_type: str, old_workflow: str) -> ApplicationError:
    return ApplicationError(
        f"事件编号已被另一事件使用 / event_id {event.event_id!r} was already used by "
        f"{old_type} of {old_workflow}",
        type="CallbackEventConflict", non_retryable=True,
    )


async def write_outbox(conn: asyncpg.Connection | asyncpg.Pool, event: PublishEvent) -> PublishResult:
    """Record `event` and one delivery per recipient (pending, or skipped with the reason when
    the recipient has no enabled endpoint), in one statement on `conn`: inside the caller's
    transaction when one is open, so the event is recorded exactly when the caller's own rows
    are. Nothing is sent; `CallbackActivities.deliver_recorded` does that after the commit.

    Idempotent: rows already there are left as they are, and the result describes them. An
    event_id already used by another event (other type or workflow) is a non-retryable
    `CallbackEventConflict`, and nothing is written. Works with or without the pool's JSON codec.
    """
    check_event(event)
    recipients = list(dict.fromkeys(event.recipients))
    rows = await conn.fetch(
        _OUTBOX_SQL, event.event_id, str(event.type), event.workflow_id, event.summary,
        json.dumps(dict(event.data), ensure_ascii=False, allow_nan=False), event.occurred_at,
        recipients, _SKIP_UNKNOWN, _SKIP_INACTIVE, _SKIP_NO_URL, _SKIP_DISABLED,
    )
    status: dict[str, str] = {}
    for r in rows:
        if r["clash_type"] is not None:
            raise _clash_error(event, r["clash_type"], r["clash_workflow"])
        status.setdefault(r["recipient"], r["status"])
    return PublishResult(
        event_id=event.event_id,
        queued=[c for c in recipients if status.get(c) not in (None, DeliveryStatus.SKIPPED)],
        skipped=[c for c in recipients if status.get(c) == DeliveryStatus.SKIPPED],
    )


# --- the activities -----------------------------------------------------------------------------

_EVENT_COLUMNS = "e.event_id, e.type, e.workflow_id, e.summary, e.data, e.occurred_at"
_PARTY_COLUMNS = (
    "p.code AS party, p.callback_url, p.callback_secret, p.callback_secret_previous, "
    "coalesce(p.callback_secret_previous_until > now(), false) AS previous_valid, "
    "p.callback_enabled, p.disabled_reason"
)
_PARTY_SQL = (
    "SELECT code, callback_url, callback_secret, callback_secret_previous, "
    "coalesce(callback_secret_previous_until > now(), false) AS previous_valid, "
    "callback_enabled, disabled_reason, active FROM parties WHERE code = $1"
)
# One attempt: the event and the recipient's endpoint in one round trip.
_ATTEMPT_SQL = (
    f"SELECT {_EVENT_COLUMNS}, {_PARTY_COLUMNS} FROM callback_events e "
    "LEFT JOIN parties p ON p.code = $2 WHERE e.event_id = $1"
)
# Every delivery of an event; the endpoint (with its secrets) only for those still to be tried.
_RECORDED_SQL = (
    f"SELECT d.recipient, d.status, d.attempts, d.delivery_workflow_id, {_EVENT_COLUMNS}, "
    f"{_PARTY_COLUMNS} FROM callback_deliveries d JOIN callback_events e USING (event_id) "
    "LEFT JOIN parties p ON p.code = d.recipient AND d.status = 'pending' AND d.attempts = 0 "
    "AND d.delivery_workflow_id IS NULL "
    "WHERE d.event_id = $1 ORDER BY d.id"
)
# The outcome of several attempts of one event, in one statement: each delivery's new state and,
# for each request made, its row in the attempt log numbered after the delivery's attempts.
_RECORD_SQL = """
WITH r AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::int[])
        AS r (recipient, status, http_status, error, endpoint, latency_ms)
), upd AS (
    INSERT INTO callback_deliveries AS d (event_id, recipient, status, attempts, last_status,
                                          last_error, delivered_at)
    SELECT $1, recipient, status, (endpoint IS NOT NULL)::int, http_status, error,
           CASE WHEN status = 'delivered' THEN now() END
    FROM r
    ON CONFLICT (event_id, recipient) DO UPDATE SET
        attempts = d.attempts + excluded.attempts, status = excluded.status,
        last_status = excluded.last_status, last_error = excluded.last_error, updated_at = now(),
        delivered_at = coalesce(excluded.delivered_at, d.delivered_at)
    RETURNING d.recipient, d.attempts
)
INSERT INTO callback_attempts (event_id, recipient, endpoint, attempt_no, http_status, latency_ms, error)
SELECT $1, r.recipient, r.endpoint, upd.attempts, r.http_status, r.latency_ms, r.error
FROM r JOIN upd USING (recipient) WHERE r.endpoint IS NOT NULL
"""


@dataclass
class _Attempt:
    """One attempt's outcome; `url` is set when a request (or a DNS look-up) was made."""

    recipient: str
    result: AttemptResult
    url: str | None


class CallbackActivities:
    """Callback I/O. `client` is used to start delivery workflows; when None, the activity's own
    client (`activity.client()`) is used, which is what a worker needs. `task_queue` defaults to
    the calling activity's task queue, else `settings.task_queue`. `http` is the pinned client
    of `make_http_client`; one is made on first use when none (or another client) is given."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        client: Client | None = None,
        http: PinnedClient | Any = None,
        *,
        task_queue: str | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        if http is not None and not is_pinned_client(http):
            # Callbacks never go out through a client that could connect to an address the
            # guard did not check: a plain client given here is left unused.
            log.warning("HTTP client not made by make_http_client; callbacks use their own pinned client")
            http = None
        self.pool = pool
        self.settings = settings
        self.client = client
        self._http = http
        self.task_queue = task_queue
        self.resolver = resolver
        self.allowlist = Allowlist.parse(settings.callback_allowlist)

    @property
    def http(self) -> PinnedClient:
        """The injected HTTP client; one is made on first use when none was given."""
        if self._http is None:
            self._http = make_http_client(self.settings)
        return self._http

    def activity_methods(self) -> list:
        """The bound activities to register on a worker."""
        return [self.publish, self.deliver_recorded, self.deliver_attempt, self.mark_dead]

    # publish ----------------------------------------------------------------------------------

    @activity.defn(name="callbacks.publish")
    async def publish(self, event: PublishEvent) -> PublishResult:
        """Record the event and its deliveries (`write_outbox`, its own transaction), then make
        each delivery's first attempt and hand each one that needs a retry to its own delivery
        workflow (`deliver_recorded`).

        Safe to run again: a delivery already decided is left alone, one already handed over is
        only handed over again (the workflow id makes that a no-op), and the first attempt is
        made only while a delivery has none on record."""
        async def write_and_read() -> list[asyncpg.Record]:
            async with self.pool.acquire() as conn:  # one connection for both: one reset, not two
                await write_outbox(conn, event)
                return await conn.fetch(_RECORDED_SQL, event.event_id)

        return await self._deliver(event, await _patiently(write_and_read))

    async def write_outbox(self, conn: asyncpg.Connection, event: PublishEvent) -> PublishResult:
        """`write_outbox` (module level) as a method, for callers that hold a CallbackActivities:
        the event and its deliveries in one statement, inside the caller's transaction."""
        return await write_outbox(conn, event)

    @activity.defn(name="callbacks.deliver_recorded")
    async def deliver_recorded(self, event: PublishEvent) -> PublishResult:
        """Deliver an event whose rows `write_outbox` wrote (possibly in another transaction,
        possibly by a process that died since): the first attempt of each delivery that has
        none, all at once and each bounded by `callback_inline_timeout_seconds`; every attempt
        recorded in one statement; each delivery that needs a retry (or was left half-way by an
        earlier call) handed to its CallbackDelivery workflow. Idempotent: deliveries already
        attempted, delivered, failed or handed over are not posted again. (Two calls running at
        the same moment may both post a delivery neither has recorded yet: delivery is at least
        once, and receivers deduplicate by webhook-id.)"""
        return await self._deliver(event, await _patiently(lambda: self.pool.fetch(_RECORDED_SQL, event.event_id)))

    async def _deliver(self, event: PublishEvent, rows: list[asyncpg.Record]) -> PublishResult:
        """deliver_recorded, given the event's rows (_RECORDED_SQL)."""
        if not rows:
            raise ApplicationError(
                f"没有该事件的投递记录 / no recorded deliveries for callback event {event.event_id!r}",
                type="UnknownCallbackEvent", non_retryable=True,
            )
        stored = rows[0]
        if stored["type"] != str(event.type) or stored["workflow_id"] != event.workflow_id:
            raise _clash_error(event, stored["type"], stored["workflow_id"])
        order = {code: i for i, code in enumerate(dict.fromkeys(event.recipients))}
        rows = sorted(rows, key=lambda r: order.get(r["recipient"], len(order)))
        first = [r for r in rows if _untried(r)]
        later = [r for r in rows if r["status"] == DeliveryStatus.PENDING and not _untried(r)]
        limit = asyncio.Semaphore(_DELIVER_CONCURRENCY)
        timeout = self.settings.callback_inline_timeout_seconds

        async def attempt(row: asyncpg.Record) -> _Attempt:
            async with limit:
                return await self._send(row, row["recipient"], require_enabled=True, timeout=timeout)

        made = await asyncio.gather(*(attempt(r) for r in first))
        if made:
            await _patiently(lambda: self._record(event.event_id, made))
            await self._after(event.event_id, made)
        # Hand-overs: retries of this call's attempts, and deliveries an earlier call left
        # half-way (attempted but not handed over, or handed over but perhaps not started).
        handovers = [
            self._hand_over(event, a.recipient, 1, a.result.retry_after or 0.0)
            for a in made if not a.result.final
        ]
        for row in later:
            if row["delivery_workflow_id"]:
                handovers.append(self._start_delivery(
                    event.event_id, row["recipient"], row["delivery_workflow_id"], str(event.type),
                    previous_attempts=row["attempts"]))
            else:
                handovers.append(self._hand_over(event, row["recipient"], row["attempts"], 0.0))
        for coro in handovers:
            await coro
        log.info("callback event delivered", event_id=event.event_id, type=str(event.type),
                 first_attempts=len(made), handed_over=len(handovers))
        return PublishResult(
            event_id=event.event_id,
            queued=[r["recipient"] for r in rows if r["status"] != DeliveryStatus.SKIPPED],
            skipped=[r["recipient"] for r in rows if r["status"] == DeliveryStatus.SKIPPED],
        )

    async def _hand_over(self, event: PublishEvent, code: str, attempts: int, retry_after: float) -> None:
        """Give a delivery with `attempts` made to its CallbackDelivery workflow, which goes on
        with the rest of the schedule; with none left it is dead-lettered at once."""
        if attempts >= len(self.settings.callback_retry_schedule):
            await self.mark_dead(MarkDeadInput(event_id=event.event_id, recipient=code, attempts=attempts))
            return
        workflow_id = delivery_workflow_id(event.event_id, code)
        await self.pool.execute(
            "UPDATE callback_deliveries SET delivery_workflow_id = $3, updated_at = now() "
            "WHERE event_id = $1 AND recipient = $2 AND delivery_workflow_id IS NULL",
            event.event_id, code, workflow_id,
        )
        await self._start_delivery(event.event_id, code, workflow_id, str(event.type),
                                   previous_attempts=attempts, retry_after=retry_after)

    async def _start_delivery(
        self, event_id: str, recipient: str, workflow_id: str, type: str, *,
        previous_attempts: int = 0, retry_after: float = 0.0,
    ) -> None:
        """Start the delivery workflow for the schedule's attempts after `previous_attempts`."""
        client = self.client or activity.client()
        schedule = list(self.settings.callback_retry_schedule)
        try:
            await client.start_workflow(
                DELIVERY_WORKFLOW,
                DeliveryInput(
                    event_id=event_id, recipient=recipient,
                    schedule=schedule[previous_attempts:] or schedule[-1:],
                    attempt_timeout_seconds=self.settings.callback_timeout_seconds + 30,
                    previous_attempts=previous_attempts, retry_after_seconds=retry_after,
                ),
                id=workflow_id,
                task_queue=self._task_queue(),
                # A finished delivery with this id is never started again (at-least-once,
                # not at-least-twice); a running one answers "already started".
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"回调 {type} → {recipient}",
                static_details=f"事件 event {event_id}",
            )
        except WorkflowAlreadyStartedError:
            pass

    def _task_queue(self) -> str:
        if self.task_queue:
            return self.task_queue
        if activity.in_activity():
            return activity.info().task_queue
        return self.settings.task_queue

    # one attempt ------------------------------------------------------------------------------

    @activity.defn(name="callbacks.deliver_attempt")
    async def deliver_attempt(self, req: AttemptInput) -> AttemptResult:
        """One signed POST; records the attempt and the delivery's new state.

        A delivery already on record as delivered is not sent again: that happens when the worker
        died after an attempt was accepted and recorded but before the activity completed, so the
        workflow saw a timeout and tries once more (docs/reliability.md, finding 5). Sending it
        again would make the agency deduplicate, and a non-2xx answer to that repeat would turn
        the delivered row back to pending (and, with the schedule used up, dead). A redelivery
        (`ducha callbacks redeliver`) sets the row to pending first, so it still sends."""
        status = await _patiently(lambda: self.pool.fetchval(
            "SELECT status FROM callback_deliveries WHERE event_id = $1 AND recipient = $2",
            req.event_id, req.recipient,
        ))
        if status == DeliveryStatus.DELIVERED:
            log.info("callback already delivered; not sent again", event_id=req.event_id,
                     recipient=req.recipient)
            return AttemptResult(outcome=AttemptOutcome.DELIVERED, final=True)
        return await self._attempt(req.event_id, req.recipient, require_enabled=True)

    async def _attempt(
        self, event_id: str, recipient: str, *, require_enabled: bool, timeout: float | None = None
    ) -> AttemptResult:
        """One signed POST (`timeout` seconds at most, default `callback_timeout_seconds`)."""
        row = await _patiently(lambda: self.pool.fetchrow(_ATTEMPT_SQL, event_id, recipient))
        if row is None:
            raise ApplicationError(
                f"没有该事件 / unknown callback event {event_id!r}",
                type="UnknownCallbackEvent", non_retryable=True,
            )
        made = await self._send(row, recipient, require_enabled=require_enabled,
                                timeout=timeout or self.settings.callback_timeout_seconds)
        await _patiently(lambda: self._record(event_id, [made]))
        await self._after(event_id, [made])
        return made.result

    async def _send(self, row: asyncpg.Record, recipient: str, *, require_enabled: bool,
                    timeout: float) -> _Attempt:
        """One signed POST of the event in `row` (event and endpoint columns) to `recipient`."""
        url = row["callback_url"]
        if row["party"] is None or not url:
            return _Attempt(recipient, AttemptResult(
                outcome=AttemptOutcome.DISABLED, final=True,
                error="没有登记回调地址 / no callback endpoint registered",
            ), None)
        if require_enabled and not row["callback_enabled"]:
            return _Attempt(recipient, AttemptResult(
                outcome=AttemptOutcome.DISABLED, final=True,
                error=f"回调地址已停用 / endpoint disabled: {row['disabled_reason'] or '-'}",
            ), None)
        data = row["data"]
        body = build_body(
            event_id=row["event_id"], type=row["type"], occurred_at=row["occurred_at"],
            recipient=recipient, workflow_id=row["workflow_id"], summary=row["summary"],
            data=(json.loads(data) if isinstance(data, str) else data) or {}, zone=self.settings.zone,
        )
        keys = [row["callback_secret"] or ""]
        if row["previous_valid"] and row["callback_secret_previous"]:
            keys.append(row["callback_secret_previous"])
        result, attempted = await self._post(url, body, webhook_id(row["event_id"]), keys, timeout)
        return _Attempt(recipient, result, url if attempted else None)

    async def _target(self, url: str) -> Target:
        """The checked target of `url`: without a thread for IP literals and allowlisted names,
        with the (blocking) name look-up in a thread otherwise."""
        target = check_url_offline(url, self.allowlist)
        if target is None:
            target = await asyncio.to_thread(check_url, url, self.allowlist, self.resolver)
        return target

    async def _post(
        self, url: str, body: bytes, msg_id: str, keys: list[str], timeout: float
    ) -> tuple[AttemptResult, bool]:
        """(result, whether this counts as an attempt: a request or a DNS look-up was made).
        Never raises for endpoint problems."""
        try:
            target = await self._target(url)
        except ForbiddenAddress as exc:
            return AttemptResult(outcome=AttemptOutcome.FORBIDDEN, final=True, error=exc.reason), False
        except ResolutionError as exc:
            return AttemptResult(outcome=AttemptOutcome.RETRY, final=False, error=str(exc)[:500]), True
        try:
            headers = webhook_headers(keys, msg_id, body)
        except SecretError as exc:
            return AttemptResult(
                outcome=AttemptOutcome.FAILED, final=True,
                error=f"签名密钥不可用 / signing secret unusable: {exc}",
            ), False
        headers["content-type"] = "application/json; charset=utf-8"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                answer = await self.http.post(target, body, headers)
        except (HTTPFailure, TimeoutError, OSError) as exc:
            error = str(exc) if isinstance(exc, HTTPFailure) else f"{type(exc).__name__}: {exc}"
            return AttemptResult(
                outcome=AttemptOutcome.RETRY, final=False, latency_ms=_ms_since(started), error=error[:500],
            ), True
        status = answer.status
        retry_after = parse_retry_after(answer.headers.get("retry-after"), datetime.now(UTC))
        location = answer.headers.get("location")
        result = classify_response(status, retry_after, location)
        result.latency_ms = _ms_since(started)
        return result, True

    async def _record(self, event_id: str, made: Sequence[_Attempt]) -> None:
        """Update the deliveries and, for each request made, append to the attempt log: one
        statement for all attempts of one event."""
        status = {
            AttemptOutcome.DELIVERED: DeliveryStatus.DELIVERED,
            AttemptOutcome.RETRY: DeliveryStatus.PENDING,
        }
        await self.pool.execute(
            _RECORD_SQL, event_id,
            [a.recipient for a in made],
            [str(status.get(a.result.outcome, DeliveryStatus.FAILED)) for a in made],
            [a.result.http_status for a in made],
            [a.result.error for a in made],
            [endpoint_label(a.url) if a.url else None for a in made],
            [a.result.latency_ms for a in made],
        )

    async def _after(self, event_id: str, made: Sequence[_Attempt]) -> None:
        """Disable endpoints that answered 410, and log each attempt."""
        for a in made:
            if a.result.outcome is AttemptOutcome.GONE and a.url:
                await self.pool.execute(
                    "UPDATE parties SET callback_enabled = false, disabled_reason = $3, "
                    "updated_at = now() WHERE code = $1 AND callback_url = $2",
                    a.recipient, a.url,
                    f"接收方于 {datetime.now(self.settings.zone):%Y-%m-%d %H:%M} 返回 HTTP 410 Gone",
                )
                log.warning("callback endpoint disabled after 410", recipient=a.recipient)
            log.info(
                "callback attempt", event_id=event_id, recipient=a.recipient, outcome=str(a.result.outcome),
                http_status=a.result.http_status, latency_ms=a.result.latency_ms, error=a.result.error,
            )

    # dead letter ------------------------------------------------------------------------------

    @activity.defn(name="callbacks.mark_dead")
    async def mark_dead(self, req: MarkDeadInput) -> bool:
        """Dead-letter a delivery whose retries ran out; False when it was no longer pending."""
        done = await self.pool.execute(
            "UPDATE callback_deliveries SET status = 'dead', updated_at = now(), "
            "last_error = coalesce($3, last_error) "
            "WHERE event_id = $1 AND recipient = $2 AND status = 'pending'",
            req.event_id, req.recipient, req.last_error,
        )
        log.warning("callback dead-lettered", event_id=req.event_id, recipient=req.recipient,
                    attempts=req.attempts)
        return not done.endswith(" 0")

    # operator helpers (CLI) -------------------------------------------------------------------

    async def list_failed(self, limit: int = 50) -> list[DeliveryRecord]:
        """Failed and dead-lettered deliveries, newest first."""
        rows = await self.pool.fetch(
            "SELECT d.id, d.event_id, e.type, d.recipient, d.status, d.attempts, d.last_status, "
            "d.last_error, d.delivery_workflow_id, d.updated_at "
            "FROM callback_deliveries d JOIN callback_events e USING (event_id) "
            "WHERE d.status IN ('failed', 'dead') ORDER BY d.updated_at DESC, d.id DESC LIMIT $1",
            limit,
        )
        return [DeliveryRecord(**dict(r)) for r in rows]

    async def redeliver(self, delivery_id: int, *, force: bool = False) -> str:
        """Start a new delivery workflow for one delivery; returns its workflow id."""
        workflow_id = ""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT d.event_id, d.recipient, d.status, e.type FROM callback_deliveries d "
                "JOIN callback_events e USING (event_id) WHERE d.id = $1 FOR UPDATE OF d",
                delivery_id,
            )
            if row is None:
                raise RedeliverRefused(f"没有编号为 {delivery_id} 的投递 / no delivery {delivery_id}")
            if row["status"] == DeliveryStatus.PENDING and not force:
                raise RedeliverRefused(
                    f"投递 {delivery_id} 仍在进行中 / delivery {delivery_id} is still pending "
                    "(use --force if its workflow was terminated)"
                )
            workflow_id = (
                f"{delivery_workflow_id(row['event_id'], row['recipient'])}-r{secrets.token_hex(3)}"
            )
            previous = row["status"]
            await conn.execute(
                "UPDATE callback_deliveries SET status = 'pending', delivery_workflow_id = $2, "
                "updated_at = now() WHERE id = $1",
                delivery_id, workflow_id,
            )
        try:
            await self._start_delivery(row["event_id"], row["recipient"], workflow_id, row["type"])
        except Exception:
            await self.pool.execute(
                "UPDATE callback_deliveries SET status = $2, updated_at = now() "
                "WHERE id = $1 AND delivery_workflow_id = $3",
                delivery_id, previous, workflow_id,
            )
            raise
        log.info("callback redelivery started", delivery_id=delivery_id, workflow_id=workflow_id)
        return workflow_id

    async def send_test(self, code: str) -> PingOutcome:
        """Send a `ping` to CODE's endpoint now (no retries) and report what happened.

        Raises LookupError for an unknown code or one without an endpoint.
        """
        party = await self.pool.fetchrow(_PARTY_SQL, code)
        if party is None:
            raise LookupError(f"登记册中没有该代码 / unknown registry code {code!r}")
        url = party["callback_url"]
        if not url:
            raise LookupError(f"{code} 没有登记回调地址 / {code} has no callback endpoint")
        enabled = bool(party["callback_enabled"])
        try:
            await self._target(url)
        except ForbiddenAddress as exc:
            return PingOutcome(code=code, url=url, event_id=None, outcome=AttemptOutcome.FORBIDDEN,
                               error=exc.reason, endpoint_enabled=enabled)
        except ResolutionError as exc:
            return PingOutcome(code=code, url=url, event_id=None, outcome=AttemptOutcome.RETRY,
                               error=str(exc), endpoint_enabled=enabled)
        now = datetime.now(UTC)
        event = PublishEvent(
            event_id=f"ping-{code}-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}",
            type=EventType.PING, recipients=[code], workflow_id=CLI_WORKFLOW_ID,
            summary="法治督察回调连通性测试 / callback connectivity test", data={"test": True},
            occurred_at=now,
        )
        # The ping goes out even to a disabled endpoint (that is how an operator tests it), so
        # its delivery row is written as pending whatever write_outbox would have decided.
        async with self.pool.acquire() as conn, conn.transaction():
            await write_outbox(conn, event)
            await conn.execute(
                "UPDATE callback_deliveries SET status = 'pending', last_error = NULL "
                "WHERE event_id = $1", event.event_id,
            )
        result = await self._attempt(event.event_id, code, require_enabled=False)
        if result.outcome is AttemptOutcome.RETRY:
            # A ping is not retried: what would be "try later" is a failure of the test.
            await self.pool.execute(
                "UPDATE callback_deliveries SET status = 'failed' WHERE event_id = $1", event.event_id
            )
        return PingOutcome(
            code=code, url=url, event_id=event.event_id, outcome=result.outcome,
            http_status=result.http_status, latency_ms=result.latency_ms, error=result.error,
            endpoint_enabled=enabled and result.outcome is not AttemptOutcome.GONE,
        )


async def _patiently(query):
    """Run `query()` (a database call), waiting out PostgreSQL being unreachable for up to
    DB_PATIENCE_SECONDS; then the error is raised as it is."""
    deadline = time.monotonic() + DB_PATIENCE_SECONDS
    delay = 0.25
    while True:
        try:
            return await query()
        except _DB_DOWN as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("database unreachable during a callback attempt; waiting", error=str(exc)[:200],
                        retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def _untried(row: asyncpg.Record) -> bool:
    """A pending delivery nobody has attempted or handed over yet."""
    return row["status"] == DeliveryStatus.PENDING and row["attempts"] == 0 and not row["delivery_workflow_id"]


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


# --- secret rotation (used by `ducha registry set-endpoint`) -----------------------------------


async def current_secret(pool: asyncpg.Pool, code: str) -> str | None:
    return await pool.fetchval("SELECT callback_secret FROM parties WHERE code = $1", code)


async def keep_previous_secret(pool: asyncpg.Pool, code: str, previous: str, hours: float) -> None:
    """Sign with `previous` as well for `hours` after a rotation (0 drops it at once)."""
    await pool.execute(
        "UPDATE parties SET callback_secret_previous = CASE WHEN $3::float8 > 0 THEN $2 END, "
        "callback_secret_previous_until = CASE WHEN $3::float8 > 0 "
        "THEN now() + make_interval(secs => $3::float8 * 3600) END WHERE code = $1",
        code, previous, hours,
    )
