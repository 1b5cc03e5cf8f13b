"""`ducha up`: the whole service on one machine, in one foreground process tree.

Children (PostgreSQL, codec server, Temporal dev server + Web UI, demo callback receiver) are
started in order, the worker runs in this process, and SIGINT/SIGTERM stops everything in reverse
order. Data lives under DUCHA_DATA_DIR (default `.data/`), so a second `ducha up` finds it again.
Payloads are encrypted (workers/codec.py): without DUCHA_CODEC_KEYS the first `ducha up` creates
a key in `.data/codec-keys.json`, and the Web UI reads and writes plain JSON through the codec
server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import structlog

from config.chain_key import ensure_local_chain_key
from config.settings import Settings
from workers.codec import ensure_local_keys
from workers.embedded import EmbeddedPostgres, TemporalDevServer, stop_process, wait_for_port
from workers.logging import configure_logging

log = structlog.get_logger("ducha.up")


def _ducha(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "ducha"), *args]


def run_stack(s: Settings) -> int:
    configure_logging(s.log_format, s.log_level)
    if not s.callback_allowlist:
        # The demo registry points every endpoint at the local demo receiver.
        s.callback_allowlist = ["127.0.0.1", "localhost"]
    data_dir = Path(s.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    key_file, created = ensure_local_keys(s)
    if created:
        log.info("payload encryption key created", file=str(key_file))
    chain_key_file, created = ensure_local_chain_key(s)
    if created:
        log.info("ledger chain key created", file=str(chain_key_file))
    # Everything started below is stopped when this block exits, in reverse order.
    with ExitStack() as children:
        if s.embedded_postgres:
            pg = EmbeddedPostgres(data_dir / "pg", s.pg_port)
            pg.start()
            children.callback(pg.stop)
            log.info("PostgreSQL started", url=pg.url, data=str(pg.pgdata))
        codec = subprocess.Popen(
            _ducha("codec-server", "--port", str(s.codec_port)),
            start_new_session=True,
        )
        children.callback(stop_process, codec)
        wait_for_port("127.0.0.1", s.codec_port, 30, codec)

        host, _, port = s.temporal_address.rpartition(":")
        temporal = TemporalDevServer(
            data_dir / "temporal.db", port=int(port), ui_port=s.ui_port, namespace=s.namespace,
            ui_codec_endpoint=f"http://127.0.0.1:{s.codec_port}",
        )
        temporal.start(log_file=logs / "temporal.log")
        children.callback(temporal.stop)
        log.info("Temporal dev server started", grpc=temporal.address, db=str(temporal.db_file))

        receiver = subprocess.Popen(
            _ducha("receiver", "--port", str(s.receiver_port)),
            env={**os.environ, "DUCHA_DATABASE_URL": s.postgres_url},
            start_new_session=True,
        )
        children.callback(stop_process, receiver)
        wait_for_port("127.0.0.1", s.receiver_port, 30, receiver)

        board = subprocess.Popen(  # 督办看板, read-only: ledger + Temporal visibility
            _ducha("board"), env={**os.environ, "DUCHA_DATABASE_URL": s.postgres_url},
            start_new_session=True,
        )
        children.callback(stop_process, board)
        wait_for_port(s.board_host, s.board_port, 30, board)

        try:
            asyncio.run(_serve(s))
        except KeyboardInterrupt:
            pass
        log.info("stopping children")
    print("法治督察 stopped; data kept in", data_dir, flush=True)
    return 0


async def _serve(s: Settings) -> None:
    from workers.bootstrap import bootstrap
    from workers.worker import run_worker

    await bootstrap(s)
    from workers.client import connect
    from workers.schedules import sync

    for schedule_id, outcome in await sync(await connect(s), s):
        log.info("schedule", schedule_id=schedule_id, outcome=outcome)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host = "127.0.0.1"
    print(
        "\n法治督察 fazhi-ducha is up\n"
        f"  Temporal Web UI   http://{host}:{s.ui_port}/namespaces/{s.namespace}/workflows\n"
        f"  Temporal gRPC     {s.temporal_address}  (namespace {s.namespace}, task queue {s.task_queue})\n"
        f"  PostgreSQL        {s.postgres_url}\n"
        f"  Demo receiver     http://{host}:{s.receiver_port}/hooks/<code>\n"
        f"  Codec server      http://{host}:{s.codec_port}  (payloads are encrypted; the Web UI "
        "decrypts through it)\n"
        f"  督办看板          http://{s.board_host}:{s.board_port}/\n"
        "  Stop with Ctrl-C; data stays under " + str(s.data_dir) + "\n",
        flush=True,
    )
    await run_worker(s, stop)
