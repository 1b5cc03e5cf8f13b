"""`make bench` (python -m bench): every part on its own embedded stack, one table on stdout, and
docs/benchmarks.md. Progress lines go to stderr.

The whole run must stay under 15 minutes on 2 cores, so the parts run in a fixed order and the
last one (fan-out) gets whatever time is left: each of its scales runs to completion or to its
share of that time, and a capped scale is reported as such. Sizes can be changed for a longer run:
BENCH_LIFECYCLES (overhead, default 60), BENCH_BUDGET_S (default 840 for the whole bench; none when
BENCH_PARTS picks some parts: every fan-out scale then runs to completion), BENCH_PARTS (comma list
of overhead,callbacks,sandbox,ledger,xlsx,fanout: a partial run prints its table and keeps its raw
results but leaves docs/benchmarks.md alone), BENCH_FANOUT_SERVER (dev, the default, or
time-skipping), BENCH_FANOUT_SCALES (default 1000,5000,10000). `BENCH_PARTS=fanout make bench`
runs the 1,000 / 5,000 / 10,000-unit rounds to completion.

The bench never reads the operator's configuration: DUCHA_* variables are dropped and the data dir
is a throwaway one (bench/stack.py `isolate`), and every server listens on a free port, so it runs
the same beside a `make up` and whatever `.data/` holds.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback
from datetime import UTC, datetime

from bench import callbacks, fanout, ledger_queries, overhead, report, sandbox, xlsx_export
from bench.stack import isolate, machine, say

PARTS = ("overhead", "callbacks", "sandbox", "ledger", "xlsx", "fanout")


async def main() -> int:
    from workers.logging import configure_logging

    isolate()  # no DUCHA_* variable and no .data/ of a `make up` reach the bench
    configure_logging("console", "warning")  # the bench process's own activity calls stay quiet
    began = time.monotonic()
    wanted = [p.strip() for p in os.environ.get("BENCH_PARTS", ",".join(PARTS)).split(",") if p.strip()]
    if unknown := [p for p in wanted if p not in PARTS]:
        say(f"bench: unknown part(s) {', '.join(unknown)} in BENCH_PARTS; the parts are {','.join(PARTS)}")
        return 2
    full = set(wanted) == set(PARTS)
    # The whole bench fits 15 minutes; a partial run without BENCH_BUDGET_S runs every fan-out
    # scale to completion (fanout.UNCAPPED_S only stops a round that is stuck).
    given = os.environ.get("BENCH_BUDGET_S")
    budget = float(given) if given else 840.0 if full else None
    # The throwaway stacks' ledgers are chained with a key of this run (config/chain_key.py);
    # worker processes inherit it (set after `isolate` dropped the shell's DUCHA_* variables).
    from config.chain_key import ChainKey

    os.environ.setdefault("DUCHA_LEDGER_CHAIN_KEY", ChainKey.generate().to_base64())
    results: dict = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                     "errors": {}, "seconds": {}}
    say(f"bench: {results['machine']['cpu']}, {results['machine']['nproc']} cores, "
        f"load {results['machine']['load']}; " + (f"budget {budget:.0f}s" if budget else "no budget (BENCH_PARTS "
                                                   "without BENCH_BUDGET_S): fan-out scales run to completion"))
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
        scales = tuple(int(x) for x in os.environ.get("BENCH_FANOUT_SCALES", "").split(",") if x.strip()) \
            or fanout.SCALES
        if budget is None:
            caps = (fanout.UNCAPPED_S,) * len(scales)
        else:
            left = budget - (time.monotonic() - began) - 20  # the report and the last stack's shutdown
            caps = fanout.caps_for(left, scales)
        return await fanout.run(scales=scales, caps=caps, server=os.environ.get("BENCH_FANOUT_SERVER", "dev"))

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
    if full:
        path = report.write(results)
        say(f"bench: wrote {path} in {results['total_seconds']:.0f}s total")
    else:
        say(f"bench: {','.join(wanted)} only, {results['total_seconds']:.0f}s total; docs/benchmarks.md "
            "is written by a full run (or: python -m bench.report RESULTS)")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
