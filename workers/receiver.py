"""Demo callback receiver (`ducha receiver`, started by `ducha up`).

Listens on 127.0.0.1 for `POST /hooks/{code}`, looks up {code}'s secret in PostgreSQL, verifies
the Standard Webhooks signature, drops repeats of a webhook-id, and prints one line per event:

    2026-03-02 10:15:03  court  clue.transferred  线索 2026-0007 已移送县法院  [verified]

Answers 204 when accepted (also for a repeat), 401 on a bad signature, 404 for an unknown path
or code, 400 for a body that is not JSON. Stops cleanly on SIGINT/SIGTERM.
This is what an agency's endpoint does, in miniature (docs/agencies.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO
from zoneinfo import ZoneInfo

import asyncpg

from config.settings import Settings
from rules.signing import SignatureError, verify
from workers.db import create_pool

HOST = "127.0.0.1"
MAX_BODY_BYTES = 1_000_000
MAX_HEADER_LINES = 100
DEDUPE_CAPACITY = 10_000
READ_TIMEOUT_SECONDS = 15

_REASONS = {204: "No Content", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 413: "Payload Too Large", 503: "Service Unavailable"}


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

    async def on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                reply = await self._read_and_handle(reader)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, ConnectionError):
            reply = Reply(400, "malformed request")
        body = reply.message.encode()
        head = (
            f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, '')}\r\n"
            f"Content-Length: {0 if reply.status == 204 else len(body)}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(ConnectionError):
            writer.write(head + (b"" if reply.status == 204 else body))
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def _read_and_handle(self, reader: asyncio.StreamReader) -> Reply:
        request_line = (await reader.readline()).decode("latin-1").strip()
        method, path, _version = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            return Reply(400, "too many headers")
        length = int(headers.get("content-length", "0"))
        if length > MAX_BODY_BYTES:
            return Reply(413, "body too large")
        body = await reader.readexactly(length) if length else b""
        return await self.handle(method, path, headers, body)


async def run_receiver(
    port: int, settings: Settings, stop: asyncio.Event, out: TextIO = sys.stdout
) -> None:
    """Serve until `stop` is set."""
    receiver = Receiver(settings.postgres_url, settings.zone, out)
    server = await asyncio.start_server(receiver.on_connection, HOST, port)
    print(f"receiver: listening on http://{HOST}:{port}/hooks/<code>", file=sys.stderr, flush=True)
    try:
        async with server:
            await stop.wait()
    finally:
        await receiver.close()


def serve(port: int, settings: Settings) -> None:
    """`ducha receiver`: run in the foreground until SIGINT/SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_receiver(port, settings, stop)

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"receiver: cannot listen on {HOST}:{port}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    print("receiver: stopped", file=sys.stderr, flush=True)
