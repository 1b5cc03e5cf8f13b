"""Demo callback receiver (`ducha receiver`, started by `ducha up`).

Listens on 127.0.0.1 for `POST /hooks/{code}`, looks up {code}'s secret in PostgreSQL, verifies
the Standard Webhooks signature, drops repeats of a webhook-id, and prints one line per event:

    2026-03-02 10:15:03  court  clue.transferred  线索 2026-0007 已移送县法院  [verified]

Answers 204 when accepted (also for a repeat), 401 on a bad signature, 404 for an unknown path
or code, 400 for a body that is not JSON. Stops cleanly on SIGINT/SIGTERM.
This is what an agency's endpoint does, in miniature (docs/agencies.md).

A Starlette app served by uvicorn (workers/http_server.py); connections are kept alive between
requests (KEEP_ALIVE_SECONDS), so a sender that reuses its connections pays no new handshake.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO
from zoneinfo import ZoneInfo

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from config.settings import Settings
from rules.signing import SignatureError, verify
from workers.db import create_pool
from workers.http_server import run_foreground, start_app

HOST = "127.0.0.1"
MAX_BODY_BYTES = 1_000_000
DEDUPE_CAPACITY = 10_000
KEEP_ALIVE_SECONDS = 30
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass
class Reply:
    status: int
    message: str = ""


class Receiver:
    """Request handling, independent of the socket server (easy to test)."""

    def __init__(self, postgres_url: str, zone: ZoneInfo, out: TextIO = sys.stdout) -> None:
        self.postgres_url = postgres_url
        self.zone = zone
        self.out = out
        self.pool: asyncpg.Pool | None = None
        self.seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def _secrets(self, code: str) -> list[str] | None:
        if self.pool is None:
            self.pool = await create_pool(self.postgres_url, min_size=0, max_size=2)
        row = await self.pool.fetchrow(
            "SELECT callback_secret, callback_secret_previous, "
            "coalesce(callback_secret_previous_until > now(), false) AS previous_valid "
            "FROM parties WHERE code = $1",
            code,
        )
        if row is None or not row["callback_secret"]:
            return None
        keys = [row["callback_secret"]]
        if row["previous_valid"] and row["callback_secret_previous"]:
            keys.append(row["callback_secret_previous"])
        return keys

    async def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        prefix = "/hooks/"
        if not path.startswith(prefix) or "/" in path[len(prefix):] or path == prefix:
            return Reply(404, "unknown path")
        if method != "POST":
            return Reply(405, "POST only")
        code = path[len(prefix):].split("?", 1)[0]
        try:
            keys = await self._secrets(code)
        except (OSError, asyncpg.PostgresError) as exc:
            print(f"receiver: PostgreSQL unavailable: {exc}", file=sys.stderr, flush=True)
            return Reply(503, "registry unavailable")
        if keys is None:
            return Reply(404, f"unknown code {code}")
        try:
            msg_id = verify(keys, headers, body)
        except SignatureError as exc:
            print(f"receiver: {code}: rejected: {exc}", file=sys.stderr, flush=True)
            return Reply(401, str(exc))
        key = (code, msg_id)
        if key in self.seen:
            self.seen.move_to_end(key)
            return Reply(204)
        try:
            event = json.loads(body)
        except ValueError:
            return Reply(400, "body is not JSON")
        self.seen[key] = None
        while len(self.seen) > DEDUPE_CAPACITY:
            self.seen.popitem(last=False)
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        now = datetime.now(self.zone).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{now}  {code}  {event.get('type', '?')}  {data.get('summary', '')}  [verified]",
              file=self.out, flush=True)
        return Reply(204)

    async def endpoint(self, request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            reply = Reply(413, "body too large")
        else:
            body = await request.body()
            if len(body) > MAX_BODY_BYTES:
                reply = Reply(413, "body too large")
            else:
                reply = await self.handle(request.method, request.url.path, dict(request.headers), body)
        if reply.status == 204:
            return Response(status_code=204)
        return PlainTextResponse(reply.message, reply.status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.endpoint, methods=ALL_METHODS)])


async def run_receiver(
    port: int, settings: Settings, stop: asyncio.Event, out: TextIO = sys.stdout
) -> None:
    """Serve until `stop` is set."""
    receiver = Receiver(settings.postgres_url, settings.zone, out)
    try:
        server = await start_app(receiver.app(), HOST, port, keep_alive_seconds=KEEP_ALIVE_SECONDS)
        print(f"receiver: listening on http://{HOST}:{server.port}/hooks/<code>", file=sys.stderr, flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop()
    finally:
        await receiver.close()


def serve(port: int, settings: Settings) -> None:
    """`ducha receiver`: run in the foreground until SIGINT/SIGTERM."""
    run_foreground("receiver", HOST, port, lambda stop: run_receiver(port, settings, stop))
