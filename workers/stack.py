"""`ducha up`: the whole service on one machine, in one foreground process tree.

Children (PostgreSQL, codec server, Temporal dev server + Web UI, demo callback receiver, board)
are started in order, the worker runs in this process, and SIGINT/SIGTERM stops everything in
reverse order. Data lives under DUCHA_DATA_DIR (default `.data/`), so a second `ducha up` finds it
again. Before anything starts, `ducha up` takes the data dir's lock and checks its ports: beside
another instance (or a port taken by anything) it exits at once with one line naming the data dir
or the port and who holds it; a start that fails half-way stops what it had started.
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
import traceback
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import structlog

from config.chain_key import ensure_local_chain_key
from config.settings import Settings
from workers.codec import ensure_local_keys
from workers.embedded import (
    DataDirLock,
    EmbeddedPostgres,
    TemporalDevServer,
    port_holder,
    port_in_use,
    process_line,
    processes_using,
    stop_process,
    wait_for_port,
)
from workers.logging import configure_logging

log = structlog.get_logger("ducha.up")


def _ducha(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "ducha"), *args]


class StartRefused(Exception):
    """`ducha up` cannot start; the message is the one line the operator sees."""


def planned_ports(s: Settings) -> list[tuple[str, str, int]]:
    """(what, the setting that moves it, port) for every port `ducha up` listens on."""
    ports = [("Temporal gRPC", "DUCHA_TEMPORAL_ADDRESS", int(s.temporal_address.rpartition(":")[2])),
             ("Temporal Web UI", "DUCHA_UI_PORT", s.ui_port)]
    if s.embedded_postgres:
        ports.append(("PostgreSQL", "DUCHA_PG_PORT", s.pg_port))
    ports += [("codec server", "DUCHA_CODEC_PORT", s.codec_port),
              ("demo receiver", "DUCHA_RECEIVER_PORT", s.receiver_port),
              ("督办看板 board", "DUCHA_BOARD_PORT", s.board_port)]
    if s.metrics_port:
        ports.append(("metrics", "DUCHA_METRICS_PORT", s.metrics_port))
    return ports


def check_ports(s: Settings) -> None:
    """Refuse (StartRefused) when two settings name the same port or a port is taken; the
    message names the port, what it was meant for, and who holds it when /proc tells."""
    seen: dict[int, str] = {}
    for _what, var, port in planned_ports(s):
        if port in seen:
            raise StartRefused(f"端口冲突 / port clash: {var} 与 {seen[port]} 都是 {port} "
                               f"/ {var} and {seen[port]} are both {port}")
        seen[port] = var
    for what, var, port in planned_ports(s):
        host = s.board_host if var == "DUCHA_BOARD_PORT" else "0.0.0.0" if var == "DUCHA_METRICS_PORT" else "127.0.0.1"
        if port_in_use(host, port):
            pid = port_holder(port)
            holder = process_line(pid) if pid else "another process"
            raise StartRefused(f"端口 {port}（{what}）已被占用 / port {port} ({what}) is in use by {holder}; "
                               f"stop it or set {var}")


def lock_data_dir(s: Settings, data_dir: Path) -> DataDirLock:
    """Take the data dir's lock, or refuse: another `ducha up` holds it, or a server of an earlier
    one (killed with SIGKILL) still runs on its files."""
    lock = DataDirLock(data_dir)
    facts = {"pid": os.getpid(), "command": "ducha up",
             "started": datetime.now(UTC).isoformat(timespec="seconds"),
             "ports": {var: port for _, var, port in planned_ports(s)}}
    holder = lock.acquire(facts)
    if holder is not None:
        who = process_line(holder["pid"]) if isinstance(holder.get("pid"), int) else "another process"
        raise StartRefused(f"数据目录 {data_dir} 正被另一个 ducha up 使用 / data dir {data_dir} is in use by "
                           f"{who}; stop it (Ctrl-C) or set DUCHA_DATA_DIR")
    left = processes_using(data_dir / "pg", data_dir / "temporal.db")
    if left:
        lock.release()
        raise StartRefused(f"数据目录 {data_dir} 仍被进程使用 / data dir {data_dir} is in use by "
                           f"{process_line(left[0])}" + (f" and {len(left) - 1} more" if len(left) > 1 else "")
                           + f"; stop it (kill {' '.join(map(str, left))}) or set DUCHA_DATA_DIR")
    return lock


@contextmanager
def _starting(what: str, log_file: Path | None = None) -> Iterator[None]:
    """A child that fails to start becomes one line: what, why, and its log's last line."""
    try:
        yield
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        last = _last_line(log_file) if log_file is not None else ""
        raise StartRefused(f"{what}: {reason}" + (f" ({last})" if last else "")) from exc


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()[-20:] if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM while starting: unwind and stop what was started


def run_stack(s: Settings) -> int:
    configure_logging(s.log_format, s.log_level)
    if not s.callback_allowlist:
        # The demo registry points every endpoint at the local demo receiver.
        s.callback_allowlist = ["127.0.0.1", "localhost"]
    data_dir = Path(s.data_dir).resolve()
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        # Everything taken or started below is given back when this block exits, in reverse order.
        with ExitStack() as children:
            try:
                children.callback(lock_data_dir(s, data_dir).release)
                check_ports(s)
                _start_children(s, data_dir, children)
            except StartRefused as exc:
                print(f"无法启动 / cannot start: {exc}", file=sys.stderr, flush=True)
                return 1
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                # What was started is stopped by the ExitStack on the way out.
                reason = " ".join(str(exc).split()) or type(exc).__name__
                print(f"无法启动 / cannot start: {reason} (logs: {data_dir / 'logs'})",
                      file=sys.stderr, flush=True)
                return 1
            try:
                asyncio.run(_serve(s))
            except KeyboardInterrupt:
                pass
            except Exception as exc:  # bootstrap or the worker failed: one line, the rest in the log
                with open(data_dir / "logs" / "ducha-up.log", "a", encoding="utf-8") as f:
                    traceback.print_exc(file=f)
                print(f"法治督察 failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
                      f"(details: {data_dir / 'logs' / 'ducha-up.log'}); stopping", file=sys.stderr, flush=True)
                return 1
            finally:
                log.info("stopping children")
    except KeyboardInterrupt:
        print("法治督察 interrupted while starting; what was started is stopped", file=sys.stderr, flush=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("法治督察 stopped; data kept in", data_dir, flush=True)
    return 0


def _start_children(s: Settings, data_dir: Path, children: ExitStack) -> None:
    """PostgreSQL, codec server, Temporal dev server + Web UI, demo receiver, board, in this order; each
    one's stop is registered before it starts, so a start that fails half-way is stopped too."""
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    key_file, created = ensure_local_keys(s)
    if created:
        log.info("payload encryption key created", file=str(key_file))
    chain_key_file, created = ensure_local_chain_key(s)
    if created:
        log.info("ledger chain key created", file=str(chain_key_file))
    if s.embedded_postgres:
        pg = EmbeddedPostgres(data_dir / "pg", s.pg_port)
        children.callback(pg.stop)
        with _starting("PostgreSQL", pg.pgdata / "server.log"):
            pg.start()
        log.info("PostgreSQL started", url=pg.url, data=str(pg.pgdata))
    codec = subprocess.Popen(
        _ducha("codec-server", "--port", str(s.codec_port)),
        start_new_session=True,
    )
    children.callback(stop_process, codec)
    with _starting("codec server"):
        wait_for_port("127.0.0.1", s.codec_port, 30, codec)

    host, _, port = s.temporal_address.rpartition(":")
    temporal = TemporalDevServer(
        data_dir / "temporal.db", port=int(port), ui_port=s.ui_port, namespace=s.namespace,
        ui_codec_endpoint=f"http://127.0.0.1:{s.codec_port}",
    )
    children.callback(temporal.stop)
    with _starting("Temporal dev server", logs / "temporal.log"):
        temporal.start(log_file=logs / "temporal.log")
    log.info("Temporal dev server started", grpc=temporal.address, db=str(temporal.db_file))

    receiver = subprocess.Popen(
        _ducha("receiver", "--port", str(s.receiver_port)),
        env={**os.environ, "DUCHA_DATABASE_URL": s.postgres_url},
        start_new_session=True,
    )
    children.callback(stop_process, receiver)
    with _starting("demo receiver"):
        wait_for_port("127.0.0.1", s.receiver_port, 30, receiver)

    board = subprocess.Popen(  # 督办看板, read-only: ledger + Temporal visibility
        _ducha("board"), env={**os.environ, "DUCHA_DATABASE_URL": s.postgres_url},
        start_new_session=True,
    )
    children.callback(stop_process, board)
    with _starting("督办看板 board"):
        wait_for_port(s.board_host, s.board_port, 30, board)


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
    print(banner(s), flush=True)
    await run_worker(s, stop)


def banner(s: Settings) -> str:
    """What `ducha up` prints once it is up: every URL, then the first three commands to try."""
    host = "127.0.0.1"
    bin_ = ".venv/bin/ducha"
    today = datetime.now(s.zone).date().isoformat()
    lines = [
        "",
        "法治督察 fazhi-ducha is up",
        f"  Temporal Web UI   http://{host}:{s.ui_port}/namespaces/{s.namespace}/workflows",
        f"  Board             http://{s.board_host}:{s.board_port}/  (督办看板, read-only)",
        f"  Codec server      http://{host}:{s.codec_port}  (payloads are encrypted; the Web UI decrypts through it)",
        f"  Demo receiver     http://{host}:{s.receiver_port}/hooks/<code>",
    ]
    if s.metrics_port:
        lines.append(f"  Metrics           http://{host}:{s.metrics_port}/metrics")
    lines += [
        f"  Temporal gRPC     {s.temporal_address}  (namespace {s.namespace}, task queue {s.task_queue})",
        f"  PostgreSQL        {s.postgres_url}",
        "",
        "  Try:",
        "    # 登记册: the demo county's agencies and units",
        f"    {bin_} registry list",
        "    # 移送一条线索: a clue from the court, workflow clue-<number> (watch it in the Web UI)",
        f"    {bin_} clue new --route to_law_office --source court --channel judgment_enforcement \\",
        f"        --importance routine --discovered-on {today} --unit market_regulation \\",
        "        --title 测试线索 --reported-by 杨帆",
        "    # 回调: a signed ping to the court's endpoint, the demo receiver",
        f"    DUCHA_CALLBACK_ALLOWLIST=127.0.0.1 {bin_} callbacks test court",
        "",
        f"  Stop with Ctrl-C; data stays under {s.data_dir}",
    ]
    return "\n".join(lines)
