"""Part xlsx: `ducha ledger --xlsx FILE` over 1,000,000 problems. The ledger is generated as in
the ledger part (bench/ledger_queries.py problem_rows, written with COPY by two processes), then
the real command runs as a child process; its wall time gives rows/s and os.wait4 its peak RSS
(ru_maxrss), which stays flat when the rows stream (server-side cursor, openpyxl write-only).
Rows per CPU second of the command is the figure to compare between runs: on a shared machine the
wall time mostly measures the other work (the load average is recorded)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from bench import ledger_queries as lq
from bench.stack import say, stack


def _export(db_url: str, out: Path) -> dict:
    """Run `ducha ledger --xlsx` as a child; its wall time and peak RSS."""
    env = {**os.environ, "DUCHA_DATABASE_URL": db_url}
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "workers.cli", "ledger", "--xlsx", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"ducha ledger --xlsx failed ({proc.returncode}): {stderr[-500:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime,
            "stdout": stdout.strip(), "bytes": out.stat().st_size, "load": [load, os.getloadavg()[0]]}


async def run() -> dict:
    async with stack("xlsx", temporal=False, registry=False) as st:
        now = datetime.now(UTC)
        units = lq._units([])
        await st.pool.executemany(
            "INSERT INTO parties (code, kind, name, leader, liaison) VALUES ($1, 'unit', $2, '{}', '{}')",
            [(u, f"第{u[-3:]}号行政执法单位") for u in units])
        say(f"xlsx: generating {lq.PROBLEMS:,} rectifications with COPY")
        t0 = time.perf_counter()
        years = list(range(now.year - lq.YEARS + 1, now.year + 1))
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as processes:
            rows = sum(await asyncio.gather(*[loop.run_in_executor(processes, lq._copy_years, st.db_url, units,
                                                                    now, half) for half in (years[0::2], years[1::2])]))
        await st.pool.execute("VACUUM (ANALYZE) rectifications")
        load_s = time.perf_counter() - t0
        say(f"xlsx: {rows:,} problems loaded in {load_s:.0f}s; exporting with `ducha ledger --xlsx`")
        with tempfile.TemporaryDirectory(prefix="ducha-bench-xlsx-") as tmp:
            r = await asyncio.to_thread(_export, st.db_url, Path(tmp) / "ledger.xlsx")
        say(f"xlsx: {rows:,} rows in {r['wall_s']:.0f}s ({rows / r['wall_s']:,.0f} rows/s), "
            f"peak RSS {r['peak_rss_mb']:.0f} MB, {r['bytes'] / 2**20:.0f} MiB")
        return {"rows": rows, "load_s": load_s, **r, "rows_per_s": rows / r["wall_s"],
                "rows_per_cpu_s": rows / r["cpu_s"]}
