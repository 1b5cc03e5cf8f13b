"""Part 4, callbacks: signed deliveries per second to a local receiver, and what signing costs.

- signing: rules/signing.webhook_headers on a real envelope (rules' own build_body), one secret
  and two (during a rotation), µs per call with timeit; and the receiver's verify;
- POSTs from one process to the receiver (tests/support.Receiver, which verifies every
  signature, run in its own process): unsigned, then signed (the same body and client);
- `callbacks.deliver_attempt` called directly (PostgreSQL reads, the address guard, signing,
  the POST and the attempt log), 20 at a time;
- the full path, on the dev server with the production worker, until every delivery is recorded
  as delivered: `callbacks.publish` to a healthy receiver (each delivery made at publish's own
  first attempt), and to a receiver that answers 503 to the first request of every delivery
  (publish's attempt fails, a CallbackDelivery workflow per delivery makes the second one).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import timeit
import uuid
from datetime import UTC, datetime

import psutil
from temporalio.api.enums.v1 import EventType as HistoryEventType

from bench.stack import CpuMeter, Stack, WorkerProcess, say, stack
from config.settings import PROJECT_ROOT

IN_FLIGHT = 20


def envelope(secret_holder: str = "law_office") -> tuple[bytes, str]:
    from activities.callbacks import build_body
    from config.settings import Settings

    body = build_body(
        event_id="clue-2026-0007.1", type="clue.transferred", occurred_at=datetime.now(UTC),
        recipient=secret_holder, workflow_id="clue-2026-0007",
        summary="县人民法院向县委依法治县办移送线索 2026-0007，请签收",
        data={"clue_no": "2026-0007", "stage": "transferred", "route": "to_law_office",
              "subject_unit": "market_regulation"}, zone=Settings().zone)
    return body, "clue-2026-0007.1"


def signing_cost() -> dict:
    from activities.registry import new_secret
    from rules.signing import verify, webhook_headers

    body, msg_id = envelope()
    one, two = new_secret(), [new_secret(), new_secret()]
    n = 20_000
    out = {"body_bytes": len(body), "iterations": n}
    out["sign_us"] = 1e6 * min(timeit.repeat(lambda: webhook_headers(one, msg_id, body), number=n, repeat=3)) / n
    out["sign_two_secrets_us"] = 1e6 * min(timeit.repeat(
        lambda: webhook_headers(two, msg_id, body), number=n, repeat=3)) / n
    headers = webhook_headers(one, msg_id, body)
    out["verify_us"] = 1e6 * min(timeit.repeat(lambda: verify(one, headers, body), number=n, repeat=3)) / n
    return out


# --- the receiver in its own process -----------------------------------------------------------


FLAKY = "flaky_"  # a path segment: /hooks/flaky_{code} answers 503 to a delivery's first request
_REASONS = {204: "No Content", 503: "Service Unavailable"}


class KeepAliveReceiver(asyncio.Protocol):
    """POST /hooks/{code} over HTTP/1.1 keep-alive (as agencies' servers and the demo receiver
    on uvicorn do): verifies every Standard Webhooks signature with its own hmac/base64 code,
    counts, and answers 204 (or 503 to the first request of each delivery to a FLAKY path).
    One connection serves any number of requests until the client closes it."""

    def __init__(self, state: dict) -> None:
        self.state = state
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.state["connections"] += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            length = int(headers.get("content-length", "0"))
            if len(self.buf) < end + 4 + length:
                return  # the body is still coming
            body = bytes(self.buf[end + 4:end + 4 + length])
            del self.buf[:end + 4 + length]
            status = self._answer(lines[0].split(" ")[1], headers, body)
            close = headers.get("connection", "").lower() == "close"
            assert self.transport is not None
            self.transport.write(f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-length: 0\r\n"
                                 f"{'connection: close' + chr(13) + chr(10) if close else ''}\r\n".encode())
            if close:
                self.transport.close()
                return

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        st = self.state
        code = path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        msg_id = headers.get("webhook-id", "")
        st["received"] += 1
        secret = st["secrets"].get(code)
        if secret and msg_id:
            key = base64.b64decode(secret.removeprefix("whsec_"))
            signed = f"{msg_id}.{headers.get('webhook-timestamp')}.".encode() + body
            expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
            given = [s.split(",", 1)[1] for s in headers.get("webhook-signature", "").split() if "," in s]
            st["verified"] += any(hmac.compare_digest(expected, g) for g in given)
        if not code.startswith(FLAKY) or not msg_id or (code, msg_id) in st["seen"]:
            return 204
        st["seen"].add((code, msg_id))
        return 503


def _receiver_main(secrets_json: str) -> None:
    """`python -m bench.callbacks receive SECRETS`: a KeepAliveReceiver on 127.0.0.1 until stdin
    closes; secrets are also registered under FLAKY + code."""

    async def serve() -> None:
        secrets = json.loads(secrets_json)
        secrets.update({FLAKY + k: v for k, v in list(secrets.items())})
        state = {"secrets": secrets, "seen": set(), "received": 0, "verified": 0, "connections": 0}
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: KeepAliveReceiver(state), "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.to_thread(sys.stdin.read)
        print(json.dumps({k: state[k] for k in ("received", "verified", "connections")}), flush=True)
        server.close()

    asyncio.run(serve())


class ReceiverProcess:
    def __init__(self, secrets: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.callbacks", "receive", json.dumps(secrets)], cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def url(self, code: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{code}"

    def stop(self) -> dict:
        out, _ = self.proc.communicate("", timeout=30)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


# --- the measurements --------------------------------------------------------------------------


async def _bounded(n: int, fn) -> float:
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> None:
        async with limit:
            await fn(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - t0


async def posts_per_second(url: str, secret: str, n: int) -> dict:
    """Bare POSTs through the callbacks' own client (activities/pinned_http.py) to the receiver:
    no database, no publish; the rate a delivery's other work is compared with."""
    from activities.callbacks import make_http_client
    from config.settings import Settings
    from rules.address_guard import check_url
    from rules.signing import webhook_headers

    body, msg_id = envelope()
    target = check_url(url, ["127.0.0.1"])
    async with make_http_client(Settings()) as http:
        async def unsigned(_: int) -> None:
            assert (await http.post(target, body, {"content-type": "application/json"})).status < 300

        async def signed(_: int) -> None:
            headers = {**webhook_headers(secret, msg_id, body), "content-type": "application/json"}
            assert (await http.post(target, body, headers)).status < 300

        await _bounded(50, unsigned)  # warm
        plain = await _bounded(n, unsigned)
        sig = await _bounded(n, signed)
    return {"n": n, "unsigned_per_s": n / plain, "signed_per_s": n / sig}


async def _events(st: Stack, n: int, recipients: list[str], tag: str) -> list[str]:
    """n recorded callback events (as `publish` records them), each with its deliveries."""
    ids = [f"bench-{tag}-{i:05d}" for i in range(n)]
    now = datetime.now(UTC)
    async with st.pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            "INSERT INTO callback_events (event_id, type, workflow_id, summary, data, occurred_at) "
            "VALUES ($1, 'clue.transferred', $2, $3, $4, $5)",
            [(e, f"clue-{e}", "县人民法院向县委依法治县办移送线索，请签收",
              {"clue_no": e, "stage": "transferred", "route": "to_law_office"}, now) for e in ids])
        await conn.executemany(
            "INSERT INTO callback_deliveries (event_id, recipient) VALUES ($1, $2)",
            [(e, r) for e in ids for r in recipients])
    return ids


def _meter(st: Stack, worker: WorkerProcess | None, receiver: ReceiverProcess) -> CpuMeter:
    meter = CpuMeter(st, worker)
    meter.procs["receiver"] = (psutil.Process(receiver.proc.pid), False)
    return meter


async def deliver_attempts(st: Stack, n: int, receiver: ReceiverProcess) -> dict:
    from activities.callbacks import CallbackActivities, make_http_client
    from config.settings import Settings
    from schemas.callbacks import AttemptInput

    settings = Settings(database_url=st.db_url, callback_allowlist=["127.0.0.1"])
    ids = await _events(st, n, ["law_office"], "direct")
    meter = _meter(st, None, receiver)
    async with make_http_client(settings) as http:
        acts = CallbackActivities(st.pool, settings, None, http)
        await acts.deliver_attempt(AttemptInput(event_id=ids[0], recipient="law_office"))  # warm
        meter.start()
        wall = await _bounded(n - 1, lambda i: acts.deliver_attempt(
            AttemptInput(event_id=ids[i + 1], recipient="law_office")))
        cpu = meter.stop()
    delivered = await st.pool.fetchval(
        "SELECT count(*) FROM callback_deliveries WHERE event_id = ANY($1::text[]) AND status = 'delivered'", ids)
    return {"n": n - 1, "per_s": (n - 1) / wall, "delivered": delivered,
            "cpu_ms_per_delivery": {k: 1000 * v / (n - 1) for k, v in cpu.items()}}


async def full_path(st: Stack, events: int, recipients: list[str], tag: str, receiver: ReceiverProcess,
                    cap: float = 60.0) -> dict:
    """A burst of `events` published 20 at a time, on the production worker, until every
    delivery is delivered or `cap` seconds have passed. The retry schedule's second wait is
    0.5 s, so a retried delivery's wall time is not the schedule's."""
    from activities.callbacks import CallbackActivities
    from config.settings import Settings
    from schemas.events import EventType, PublishEvent

    tq = f"bench-cb-{uuid.uuid4().hex[:6]}"
    config: dict = {"mode": "full", "task_queue": tq, "profile_path": str(st.root / f"profile-cb-{tag}.json")}
    worker = await WorkerProcess(st, config).start()
    try:
        settings = Settings(database_url=st.db_url, callback_allowlist=["127.0.0.1"],
                            callback_retry_schedule=[0, 0.5, 300])
        acts = CallbackActivities(st.pool, settings, st.client, task_queue=tq)
        now = datetime.now(UTC)

        def event(i: int, tag: str) -> PublishEvent:
            return PublishEvent(event_id=f"bench-{tag}-{i:05d}", type=EventType.CLUE_TRANSFERRED,
                                recipients=recipients, workflow_id=f"clue-bench-{i}",
                                summary="县人民法院向县委依法治县办移送线索，请签收",
                                data={"clue_no": f"bench-{i}", "stage": "transferred"}, occurred_at=now)

        await _bounded(10, lambda i: acts.publish(event(i, f"warm{tag}")))
        await _wait_delivered(st, 60)
        meter = _meter(st, worker, receiver)
        worker.reset_profile()
        profiler = _profiler(tag)
        meter.start()
        t0 = time.perf_counter()
        await _bounded(events, lambda i: acts.publish(event(i, tag)))
        published = time.perf_counter() - t0
        _report_profile(profiler, tag)
        await _wait_delivered(st, cap)
        wall = time.perf_counter() - t0
        cpu = meter.stop()
        profile = await worker.read_profile()
        n = events * len(recipients)
        like = f"bench-{tag}-%"
        delivered = await st.pool.fetchval(
            "SELECT count(*) FROM callback_deliveries WHERE event_id LIKE $1 AND status = 'delivered'", like)
        errors = {f"{r['status']}: {r['last_error'] or '-'}": r["n"] for r in await st.pool.fetch(
            "SELECT status, last_error, count(*) AS n FROM callback_deliveries "
            "WHERE event_id LIKE $1 AND status <> 'delivered' GROUP BY 1, 2", like)}
        first_errors = {f"{r['http_status'] or '-'}: {(r['error'] or '-')[:80]}": r["n"] for r in await st.pool.fetch(
            "SELECT http_status, error, count(*) AS n FROM callback_attempts WHERE event_id LIKE $1 "
            "AND attempt_no = 1 AND (http_status IS NULL OR http_status >= 300) GROUP BY 1, 2", like)}
        workflows = await st.pool.fetchval(
            "SELECT count(delivery_workflow_id) FROM callback_deliveries WHERE event_id LIKE $1", like)
        sample = [r["delivery_workflow_id"] for r in await st.pool.fetch(
            "SELECT delivery_workflow_id FROM callback_deliveries WHERE event_id LIKE $1 "
            "AND delivery_workflow_id IS NOT NULL ORDER BY id LIMIT 60", like)]
        timeouts = 0
        histories = []
        for wid in sample:
            h = await st.client.get_workflow_handle(wid).fetch_history()
            histories.append(h)
            timeouts += sum(e.event_type == HistoryEventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT for e in h.events)
        if pending := events * len(recipients) - delivered:
            # Left running past the cap: stop them so the next run starts clean.
            await st.pool.execute("UPDATE callback_deliveries SET status = 'failed', last_error = 'bench cap' "
                                  "WHERE event_id LIKE $1 AND status = 'pending'", like)
    finally:
        await worker.stop()
    return {"events": events, "recipients": len(recipients), "deliveries": n, "delivered": delivered,
            "per_s": delivered / wall, "publish_s": published, "wall": wall, "not_delivered": errors,
            "pending_at_cap": pending, "delivery_workflows": workflows,
            "first_attempt_failures": first_errors, "histories": histories,
            "workflow_task_timeouts_per_delivery_workflow": timeouts / max(1, len(sample)),
            "profile_top_ms": {k: 1000 * v * profile.get("interval", 0.005) / n
                               for k, v in list(profile.get("top", {}).items())[:15]},
            "profile_within_ms": {k: 1000 * v * profile.get("interval", 0.005) / n
                                  for k, v in list(profile.get("within", {}).items())[:10]},
            "cpu_ms_per_delivery": {k: 1000 * v / max(1, delivered) for k, v in cpu.items()}}


def _profiler(tag: str):
    """With BENCH_CALLBACKS_PROFILE=DIR, the driver's burst of publishes runs under cProfile."""
    if not os.environ.get("BENCH_CALLBACKS_PROFILE"):
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _report_profile(profiler, tag: str) -> None:
    if profiler is None:
        return
    import io
    import pstats
    from pathlib import Path

    profiler.disable()
    folder = Path(os.environ["BENCH_CALLBACKS_PROFILE"])
    folder.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(folder / f"publish-{tag}.prof")
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
    (folder / f"publish-{tag}.txt").write_text(text.getvalue())
    say(f"callbacks: cProfile of the {tag} burst in {folder}")


async def _wait_delivered(st: Stack, timeout: float) -> None:
    for _ in range(int(timeout / 0.1)):
        if not await st.pool.fetchval("SELECT count(*) FROM callback_deliveries WHERE status = 'pending'"):
            return
        await asyncio.sleep(0.1)


async def run(posts: int = 600, direct: int = 300, events: int = 200, retry_events: int = 30,
              cap: float = 35.0) -> dict:
    out: dict = {"signing": await asyncio.to_thread(signing_cost)}
    say(f"callbacks: signing {out['signing']['sign_us']:.1f} µs per signature "
        f"({out['signing']['body_bytes']} byte body), verify {out['signing']['verify_us']:.1f} µs")
    async with stack("callbacks") as st:
        receiver = await asyncio.to_thread(ReceiverProcess, st.secrets)
        try:
            from activities.registry import RegistryStore

            store = RegistryStore(st.pool)
            for code, secret in st.secrets.items():
                await store.set_endpoint(code, receiver.url(code), secret)
            out["posts"] = await posts_per_second(receiver.url("law_office"), st.secrets["law_office"], posts)
            say(f"callbacks: POST unsigned {out['posts']['unsigned_per_s']:.0f}/s, "
                f"signed {out['posts']['signed_per_s']:.0f}/s")
            out["deliver_attempt"] = await deliver_attempts(st, direct, receiver)
            say(f"callbacks: deliver_attempt {out['deliver_attempt']['per_s']:.0f}/s")
            recipients = ["law_office", "court", "discipline", "market_regulation", "justice"]
            for key, tag in (("full_path", "healthy"), ("full_path_retry", "flaky")):
                if tag == "flaky":
                    for code in recipients:
                        await store.set_endpoint(code, receiver.url(FLAKY + code), st.secrets[code])
                n = events if tag == "healthy" else retry_events
                r = out[key] = await full_path(st, n, recipients, tag, receiver, cap)
                if hs := r.pop("histories"):
                    out["replay_histories"] = {"CallbackDelivery": hs}
                say(f"callbacks: publish, {tag} receiver: {r['delivered']}/{r['deliveries']} delivered, "
                    f"{r['per_s']:.1f}/s, {r['delivery_workflows']} delivery workflows, "
                    f"{r['workflow_task_timeouts_per_delivery_workflow']:.2f} workflow-task timeouts per workflow")
        finally:
            out["receiver"] = await asyncio.to_thread(receiver.stop)
    return out


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "receive":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _receiver_main(sys.argv[2])
