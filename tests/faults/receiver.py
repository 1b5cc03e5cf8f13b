"""A callback receiver that misbehaves on purpose, one delivery at a time.

Every (webhook-id, recipient) pair has its own attempt counter: the n-th request for that pair
gets `plan[n]` (then 204 for ever after). An answer is an HTTP status, `HANG` (read the request
and never answer, until the sender gives up and closes), or `(status, retry_after_seconds)`.
Signatures are verified independently of the product's code (tests.support.Receiver).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

from ..support import Receiver

HANG = "hang"
# A hanging answer is held at most this long even if the sender never gives up.
HANG_LIMIT_SECONDS = 120.0
Answer = int | str | tuple[int, int]


@dataclass
class Hit:
    webhook_id: str
    recipient: str
    type: str
    verified: bool
    at: float  # wall clock, time.time()
    answer: str  # "204", "500", "hang", "429 retry-after 3"

    @property
    def accepted(self) -> bool:
        return self.answer.isdigit() and 200 <= int(self.answer) < 300


@dataclass
class FaultReceiver(Receiver):
    plan: list[Answer] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            code = path.rstrip("/").rsplit("/", 1)[-1]
            payload = json.loads(body or b"{}")
            msg_id = headers.get("webhook-id", "")
            key = (msg_id, code)
            n = self.counts[key]
            self.counts[key] += 1
            answer = self.plan[n] if n < len(self.plan) else 204
            hit = Hit(msg_id, code, payload.get("type", ""), self._verify(code, headers, body),
                      time.time(), _label(answer))
            self.hits.append(hit)
            if answer == HANG:
                try:  # the sender's timeout closes the connection: read() returns b""
                    await asyncio.wait_for(reader.read(1), HANG_LIMIT_SECONDS)
                except (TimeoutError, ConnectionError):
                    pass
                return
            status, extra = (answer[0], f"Retry-After: {answer[1]}\r\n") if isinstance(answer, tuple) \
                else (int(answer), "")
            writer.write(f"HTTP/1.1 {status} X\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
                         .encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def answered(self) -> Counter:
        """How many requests got each kind of answer."""
        return Counter(h.answer for h in self.hits)

    def accepted_keys(self) -> set[tuple[str, str]]:
        """(webhook-id, recipient) pairs answered 2xx with a valid signature at least once."""
        return {(h.webhook_id, h.recipient) for h in self.hits if h.accepted and h.verified}


def _label(answer: Answer) -> str:
    if isinstance(answer, tuple):
        return f"{answer[0]} retry-after {answer[1]}"
    return str(answer)
