"""`ducha registry set-endpoint`, `ducha callbacks failed|redeliver|test` and the demo receiver
(`ducha receiver`), run as real subprocesses against real PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.callbacks import CallbackActivities, make_http_client
from activities.registry import RegistryStore, new_secret
from config.yaml_file import load_yaml_model
from rules.signing import webhook_headers
from schemas.callbacks import DeliveryOutput
from schemas.registry import RegistryFile
from workers.embedded import free_port, wait_for_port
from workers.receiver import Receiver
from workflows.callback_delivery import CallbackDelivery

from .conftest import DEMO_REGISTRY, make_settings

ALLOW_LOCAL = json.dumps(["127.0.0.1"])


@dataclass
class Done:
    code: int
    out: str
    err: str


async def ducha(db_url: str, *args: str, **env: str) -> Done:
    """Run `ducha ARGS` without blocking the event loop (a test worker may be serving)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.cli", *args,
        env={"DUCHA_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"),
             "DUCHA_DATA_DIR": os.environ["DUCHA_DATA_DIR"], **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    return Done(proc.returncode, out.decode(), err.decode())


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def loaded(pool: asyncpg.Pool) -> asyncpg.Pool:
    await RegistryStore(pool).load(load_yaml_model(DEMO_REGISTRY, RegistryFile))
    return pool


@dataclass
class DemoReceiver:
    proc: asyncio.subprocess.Process
    port: int

    def url(self, code: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{code}"


@pytest_asyncio.fixture(loop_scope="session")
async def demo_receiver(db_url: str, loaded) -> AsyncIterator[DemoReceiver]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.cli", "receiver", "--port", str(port),
        env={"DUCHA_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin", "DUCHA_DATA_DIR": os.environ["DUCHA_DATA_DIR"]},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 30)
    receiver = DemoReceiver(proc, port)
    yield receiver
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def read_line(proc: asyncio.subprocess.Process, timeout: float = 10) -> str:
    return (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode()


# --- set-endpoint --------------------------------------------------------------------------------


@pytest.mark.parametrize("url,reason", [
    ("http://169.254.169.254/latest/meta-data", "元数据"),
    ("http://127.0.0.1:8789/hooks/court", "回环"),
    ("http://10.0.0.1/hooks/court", "内网"),
    ("http://0x7f000001/hooks/court", "127.0.0.1"),
    ("ftp://example.com/hooks", "http"),
])
async def test_set_endpoint_refuses_forbidden_urls(db_url, loaded, url, reason):
    before = await loaded.fetchval("SELECT callback_url FROM parties WHERE code = 'court'")
    done = await ducha(db_url, "registry", "set-endpoint", "court", url)
    assert done.code == 2, done
    assert reason in done.err
    assert await loaded.fetchval("SELECT callback_url FROM parties WHERE code = 'court'") == before


async def test_set_endpoint_generates_a_secret_prints_it_once_and_rotates(db_url, loaded):
    url = "http://127.0.0.1:9/hooks/justice"
    old = await loaded.fetchval("SELECT callback_secret FROM parties WHERE code = 'justice'")
    done = await ducha(db_url, "registry", "set-endpoint", "justice", url,
                       DUCHA_CALLBACK_ALLOWLIST=ALLOW_LOCAL)
    assert done.code == 0, done
    row = await loaded.fetchrow("SELECT * FROM parties WHERE code = 'justice'")
    assert row["callback_url"] == url and row["callback_enabled"]
    assert row["callback_secret"] != old and done.out.count(row["callback_secret"]) == 1
    assert row["callback_secret_previous"] == old, "the old secret keeps signing for a while"
    assert "24" in done.out

    given = new_secret()
    done = await ducha(db_url, "registry", "set-endpoint", "justice", url, "--secret", given,
                       "--grace-hours", "0", DUCHA_CALLBACK_ALLOWLIST=ALLOW_LOCAL)
    assert done.code == 0, done
    assert given not in done.out, "a secret the operator gave is not echoed"
    row = await loaded.fetchrow("SELECT * FROM parties WHERE code = 'justice'")
    assert row["callback_secret"] == given and row["callback_secret_previous"] is None

    done = await ducha(db_url, "registry", "set-endpoint", "justice", url + "2", "--keep-secret",
                       DUCHA_CALLBACK_ALLOWLIST=ALLOW_LOCAL)
    assert done.code == 0 and given not in done.out, done
    assert await loaded.fetchval("SELECT callback_secret FROM parties WHERE code = 'justice'") == given

    bad = await ducha(db_url, "registry", "set-endpoint", "justice", url, "--secret", "whsec_short",
                      DUCHA_CALLBACK_ALLOWLIST=ALLOW_LOCAL)
    assert bad.code == 2 and "secret" in bad.err
    unknown = await ducha(db_url, "registry", "set-endpoint", "nobody", url,
                          DUCHA_CALLBACK_ALLOWLIST=ALLOW_LOCAL)
    assert unknown.code == 2 and "nobody" in unknown.err


# --- callbacks test + the demo receiver ----------------------------------------------------------


async def test_callbacks_test_against_the_verifying_receiver(db_url, loaded, demo_receiver):
    done = await ducha(db_url, "registry", "set-endpoint", "court", demo_receiver.url("court"),
                       DUCHA_CALLBACK_ALLOWLIST=ALLOW_LOCAL)
    assert done.code == 0, done
    done = await ducha(db_url, "callbacks", "test", "court", DUCHA_CALLBACK_ALLOWLIST=ALLOW_LOCAL)
    assert done.code == 0, done
    assert "204" in done.out and " ms" in done.out
    line = await read_line(demo_receiver.proc)
    assert "  court  ping  " in line and line.rstrip().endswith("[verified]")
    assert "连通性测试" in line

    # the receiver rejects a bad signature and deduplicates by webhook-id
    secret = await loaded.fetchval("SELECT callback_secret FROM parties WHERE code = 'court'")
    body = json.dumps({"id": "evt-1", "type": "clue.overdue", "occurred_at": "2026-03-02T10:00:00+08:00",
                       "recipient": "court", "workflow_id": "clue-x",
                       "data": {"summary": "线索逾期"}}, ensure_ascii=False).encode()
    async with httpx.AsyncClient(trust_env=False) as http:
        forged = await http.post(demo_receiver.url("court"), content=body,
                                 headers=webhook_headers(new_secret(), "evt-1", body))
        assert forged.status_code == 401
        good = webhook_headers(secret, "evt-1", body)
        assert (await http.post(demo_receiver.url("court"), content=body, headers=good)).status_code == 204
        assert (await http.post(demo_receiver.url("court"), content=body, headers=good)).status_code == 204
        unknown = await http.post(demo_receiver.url("nobody"), content=body, headers=good)
        assert unknown.status_code == 404
        marker = webhook_headers(secret, "evt-2", body)
        assert (await http.post(demo_receiver.url("court"), content=body, headers=marker)).status_code == 204
    assert "clue.overdue  线索逾期  [verified]" in await read_line(demo_receiver.proc)
    # the repeat of evt-1 printed nothing: the next line is evt-2's
    assert "clue.overdue" in await read_line(demo_receiver.proc)

    demo_receiver.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert await asyncio.wait_for(demo_receiver.proc.wait(), 10) == 0
    assert time.monotonic() - started < 10
    assert "stopped" in (await demo_receiver.proc.stderr.read()).decode()


async def test_callbacks_test_refuses_a_forbidden_endpoint(db_url, loaded):
    await loaded.execute("UPDATE parties SET callback_url = 'http://10.0.0.1/hooks/x' WHERE code = 'procuratorate'")
    done = await ducha(db_url, "callbacks", "test", "procuratorate", DUCHA_CALLBACK_ALLOWLIST=ALLOW_LOCAL)
    assert done.code == 2, done
    assert "10.0.0.1" in done.err and "内网" in done.err
    done = await ducha(db_url, "callbacks", "test", "nobody")
    assert done.code == 2 and "nobody" in done.err


async def test_failed_listing_and_redeliver(db_url, loaded, demo_receiver, ts_env: WorkflowEnvironment,
                                            task_queue):
    # A ping to a closed port fails and is listed.
    await loaded.execute("UPDATE parties SET callback_url = $1, callback_enabled = true "
                         "WHERE code = 'tour_office'", f"http://127.0.0.1:{free_port()}/hooks/tour_office")
    done = await ducha(db_url, "callbacks", "test", "tour_office", DUCHA_CALLBACK_ALLOWLIST=ALLOW_LOCAL)
    assert done.code == 1 and "ConnectError" in done.out, done
    listing = await ducha(db_url, "callbacks", "failed", "--json")
    assert listing.code == 0, listing
    [row] = [r for r in json.loads(listing.out) if r["recipient"] == "tour_office"]
    assert row["status"] == "failed" and row["type"] == "ping"
    text = await ducha(db_url, "callbacks", "failed")
    assert str(row["id"]) in text.out and "tour_office" in text.out

    # Fix the endpoint, then redeliver through Temporal (the test server) to the demo receiver.
    await loaded.execute("UPDATE parties SET callback_url = $1 WHERE code = 'tour_office'",
                         demo_receiver.url("tour_office"))
    settings = make_settings(db_url, callback_allowlist=["127.0.0.1"], callback_retry_schedule=[0, 5])
    temporal = ts_env.client.service_client.config.target_host
    async with make_http_client(settings) as http:
        acts = CallbackActivities(loaded, settings, ts_env.client, http, task_queue=task_queue)
        async with Worker(ts_env.client, task_queue=task_queue, workflows=[CallbackDelivery],
                          activities=acts.activity_methods()):
            done = await ducha(db_url, "callbacks", "redeliver", str(row["id"]),
                               DUCHA_TEMPORAL_ADDRESS=temporal, DUCHA_TASK_QUEUE=task_queue,
                               DUCHA_CALLBACK_ALLOWLIST=ALLOW_LOCAL)
            assert done.code == 0, done
            workflow_id = done.out.strip().rsplit(" ", 1)[-1]
            handle = ts_env.client.get_workflow_handle(workflow_id, result_type=DeliveryOutput)
            run_id = (await handle.describe()).run_id
            handle = ts_env.client.get_workflow_handle(workflow_id, run_id=run_id, result_type=DeliveryOutput)
            async with ts_env.time_skipping_unlocked():
                out = await handle.result()
    assert out.status == "delivered"
    line = await read_line(demo_receiver.proc)
    assert "tour_office  ping" in line and "[verified]" in line
    assert await loaded.fetchval("SELECT status FROM callback_deliveries WHERE id = $1", row["id"]) == "delivered"

    again = await ducha(db_url, "callbacks", "redeliver", "999999999",
                        DUCHA_TEMPORAL_ADDRESS=temporal, DUCHA_TASK_QUEUE=task_queue)
    assert again.code == 2 and "999999999" in again.err


# --- the receiver's request handling, in-process -------------------------------------------------


async def test_receiver_handler(db_url, loaded):
    out = io.StringIO()
    receiver = Receiver(make_settings(db_url).postgres_url, ZoneInfo("Asia/Shanghai"), out)
    secret = await loaded.fetchval("SELECT callback_secret FROM parties WHERE code = 'law_office'")
    body = json.dumps({"id": "e9", "type": "rectification.required",
                       "data": {"summary": "请在 30 日内完成整改"}}, ensure_ascii=False).encode()
    headers = webhook_headers(secret, "e9", body)
    try:
        assert (await receiver.handle("POST", "/elsewhere", headers, body)).status == 404
        assert (await receiver.handle("GET", "/hooks/law_office", headers, body)).status == 405
        assert (await receiver.handle("POST", "/hooks/nobody", headers, body)).status == 404
        assert (await receiver.handle("POST", "/hooks/law_office", {}, body)).status == 401
        stale = webhook_headers(secret, "e9", body, timestamp=int(time.time()) - 3600)
        assert (await receiver.handle("POST", "/hooks/law_office", stale, body)).status == 401
        assert (await receiver.handle("POST", "/hooks/law_office", headers, body)).status == 204
        assert (await receiver.handle("POST", "/hooks/law_office", headers, body)).status == 204
        junk = webhook_headers(secret, "e10", b"not json")
        assert (await receiver.handle("POST", "/hooks/law_office", junk, b"not json")).status == 400
    finally:
        await receiver.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, "one line per event, repeats dropped"
    assert lines[0].endswith("  law_office  rectification.required  请在 30 日内完成整改  [verified]")


async def test_receiver_keeps_the_connection_alive(db_url, loaded, demo_receiver):
    """Two signed events on one TCP connection: the second needs no new handshake."""
    secret = await loaded.fetchval("SELECT callback_secret FROM parties WHERE code = 'court'")
    reader, writer = await asyncio.open_connection("127.0.0.1", demo_receiver.port)
    statuses = []
    try:
        for n in (1, 2):
            body = json.dumps({"id": f"ka{n}", "type": "ping", "data": {"summary": f"第{n}次"}},
                              ensure_ascii=False).encode()
            headers = webhook_headers(secret, f"keepalive-{n}-{time.time_ns()}", body)
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            writer.write((f"POST /hooks/court HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
                          f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
            await writer.drain()
            response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            statuses.append(response.split(b" ", 2)[1])
            assert b"connection: close" not in response.lower()
    finally:
        writer.close()
    assert statuses == [b"204", b"204"]
    lines = [await read_line(demo_receiver.proc) for _ in range(2)]
    assert "第1次" in lines[0] and "第2次" in lines[1]
