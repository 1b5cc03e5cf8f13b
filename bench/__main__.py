"""`make bench` (python -m bench): every part on its own embedded stack, one table on stdout, and
docs/benchmarks.md. Progress lines go to stderr.

The whole run must stay under 15 minutes on 2 cores, so the parts run in a fixed order and the
last one (fan-out) gets whatever time is left: each of its scales runs to completion or to its
share of that time, and a capped scale is reported as such. Sizes can be changed for a longer run:
BENCH_LIFECYCLES (overhead, default 60), BENCH_BUDGET_S (default 840), BENCH_PARTS (comma list of
overhead,callbacks,sandbox,ledger,xlsx,fanout), BENCH_FANOUT_SERVER (dev, the default, or time-skipping).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback
from datetime import UTC, datetime

from bench import callbacks, fanout, ledger_queries, overhead, report, sandbox, xlsx_export
from bench.stack import machine, say

PARTS = ("overhead", "callbacks", "sandbox", "ledger", "xlsx", "fanout")


async def main() -> int:
    from workers.logging import configure_logging

    configure_logging("console", "warning")  # the bench process's own activity calls stay quiet
    began = time.monotonic()
    # The throwaway stacks' ledgers are chained with a key of this run (config/chain_key.py);
    # worker processes inherit it.
    from config.chain_key import ChainKey

    os.environ.setdefault("DUCHA_LEDGER_CHAIN_KEY", ChainKey.generate().to_base64())
    budget = float(os.environ.get("BENCH_BUDGET_S", "840"))
    wanted = os.environ.get("BENCH_PARTS", ",".join(PARTS)).split(",")
    results: dict = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                     "errors": {}, "seconds": {}}
    say(f"bench: {results['machine']['cpu']}, {results['machine']['nproc']} cores, "
        f"load {results['machine']['load']}; budget {budget:.0f}s")
    histories: dict = {}

    async def part(name: str, coro_fn) -> None:
        if name not in wanted:
            return
        t0 = time.monotonic()
        try:
            results[name] = await coro_fn()
        except Exception as exc:  # a failed part is reported, the others still run
            results["errors"][name] = f"{type(exc).__name__}: {exc}"
            say(f"bench: {name} failed: {exc}")
            traceback.print_exc(file=sys.stderr)
        results["seconds"][name] = time.monotonic() - t0
        say(f"bench: {name} took {results['seconds'][name]:.0f}s ({time.monotonic() - began:.0f}s so far)")

    async def run_overhead():
        r = await overhead.run(n=int(os.environ.get("BENCH_LIFECYCLES", "60")))
        histories.update(r.pop("replay_histories"))
        return r

    async def run_callbacks():
        r = await callbacks.run()
        histories.update(r.pop("replay_histories", {}))
        return r

    async def run_sandbox():
        return await sandbox.run({k: v[:60] for k, v in histories.items()} if histories
                                 else await sandbox.collect_histories())

    async def run_fanout():
        left = budget - (time.monotonic() - began) - 20  # the report and the last stack's shutdown
        caps = fanout.caps_for(left)
        return await fanout.run(caps=caps, server=os.environ.get("BENCH_FANOUT_SERVER", "dev"))

    await part("overhead", run_overhead)
    await part("callbacks", run_callbacks)
    await part("sandbox", run_sandbox)
    await part("ledger", ledger_queries.run)
    await part("xlsx", xlsx_export.run)
    await part("fanout", run_fanout)
    results["total_seconds"] = time.monotonic() - began
    saved = report.save(results)
    say(f"bench: raw results in {saved} (python -m bench.report {saved} writes the page again)")
    table = report.table(results)
    print(table)
    path = report.write(results)
    say(f"bench: wrote {path} in {results['total_seconds']:.0f}s total")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
