"""A small sampling profiler for the worker process: every few milliseconds it looks at every
Python thread's stack (sys._current_frames) and counts, for each busy thread, where the time is:

- `self`: the library of the innermost frame (asyncpg, pydantic, the workflow sandbox, …);
- `within`: the first frame of the project or of a Temporal worker stage seen walking outwards
  (an activity method such as ledger.record_clue, a workflow's code, the SDK's activation);
- `top`: the innermost function (a flat profile).

Samples are wall-clock time of threads that are not idle: a thread waiting for the GIL counts, so
the sum can exceed the process's CPU time; compare shares, not absolute values. Work done in the
SDK's Rust core (gRPC, protobuf) is not seen here, only in the process's CPU time. It works with
asyncio and with the SDK's workflow threads, costs about 1-2 % CPU, and needs no ptrace (py-spy
cannot attach in every container).
"""

from __future__ import annotations

import collections
import sys
import threading
import time

# (path fragment, label): first match wins, so more specific fragments come first.
SELF_LIBRARIES = [
    ("<frozen importlib", "import machinery (module imports)"),
    ("/importlib/", "import machinery (module imports)"),
    ("/temporalio/worker/workflow_sandbox/", "temporalio: workflow sandbox"),
    ("/temporalio/worker/_workflow_instance", "temporalio: workflow activation"),
    ("/temporalio/worker/_workflow.py", "temporalio: workflow worker"),
    ("/temporalio/worker/_activity", "temporalio: activity worker"),
    ("/temporalio/converter", "temporalio: payload conversion"),
    ("/temporalio/contrib/pydantic", "temporalio: payload conversion"),
    ("/temporalio/bridge/", "temporalio: core bridge"),
    ("/temporalio/api/", "temporalio: protobuf"),
    ("/google/protobuf/", "temporalio: protobuf"),
    ("/temporalio/", "temporalio: other"),
    ("/pydantic_core/", "pydantic"),
    ("/pydantic/", "pydantic"),
    ("/asyncpg/", "asyncpg (PostgreSQL client)"),
    ("/httpx/", "httpx/httpcore (HTTP client)"),
    ("/httpcore/", "httpx/httpcore (HTTP client)"),
    ("/h11/", "httpx/httpcore (HTTP client)"),
    ("/anyio/", "httpx/httpcore (HTTP client)"),
    ("/structlog/", "logging"),
    ("/logging/", "logging"),
    ("/json/", "json"),
    ("/asyncio/", "asyncio event loop"),
    ("/selectors.py", "asyncio event loop"),
    ("/holidays/", "calendar (holidays)"),
    ("/zoneinfo/", "datetime/zoneinfo"),
    ("/_strptime.py", "datetime/zoneinfo"),
    ("/rules/signing.py", "signing (HMAC)"),
    ("/hmac.py", "signing (HMAC)"),
    ("/rules/address_guard.py", "callback address guard (DNS)"),
    ("/socket.py", "callback address guard (DNS)"),
    ("/ipaddress.py", "callback address guard (DNS)"),
    ("/activities/", "project: activities"),
    ("/workflows/", "project: workflows"),
    ("/rules/", "project: rules"),
    ("/schemas/", "project: schemas"),
    ("/bench/", "bench code"),
]

# Stages seen walking outwards from the innermost frame.
WITHIN_STAGES = [
    ("/workflows/", None),  # project workflow code: labelled by module
    ("/activities/", None),  # project activity code: labelled by the activity method
    ("/temporalio/worker/workflow_sandbox/", "workflow sandbox (SDK)"),
    ("/temporalio/worker/_workflow_instance", "workflow activation (SDK)"),
    ("/temporalio/worker/_workflow.py", "workflow task handling (SDK)"),
    ("/temporalio/worker/_activity", "activity task handling (SDK)"),
    ("/temporalio/client", "client calls (SDK)"),
    ("/temporalio/", "other SDK"),
]

IDLE = {
    ("selectors.py", "select"),
    ("threading.py", "wait"),
    ("threading.py", "_wait_for_tstate_lock"),
    ("thread.py", "_worker"),
    ("queue.py", "get"),
}

# A worker thread handing a result to the event loop, or the loop reading that hand-over: a sample
# there is mostly a thread waiting for the GIL, not work.
WAKE_UPS = {"_write_to_self", "_read_from_self"}

ACTIVITY_FUNCTIONS = {
    "publish": "callbacks.publish", "deliver_attempt": "callbacks.deliver_attempt",
    "_attempt": "callbacks.deliver_attempt", "_post": "callbacks.deliver_attempt",
    "_record": "callbacks.deliver_attempt", "mark_dead": "callbacks.mark_dead",
    "deliver": "callbacks.publish (first attempt)", "_deliver": "callbacks.publish (first attempt)",
    "_hand_over": "callbacks.publish (hand over to CallbackDelivery)",
    "_start_delivery": "callbacks.publish (hand over to CallbackDelivery)",
    "record_clue": "ledger.record_clue", "record_rectification": "ledger.record_rectification",
    "plan_deadline": "calendar.plan_deadline", "work_calendar": "calendar.plan_deadline",
    "require_parties": "registry.require_parties", "lookup_parties": "registry.lookup_parties",
    "authorize": "registry.authorize", "start_inspections": "inspection.start",
    "record_round": "ledger.record_round", "round_inputs": "inspection.round_inputs",
    "describe": "inspection.describe", "record_inspection": "ledger.record_inspection",
}


def _label_self(filename: str) -> str:
    for fragment, label in SELF_LIBRARIES:
        if fragment in filename:
            return label
    if "/python3" in filename or filename.startswith("<"):
        return "stdlib " + filename.rsplit("/", 1)[-1].strip("<>")
    return "other"


def _label_within(frame) -> str:
    f = frame
    while f is not None:
        name = f.f_code.co_filename
        for fragment, label in WITHIN_STAGES:
            if fragment not in name:
                continue
            if label is not None:
                return label
            # The outermost frame of the project's code is the activity method / workflow module.
            outer = f
            while f is not None:
                if fragment in f.f_code.co_filename:
                    outer = f
                f = f.f_back
            if fragment == "/activities/":
                fn = outer.f_code.co_name
                return "activity " + ACTIVITY_FUNCTIONS.get(fn, fn)
            return "workflow code " + outer.f_code.co_filename.rsplit("/", 1)[-1]
        f = f.f_back
    return "outside the SDK (event loop, I/O callbacks)"


def _label_top(code) -> str:
    path = code.co_filename
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{short}:{code.co_name}"


class Sampler:
    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.lock = threading.Lock()
        self.reset()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def reset(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.samples = 0
            self.busy = 0
            self.self_counts: collections.Counter[str] = collections.Counter()
            self.within_counts: collections.Counter[str] = collections.Counter()
            self.top_counts: collections.Counter[str] = collections.Counter()
            self.started = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            frames = sys._current_frames()
            with self.lock:
                self.samples += 1
                for ident, frame in frames.items():
                    if ident == me:
                        continue
                    code = frame.f_code
                    if (code.co_filename.rsplit("/", 1)[-1], code.co_name) in IDLE:
                        continue
                    self.busy += 1
                    if code.co_name in WAKE_UPS:
                        self.self_counts["thread wake-ups / GIL wait (asyncio self-pipe)"] += 1
                    else:
                        self.self_counts[_label_self(code.co_filename)] += 1
                    self.within_counts[_label_within(frame)] += 1
                    self.top_counts[_label_top(code)] += 1

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "seconds": time.monotonic() - self.started,
                "interval": self.interval,
                "samples": self.samples,
                "busy": self.busy,
                "self": dict(self.self_counts.most_common()),
                "within": dict(self.within_counts.most_common()),
                "top": dict(self.top_counts.most_common(40)),
            }
