"""Part 3, ledger queries at scale: 1,000,000 rectifications (with their ledger_events timelines)
and 100,000 clues, written with COPY into the real migrated schema, then ANALYZE; then each
operator query is timed through the product's own code where it has one (reports/ledger.py
Reports.page and Reports.bulletin, which `ducha ledger` and `ducha bulletin` call, with
rules/bulletin.py rendering; ledger.routine_clues_due) and EXPLAIN (ANALYZE, BUFFERS) is captured
for every SQL statement it runs.

The data: 200 enforcement units (the demo registry's plus generated ones, Zipf-like sizes), ten
years of problems (100,000 a year up to today), older ones mostly closed, this year's mostly open,
a few carried over, overdue or escalated. Rectifications and clues are generated in Python and
written with COPY (the tables' secondary indexes dropped first and built again after, as a bulk
load does; the problems by two processes, half the years each, since generating and encoding the
rows is Python work that takes a core); their ledger_events timelines (1 to 5 events each by how far the problem got, about
5 million rows) are derived from them by one INSERT … SELECT in PostgreSQL, while the snapshot
tables' indexes are built on a second connection (two cores: the load is about half Python and
half PostgreSQL, so the two overlap where they can). ledger_events is
written with its row triggers off (session_replication_role = replica): the SHA-256 chain
(migration 0007) is computed row by row under a lock and is not what is measured here, so the
loaded rows carry no hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import re
import statistics
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime, timedelta

import asyncpg

from bench.stack import load_registry, say, stack
from config.settings import PROJECT_ROOT

PROBLEMS = 1_000_000
CLUES = 100_000
UNITS = 200
YEARS = 10
CATEGORIES = ["执法程序", "执法依据", "文书规范", "裁量基准", "执法公示", "法制审核", "执法监督",
              "人员资格", "案卷管理", "涉企检查", "复议应诉", "其他"]
ROUTES = [("to_law_office", "court", "law_office", "judgment_enforcement"),
          ("to_law_office", "procuratorate", "law_office", "public_interest_litigation"),
          ("to_discipline", "law_office", "discipline", "inspection"),
          ("to_justice", "discipline", "justice", "supervision_review")]
TARGET_P95_MS = 20.0


def _units(existing: list[str]) -> list[str]:
    extra = [f"unit_{i:03d}" for i in range(UNITS - len(existing))]
    return existing + extra


def _weights(n: int) -> list[float]:
    return [1.0 / (i + 1) ** 0.8 for i in range(n)]


def _stage(rng: random.Random, age_days: float) -> tuple[str, int]:
    """(stage, carried_over) for a problem raised `age_days` ago."""
    x = rng.random()
    if age_days > 365:
        if x < 0.97:
            return "closed", 0
        return "rectifying", 1 + int(age_days // 365)
    if age_days > 90:
        for stage, p in (("closed", 0.70), ("lookback", 0.80), ("accepted", 0.90), ("reported", 0.95)):
            if x < p:
                return stage, 0
        return "rectifying", 0
    for stage, p in (("rectifying", 0.55), ("reported", 0.75), ("accepted", 0.92)):
        if x < p:
            return stage, 0
    return "closed", 0


_D15, _D18, _D30, _D108 = (timedelta(days=d) for d in (15, 18, 30, 108))
_CLOSED_AFTER = [timedelta(days=d) for d in range(201)]


def problem_rows(units: list[str], now: datetime, seed: int = 7, years: set[int] | None = None) -> Iterator[tuple]:
    """rectifications rows in required_at order, 100,000 a year (`years`: only these). Each year
    draws from its own random stream, so years can be generated in separate processes. (Constants
    are hoisted out of the loop: generating and encoding the rows is most of the COPY's time.)"""
    weights = _weights(len(units))
    first_year = now.year - YEARS + 1
    per_year = PROBLEMS // YEARS
    for year in range(first_year, now.year + 1):
        if years is not None and year not in years:
            continue
        rng = random.Random(seed * 10_000 + year)
        rand, randint, choice = rng.random, rng.randint, rng.choice
        start = datetime(year, 1, 1, tzinfo=UTC) - timedelta(hours=8)
        end = min(datetime(year + 1, 1, 1, tzinfo=UTC) - timedelta(hours=8), now)
        span = (end - start).total_seconds()
        picks = rng.choices(units, weights=weights, k=per_year)
        origin = {u: f"inspection-{year}-routine-{u}" for u in units}
        for i in range(per_year):
            required = start + timedelta(seconds=span * (i + rand()) / per_year)
            stage, carried = _stage(rng, (now - required).total_seconds() / 86400)
            due = required + _D30
            missed = 1 if rand() < 0.15 else 0
            overdue = (stage == "rectifying" or stage == "reported") and due < now and (missed > 0 or rand() < 0.5)
            escalated = overdue and rand() < 0.1
            unit = picks[i]
            no = f"{year}-P{i:06d}"
            closed = stage == "closed"
            closed_at = required + _CLOSED_AFTER[randint(20, 200)] if closed else None
            yield (no, "rectification-" + no, year, unit, "inspection", origin[unit],
                   "common" if rand() < 0.2 else "individual", choice(CATEGORIES),
                   "serious" if rand() < 0.1 else "general", "行政处罚案卷缺少听证告知书",
                   "《行政处罚法》第六十三条", "补正听证告知程序，完善案卷", "李娜", stage,
                   None if closed else unit, due.date(), due,
                   False, overdue, missed + 1 if overdue else missed,
                   escalated, 0, 0, carried, "red" if overdue else "green", required,
                   required + _D15 if stage != "rectifying" else None,
                   required + _D18 if closed or stage == "accepted" or stage == "lookback" else None,
                   required + _D108 if stage == "accepted" or stage == "lookback" else None,
                   closed_at, closed_at or required)


RECT_COLUMNS = ["problem_no", "workflow_id", "year", "unit", "origin_kind", "origin_ref", "list",
                "category", "severity", "description", "basis", "opinion", "issued_by", "stage",
                "responsible", "due_on", "due_at", "provisional", "overdue", "missed_deadlines",
                "escalated", "extensions", "reopened", "carried_over", "light", "required_at",
                "reported_at", "accepted_at", "lookback_due_at", "closed_at", "updated_at"]
CLUE_COLUMNS = ["clue_no", "workflow_id", "year", "route", "source", "target", "channel", "importance",
                "subject_unit", "title", "details", "discovered_on", "stage", "responsible", "due_on",
                "due_at", "overdue", "light", "outcome", "registered_at", "transferred_at",
                "acknowledged_at", "closed_at", "updated_at"]


def clue_rows(units: list[str], now: datetime, seed: int = 11) -> Iterator[tuple]:
    rng = random.Random(seed)
    weights = _weights(len(units))
    first_year = now.year - YEARS + 1
    per_year = CLUES // YEARS
    for year in range(first_year, now.year + 1):
        start = datetime(year, 1, 1, tzinfo=UTC) - timedelta(hours=8)
        end = min(datetime(year + 1, 1, 1, tzinfo=UTC) - timedelta(hours=8), now)
        span = (end - start).total_seconds()
        for i in range(per_year):
            registered = start + timedelta(seconds=span * (i + rng.random()) / per_year)
            age = (now - registered).total_seconds() / 86400
            route, source, target, channel = rng.choice(ROUTES)
            x = rng.random()
            if age > 60 or x < 0.3:
                stage = "concluded"
            else:
                stage = ("registered", "transferred", "handling")[int(x * 10) % 3]
            importance = "important" if rng.random() < 0.4 else "routine"
            due = registered + timedelta(days=7 if stage != "handling" else 42)
            overdue = stage != "concluded" and due < now
            no = f"{year}-{i:05d}"
            yield (no, f"clue-{no}", year, route, source, target, channel, importance,
                    rng.choices(units, weights=weights)[0], "执行中发现行政处罚程序违法", "",
                    registered.date(), stage, None if stage == "concluded" else target,
                    due.date(), due, overdue, "red" if overdue else "green",
                    "substantiated" if stage == "concluded" else None, registered,
                    registered + timedelta(days=2) if stage != "registered" else None,
                    registered + timedelta(days=4) if stage in ("handling", "concluded") else None,
                    registered + timedelta(days=30) if stage == "concluded" else None, registered)


def _chunk(rows: Iterator[tuple], limit: int = 50_000) -> list[tuple]:
    out: list[tuple] = []
    for row in rows:
        out.append(row)
        if len(out) >= limit:
            break
    return out


def _copy_years(dsn: str, units: list[str], now: datetime, years: list[int]) -> int:
    """In a child process: generate these years' problems and COPY them on its own connection.
    Generating and encoding the rows takes a core (asyncpg encodes them in Python's thread), so
    two processes, each with half the years, use both."""

    async def go() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SET synchronous_commit = off")
            return await _copy(conn, problem_rows(units, now, years=set(years)), "rectifications", RECT_COLUMNS)
        finally:
            await conn.close()

    return asyncio.run(go())


async def _copy(conn: asyncpg.Connection, rows: Iterator[tuple], table: str, columns: list[str]) -> int:
    """COPY while the next chunk is generated in a thread (PostgreSQL and Python overlap)."""
    done = 0
    pending = asyncio.ensure_future(asyncio.to_thread(_chunk, rows))
    while True:
        chunk = await pending
        if not chunk:
            return done
        pending = asyncio.ensure_future(asyncio.to_thread(_chunk, rows))
        await conn.copy_records_to_table(table, records=chunk, columns=columns)
        done += len(chunk)


# Each problem's and clue's timeline, derived from how far it got (written by PostgreSQL itself:
# 5 million rows through Python would take minutes on two cores). No ORDER BY: each subject's
# events are written together (one LATERAL series per row), which is what a timeline read needs;
# sorting 5 million rows by number would only order the ids.
EVENTS_SQL = {
    "rectification": """
INSERT INTO ledger_events (subject_kind, subject_id, seq, event, actor, agency, occurred_at)
SELECT 'rectification', r.problem_no, s.seq,
       CASE s.seq WHEN 0 THEN 'required' WHEN 1 THEN 'reported' WHEN 2 THEN 'accepted'
                  WHEN 3 THEN CASE r.stage WHEN 'closed' THEN 'lookback_passed' ELSE 'lookback_due' END
                  ELSE 'closed' END,
       '李娜', 'law_office', r.required_at + s.seq * interval '10 days'
FROM rectifications r
CROSS JOIN LATERAL generate_series(0, CASE r.stage WHEN 'rectifying' THEN 0 WHEN 'reported' THEN 1
                                   WHEN 'accepted' THEN 2 WHEN 'lookback' THEN 3 ELSE 4 END) AS s(seq)""",
    "clue": """
INSERT INTO ledger_events (subject_kind, subject_id, seq, event, actor, agency, occurred_at)
SELECT 'clue', c.clue_no, s.seq,
       (ARRAY['registered', 'transferred', 'acknowledged', 'concluded'])[s.seq + 1],
       '杨帆', c.source, c.registered_at + s.seq * interval '2 days'
FROM clues c
CROSS JOIN LATERAL generate_series(0, CASE c.stage WHEN 'registered' THEN 0 WHEN 'transferred' THEN 1
                                   WHEN 'handling' THEN 2 ELSE 3 END) AS s(seq)""",
}


# For the load only (a throwaway cluster): no checkpoint every 1 GB of WAL while 2 GB are written.
LOAD_SETTINGS = {"max_wal_size": "16GB", "checkpoint_timeout": "30min"}


async def _rebuild(conn: asyncpg.Connection, indexes: list) -> None:
    for ix in indexes:
        if ix["conname"]:
            await conn.execute(f'ALTER TABLE {ix["tbl"]} ADD CONSTRAINT {ix["conname"]} {ix["condef"]}')
        else:
            await conn.execute(ix["def"])


async def _prepare(conn: asyncpg.Connection) -> None:
    await conn.execute("SET synchronous_commit = off")
    await conn.execute("SET maintenance_work_mem = '256MB'")


async def load(pool: asyncpg.Pool, now: datetime, dsn: str) -> dict:
    async with pool.acquire() as conn, pool.acquire() as side:
        existing = [r["code"] for r in await conn.fetch("SELECT code FROM parties WHERE kind = 'unit' ORDER BY code")]
        units = _units(existing)
        await conn.executemany(
            "INSERT INTO parties (code, kind, name, level, category, leader, liaison) "
            "VALUES ($1, 'unit', $2, 'township', '综合执法', $3, $4) ON CONFLICT (code) DO NOTHING",
            [(u, f"第{u[-3:]}执法单位", {"name": "负责人", "title": "分管领导"},
              {"name": "联络员", "title": "法制员"}) for u in units if u not in existing])
        for name, value in LOAD_SETTINGS.items():
            await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        await conn.execute("SELECT pg_reload_conf()")
        await _prepare(conn)
        await _prepare(side)
        t0 = time.perf_counter()
        # A bulk load's usual course: the tables' secondary indexes (and the events' unique key) are
        # dropped, the rows copied, and the same definitions built again in one pass each.
        tables = ["rectifications", "clues", "ledger_events"]
        indexes = await conn.fetch(
            "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def, "
            "c.conname, pg_get_constraintdef(c.oid) AS condef, i.indrelid::regclass::text AS tbl "
            "FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid "
            "WHERE i.indrelid::regclass::text = ANY($1::text[]) AND NOT i.indisprimary", tables)
        for ix in indexes:
            if ix["conname"]:
                await conn.execute(f'ALTER TABLE {ix["tbl"]} DROP CONSTRAINT {ix["conname"]}')
            else:
                await conn.execute(f'DROP INDEX {ix["name"]}')
        await conn.execute("SET session_replication_role = replica")  # no row triggers: see module doc
        # Two processes COPY the problems (odd and even years), this one the clues meanwhile.
        years = list(range(now.year - YEARS + 1, now.year + 1))
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as processes:
            parts = [loop.run_in_executor(processes, _copy_years, dsn, units, now, half)
                     for half in (years[0::2], years[1::2])]
            clues = await _copy(conn, clue_rows(units, now), "clues", CLUE_COLUMNS)
            problems = sum(await asyncio.gather(*parts))
        copy_s = time.perf_counter() - t0

        async def events_sql() -> int:
            n = 0
            for sql in EVENTS_SQL.values():
                n += int((await conn.execute(sql)).split()[-1])
            await conn.execute("RESET session_replication_role")
            return n

        # Two cores: the events are written from the snapshot tables while the snapshot tables'
        # indexes are built on a second connection (CREATE INDEX and the INSERT's reads do not
        # conflict); then the events' own indexes.
        events, _ = await asyncio.gather(events_sql(), _rebuild(side, [ix for ix in indexes
                                                                      if ix["tbl"] != "ledger_events"]))
        events_s = time.perf_counter() - t0 - copy_s
        await _rebuild(conn, [ix for ix in indexes if ix["tbl"] == "ledger_events"])
        load_s = time.perf_counter() - t0
        for name in LOAD_SETTINGS:
            await conn.execute(f"ALTER SYSTEM RESET {name}")
        await conn.execute("SELECT pg_reload_conf()")
        # VACUUM, not only ANALYZE: a ledger in use has its old pages all-visible (autovacuum), and
        # an autovacuum of the 5 million new rows would otherwise run during the measurements.
        for table in ("rectifications", "clues", "ledger_events", "parties"):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        sizes = {r["t"]: r["s"] for r in await conn.fetch(
            "SELECT c.relname AS t, pg_size_pretty(pg_total_relation_size(c.oid)) AS s FROM pg_class c "
            "WHERE c.relname IN ('rectifications', 'clues', 'ledger_events')")}
    return {"problems": problems, "clues": clues, "events": events, "units": len(units),
            "copy_seconds": copy_s, "events_seconds": events_s, "load_seconds": load_s,
            "analyze_seconds": time.perf_counter() - t0 - load_s,
            "sizes": sizes, "unit_codes": units}


class _Recorder:
    """Passes queries on and remembers each statement with its arguments (for EXPLAIN)."""

    def __init__(self, db, statements: list[tuple[str, tuple]]) -> None:
        self.db = db
        self.statements = statements

    async def fetch(self, sql: str, *args):
        self.statements.append((sql, args))
        return await self.db.fetch(sql, *args)

    async def fetchval(self, sql: str, *args):
        self.statements.append((sql, args))
        return await self.db.fetchval(sql, *args)

    def transaction(self, **kwargs):
        return self.db.transaction(**kwargs)


class RecordingPool(_Recorder):
    """A pool whose connections record too (Reports.bulletin reads in one transaction)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool, [])

    @contextlib.asynccontextmanager
    async def acquire(self):
        async with self.db.acquire() as conn:
            yield _Recorder(conn, self.statements)


INDEX_NODE = re.compile(r"(Index Only Scan|Index Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)")


async def explain(pool: asyncpg.Pool, sql: str, args: tuple) -> tuple[str, list[str]]:
    rows = await pool.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, *args)
    text = "\n".join(r[0] for r in rows)
    return text, sorted(set(m.group(2) for m in INDEX_NODE.finditer(text)))


async def explain_generic(pg, sql: str) -> str:
    """The plan a prepared statement may switch to after five runs (plan_cache_mode auto).
    EXPLAIN (GENERIC_PLAN) takes no parameter values, so it goes through psql's simple protocol."""
    try:
        return await asyncio.to_thread(pg.psql, "EXPLAIN (GENERIC_PLAN, COSTS OFF) " + sql, pg.database)
    except subprocess.CalledProcessError as exc:
        return f"({(exc.stderr or '').strip()})"


def _ms(values: list[float], q: int) -> float:
    return 1000 * statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# The per-unit facts of a year (problems, closed, on time, overdue, escalated, clues), as the
# assessment counts them; kept as written: a rewrite that aggregates the clues once and joins
# (no correlated subquery) measured slower (the 200 index-only probes cost ~4 ms; the time is the
# aggregation of the year's 100,000 rows), see docs/benchmarks.md.
ASSESSMENT_SQL = (
    "SELECT r.unit, count(*) AS problems, count(*) FILTER (WHERE r.stage = 'closed') AS closed, "
    "count(*) FILTER (WHERE r.missed_deadlines = 0) AS on_time, "
    "count(*) FILTER (WHERE r.overdue AND r.stage <> 'closed') AS overdue, "
    "count(*) FILTER (WHERE r.escalated) AS escalated, "
    "(SELECT count(*) FROM clues c WHERE c.subject_unit = r.unit AND c.year = $1) AS clues "
    "FROM rectifications r WHERE r.year = $1 GROUP BY r.unit ORDER BY r.unit")
CATEGORY_SQL = (
    "SELECT category, count(*) AS problems, count(*) FILTER (WHERE stage <> 'closed') AS open, "
    "count(*) FILTER (WHERE overdue AND stage <> 'closed') AS overdue "
    "FROM rectifications WHERE year = $1 GROUP BY category ORDER BY count(*) DESC")
# What a covering index would give the two yearly aggregates (measured in a rolled-back
# transaction, not proposed: see _covering).
COVERING = ["CREATE INDEX bench_year_unit ON rectifications (year, unit) "
            "INCLUDE (stage, missed_deadlines, overdue, escalated)",
            "CREATE INDEX bench_year_category ON rectifications (year, category) INCLUDE (stage, overdue)"]


async def run(iterations: int = 100) -> dict:
    from reports.ledger import LEDGER_PAGE, Reports
    from rules import bulletin as bulletin_rules

    async with stack("ledger", temporal=False, registry=False) as st:
        await load_registry(st)
        now = datetime.now(UTC)
        say(f"ledger: generating {PROBLEMS:,} rectifications and {CLUES:,} clues with COPY")
        data = await load(st.pool, now, st.db_url)
        say(f"ledger: loaded {data['problems']:,} problems, {data['clues']:,} clues, "
            f"{data['events']:,} ledger events in {data['load_seconds']:.0f}s "
            f"(COPY {data['copy_seconds']:.0f}s, events with the snapshot tables' indexes "
            f"{data['events_seconds']:.0f}s, events' indexes "
            f"{data['load_seconds'] - data['copy_seconds'] - data['events_seconds']:.0f}s, "
            f"VACUUM ANALYZE {data['analyze_seconds']:.0f}s); sizes {data['sizes']}")
        units = data["unit_codes"]
        biggest = await st.pool.fetchval(
            "SELECT unit FROM rectifications GROUP BY unit ORDER BY count(*) DESC LIMIT 1")
        sample_units = [biggest] + units[1:: max(1, len(units) // 19)][:19]
        # Cursors deep in the ledger (what `--before` gets after thousands of pages).
        deep = [await st.pool.fetchval(
            "SELECT problem_no FROM rectifications ORDER BY required_at DESC, problem_no OFFSET $1 LIMIT 1",
            offset) for offset in range(100_000, 1_000_000, 100_000)]
        year = now.year
        china_today = (now + timedelta(hours=8)).date()
        h1_from = date(year, 1, 1)
        h1_to = date(year, 6, 30)
        clue_page_sql = (
            "SELECT clue_no, workflow_id, route, source, target, stage, responsible, due_on, overdue, light "
            "FROM clues WHERE subject_unit = $1 AND stage IN ('registered', 'transferred', 'handling') "
            "ORDER BY due_at LIMIT 50")
        digest_sql = (  # activities/ledger.py routine_clues_due, verbatim
            "SELECT source, clue_no, workflow_id, due_on, stage FROM clues "
            "WHERE importance = 'routine' AND stage = 'registered' "
            "AND due_on BETWEEN $1 AND $2 ORDER BY source, due_on, clue_no")
        month = china_today.replace(day=1)

        def unit_at(i: int) -> str:
            return sample_units[i % len(sample_units)]

        page = f"{LEDGER_PAGE} + timelines + how many more"
        # name, kind (paged: target p95 < 20 ms), what runs, call(i, db) where db has .fetch
        queries = [
            (f"ledger page ({page})", "paged", "Reports.page (`ducha ledger`)",
             lambda i, db: Reports(db).page(limit=LEDGER_PAGE)),
            ("ledger page deep in the ledger (--before)", "paged",
             "Reports.page(before=…) (`ducha ledger --before`), 100k…900k problems in",
             lambda i, db: Reports(db).page(before=deep[i % len(deep)], limit=LEDGER_PAGE)),
            (f"unit ledger page ({page})", "paged", "Reports.page(unit) (`ducha ledger --unit`)",
             lambda i, db: Reports(db).page(unit=unit_at(i), limit=LEDGER_PAGE)),
            ("open problems by unit (page)", "paged", "Reports.page(unit, status=open)",
             lambda i, db: Reports(db).page(unit=unit_at(i), status="open", limit=LEDGER_PAGE)),
            ("overdue problems by unit (page)", "paged", "Reports.page(unit, status=overdue)",
             lambda i, db: Reports(db).page(unit=unit_at(i), status="overdue", limit=LEDGER_PAGE)),
            ("overdue problems, county (page)", "paged", "Reports.page(status=overdue)",
             lambda i, db: Reports(db).page(status="overdue", limit=LEDGER_PAGE)),
            ("open problems, county (page)", "paged", "Reports.page(status=open)",
             lambda i, db: Reports(db).page(status="open", limit=LEDGER_PAGE)),
            ("open clues by unit (page)", "paged", "bench SQL (no product query yet)",
             lambda i, db: db.fetch(clue_page_sql, unit_at(i))),
            ("monthly routine-clue digest", "aggregate", "ledger.routine_clues_due SQL",
             lambda i, db: db.fetch(digest_sql, month, month + timedelta(days=27))),
            ("problems by category (year)", "aggregate", "bench SQL (the annual report's by-category counts)",
             lambda i, db: db.fetch(CATEGORY_SQL, year)),
            ("assessment per unit (year)", "aggregate", "bench SQL (per-unit counts of a year)",
             lambda i, db: db.fetch(ASSESSMENT_SQL, year)),
            ("bulletin (half year)", "aggregate", "Reports.bulletin (`ducha bulletin`'s SQL and lists)",
             lambda i, db: Reports(db).bulletin("西县", h1_from, h1_to)),
            ("bulletin (half year), rendered", "aggregate",
             "Reports.bulletin + to_markdown + to_html (`ducha bulletin` without writing its files)",
             lambda i, db: _bulletin(Reports(db), bulletin_rules, h1_from, h1_to)),
        ]
        bench_indexes = migration_indexes()
        results = []
        for name, kind, code, call in queries:
            n = iterations if kind == "paged" else max(10, iterations // 5)
            warm = 3
            if name.startswith("bulletin"):  # ~50,000 problems listed: fewer runs
                n, warm = max(10, iterations // 10), 1
            times, rows = await _time(call, st.pool, n, warm)
            rec = RecordingPool(st.pool)
            await call(0, rec)
            plans = []
            for sql, args in rec.statements:
                text, used = await explain(st.pool, sql, args)
                generic = await explain_generic(st.pg, sql) if args else ""
                plans.append({"sql": sql, "plan": text, "indexes": used, "generic_plan": generic})
            used = sorted({i for p in plans for i in p["indexes"]})
            entry = {"name": name, "kind": kind, "code": code, "n": n, "rows": rows,
                     "p50_ms": _ms(times, 50), "p95_ms": _ms(times, 95), "plans": plans, "indexes": used,
                     "meets": None if kind != "paged" else _ms(times, 95) < TARGET_P95_MS}
            if set(used) & bench_indexes:
                entry["without"] = await _without(st.pool, bench_indexes, call, 3, 1)  # seconds a run
            results.append(entry)
            extra = ""
            if "without" in entry:
                extra = f" (without the page indexes: p95 {entry['without']['p95_ms']:.0f} ms)"
            say(f"ledger: {name}: p50 {entry['p50_ms']:.1f} ms, p95 {entry['p95_ms']:.1f} ms over {n} runs"
                f"{extra}; indexes {', '.join(used) or 'none'}")
        # The yearly aggregates with covering indexes (last: they build and drop indexes).
        for entry in results:
            if sql := {"problems by category (year)": CATEGORY_SQL,
                       "assessment per unit (year)": ASSESSMENT_SQL}.get(entry["name"]):
                entry["covering"] = await _covering(st.pool, sql, year, max(5, entry["n"] // 2))
                say(f"ledger: {entry['name']} with a covering index: p50 {entry['covering']['p50_ms']:.1f} ms, "
                    f"p95 {entry['covering']['p95_ms']:.1f} ms")
        indexes = [dict(r) for r in await st.pool.fetch(
            "SELECT indexrelname AS index, relname AS table, idx_scan AS scans, "
            "pg_size_pretty(pg_relation_size(indexrelid)) AS size FROM pg_stat_user_indexes "
            "WHERE relname IN ('rectifications', 'clues', 'ledger_events') ORDER BY relname, indexrelname")]
        settings = {r["name"]: r["setting"] + (r["unit"] or "") for r in await st.pool.fetch(
            "SELECT name, setting, unit FROM pg_settings WHERE name IN "
            "('shared_buffers', 'work_mem', 'effective_cache_size', 'random_page_cost', 'jit')")}
    data.pop("unit_codes")
    return {"data": data, "queries": results, "indexes": indexes, "pg_settings": settings,
            "sample_units": sample_units, "biggest_unit": biggest, "page_size": LEDGER_PAGE,
            "page_migrations": [m.name for m in MIGRATIONS]}


# The migrations that give the ledger its page indexes (compared with and without below).
MIGRATIONS = [PROJECT_ROOT / "migrations" / "0010_ledger_page_indexes.sql",
              PROJECT_ROOT / "migrations" / "0012_ledger_indexes.sql"]


def migration_indexes() -> set[str]:
    """The page indexes the bench's migrations add (compared with and without below)."""
    return {name for m in MIGRATIONS if m.exists()
            for name in re.findall(r"CREATE INDEX (\w+)", m.read_text())}


async def _time(call, db, n: int, warm: int = 3) -> tuple[list[float], int]:
    for i in range(warm):  # warm the cache and the prepared statements
        await call(i, db)
    times = []
    rows = 0
    for i in range(n):
        t0 = time.perf_counter()
        out = await call(i, db)
        times.append(time.perf_counter() - t0)
        rows = max(rows, _count(out))
    return times, rows


class _Conn:
    """One connection inside an open transaction, shaped like the pool for Reports."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def fetch(self, sql: str, *args):
        return await self.conn.fetch(sql, *args)

    async def fetchval(self, sql: str, *args):
        return await self.conn.fetchval(sql, *args)

    def transaction(self, **kwargs):
        return contextlib.nullcontext()  # already in the measuring transaction

    @contextlib.asynccontextmanager
    async def acquire(self):
        yield self


async def _in_rolled_back(pool: asyncpg.Pool, ddl: list[str], call, n: int, warm: int,
                          plan_of: tuple[str, tuple] | None = None) -> dict:
    async with pool.acquire() as conn:
        tr = conn.transaction()
        await tr.start()
        try:
            for statement in ddl:
                await conn.execute(statement)
            times, _ = await _time(call, _Conn(conn), n, warm)
            plan = ""
            if plan_of is not None:
                plan = "\n".join(r[0] for r in await conn.fetch(
                    "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + plan_of[0], *plan_of[1]))
        finally:
            await tr.rollback()
    return {"n": n, "p50_ms": _ms(times, 50), "p95_ms": _ms(times, 95), "plan": plan}


async def _without(pool: asyncpg.Pool, names: set[str], call, n: int, warm: int) -> dict:
    """The same query with the page indexes (migrations 0010, 0012) dropped in a transaction
    rolled back."""
    return await _in_rolled_back(pool, [f"DROP INDEX IF EXISTS {name}" for name in sorted(names)],
                                 call, n, warm)


async def _covering(pool: asyncpg.Pool, sql: str, year: int, n: int) -> dict:
    """A yearly aggregate with covering indexes (built, measured, rolled back). The table was
    vacuumed after the load, so index-only scans skip the heap: the best case for them."""
    out = await _in_rolled_back(pool, COVERING, lambda i, db: db.fetch(sql, year), n, 2, (sql, (year,)))
    return {**out, "indexes": COVERING}


async def _bulletin(reports, rules, since: date, until: date):
    """What `ducha bulletin` does before writing its two files."""
    b = await reports.bulletin("西县", since, until)
    text = rules.to_markdown(b)
    rules.to_html(b, text)
    return b


def _count(out) -> int:
    if isinstance(out, list):
        return len(out)
    if hasattr(out, "problems"):  # LedgerPage
        return len(out.problems)
    if hasattr(out, "total"):  # Bulletin
        return out.total
    return 0
