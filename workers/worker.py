"""The worker: every workflow and activity of the project on task queue `ducha`."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import timedelta

import asyncpg
import structlog
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities import build_activities
from activities.callbacks import make_http_client
from activities.pinned_http import PinnedClient
from config.settings import Settings
from workers.client import connect
from workers.db import create_pool
from workers.log_context import LogContextInterceptor
from workflows.catalog import ALL_WORKFLOWS

log = structlog.get_logger(__name__)


def workflow_runner(settings: Settings) -> WorkflowRunner:
    """How the service's worker runs workflow code.

    By default without the SDK's sandbox: for a case workflow it re-imports the workflow's modules
    for every new run and re-enters itself for every activation and every payload, which costs a
    lifecycle more worker CPU than this layer's own work (docs/benchmarks.md, "the sandbox"). The
    sandbox still checks the workflow code where a mistake is caught before it runs here: every
    test worker (tests/conftest.py) and every replay (tests/test_replay_fixtures.py) use it;
    tests/test_workflow_runner.py refuses clock, random, I/O and environment calls anywhere in
    workflows/ and shows that running cases unsandboxed leaves no shared state changed.
    DUCHA_WORKFLOW_SANDBOX=true runs the service sandboxed as well."""
    return SandboxedWorkflowRunner() if settings.workflow_sandbox else UnsandboxedWorkflowRunner()


def build_worker(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    http: PinnedClient,
    *,
    task_queue: str | None = None,
    activities: Sequence | None = None,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=ALL_WORKFLOWS,
        activities=activities if activities is not None else build_activities(pool, settings, client, http),
        interceptors=[LogContextInterceptor()],
        workflow_runner=workflow_runner(settings),
        max_cached_workflows=settings.max_cached_workflows,
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set, or SIGINT/SIGTERM when no event is given."""
    stop = stop or _stop_on_signals()
    async with AsyncExitStack() as stack:
        pool = await create_pool(settings.postgres_url)
        stack.push_async_callback(pool.close)
        http = await stack.enter_async_context(make_http_client(settings))
        client = await connect(settings, metrics_port=settings.metrics_port)
        worker = build_worker(client, pool, settings, http)
        log.info("worker started", task_queue=settings.task_queue, metrics_port=settings.metrics_port or None)
        async with worker:
            await stop.wait()
            log.info("worker stopping")
    log.info("worker stopped")


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
