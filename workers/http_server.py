"""Serving an ASGI app (Starlette) with uvicorn, the one HTTP stack of the project's servers:
the codec server, the demo callback receiver and the supervision board (督办看板).

`start_app` binds the socket itself (port 0 picks a free one, and the caller learns it), runs
uvicorn in the current event loop and returns once it accepts connections; `stop()` closes the
listener, lets requests in flight finish and returns. Signals stay with the caller: a foreground
command (`run_foreground`) turns SIGINT/SIGTERM into a clean stop and exit code 0, and a server
embedded in a test or another process never touches the process's signal handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import uvicorn
from starlette.types import ASGIApp


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling (the caller owns SIGINT/SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningServer:
    host: str
    port: int
    server: uvicorn.Server
    task: asyncio.Task
    # Run after the server stopped (e.g. closing the app's own HTTP client or pool).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        for close in self.closers:
            await close()


async def start_app(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    limit_concurrency: int | None = None,
    keep_alive_seconds: int = 5,
    graceful_seconds: float = 10,
) -> RunningServer:
    """Serve `app` on host:port until `stop()`; raises OSError when the port cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.setblocking(False)
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, log_level="warning", access_log=False,
        server_header=False, date_header=True, proxy_headers=False,
        limit_concurrency=limit_concurrency, timeout_keep_alive=keep_alive_seconds,
        timeout_graceful_shutdown=graceful_seconds,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"http {host}:{port}")
    while not server.started:
        if task.done():  # failed during start-up
            sock.close()
            await task
            raise OSError(f"cannot serve on {host}:{port}")
        await asyncio.sleep(0.01)
    return RunningServer(host, sock.getsockname()[1], server, task)


def run_foreground(name: str, host: str, port: int,
                   serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `serve(stop)` until SIGINT/SIGTERM sets `stop`; a port that cannot be bound is one
    line on stderr and exit code 2."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(stop)

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"{name}: cannot listen on {host}:{port}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    print(f"{name}: stopped", file=sys.stderr, flush=True)
