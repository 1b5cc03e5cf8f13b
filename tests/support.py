"""Test helpers: a real HTTP callback receiver on 127.0.0.1 and a history replay check."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer


@dataclass
class Received:
    webhook_id: str
    recipient: str
    type: str
    body: dict
    verified: bool


@dataclass
class Receiver:
    """POST /hooks/{code}: verifies the Standard Webhooks signature independently of the
    product's code, records every request, answers with scripted statuses (default 204)."""

    secrets: dict[str, str] = field(default_factory=dict)
    script: list[int] = field(default_factory=list)
    # After the script: the status for (code, webhook-id); None answers 204.
    answer: Callable[[str, str], int] | None = None
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.AbstractServer | None = None

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    def url(self, code: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{code}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            code = path.rstrip("/").rsplit("/", 1)[-1]
            verified = self._verify(code, headers, body)
            payload = json.loads(body or b"{}")
            self.received.append(Received(headers.get("webhook-id", ""), code, payload.get("type", ""),
                                          payload, verified))
            if self.script:
                status = self.script.pop(0)
            else:
                status = self.answer(code, headers.get("webhook-id", "")) if self.answer else 204
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
        finally:
            writer.close()

    def _verify(self, code: str, headers: dict[str, str], body: bytes) -> bool:
        secret = self.secrets.get(code)
        if not secret:
            return False
        key = base64.b64decode(secret.removeprefix("whsec_"))
        signed = f"{headers.get('webhook-id')}.{headers.get('webhook-timestamp')}.".encode() + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        given = [s.split(",", 1)[1] for s in headers.get("webhook-signature", "").split() if "," in s]
        return any(hmac.compare_digest(expected, g) for g in given)

    def events(self, type_: str | None = None) -> list[Received]:
        return [r for r in self.received if type_ is None or r.type == type_]

    def unique(self) -> dict[str, Received]:
        """Deduplicated by webhook-id, as an agency's receiver should."""
        return {r.webhook_id: r for r in self.received}


async def assert_replays(handle: WorkflowHandle, workflows: list[type]) -> None:
    """Replay the workflow's recorded history against the current code (non-determinism guard).

    With DUCHA_CAPTURE_HISTORIES=DIR set, the history is also written there as JSON: that is how
    the committed fixtures in tests/replay/histories/ are made (docs/replay.md)."""
    history = await handle.fetch_history()
    await Replayer(workflows=workflows, data_converter=pydantic_data_converter).replay_workflow(history)
    target = os.environ.get("DUCHA_CAPTURE_HISTORIES")
    if target:
        started = history.events[0].workflow_execution_started_event_attributes
        path = Path(target) / f"{started.workflow_type.name}--{handle.id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(history.to_json(), encoding="utf-8")


async def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def wait_for_async(fetch, check, timeout: float = 20.0) -> None:
    """Poll an async `fetch()` until `check(value)` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fetch()
        if check(value):
            return
        assert asyncio.get_running_loop().time() < deadline, f"not reached: {value}"
        await asyncio.sleep(0.2)


async def run_cli(*args: str, env: dict[str, str], timeout: float = 120) -> tuple[int, str, str]:
    """Run `ducha ARGS` as a subprocess without blocking the event loop (the test's worker
    keeps running meanwhile); returns (exit code, stdout, stderr)."""
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def unit_operator(code: str) -> str:
    """The first registered operator of an agency or unit in the demo registry."""
    import yaml

    registry_file = Path(__file__).resolve().parent.parent / "data" / "registry" / "demo-county.yaml"
    registry = yaml.safe_load(registry_file.read_text(encoding="utf-8"))
    return next(p["operators"][0]["id"] for p in registry["agencies"] + registry["units"] if p["code"] == code)
