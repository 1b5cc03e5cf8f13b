"""A bench worker in its own process: `python -m bench.worker_proc '<json config>'`.

config: temporal_address, postgres_url, task_queue, profile_path, and
  mode       "full"   the production worker (workers.worker.build_worker: every workflow and
                      activity, the same settings, interceptors and workflow runner), plus, when
                      baseline_task_queue is given, the bare baseline (bench.baseline) on it with
                      the SDK's default (sandboxed) runner and on `<baseline_task_queue>-same`
                      with the production worker's runner;
             "fanout" AnnualInspectionRound and CallbackDelivery with real activities, and the
                      scaled-down UnitInspection of the round's own scale test
                      (tests/fast_inspection.py) for the unit inspections: days long, or
                      seconds long with "stand_in": "seconds" (a dev server: real time);
  settings   extra Settings fields (e.g. max_cached_workflows).

Prints READY once the workers poll. SIGUSR1 resets the sampling profiler, SIGUSR2 writes its
counts to profile_path, SIGTERM stops.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path

from bench.sampler import Sampler


def _write_profile(sampler: Sampler, path: str) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(sampler.snapshot()))
    tmp.replace(path)


async def main(cfg: dict) -> None:
    from temporalio.worker import Worker

    from activities import build_activities
    from activities.callbacks import make_http_client
    from config.settings import Settings
    from workers.client import connect
    from workers.db import create_pool
    from workers.log_context import LogContextInterceptor
    from workers.logging import configure_logging
    from workers.worker import build_worker

    configure_logging("json", cfg.get("log_level", "info"))
    settings = Settings(database_url=cfg["postgres_url"], temporal_address=cfg["temporal_address"],
                        task_queue=cfg["task_queue"], callback_allowlist=["127.0.0.1"],
                        **cfg.get("settings", {}))
    sampler = Sampler()
    sampler.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, sampler.reset)
    loop.add_signal_handler(signal.SIGUSR2, lambda: _write_profile(sampler, cfg["profile_path"]))

    def same_settings(**kw) -> dict:
        return dict(interceptors=[LogContextInterceptor()],
                    max_cached_workflows=settings.max_cached_workflows,
                    max_concurrent_activities=settings.max_concurrent_activities,
                    max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
                    graceful_shutdown_timeout=timedelta(seconds=10), **kw)

    async with AsyncExitStack() as stack:
        pool = await create_pool(settings.postgres_url)
        stack.push_async_callback(pool.close)
        http = await stack.enter_async_context(make_http_client(settings))
        client = await connect(settings)
        workers: list[Worker] = []
        if cfg["mode"] == "full":
            workers.append(build_worker(client, pool, settings, http, task_queue=cfg["task_queue"]))
            if cfg.get("baseline_task_queue"):
                from bench.baseline import BenchBaseline, noop
                from workers.worker import workflow_runner

                # The bare baseline as the SDK's samples run it (the default, sandboxed runner) ...
                workers.append(Worker(client, task_queue=cfg["baseline_task_queue"],
                                      workflows=[BenchBaseline], activities=[noop], **same_settings()))
                # ... and on the production worker's runner (the same-runner baseline and the mirror).
                workers.append(Worker(client, task_queue=cfg["baseline_task_queue"] + "-same",
                                      workflows=[BenchBaseline], activities=[noop],
                                      **same_settings(workflow_runner=workflow_runner(settings))))
        elif cfg["mode"] == "fanout":
            from tests.fast_inspection import FastUnitInspection, SecondsUnitInspection
            from workflows.annual_round import AnnualInspectionRound
            from workflows.callback_delivery import CallbackDelivery

            workers.append(Worker(
                client, task_queue=cfg["task_queue"],
                workflows=[AnnualInspectionRound, CallbackDelivery,
                           SecondsUnitInspection if cfg.get("stand_in") == "seconds" else FastUnitInspection],
                activities=build_activities(pool, settings, client, http), **same_settings()))
        else:
            raise SystemExit(f"unknown mode {cfg['mode']!r}")
        for w in workers:
            await stack.enter_async_context(w)
        print("READY", flush=True)
        await stop.wait()
    sampler.stop()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
