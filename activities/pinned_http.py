"""The HTTP client of callbacks, pinned to the addresses the SSRF guard checked.

`check_url` (rules/address_guard.py) resolves a callback's host once and checks every address.
The request must then go to one of those addresses and nowhere else: if httpx resolved the name
again, a DNS answer that changed in between (DNS rebinding: first a public address, then
127.0.0.1) would send a signed callback into our own network.

The pinning is done below httpx, in the network backend of its connection pool (httpcore's
documented extension point for "non-standard DNS requirements"): while a request runs inside
`pinned(target)`, opening a TCP connection to `target.host` connects to `target.addresses` in
turn and never resolves the name; opening one to any other host, or outside `pinned`, is refused.
The URL is not rewritten, so httpx sends the original Host header, uses the name for TLS SNI and
checks the certificate against the name, and its pool keeps one set of keep-alive connections
per endpoint (scheme, host, port). Rewriting the URL to the IP address with a `sni_hostname`
extension would do the first three, but then two https endpoints on one IP address would share
pooled connections, and the second name's requests would ride on a TLS session whose
certificate was only checked for the first name.

Only a client made by `make_pinned_client` pins; `is_pinned_client` tells them apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import select
import socket
import ssl
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

from rules.address_guard import Target

# The checked target of the request running in this task (asyncio copies the context per task).
_PIN: ContextVar[Target | None] = ContextVar("callback_pin", default=None)
_PINNED_CLIENTS: weakref.WeakSet[httpx.AsyncClient] = weakref.WeakSet()


@contextlib.contextmanager
def pinned(target: Target) -> Iterator[None]:
    """Requests made inside connect only to `target`'s checked addresses."""
    token = _PIN.set(target)
    try:
        yield
    finally:
        _PIN.reset(token)


def _same_host(wire: str, checked: str) -> bool:
    a, b = wire.rstrip(".").lower(), checked.rstrip(".").lower()
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b.strip("[]"))
    except ValueError:
        return False


def _readable(sock: socket.socket | None) -> bool:
    """Whether a read would not block: the server sent data or closed (what httpcore asks of an
    idle kept-alive connection before reusing it)."""
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore.AsyncNetworkStream):
    """The backend's stream with two savings, both measured in the callback bench: the request
    head and body go out in one send (httpcore writes them separately; they are held until the
    response is read, or 64 KiB are waiting), and the socket behind it is looked up once (anyio
    builds a table of attributes on every look-up, and httpcore looks up every idle connection's
    socket each time any request starts or ends)."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self.inner = inner
        self._pending = bytearray()
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def _flush(self, timeout: float | None) -> None:
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            await self.inner.write(data, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._pending += buffer
        if len(self._pending) >= 65_536:
            await self._flush(timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._flush(timeout)
        return await self.inner.read(max_bytes, timeout)

    async def aclose(self) -> None:
        self._pending.clear()
        await self.inner.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        await self._flush(timeout)
        return _Stream(await self.inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "socket":
            return self._socket
        if info == "is_readable":
            return _readable(self._socket)
        return self.inner.get_extra_info(info)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the pinned addresses of the current request, in order; refuses the rest."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        target = _PIN.get()
        if target is None or target.port != port or not _same_host(host, target.host):
            raise httpcore.ConnectError(
                f"未经地址检查的连接被拒绝 / refused: {host}:{port} was not checked by the address guard"
            )
        if not target.addresses:  # an allowlisted name: the operator trusts whatever it resolves to
            return _Stream(await self.inner.connect_tcp(host, port, timeout, local_address, socket_options))
        failure: Exception | None = None
        for address in target.addresses:
            try:
                return _Stream(await self.inner.connect_tcp(address, port, timeout, local_address,
                                                            socket_options))
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # try the next checked address
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used for callbacks")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _Releasing(httpx.AsyncByteStream):
    """A response body that gives its endpoint slot back when it is closed."""

    def __init__(self, inner: httpx.AsyncByteStream, slot: asyncio.Semaphore) -> None:
        self.inner = inner
        self.slot: asyncio.Semaphore | None = slot

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            if self.slot is not None:
                self.slot.release()
                self.slot = None


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport over a connection pool whose network backend is PinnedBackend,
    with at most `per_endpoint` requests in flight to one endpoint (scheme, host, port).

    The bound is for the endpoint's sake (an agency's server does not get a hundred parallel
    connections from one burst of events) and for ours: httpcore's pool scans every connection
    for every queued request each time a request starts or ends, so a hundred requests queued
    on a hundred connections cost more CPU than the requests themselves. Requests beyond the
    bound wait here, outside the pool."""

    def __init__(self, *, verify: ssl.SSLContext | bool = True, limits: httpx.Limits,
                 per_endpoint: int = 8) -> None:
        self._per_endpoint = per_endpoint
        self._slots: dict[tuple[bytes, bytes, int | None], asyncio.Semaphore] = {}
        context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(
            verify=verify, trust_env=False)
        super().__init__(verify=context, trust_env=False, limits=limits)
        # httpx has no parameter for the network backend: replace the pool it built (same
        # settings, plus the backend). tests/test_address_guard.py fails if this stops working.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=PinnedBackend(),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = (request.url.raw_scheme, request.url.raw_host, request.url.port)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = asyncio.Semaphore(self._per_endpoint)
        await slot.acquire()
        try:
            response = await super().handle_async_request(request)
        except BaseException:
            slot.release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Releasing(response.stream, slot)
        return response


def make_pinned_client(
    *, timeout: float, limits: httpx.Limits, headers: dict[str, str] | None = None,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """An httpx client that connects only inside `pinned`: no redirects, no proxies, no
    settings from the environment."""
    client = httpx.AsyncClient(
        transport=PinnedTransport(verify=verify, limits=limits),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(timeout),
        headers=headers,
    )
    _PINNED_CLIENTS.add(client)
    return client


def is_pinned_client(client: httpx.AsyncClient) -> bool:
    return client in _PINNED_CLIENTS
