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
import json
import os
import subprocess
import sys
import time
import timeit
import uuid
from datetime import UTC, datetime

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


def _receiver_main(secrets_json: str) -> None:
    """`python -m bench.callbacks receive SECRETS`: tests.support.Receiver until stdin closes;
    secrets are also registered under FLAKY + code."""

    async def serve() -> None:
        from tests.support import Receiver

        seen: set[tuple[str, str]] = set()

        def answer(code: str, webhook_id: str) -> int:
            if not code.startswith(FLAKY) or (code, webhook_id) in seen:
                return 204
            seen.add((code, webhook_id))
            return 503

        secrets = json.loads(secrets_json)
        secrets.update({FLAKY + k: v for k, v in list(secrets.items())})
        r = await Receiver(secrets=secrets, answer=answer).start()
        print(r.port, flush=True)
        await asyncio.to_thread(sys.stdin.read)
        print(json.dumps({"received": len(r.received), "verified": sum(x.verified for x in r.received)}),
              flush=True)
        await r.stop()

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
    from activities.callbacks import make_http_client
    from config.settings import Settings
    from rules.signing import webhook_headers

    body, msg_id = envelope()
    async with make_http_client(Settings()) as http:
        async def unsigned(_: int) -> None:
            (await http.post(url, content=body, headers={"content-type": "application/json"})).raise_for_status()

        async def signed(_: int) -> None:
            headers = {**webhook_headers(secret, msg_id, body), "content-type": "application/json"}
            (await http.post(url, content=body, headers=headers)).raise_for_status()

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


async def deliver_attempts(st: Stack, n: int) -> dict:
    from activities.callbacks import CallbackActivities, make_http_client
    from config.settings import Settings
    from schemas.callbacks import AttemptInput

    settings = Settings(database_url=st.db_url, callback_allowlist=["127.0.0.1"])
    ids = await _events(st, n, ["law_office"], "direct")
    meter = CpuMeter(st, None)
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


async def full_path(st: Stack, events: int, recipients: list[str], tag: str, cap: float = 60.0) -> dict:
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
        meter = CpuMeter(st, worker)
        worker.reset_profile()
        meter.start()
        t0 = time.perf_counter()
        await _bounded(events, lambda i: acts.publish(event(i, tag)))
        published = time.perf_counter() - t0
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
            "pending_at_cap": pending, "delivery_workflows": workflows, "histories": histories,
            "workflow_task_timeouts_per_delivery_workflow": timeouts / max(1, len(sample)),
            "profile_top_ms": {k: 1000 * v * profile.get("interval", 0.005) / n
                               for k, v in list(profile.get("top", {}).items())[:15]},
            "profile_within_ms": {k: 1000 * v * profile.get("interval", 0.005) / n
                                  for k, v in list(profile.get("within", {}).items())[:10]},
            "cpu_ms_per_delivery": {k: 1000 * v / max(1, delivered) for k, v in cpu.items()}}


async def _wait_delivered(st: Stack, timeout: float) -> None:
    for _ in range(int(timeout / 0.1)):
        if not await st.pool.fetchval("SELECT count(*) FROM callback_deliveries WHERE status = 'pending'"):
            return
        await asyncio.sleep(0.1)


async def run(posts: int = 600, direct: int = 300, events: int = 30, cap: float = 35.0) -> dict:
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
            out["deliver_attempt"] = await deliver_attempts(st, direct)
            say(f"callbacks: deliver_attempt {out['deliver_attempt']['per_s']:.0f}/s")
            recipients = ["law_office", "court", "discipline", "market_regulation", "justice"]
            for key, tag in (("full_path", "healthy"), ("full_path_retry", "flaky")):
                if tag == "flaky":
                    for code in recipients:
                        await store.set_endpoint(code, receiver.url(FLAKY + code), st.secrets[code])
                r = out[key] = await full_path(st, events, recipients, tag, cap)
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
