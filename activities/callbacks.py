"""Signed callbacks to agencies and units (docs/agencies.md).

`publish` records an event and one delivery per recipient in PostgreSQL, then makes each
delivery's first signed POST itself (all recipients at once, each bounded by
`callback_inline_timeout_seconds`, so a business workflow waits seconds at most, never for a
retry). A delivery that needs a retry is handed to one `CallbackDelivery` workflow, which owns the
rest of the retry schedule and calls `deliver_attempt` for each single signed POST. Most events
are delivered at the first attempt and cost no workflow at all (docs/benchmarks.md, overhead).
Signing secrets are read here, inside the activity, and never travel through workflow inputs,
outputs or logs.
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
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import structlog
from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from rules.address_guard import (
    Allowlist,
    ForbiddenAddress,
    ResolutionError,
    Resolver,
    Target,
    check_url,
    system_resolver,
)
from rules.signing import SecretError, webhook_headers
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
    return f"callback-{event_id}-{recipient}"


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


def make_http_client(settings: Settings) -> httpx.AsyncClient:
    """The HTTP client callbacks expect: no redirects, no proxies from the environment."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(settings.callback_timeout_seconds),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        headers={"user-agent": USER_AGENT},
    )


# --- the activities -----------------------------------------------------------------------------


_PARTY_SQL = (
    "SELECT code, callback_url, callback_secret, callback_secret_previous, "
    "coalesce(callback_secret_previous_until > now(), false) AS previous_valid, "
    "callback_enabled, disabled_reason, active FROM parties WHERE code = $1"
)


class CallbackActivities:
    """Callback I/O. `client` is used to start delivery workflows; when None, the activity's own
    client (`activity.client()`) is used, which is what a worker needs. `task_queue` defaults to
    the calling activity's task queue, else `settings.task_queue`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        client: Client | None = None,
        http: httpx.AsyncClient | None = None,
        *,
        task_queue: str | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.client = client
        self._http = http
        self.task_queue = task_queue
        self.resolver = resolver
        self.allowlist = Allowlist.parse(settings.callback_allowlist)

    @property
    def http(self) -> httpx.AsyncClient:
        """The injected HTTP client; one is made on first use when none was given."""
        if self._http is None:
            self._http = make_http_client(self.settings)
        return self._http

    def activity_methods(self) -> list:
        """The bound activities to register on a worker."""
        return [self.publish, self.deliver_attempt, self.mark_dead]

    # publish ----------------------------------------------------------------------------------

    @activity.defn(name="callbacks.publish")
    async def publish(self, event: PublishEvent) -> PublishResult:
        """Record the event and its deliveries, make each delivery's first attempt, and hand
        each one that needs a retry to its own delivery workflow.

        Safe to run again: a delivery already decided is left alone, one already handed over is
        only handed over again (the workflow id makes that a no-op), and the first attempt is
        made only while a delivery has none on record."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self.write_outbox(conn, event)
        return await self.deliver_recorded(event)

    async def write_outbox(self, conn: asyncpg.Connection, event: PublishEvent) -> None:
        """The outbox half of publish, inside the caller's transaction: the event row and one
        delivery row per recipient (skipped at once when the recipient has no enabled endpoint)."""
        recipients = list(dict.fromkeys(event.recipients))
        self._check_size(event, recipients)
        await self._record_event(conn, event)
        parties = {
            r["code"]: r
            for r in await conn.fetch(
                "SELECT code, callback_url, callback_enabled, disabled_reason, active "
                "FROM parties WHERE code = ANY($1::text[])", recipients,
            )
        }
        for code in recipients:
            reason = _skip_reason(parties.get(code))
            await conn.execute(
                "INSERT INTO callback_deliveries (event_id, recipient, status, last_error) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (event_id, recipient) DO NOTHING",
                event.event_id, code,
                DeliveryStatus.SKIPPED if reason else DeliveryStatus.PENDING, reason,
            )

    async def deliver_recorded(self, event: PublishEvent) -> PublishResult:
        """The delivery half: the first attempt of each delivery of an event already in the
        outbox that has none on record, the hand-over of the others. Safe to call again."""
        recipients = list(dict.fromkeys(event.recipients))
        rows = {
            r["recipient"]: r
            for r in await self.pool.fetch(
                "SELECT recipient, status, attempts, delivery_workflow_id "
                "FROM callback_deliveries WHERE event_id = $1 AND recipient = ANY($2::text[])",
                event.event_id, recipients,
            )
        }
        queued = [c for c in recipients if rows[c]["status"] != DeliveryStatus.SKIPPED]
        skipped = [c for c in recipients if rows[c]["status"] == DeliveryStatus.SKIPPED]
        # Only deliveries still pending are worked on; finished ones are never sent again here.
        pending = [rows[c] for c in recipients if rows[c]["status"] == DeliveryStatus.PENDING]
        limit = asyncio.Semaphore(_DELIVER_CONCURRENCY)

        async def deliver(row: asyncpg.Record) -> None:
            async with limit:
                await self._deliver(event, row)

        await asyncio.gather(*(deliver(r) for r in pending))
        log.info("callback event published", event_id=event.event_id, type=str(event.type),
                 queued=queued, skipped=skipped)
        return PublishResult(event_id=event.event_id, queued=queued, skipped=skipped)

    async def _deliver(self, event: PublishEvent, row: asyncpg.Record) -> None:
        """One pending delivery of a publish: the first attempt here, the retries in a workflow."""
        code = row["recipient"]
        if row["delivery_workflow_id"]:  # handed over by an earlier run of this publish
            await self._start_delivery(event.event_id, code, row["delivery_workflow_id"], event.type,
                                       previous_attempts=row["attempts"])
            return
        attempts, retry_after = row["attempts"], 0.0
        if attempts == 0:
            result = await self._attempt(event.event_id, code, require_enabled=True,
                                         timeout=self.settings.callback_inline_timeout_seconds)
            if result.final:
                return
            attempts, retry_after = 1, result.retry_after or 0.0
        await self._hand_over(event, code, attempts, retry_after)

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
        await self._start_delivery(event.event_id, code, workflow_id, event.type,
                                   previous_attempts=attempts, retry_after=retry_after)

    def _check_size(self, event: PublishEvent, recipients: Sequence[str]) -> None:
        try:
            body = build_body(
                event_id=event.event_id, type=str(event.type), occurred_at=event.occurred_at,
                recipient=max(recipients, key=len), workflow_id=event.workflow_id,
                summary=event.summary, data=dict(event.data), zone=self.settings.zone,
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

    async def _record_event(self, conn: asyncpg.Connection, event: PublishEvent) -> None:
        inserted = await conn.fetchval(
            "INSERT INTO callback_events (event_id, type, workflow_id, summary, data, occurred_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            event.event_id, str(event.type), event.workflow_id, event.summary,
            dict(event.data), event.occurred_at,
        )
        if inserted is None:
            old = await conn.fetchrow(
                "SELECT type, workflow_id FROM callback_events WHERE event_id = $1", event.event_id
            )
            if old["type"] != str(event.type) or old["workflow_id"] != event.workflow_id:
                raise ApplicationError(
                    f"事件编号已被另一事件使用 / event_id {event.event_id!r} was already used by "
                    f"{old['type']} of {old['workflow_id']}",
                    type="CallbackEventConflict", non_retryable=True,
                )

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
        event = await _patiently(lambda: self.pool.fetchrow(
            "SELECT * FROM callback_events WHERE event_id = $1", event_id
        ))
        if event is None:
            raise ApplicationError(
                f"没有该事件 / unknown callback event {event_id!r}",
                type="UnknownCallbackEvent", non_retryable=True,
            )
        party = await _patiently(lambda: self.pool.fetchrow(_PARTY_SQL, recipient))
        if party is None or not party["callback_url"]:
            result = AttemptResult(
                outcome=AttemptOutcome.DISABLED, final=True,
                error="没有登记回调地址 / no callback endpoint registered",
            )
            await self._record(event_id, recipient, None, result)
            return result
        if require_enabled and not party["callback_enabled"]:
            result = AttemptResult(
                outcome=AttemptOutcome.DISABLED, final=True,
                error=f"回调地址已停用 / endpoint disabled: {party['disabled_reason'] or '-'}",
            )
            await self._record(event_id, recipient, None, result)
            return result
        url = party["callback_url"]
        body = build_body(
            event_id=event["event_id"], type=event["type"], occurred_at=event["occurred_at"],
            recipient=recipient, workflow_id=event["workflow_id"], summary=event["summary"],
            data=event["data"] or {}, zone=self.settings.zone,
        )
        keys = [party["callback_secret"] or ""]
        if party["previous_valid"] and party["callback_secret_previous"]:
            keys.append(party["callback_secret_previous"])
        result, attempted = await self._post(
            url, body, webhook_id(event_id), keys, timeout or self.settings.callback_timeout_seconds
        )
        await _patiently(lambda: self._record(event_id, recipient, url if attempted else None, result))
        if result.outcome is AttemptOutcome.GONE:
            await self.pool.execute(
                "UPDATE parties SET callback_enabled = false, disabled_reason = $3, "
                "updated_at = now() WHERE code = $1 AND callback_url = $2",
                recipient, url,
                f"接收方于 {datetime.now(self.settings.zone):%Y-%m-%d %H:%M} 返回 HTTP 410 Gone",
            )
            log.warning("callback endpoint disabled after 410", recipient=recipient)
        log.info(
            "callback attempt", event_id=event_id, recipient=recipient,
            outcome=str(result.outcome), http_status=result.http_status,
            latency_ms=result.latency_ms, error=result.error,
        )
        return result

    async def _post(
        self, url: str, body: bytes, msg_id: str, keys: list[str], timeout: float
    ) -> tuple[AttemptResult, bool]:
        """(result, whether this counts as an attempt: a request or a DNS look-up was made).
        Never raises for endpoint problems."""
        try:
            target = await asyncio.to_thread(check_url, url, self.allowlist, self.resolver)
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
        last_error = ""
        for request_url, extra_headers in _connect_plan(target):
            try:
                async with asyncio.timeout(timeout):
                    async with self.http.stream(
                        "POST", request_url, content=body, headers={**headers, **extra_headers},
                        follow_redirects=False, timeout=timeout,
                    ) as resp:
                        status = resp.status_code
                        retry_after = parse_retry_after(
                            resp.headers.get("retry-after"), datetime.now(UTC)
                        )
                        location = resp.headers.get("location")
            except httpx.ConnectError as exc:
                last_error = f"ConnectError: {exc}"
                continue  # try the next checked address
            except (httpx.HTTPError, TimeoutError, OSError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                break
            result = classify_response(status, retry_after, location)
            result.latency_ms = _ms_since(started)
            return result, True
        return AttemptResult(
            outcome=AttemptOutcome.RETRY, final=False, latency_ms=_ms_since(started),
            error=(last_error or "no address to connect to")[:500],
        ), True

    async def _record(
        self, event_id: str, recipient: str, url: str | None, result: AttemptResult
    ) -> None:
        """Update the delivery row and, when a request was made, append to the attempt log."""
        status = {
            AttemptOutcome.DELIVERED: DeliveryStatus.DELIVERED,
            AttemptOutcome.RETRY: DeliveryStatus.PENDING,
        }.get(result.outcome, DeliveryStatus.FAILED)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO callback_deliveries (event_id, recipient) VALUES ($1, $2) "
                "ON CONFLICT (event_id, recipient) DO NOTHING",
                event_id, recipient,
            )
            attempt_no = await conn.fetchval(
                "UPDATE callback_deliveries SET attempts = attempts + $3, status = $4, "
                "last_status = $5, last_error = $6, updated_at = now(), "
                "delivered_at = CASE WHEN $4 = 'delivered' THEN now() ELSE delivered_at END "
                "WHERE event_id = $1 AND recipient = $2 RETURNING attempts",
                event_id, recipient, 1 if url else 0, status, result.http_status, result.error,
            )
            if url:
                await conn.execute(
                    "INSERT INTO callback_attempts (event_id, recipient, endpoint, attempt_no, "
                    "http_status, latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    event_id, recipient, endpoint_label(url), attempt_no, result.http_status,
                    result.latency_ms, result.error,
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
            await asyncio.to_thread(check_url, url, self.allowlist, self.resolver)
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
        async with self.pool.acquire() as conn, conn.transaction():
            await self._record_event(conn, event)
            await conn.execute(
                "INSERT INTO callback_deliveries (event_id, recipient) VALUES ($1, $2)",
                event.event_id, code,
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


def _skip_reason(party: asyncpg.Record | None) -> str | None:
    if party is None:
        return "登记册中没有该代码 / unknown registry code"
    if not party["active"]:
        return "该单位已停用 / party inactive"
    if not party["callback_url"]:
        return "没有登记回调地址 / no callback endpoint"
    if not party["callback_enabled"]:
        return f"回调地址已停用 / endpoint disabled: {party['disabled_reason'] or '-'}"
    return None


def _connect_plan(target: Target) -> list[tuple[str, dict[str, str]]]:
    """Where to send: for plain http, each checked address in turn with the original Host
    header, so a second DNS answer cannot redirect the request (DNS rebinding). For https the
    name is used as-is: certificate verification already ties the connection to the name."""
    if target.scheme != "http" or target.allowlisted and not target.addresses:
        return [(target.url, {})]
    url = httpx.URL(target.url)
    host_header = url.netloc.decode("ascii")
    plan = []
    for address in target.addresses:
        if address == target.host:
            plan.append((target.url, {}))
        else:
            plan.append((str(url.copy_with(host=address)), {"host": host_header}))
    return plan


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
