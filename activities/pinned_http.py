"""The HTTP client of callbacks: HTTP/1.1 POSTs over kept-alive connections that go only to the
addresses the SSRF guard checked.

`check_url` (rules/address_guard.py) resolves a callback's host once and checks every address.
The request must then go to one of those addresses and nowhere else: a client that resolved the
name again would follow a DNS answer that changed in between (DNS rebinding: first a public
address, then 127.0.0.1) and send a signed callback into our own network. So `PinnedClient.post`
takes the checked `Target`, not a URL: it opens TCP connections to `target.addresses` in turn
(an allowlisted name without addresses is resolved by the operating system, as the operator
chose), never resolves the name itself, and sends the original Host header; for https the TLS
SNI and the certificate check use the name, not the address.

Connections are kept alive per endpoint (scheme, host, port): a connection is only ever reused
for the endpoint it was opened for, so two https endpoints on one address never share a TLS
session whose certificate was checked for the other name. At most `per_endpoint` requests are in
flight to one endpoint (an agency's server does not get a hundred parallel connections from one
burst of events); idle connections are closed after `keepalive_expiry` seconds, before the
common 5 s server keep-alive timeout.

Why not httpx (which this replaced): the callback bench measured ~1 ms of CPU per POST through
httpx's client and httpcore's pool on a loaded 2-core machine against ~0.13 ms for the same POST
here (asyncio streams, h11 for the protocol — the HTTP/1.1 state machine httpx itself uses), and
the POST was most of a delivery's cost. httpx's own pool cannot be told to connect to a given
address either (its URL would have to be rewritten to the address, and then two names on one
address share pooled TLS sessions). Redirects are never followed, no proxy or environment
setting is read, responses are read up to `MAX_DRAIN_BYTES` and otherwise cut off.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import ssl
import time
from dataclasses import dataclass, field
from functools import lru_cache

import h11
import httpx

from rules.address_guard import Target

MAX_DRAIN_BYTES = 65_536
_READ = 65_536


class HTTPFailure(OSError):
    """The request got no complete answer; the message says why (ConnectError, ReadError, …)."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    h11: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    idle_until: float = 0.0

    def usable(self) -> bool:
        return (time.monotonic() < self.idle_until and not self.reader.at_eof()
                and not self.writer.is_closing() and self.h11.our_state is h11.IDLE)

    def close(self) -> None:
        self.writer.close()


@lru_cache(maxsize=1024)
def _request_line(url: str) -> tuple[bytes, bytes, str, int]:
    """(request target, Host header, host, port) of `url`, encoded as httpx encodes them (IDNA
    2008, percent-encoding), which is also how the guard encodes the host it checked."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.raw_path, parsed.netloc, parsed.raw_host.decode("ascii"), port


def _same_host(a: str, b: str) -> bool:
    a, b = a.rstrip(".").lower().strip("[]"), b.rstrip(".").lower().strip("[]")
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


class PinnedClient:
    """POSTs to checked targets over kept-alive, pinned connections. One per process."""

    def __init__(self, *, user_agent: str, verify: ssl.SSLContext | bool = True,
                 per_endpoint: int = 8, keepalive_expiry: float = 4.0) -> None:
        self.user_agent = user_agent
        if isinstance(verify, ssl.SSLContext):
            self.ssl = verify
        else:
            self.ssl = httpx.create_ssl_context(verify=verify, trust_env=False)  # certifi's CAs
        self.per_endpoint = per_endpoint
        self.keepalive_expiry = keepalive_expiry
        self._idle: dict[tuple[str, str, int], collections.deque[_Connection]] = {}
        self._slots: dict[tuple[str, str, int], asyncio.Semaphore] = {}
        self.connections_opened = 0
        self._next_sweep = 0.0

    async def __aenter__(self) -> PinnedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.popleft().close()

    async def post(self, target: Target, body: bytes, headers: dict[str, str]) -> Answer:
        """POST `body` to `target.url`; the answer's status and headers (its body is read and
        dropped). Raises HTTPFailure when no complete answer came; the caller bounds the time."""
        path, host_header, host, port = _request_line(target.url)
        if port != target.port or not _same_host(host, target.host):  # checked = on the wire
            raise HTTPFailure(f"ConnectError: {target.host}:{target.port} was not checked for "
                              f"{host_header.decode()}")
        key = (target.scheme, target.host, target.port)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = asyncio.Semaphore(self.per_endpoint)
        try:
            request = h11.Request(method="POST", target=path, headers=[
                ("host", host_header), ("user-agent", self.user_agent),
                ("content-length", str(len(body))), *headers.items(),
            ])
        except h11.LocalProtocolError as exc:
            raise HTTPFailure(f"LocalProtocolError: {exc}") from None
        async with slot:
            conn = self._reuse(key)
            if conn is not None:
                try:
                    return await self._exchange(key, conn, request, body)
                except _Stale:
                    pass  # the server closed the kept-alive connection: once more on a new one
            conn = await self._connect(target)
            try:
                return await self._exchange(key, conn, request, body)
            except _Stale as exc:
                raise HTTPFailure(f"RemoteProtocolError: {exc}") from None

    def _reuse(self, key: tuple[str, str, int]) -> _Connection | None:
        now = time.monotonic()
        if now > self._next_sweep:  # close other endpoints' expired idle connections too
            self._next_sweep = now + self.keepalive_expiry
            for other in self._idle.values():
                for conn in [c for c in other if not c.usable()]:
                    other.remove(conn)
                    conn.close()
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    async def _connect(self, target: Target) -> _Connection:
        tls = target.scheme == "https"
        failure = ""
        # An allowlisted name without addresses: the operator trusts whatever it resolves to.
        for address in target.addresses or (target.host,):
            try:
                reader, writer = await asyncio.open_connection(
                    address, target.port, ssl=self.ssl if tls else None,
                    server_hostname=target.host if tls else None, limit=_READ,
                )
            except (OSError, ssl.SSLError) as exc:
                failure = f"ConnectError: {exc}"
                continue  # the next checked address
            self.connections_opened += 1
            return _Connection(reader, writer)
        raise HTTPFailure(failure or "ConnectError: no address to connect to")

    async def _exchange(self, key: tuple[str, str, int], conn: _Connection, request: h11.Request,
                        body: bytes) -> Answer:
        """One request and its answer on `conn`; the connection goes back to the idle list when
        both sides finished cleanly, and is closed otherwise (also on cancellation)."""
        done = False
        answered = False
        try:
            h = conn.h11
            conn.writer.write(h.send(request) + h.send(h11.Data(data=body)) + h.send(h11.EndOfMessage()))
            try:
                await conn.writer.drain()
            except (OSError, ssl.SSLError) as exc:
                raise _Stale(str(exc)) from None
            answer: Answer | None = None
            drained = 0
            while True:
                try:
                    event = h.next_event()
                except h11.RemoteProtocolError as exc:
                    if not answered:
                        raise _Stale(str(exc)) from None
                    raise HTTPFailure(f"RemoteProtocolError: {exc}") from None
                if event is h11.NEED_DATA:
                    try:
                        data = await conn.reader.read(_READ)
                    except (OSError, ssl.SSLError) as exc:
                        if not answered:
                            raise _Stale(str(exc)) from None
                        raise HTTPFailure(f"ReadError: {exc}") from None
                    h.receive_data(data)
                    continue
                answered = True
                if isinstance(event, h11.Response):
                    answer = Answer(event.status_code, _headers(event.headers))
                elif isinstance(event, h11.Data):
                    drained += len(event.data)
                    if drained > MAX_DRAIN_BYTES:
                        assert answer is not None
                        return answer  # cut off; the connection is closed below
                elif isinstance(event, h11.EndOfMessage):
                    assert answer is not None
                    done = h.our_state is h11.DONE and h.their_state is h11.DONE
                    if done:
                        h.start_next_cycle()
                    return answer
                elif isinstance(event, h11.ConnectionClosed):
                    raise HTTPFailure("RemoteProtocolError: connection closed before the answer ended")
        finally:
            if done:
                conn.idle_until = time.monotonic() + self.keepalive_expiry
                self._idle.setdefault(key, collections.deque()).append(conn)
            else:
                conn.close()


class _Stale(Exception):
    """A connection gave no answer at all (closed or reset): worth one try on a new one."""


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def is_pinned_client(client: object) -> bool:
    return isinstance(client, PinnedClient)
