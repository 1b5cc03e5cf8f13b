"""The callbacks' HTTP client (activities/pinned_http.py) against real sockets on 127.0.0.1: each
test's server speaks raw HTTP/1.1 the way some endpoint might."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from activities.pinned_http import MAX_DRAIN_BYTES, HTTPFailure, PinnedClient
from rules.address_guard import Target

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(ln.split(b":")[1]) for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")), 0)
    return head + await reader.readexactly(length)


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open = 0
        self.most_open = 0

    async def __aenter__(self) -> Server:
        async def handle(reader, writer):
            self.connections += 1
            self.open += 1
            self.most_open = max(self.most_open, self.open)
            try:
                await self.handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                self.open -= 1
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    def target(self, path: str = "/hooks/x") -> Target:
        return Target(f"http://127.0.0.1:{self.port}{path}", "http", "127.0.0.1", self.port, ("127.0.0.1",))


def client() -> PinnedClient:
    return PinnedClient(user_agent="test")


async def test_a_kept_alive_connection_the_server_dropped_is_replaced_once():
    async def answer_once_then_drop(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()  # no "connection: close": the client believes it may reuse it

    async with Server(answer_once_then_drop) as server, client() as http:
        assert (await http.post(server.target(), b"{}", {})).status == 204
        await asyncio.sleep(0.05)  # let the close arrive (or not: both ways must work)
        assert (await http.post(server.target(), b"{}", {})).status == 204
        assert server.connections == 2


async def test_chunked_and_long_answers_are_read_or_cut_off():
    body = b"x" * (MAX_DRAIN_BYTES * 2)

    async def answers(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nretry-after: 7\r\n\r\n"
                     b"5\r\nhello\r\n0\r\n\r\n")
        await read_request(reader)  # the same connection: the chunked answer was read to its end
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        await reader.read()

    async with Server(answers) as server, client() as http:
        first = await http.post(server.target(), b"{}", {})
        assert first.status == 200 and first.headers["retry-after"] == "7"
        assert (await http.post(server.target(), b"{}", {})).status == 200
        assert server.connections == 1 and http.connections_opened == 1
    assert not http._idle.get(("http", "127.0.0.1", server.port)), "a cut-off connection is not kept"


async def test_garbage_and_silence_fail_and_close_the_connection():
    async def garbage(reader, writer):
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with Server(garbage) as server, client() as http:
        with pytest.raises(HTTPFailure, match="RemoteProtocolError"):
            await http.post(server.target(), b"{}", {})

    async def silence(reader, writer):
        await read_request(reader)
        await reader.read()

    async with Server(silence) as server, client() as http:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await http.post(server.target(), b"{}", {})
        assert not http._idle.get(("http", "127.0.0.1", server.port)), "a timed-out connection is closed"


async def test_the_next_checked_address_is_tried_and_nothing_else():
    async def ok(reader, writer):
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()

    async with Server(ok) as server, client() as http:
        url = f"http://127.0.0.1:{server.port}/hooks/x"
        # 127.0.0.3 has no listener on this port: refused, then the second checked address
        both = Target(url, "http", "127.0.0.1", server.port, ("127.0.0.3", "127.0.0.1"))
        assert (await http.post(both, b"{}", {})).status == 204
        with pytest.raises(HTTPFailure, match="ConnectError"):
            await http.post(Target(f"http://127.0.0.3:{server.port}/", "http", "127.0.0.3", server.port,
                                   ("127.0.0.3",)), b"{}", {})


async def test_at_most_eight_requests_in_flight_to_one_endpoint():
    """20 posts at once: eight connections carry them all (the twelve others wait for a slot and
    then reuse a kept-alive connection); without the bound there would be twenty."""
    eight = asyncio.Event()
    waiting = 0

    async def slow(reader, writer):
        nonlocal waiting
        while True:
            await read_request(reader)
            waiting += 1
            if waiting >= 8:
                eight.set()
            await eight.wait()  # hold the first answers until eight requests are in
            writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()

    async with Server(slow) as server, client() as http:
        posts = [asyncio.create_task(http.post(server.target(), b"{}", {})) for _ in range(20)]
        assert [a.status for a in await asyncio.gather(*posts)] == [204] * 20
        assert server.most_open == 8 and server.connections == 8
