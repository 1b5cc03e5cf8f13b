"""End to end: `ducha up` as a subprocess, as an operator runs it (`make up`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from workers.embedded import free_port, port_is_open, temporal_cli_path, wait_for_port
from workflows.search_attributes import CLI_TYPES

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def _env(data_dir: Path, ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCHA_")}
    env.update(
        DUCHA_DATA_DIR=str(data_dir),
        DUCHA_TEMPORAL_ADDRESS=f"127.0.0.1:{ports['grpc']}",
        DUCHA_UI_PORT=str(ports["ui"]),
        DUCHA_PG_PORT=str(ports["pg"]),
        DUCHA_RECEIVER_PORT=str(ports["receiver"]),
        DUCHA_CODEC_PORT=str(ports["codec"]),
        DUCHA_BOARD_PORT=str(ports["board"]),
    )
    return env


PORTS = ("grpc", "ui", "pg", "receiver", "codec", "board")


def _free_ports() -> dict[str, int]:
    ports: dict[str, int] = {}
    while len(ports) < len(PORTS):  # distinct: free_port() may hand the same port out twice
        port = free_port()
        if port not in ports.values():
            ports[PORTS[len(ports)]] = port
    return ports


def _refusal(env: dict[str, str]) -> tuple[subprocess.CompletedProcess, str]:
    """Run `ducha up` expecting a refusal (the timeout only guards against a hang); returns the
    run and its one `cannot start` line."""
    out = subprocess.run([str(BIN / "ducha"), "up"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0, out.stderr
    reasons = [line for line in out.stderr.splitlines() if "cannot start" in line]
    assert len(reasons) == 1 and "Traceback" not in out.stderr, out.stderr
    return out, reasons[0]


def _start(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "ducha"), "up"], env=env, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(90)


def _leftovers(data_dir: Path) -> list[str]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(data_dir) in cmd:
            found.append(cmd)
    return found


def test_up_serves_ui_registers_attributes_and_stops_cleanly(tmp_path):
    data_dir = tmp_path / "data"
    ports = _free_ports()
    env = _env(data_dir, ports)
    log = tmp_path / "up.log"
    proc = _start(env, log)
    try:
        wait_for_port("127.0.0.1", ports["grpc"], 120, proc)
        wait_for_port("127.0.0.1", ports["ui"], 120, proc)
        # wait for the banner: bootstrap done and worker running
        deadline = time.monotonic() + 120
        while "is up" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.5)
        attrs = subprocess.run(
            [temporal_cli_path(), "operator", "search-attribute", "list",
             "--address", f"127.0.0.1:{ports['grpc']}", "-o", "json"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout
        for name in CLI_TYPES:
            assert name in attrs
        listing = subprocess.run([str(BIN / "ducha"), "registry", "list", "--json"], env=env,
                                 capture_output=True, text=True, timeout=60, check=True).stdout
        registry = json.loads(listing)
        assert len(registry["agencies"]) == 8 and len(registry["units"]) >= 20
        # 督办看板 is served, reads the migrated ledger and links to this stack's Web UI
        board = f"http://127.0.0.1:{ports['board']}"
        assert f"{board}/" in log.read_text(errors="replace")
        with httpx.Client(trust_env=False, timeout=30) as http:
            assert http.get(f"{board}/healthz").status_code == 200
            page = http.get(f"{board}/").text
            data = http.get(f"{board}/api/board").json()["data"]
        assert "督办看板" in page and "各执法单位" in page
        assert data["coverage"]["units"] == len(registry["units"])

        up = log.read_text(errors="replace")
        for url in (f"http://127.0.0.1:{ports['ui']}/", f"http://127.0.0.1:{ports['board']}",
                    f"http://127.0.0.1:{ports['codec']}", f"http://127.0.0.1:{ports['receiver']}/hooks/",
                    "ducha registry list"):
            assert url in up, up

        # A second `ducha up` beside it: refused at once, naming the data dir and the first's pid,
        # or, on another data dir, the first port it finds taken; it starts nothing.
        _, reason = _refusal(env)
        assert str(data_dir) in reason and f"pid {proc.pid}" in reason, reason
        other = tmp_path / "other"
        _, reason = _refusal({**env, "DUCHA_DATA_DIR": str(other)})
        assert f"port {ports['grpc']}" in reason and "DUCHA_TEMPORAL_ADDRESS" in reason, reason
        assert "temporal" in reason, reason  # who holds it, from /proc
        assert not (other / "pg").exists() and _leftovers(other) == []
        assert proc.poll() is None  # the first one is untouched
    finally:
        _stop(proc)
    assert proc.returncode == 0, log.read_text(errors="replace")
    for port in ports.values():
        assert not port_is_open("127.0.0.1", port), f"port {port} still open after Ctrl-C"
    assert _leftovers(data_dir) == []

    # A second `ducha up` reuses the data: the registry is there before any load.
    proc = _start(env, log)
    try:
        wait_for_port("127.0.0.1", ports["grpc"], 120, proc)
        deadline = time.monotonic() + 120
        while log.read_text(errors="replace").count("is up") < 2:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.5)
        assert (data_dir / "pg" / "PG_VERSION").exists() and (data_dir / "temporal.db").exists()
        second_boot = log.read_text(errors="replace").split("is up")[1]
        assert "added 0," in second_boot, second_boot
    finally:
        _stop(proc)
    assert _leftovers(data_dir) == []


def test_up_refuses_a_taken_port_and_starts_nothing(tmp_path):
    ports = _free_ports()
    data_dir = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["receiver"]))
        taken.listen()
        _, reason = _refusal(_env(data_dir, ports))
    assert f"port {ports['receiver']}" in reason and "DUCHA_RECEIVER_PORT" in reason, reason
    assert f"pid {os.getpid()}" in reason, reason  # this test holds it
    assert not (data_dir / "pg").exists() and _leftovers(data_dir) == []


def test_up_refuses_two_settings_naming_one_port(tmp_path):
    ports = _free_ports()
    env = {**_env(tmp_path / "data", ports), "DUCHA_CODEC_PORT": str(ports["ui"])}
    _, reason = _refusal(env)
    assert "DUCHA_CODEC_PORT" in reason and "DUCHA_UI_PORT" in reason and str(ports["ui"]) in reason, reason


def test_up_refuses_a_data_dir_another_instance_holds(tmp_path):
    from workers.embedded import DataDirLock

    data_dir = tmp_path / "data"
    lock = DataDirLock(data_dir)
    assert lock.acquire({"pid": os.getpid(), "command": "ducha up"}) is None
    try:
        _, reason = _refusal(_env(data_dir, _free_ports()))
    finally:
        lock.release()
    assert str(data_dir) in reason and f"pid {os.getpid()}" in reason, reason
    assert not (data_dir / "pg").exists()


def test_a_start_that_fails_half_way_stops_what_it_started(tmp_path):
    """PostgreSQL and the codec server are up when the Temporal dev server cannot open its
    database: one line saying so, exit non-zero, and nothing left running or listening."""
    data_dir = tmp_path / "data"
    (data_dir / "temporal.db").mkdir(parents=True)  # a directory where the SQLite file goes
    ports = _free_ports()
    out, reason = _refusal(_env(data_dir, ports))
    assert "Temporal dev server" in reason and "SQLite" in reason, reason
    assert (data_dir / "pg" / "PG_VERSION").exists()  # PostgreSQL had started
    assert _leftovers(data_dir) == []
    for port in ports.values():
        assert not port_is_open("127.0.0.1", port), f"port {port} still open"
