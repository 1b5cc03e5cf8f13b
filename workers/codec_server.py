"""`ducha codec-server`: Temporal's remote codec protocol, so the Web UI (and `temporal ...
--codec-endpoint`) shows and accepts plain JSON while Temporal stores ciphertext.

    POST {prefix}/decode   {"payloads": [<Payload as proto JSON>]} -> same shape, decrypted
    POST {prefix}/encode   {"payloads": [...]}                      -> same shape, encrypted

Only the last path segment counts (the protocol lets the endpoint live under any prefix).
Browsers may call it only from the configured UI origins (DUCHA_CODEC_CORS_ORIGINS, default the
embedded Web UI): any request that carries another `Origin` is refused, and preflights are
answered for the allowed ones only. Requests without `Origin` (the `temporal` CLI, curl) are not
browser requests and need no CORS. `X-Namespace` (the UI and the CLI send it) must name the
configured namespace. Payload contents are never logged.

It decrypts for whoever can reach it: it listens on 127.0.0.1 by default, and in production
belongs behind the same authenticating proxy as the Web UI (docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from temporalio.api.common.v1 import Payload, Payloads

from config.settings import Settings
from workers.codec import CodecError, EncryptionCodec, codec_from_settings

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_HEADER_LINES = 100
READ_TIMEOUT_SECONDS = 30
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"
_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 413: "Payload Too Large", 415: "Unsupported Media Type"}


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def ui_origins(settings: Settings) -> list[str]:
    """The browser origins allowed to call the codec server."""
    if settings.codec_cors_origins:
        return list(settings.codec_cors_origins)
    return [f"http://127.0.0.1:{settings.ui_port}", f"http://localhost:{settings.ui_port}"]


class CodecService:
    """Request handling, independent of the socket server."""

    def __init__(self, codec: EncryptionCodec, namespace: str, origins: Sequence[str]) -> None:
        self.codec = codec
        self.namespace = namespace
        self.origins = frozenset(origins)

    async def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        origin = headers.get("origin")
        if origin is not None and origin not in self.origins:
            print(f"codec-server: refused origin {origin!r}", file=sys.stderr, flush=True)
            return Reply(403, b"origin not allowed")
        reply = await self._route(method, target, headers, body)
        if origin is not None:
            reply.headers.update({
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Vary": "Origin",
            })
        return reply

    async def _route(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        path = target.split("?", 1)[0].rstrip("/")
        operation = path.rsplit("/", 1)[-1]
        if operation not in ("encode", "decode"):
            return Reply(404, b"unknown path: POST .../encode or .../decode")
        if method == "OPTIONS":
            allow = {"Access-Control-Allow-Methods": "POST, OPTIONS",
                     "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                     "Access-Control-Max-Age": "600", "Allow": "POST, OPTIONS"}
            if headers.get("access-control-request-private-network") == "true":
                allow["Access-Control-Allow-Private-Network"] = "true"
            return Reply(204, headers=allow)
        if method != "POST":
            return Reply(405, b"POST only", headers={"Allow": "POST, OPTIONS"})
        namespace = headers.get("x-namespace")
        if namespace is None:
            return Reply(400, f"X-Namespace header required (this server serves {self.namespace!r})".encode())
        if namespace != self.namespace:
            return Reply(403, f"namespace {namespace!r} is not served here".encode())
        if headers.get("content-type", "").split(";", 1)[0].strip().lower() != "application/json":
            return Reply(415, b"Content-Type must be application/json")
        try:
            payloads = parse_payloads(body)
        except ValueError as exc:
            return Reply(400, str(exc).encode())
        try:
            if operation == "encode":
                result = await self.codec.encode(payloads)
            else:
                result = await self.codec.decode(payloads)
        except CodecError as exc:
            return Reply(400, str(exc).encode())
        return Reply(200, render_payloads(result), "application/json")

    async def on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                reply = await self._read_and_handle(reader)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, ConnectionError):
            reply = Reply(400, b"malformed request")
        head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, '')}",
                f"Content-Length: {len(reply.body)}", "Connection: close",
                "Cache-Control: no-store", "X-Content-Type-Options: nosniff"]
        if reply.body:
            head.append(f"Content-Type: {reply.content_type}")
        head += [f"{name}: {value}" for name, value in reply.headers.items()]
        with contextlib.suppress(ConnectionError):
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def _read_and_handle(self, reader: asyncio.StreamReader) -> Reply:
        request_line = (await reader.readline()).decode("latin-1").strip()
        method, target, _version = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            return Reply(400, b"too many headers")
        length = int(headers.get("content-length", "0"))
        if length > MAX_BODY_BYTES:
            return Reply(413, b"body too large")
        body = await reader.readexactly(length) if length else b""
        return await self.handle(method, target, headers, body)


def parse_payloads(body: bytes) -> list[Payload]:
    """`{"payloads": [...]}` in the proto JSON form (metadata values and data in base64)."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise ValueError("body is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("payloads", []), list):
        raise ValueError('body must be {"payloads": [...]}')
    try:
        return list(ParseDict(doc, Payloads(), ignore_unknown_fields=True).payloads)
    except ParseError as exc:
        raise ValueError(f"not Payloads in proto JSON form: {exc}") from None


def render_payloads(payloads: Sequence[Payload]) -> bytes:
    return json.dumps({"payloads": [MessageToDict(p) for p in payloads]}).encode()


async def start_codec_server(settings: Settings, port: int, host: str = "127.0.0.1") -> asyncio.Server:
    """Listen on host:port (0 picks a free port); needs configured keys."""
    codec = codec_from_settings(settings)
    if codec is None:
        raise SystemExit(
            "codec-server: no encryption keys: set DUCHA_CODEC_KEYS and DUCHA_CODEC_KEY_ID, or "
            "DUCHA_CODEC_KEYS_FILE (`ducha up` creates {data_dir}/codec-keys.json)"
        )
    service = CodecService(codec, settings.namespace, ui_origins(settings))
    return await asyncio.start_server(service.on_connection, host, port)


def serve(port: int, settings: Settings, host: str = "127.0.0.1") -> None:
    """`ducha codec-server`: run in the foreground until SIGINT/SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server = await start_codec_server(settings, port, host)
        print(f"codec-server: listening on http://{host}:{port} (namespace {settings.namespace}; "
              f"browser origins {', '.join(ui_origins(settings))})", file=sys.stderr, flush=True)
        async with server:
            await stop.wait()

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"codec-server: cannot listen on {host}:{port}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    print("codec-server: stopped", file=sys.stderr, flush=True)
