"""`ducha codec-server`: Temporal's remote codec protocol, so the Web UI (and `temporal ...
--codec-endpoint`) shows and accepts plain JSON while Temporal stores ciphertext.

    POST {prefix}/decode   {"payloads": [<Payload as proto JSON>]} -> same shape, decrypted
    POST {prefix}/encode   {"payloads": [...]}                      -> same shape, encrypted

Only the last path segment counts (the protocol lets the endpoint live under any prefix).
Browsers may call it only from the configured UI origins (DUCHA_CODEC_CORS_ORIGINS, default the
embedded Web UI): any request that carries another `Origin` is refused, and preflights are
answered (Starlette's CORSMiddleware) for the allowed ones only. Requests without `Origin` (the
`temporal` CLI, curl) are not browser requests and need no CORS. `X-Namespace` (the UI and the
CLI send it) must name the configured namespace. Payload contents are never logged.

With login on (DUCHA_CODEC_OIDC_ISSUER + DUCHA_CODEC_OIDC_AUDIENCE) every encode/decode needs
the Web UI's access token (`Authorization: Bearer`, sent by the UI when "pass access token" is
on), verified by workers/oidc.py; without a valid one the answer is 401. Without login it
decrypts for whoever can reach it: it listens on 127.0.0.1 by default, and in production belongs
behind the same authenticating proxy as the Web UI (docs/deployment.md). Connections served at
once are bounded (DUCHA_CODEC_MAX_CONNECTIONS, uvicorn's limit_concurrency; beyond it: 503).

A Starlette app served by uvicorn (workers/http_server.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence

from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload, Payloads

from config.settings import Settings
from workers.codec import CodecError, EncryptionCodec, codec_from_settings
from workers.http_server import RunningServer, run_foreground, start_app
from workers.oidc import TokenError, TokenVerifier

MAX_BODY_BYTES = 16 * 1024 * 1024
ALLOWED_HEADERS = ["Content-Type", "X-Namespace", "Authorization"]
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def ui_origins(settings: Settings) -> list[str]:
    """The browser origins allowed to call the codec server."""
    if settings.codec_cors_origins:
        return list(settings.codec_cors_origins)
    return [f"http://127.0.0.1:{settings.ui_port}", f"http://localhost:{settings.ui_port}"]


def _text(status: int, message: str = "", headers: dict[str, str] | None = None) -> Response:
    if status == 204:
        return Response(status_code=204, headers={**NO_STORE, **(headers or {})})
    return PlainTextResponse(message, status, headers={**NO_STORE, **(headers or {})})


class OriginGate:
    """Outermost layer: a browser request from an origin that is not allowed gets 403 and no
    CORS headers (CORSMiddleware alone would still run the request and answer without them)."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self.origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            origin = dict(scope["headers"]).get(b"origin")
            if origin is not None and origin.decode("latin-1") not in self.origins:
                print(f"codec-server: refused origin {origin.decode('latin-1')!r}", file=sys.stderr, flush=True)
                await _text(403, "origin not allowed")(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _CORS(CORSMiddleware):
    """Starlette's CORS, answering a successful preflight with 204 No Content."""

    def preflight_response(self, request_headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 200:
            return response
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() not in ("content-length", "content-type")}
        return Response(status_code=204, headers={**headers, "Allow": "POST, OPTIONS"})


class CodecService:
    """Request handling: the protocol, the namespace and (with login on) the bearer token."""

    def __init__(self, codec: EncryptionCodec, namespace: str, verifier: TokenVerifier | None = None) -> None:
        self.codec = codec
        self.namespace = namespace
        self.verifier = verifier

    async def endpoint(self, request: Request) -> Response:
        operation = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if operation not in ("encode", "decode"):
            return _text(404, "unknown path: POST .../encode or .../decode")
        if request.method == "OPTIONS":
            return _text(204, headers={"Allow": "POST, OPTIONS"})
        if request.method != "POST":
            return _text(405, "POST only", {"Allow": "POST, OPTIONS"})
        if self.verifier is not None:
            try:
                await self.verifier.verify_header(request.headers.get("authorization"))
            except TokenError as exc:
                return _text(401, str(exc), {"WWW-Authenticate": 'Bearer realm="ducha-codec"'})
        namespace = request.headers.get("x-namespace")
        if namespace is None:
            return _text(400, f"X-Namespace header required (this server serves {self.namespace!r})")
        if namespace != self.namespace:
            return _text(403, f"namespace {namespace!r} is not served here")
        if request.headers.get("content-type", "").split(";", 1)[0].strip().lower() != "application/json":
            return _text(415, "Content-Type must be application/json")
        body = await _read_limited(request, MAX_BODY_BYTES)
        if body is None:
            return _text(413, "body too large")
        try:
            payloads = parse_payloads(body)
        except ValueError as exc:
            return _text(400, str(exc))
        try:
            if operation == "encode":
                result = await self.codec.encode(payloads)
            else:
                result = await self.codec.decode(payloads)
        except CodecError as exc:
            return _text(400, str(exc))
        return Response(render_payloads(result), 200, headers=NO_STORE, media_type="application/json")


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is (or announces to be) longer than `limit`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(codec: EncryptionCodec, settings: Settings, verifier: TokenVerifier | None = None) -> Starlette:
    service = CodecService(codec, settings.namespace, verifier)
    origins = ui_origins(settings)
    return Starlette(
        routes=[Route("/{path:path}", service.endpoint, methods=ALL_METHODS)],
        middleware=[
            Middleware(OriginGate, origins=origins),
            Middleware(_CORS, allow_origins=origins, allow_methods=["POST", "OPTIONS"],
                       allow_headers=ALLOWED_HEADERS, allow_credentials=True,
                       allow_private_network=True, max_age=600),
        ],
    )


def verifier_from_settings(settings: Settings) -> TokenVerifier | None:
    if not settings.codec_oidc_issuer:
        return None
    return TokenVerifier(settings.codec_oidc_issuer, settings.codec_oidc_audience,
                         settings.codec_oidc_jwks_url)


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


async def start_codec_server(settings: Settings, port: int, host: str = "127.0.0.1") -> RunningServer:
    """Listen on host:port (0 picks a free port); needs configured keys."""
    codec = codec_from_settings(settings)
    if codec is None:
        raise SystemExit(
            "codec-server: no encryption keys: set DUCHA_CODEC_KEYS and DUCHA_CODEC_KEY_ID, or "
            "DUCHA_CODEC_KEYS_FILE (`ducha up` creates {data_dir}/codec-keys.json)"
        )
    verifier = verifier_from_settings(settings)
    app = build_app(codec, settings, verifier)
    # uvicorn counts the connection being served itself: N + 1 serves N at once.
    server = await start_app(app, host, port, limit_concurrency=settings.codec_max_connections + 1)
    if verifier is not None:
        server.closers.append(verifier.close)
    return server


def serve(port: int, settings: Settings, host: str = "127.0.0.1") -> None:
    """`ducha codec-server`: run in the foreground until SIGINT/SIGTERM."""

    async def main(stop: asyncio.Event) -> None:
        server = await start_codec_server(settings, port, host)
        login = (f"login: bearer tokens of {settings.codec_oidc_issuer}" if settings.codec_oidc_issuer
                 else "no login")
        print(f"codec-server: listening on http://{host}:{server.port} (namespace {settings.namespace}; "
              f"browser origins {', '.join(ui_origins(settings))}; {login})", file=sys.stderr, flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop()

    run_foreground("codec-server", host, port, main)
