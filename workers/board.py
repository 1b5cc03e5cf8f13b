"""`ducha board`: 督办看板, the read-only supervision board (started by `ducha up` too).

    GET /            the page, server-rendered (Jinja2), in Chinese, for a big screen or a laptop
    GET /api/board   the same snapshot as JSON: the numbers ("data") and the page's sections as
                     HTML ("html"), which the page fetches every DUCHA_BOARD_REFRESH_SECONDS to
                     refresh itself without a reload
    GET /static/…    its CSS and script (nothing from outside: no CDN, no web fonts)
    GET /healthz     200 once a snapshot could be read, 503 otherwise

It reads the ledger (PostgreSQL, in read-only transactions on read-only sessions) and Temporal's
visibility (counts by DuchaKind / DuchaLight / DuchaOverdue); it never writes either. One
snapshot serves every viewer for DUCHA_BOARD_REFRESH_SECONDS, so ten screens cost what one does.
Listens on DUCHA_BOARD_HOST:DUCHA_BOARD_PORT (127.0.0.1:8791); in production it sits behind the
same login as the Web UI (docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from temporalio.client import Client

from config.settings import Settings
from reports.board import BoardReader
from rules.board import KIND_NAMES, KINDS, LIGHT_NAMES, LIGHTS, OVERDUE_SHOWN, Board
from workers.http_server import RunningServer, run_foreground, start_app

ASSETS = Path(__file__).resolve().parent / "board_assets"
SECTIONS = ("summary", "overdue", "agencies", "units", "coverage", "running")
TEMPORAL_CONNECT_SECONDS = 5
LOAD_FACTOR = 5
SNAPSHOT_SECONDS = 20  # a snapshot that takes longer fails (and the page keeps the last one)
NO_STORE = {"Cache-Control": "no-store"}


def ui_base(settings: Settings) -> str:
    """Where operators' browsers reach the Temporal Web UI."""
    return settings.board_ui_url or f"http://127.0.0.1:{settings.ui_port}"


def templates() -> Environment:
    env = Environment(loader=FileSystemLoader(ASSETS / "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.globals.update(KINDS=KINDS, LIGHTS=LIGHTS, KIND_NAMES=KIND_NAMES, LIGHT_NAMES=LIGHT_NAMES,
                       OVERDUE_SHOWN=OVERDUE_SHOWN)
    return env


@dataclass
class Snapshot:
    board: Board | None
    error: str
    taken: float


class BoardSource:
    """The current snapshot, read at most once per `max_age` seconds whoever asks."""

    def __init__(self, settings: Settings, max_age: float) -> None:
        self.settings = settings
        self.max_age = max_age
        self.pool: asyncpg.Pool | None = None
        self.client: Client | None = None
        self.client_tried = 0.0
        self.snapshot: Snapshot | None = None
        self.last_duration = 0.0
        self.lock = asyncio.Lock()

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def current(self) -> Snapshot:
        async with self.lock:
            # A snapshot that took d seconds is not taken again within LOAD_FACTOR * d: on a
            # large ledger the board uses at most 1/LOAD_FACTOR of one database connection.
            wait = max(self.max_age, LOAD_FACTOR * self.last_duration)
            if self.snapshot is None or time.monotonic() - self.snapshot.taken >= wait:
                started = time.monotonic()
                self.snapshot = await self._take()
                self.last_duration = time.monotonic() - started
            return self.snapshot

    async def _take(self) -> Snapshot:
        s = self.settings
        try:
            if self.pool is None:
                # Read-only sessions: the board cannot write the ledger even by mistake.
                self.pool = await asyncpg.create_pool(
                    s.postgres_url, min_size=0, max_size=2, timeout=10, command_timeout=SNAPSHOT_SECONDS,
                    server_settings={"default_transaction_read_only": "on",
                                     "application_name": "ducha-board"})
            reader = BoardReader(self.pool, s.zone, ui_base(s), s.namespace, s.task_queue)
            async with asyncio.timeout(SNAPSHOT_SECONDS):
                board = await reader.read(datetime.now(UTC), await self._client())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            print(f"board: cannot read the ledger: {exc}", file=sys.stderr, flush=True)
            previous = self.snapshot.board if self.snapshot else None
            return Snapshot(previous, f"无法读取台账（PostgreSQL）：{type(exc).__name__}", time.monotonic())
        return Snapshot(board, "", time.monotonic())

    async def _client(self) -> Client | None:
        """Temporal, connected lazily; a failed connection is tried again after a minute."""
        if self.client is None and time.monotonic() - self.client_tried >= 60:
            self.client_tried = time.monotonic()
            try:
                async with asyncio.timeout(TEMPORAL_CONNECT_SECONDS):
                    self.client = await Client.connect(self.settings.temporal_address,
                                                       namespace=self.settings.namespace)
            except Exception as exc:  # any failure to connect: the ledger part still shows
                print(f"board: Temporal unavailable: {exc}", file=sys.stderr, flush=True)
        return self.client


class BoardApp:
    def __init__(self, settings: Settings, source: BoardSource | None = None) -> None:
        self.settings = settings
        self.source = source or BoardSource(settings, max_age=settings.board_refresh_seconds)
        self.env = templates()

    def _context(self, snap: Snapshot) -> dict:
        board = snap.board
        local = board.generated_at.astimezone(self.settings.zone) if board else None
        return {"board": board, "error": snap.error, "refresh": self.settings.board_refresh_seconds,
                "generated": local.strftime("%H:%M:%S") if local else "—",
                "today": board.today.isoformat() if board else "",
                "ui_base": ui_base(self.settings), "namespace": self.settings.namespace}

    def sections(self, snap: Snapshot) -> dict[str, str]:
        context = self._context(snap)
        return {name: self.env.get_template(f"_{name}.html").render(context) for name in SECTIONS}

    async def page(self, request: Request) -> Response:
        snap = await self.source.current()
        html = self.env.get_template("board.html").render(
            {**self._context(snap), "sections": self.sections(snap)})
        return HTMLResponse(html, headers=NO_STORE)

    async def api(self, request: Request) -> Response:
        snap = await self.source.current()
        context = self._context(snap)
        return JSONResponse({
            "generated": context["generated"], "error": snap.error,
            "refresh_seconds": self.settings.board_refresh_seconds,
            "data": snap.board.as_dict() if snap.board else None,
            "html": self.sections(snap),
        }, headers=NO_STORE)

    async def health(self, request: Request) -> Response:
        snap = await self.source.current()
        ok = snap.board is not None and not snap.error
        return PlainTextResponse("ok" if ok else snap.error, 200 if ok else 503, headers=NO_STORE)

    def asgi(self) -> Starlette:
        return Starlette(routes=[
            Route("/", self.page, methods=["GET", "HEAD"]),
            Route("/api/board", self.api, methods=["GET", "HEAD"]),
            Route("/healthz", self.health, methods=["GET", "HEAD"]),
            Mount("/static", StaticFiles(directory=ASSETS / "static"), name="static"),
        ])


async def start_board(settings: Settings, host: str | None = None, port: int | None = None) -> RunningServer:
    """Listen on host:port (default the settings'; 0 picks a free port)."""
    app = BoardApp(settings)
    server = await start_app(app.asgi(), host or settings.board_host,
                             settings.board_port if port is None else port, keep_alive_seconds=30)
    server.closers.append(app.source.close)
    return server


def serve(settings: Settings, host: str, port: int) -> None:
    """`ducha board`: run in the foreground until SIGINT/SIGTERM."""

    async def main(stop: asyncio.Event) -> None:
        server = await start_board(settings, host, port)
        print(f"board: 督办看板 http://{host}:{server.port}/ (read-only; Web UI links to "
              f"{ui_base(settings)})", file=sys.stderr, flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop()

    run_foreground("board", host, port, main)
