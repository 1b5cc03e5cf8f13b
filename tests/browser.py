"""Headless Chromium (Debian's `chromium`, scripts/ensure-chromium.sh) and a minimal client of
its DevTools protocol, so a test can load a page as an operator's browser does: same JavaScript,
same CORS rules. Used by tests/test_codec.py (the Web UI through the codec server) and
tests/test_board.py (the supervision board refreshing itself)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
from pathlib import Path

import httpx

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Browser:
    """Headless Chromium and a minimal DevTools-protocol client (a WebSocket over asyncio), so a
    test can load the Web UI as an operator's browser does: same JavaScript, same CORS rules."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.proc: asyncio.subprocess.Process | None = None
        self.next_id = 0

    async def __aenter__(self) -> Browser:
        self.proc = await asyncio.create_subprocess_exec(
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        content = ""
        for _ in range(300):
            try:
                content = await asyncio.to_thread(port_file.read_text)
            except FileNotFoundError:
                content = ""
            if "\n" in content:
                break
            await asyncio.sleep(0.1)
        port = int(content.split()[0])
        async with httpx.AsyncClient(trust_env=False) as http:
            targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
        ws_url = next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
        path = "/" + ws_url.split("/", 3)[3]
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        assert b" 101 " in head.split(b"\r\n", 1)[0], head
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()
        assert self.proc is not None
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        data = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        n = len(data)
        size = bytes([0x80 | n]) if n < 126 else (
            bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 65536 else bytes([0x80 | 127]) + n.to_bytes(8, "big"))
        self.writer.write(b"\x81" + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        await self.writer.drain()
        while True:  # events arrive in between; wait for our answer
            message = json.loads(await self._read_message())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    async def _read_message(self) -> bytes:
        chunks = []
        while True:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            chunk = await self.reader.readexactly(n)
            if b0 & 0x0F in (0x1, 0x0):  # text, continuation (pings and the like are ignored)
                chunks.append(chunk)
                if b0 & 0x80:
                    return b"".join(chunks)

    async def page_text(self, url: str, wanted: str, timeout: float = 60) -> str:
        """Open `url`; the page's visible text once it contains `wanted` (or at the timeout)."""
        await self.call("Page.navigate", url=url)
        text = ""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline and wanted not in text:
            await asyncio.sleep(0.5)
            result = await self.call("Runtime.evaluate", returnByValue=True,
                                     expression="document.body ? document.body.innerText : ''")
            text = result["result"].get("value") or ""
        return text

    async def fetch_status(self, url: str) -> str:
        """POST {"payloads": []} to `url` from the current page, as the Web UI's code does."""
        result = await self.call("Runtime.evaluate", awaitPromise=True, returnByValue=True, expression=(
            f"fetch({json.dumps(url)}, {{method: 'POST', body: JSON.stringify({{payloads: []}}), "
            "headers: {'Content-Type': 'application/json', 'X-Namespace': 'default'}})"
            ".then(r => 'status ' + r.status, e => 'blocked ' + e.message)"))
        return result["result"]["value"]
