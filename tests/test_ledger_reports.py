"""The ledger's read side at a few hundred generated problems: the bulletin's SQL aggregates
against a plain Python computation over the same rows, keyset paging of `ducha ledger`, and the
indexes of migration 0012. Real PostgreSQL (this module's own database), no workflow needed."""

from __future__ import annotations

import contextlib
import csv
import html
import io
import os
import random
import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import pytest_asyncio

from reports import ledger as reports_module
from reports.ledger import Reports, UnknownProblem
from rules import bulletin as bulletin_rules
from rules.bulletin import Bulletin, BulletinLine, UnitStatus

from .support import run_cli

CHINA = timezone(timedelta(hours=8))
SINCE, UNTIL = date(2026, 1, 1), date(2026, 6, 30)
NAMED = {"market_regulation": "县市场监管局", "transport": "县交通运输局", "z_last": "Z单位",
         "a_b": "下划线单位", "ab": "AB单位"}
UNNAMED = ["no_registry_entry"]  # a problem of a unit not (or no longer) in parties: the code is its name
CATEGORIES = ["执法程序", "执法依据", "文书规范", "裁量基准", "其他"]
STAGES = ["rectifying", "reported", "accepted", "lookback", "closed"]
# Texts the tables must escape or cut: pipes, new lines, HTML, edges, and more than 200 characters.
TEXTS = ["行政处罚案卷缺少听证告知书", "a | b\nc", "<script>&'\"</script>", "  前后空格  ", "长" * 230,
         "x|" * 120, "-"]


def _instants(rng: random.Random) -> list[datetime]:
    """Problem times: the period's edges in Shanghai (in and just out), equal times, and random ones."""
    start = datetime(2026, 1, 1, tzinfo=CHINA)
    end = datetime(2026, 7, 1, tzinfo=CHINA)
    edges = [start, start - timedelta(microseconds=1), end - timedelta(microseconds=1), end,
             start + timedelta(hours=7, minutes=59), start - timedelta(hours=8)]
    tied = [datetime(2026, 3, 3, 9, 0, tzinfo=CHINA)] * 6  # keyset paging must break ties by number
    spread = [datetime(2025, 10, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(0, 330 * 86400))
              for _ in range(400)]
    return edges + tied + spread


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ledger(pool) -> list[dict]:
    """A few hundred problems written straight into the ledger tables, and the parties named."""
    rng = random.Random(20260630)
    await pool.executemany(
        "INSERT INTO parties (code, kind, name, leader, liaison) VALUES ($1, 'unit', $2, '{}', '{}') "
        "ON CONFLICT (code) DO NOTHING", list(NAMED.items()))
    units = list(NAMED) + UNNAMED
    rows = []
    for i, at in enumerate(_instants(rng)):
        stage = rng.choice(STAGES)
        rows.append({
            # numbers not in time order, so the bulletin's order and the ledger's differ
            "problem_no": f"2026-P{rng.randrange(10**6):06d}-{i:03d}", "unit": rng.choice(units),
            "list": rng.choice(["common", "individual", "individual", "special"]),
            "category": rng.choice(CATEGORIES), "description": rng.choice(TEXTS), "opinion": rng.choice(TEXTS),
            "stage": stage, "due_on": None if rng.random() < 0.1 else date(2026, 1, 1) + timedelta(days=rng.randrange(300)),
            "overdue": rng.random() < 0.3, "missed_deadlines": rng.choice([0, 0, 0, 1, 2]),
            "escalated": rng.random() < 0.1, "carried_over": rng.choice([0, 0, 0, 1]), "required_at": at,
            "closed_at": at + timedelta(days=30) if stage == "closed" else None,
        })
    await pool.executemany(
        "INSERT INTO rectifications (problem_no, workflow_id, year, unit, origin_kind, list, category, severity, "
        "description, opinion, issued_by, stage, due_on, overdue, missed_deadlines, escalated, carried_over, "
        "required_at, closed_at) VALUES ($1, 'rectification-' || $1, 2026, $2, 'inspection', $3, $4, 'general', "
        "$5, $6, '李娜', $7, $8, $9, $10, $11, $12, $13, $14)",
        [(r["problem_no"], r["unit"], r["list"], r["category"], r["description"], r["opinion"], r["stage"],
          r["due_on"], r["overdue"], r["missed_deadlines"], r["escalated"], r["carried_over"], r["required_at"],
          r["closed_at"]) for r in rows])
    events = [("rectification", r["problem_no"], seq, event, r["required_at"] + timedelta(days=seq))
              for r in rows for seq, event in enumerate(["required", "reported", "closed"][:rng.randrange(1, 4)])]
    await pool.executemany(
        "INSERT INTO ledger_events (subject_kind, subject_id, seq, event, actor, agency, occurred_at) "
        "VALUES ($1, $2, $3, $4, '李娜', 'law_office', $5)", events)
    return rows


def plain_bulletin(rows: list[dict], since: date, until: date) -> Bulletin:
    """The bulletin computed the obvious way: every row of the period, counted in Python."""
    picked = sorted((r for r in rows if since <= r["required_at"].astimezone(CHINA).date() <= until),
                    key=lambda r: (r["unit"], r["problem_no"]))
    units: dict[str, UnitStatus] = {}
    by_category: dict[str, int] = {}
    common: list[BulletinLine] = []
    individual: dict[str, list[BulletinLine]] = {}
    for r in picked:
        name = NAMED.get(r["unit"], r["unit"])
        u = units.setdefault(r["unit"], UnitStatus(unit=r["unit"], unit_name=name))
        u.total += 1
        u.on_time += r["missed_deadlines"] == 0
        u.overdue += r["missed_deadlines"] > 0
        u.escalated += r["escalated"]
        u.closed += r["stage"] == "closed"
        u.open += r["stage"] != "closed"
        by_category[r["category"]] = by_category.get(r["category"], 0) + 1
        line = BulletinLine(r["problem_no"], r["unit"], name, r["list"] == "common", r["category"],
                            r["description"], r["opinion"], r["due_on"], r["stage"])
        (common if line.common else individual.setdefault(r["unit"], [])).append(line)
    return Bulletin(county="西县", since=since, until=until, total=len(picked), common=common,
                    individual=individual, units=list(units.values()),
                    by_category=dict(sorted(by_category.items(), key=lambda kv: (-kv[1], kv[0]))))


def reference_html(markdown: str) -> str:
    """to_html's table conversion as it was before the rewrite (cell by cell), for comparison."""
    body: list[str] = []
    in_table = False
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= {"-"}:
                continue
            if not in_table:
                body.append("<table>")
                in_table = True
                body.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr>")
            else:
                body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("### "):
            body.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    return "".join(body)


def cut(line: BulletinLine) -> BulletinLine:
    """What the bulletin shows of a problem's texts (the SQL reads no more)."""
    return line._replace(description=line.description[:200], opinion=line.opinion[:200])


@pytest.mark.parametrize(("since", "until"), [(SINCE, UNTIL), (date(2025, 12, 31), date(2026, 1, 1)),
                                              (date(2026, 3, 3), date(2026, 3, 3)), (date(2030, 1, 1), date(2030, 12, 31))])
async def test_bulletin_aggregates_match_a_plain_computation(pool, ledger, since, until):
    got = await Reports(pool).bulletin("西县", since, until)
    want = plain_bulletin(ledger, since, until)
    assert got.total == want.total
    assert [u.model_dump() for u in got.units] == [u.model_dump() for u in want.units]
    assert list(got.by_category.items()) == list(want.by_category.items())
    assert got.common == [cut(line) for line in want.common]
    assert list(got.individual) == list(want.individual)
    assert got.individual == {u: [cut(line) for line in lines] for u, lines in want.individual.items()}
    md = bulletin_rules.to_markdown(got)
    assert md == bulletin_rules.to_markdown(want), "texts cut by SQL render as the whole texts do"
    page = bulletin_rules.to_html(got, md)
    assert page == bulletin_rules.to_html(got)
    assert reference_html(md) in page
    if (since, until) == (SINCE, UNTIL):  # the generated edges are all there
        assert want.total > 200 and want.common and len(want.individual) == len(NAMED) + len(UNNAMED)
        listed = {p.problem_no for p in got.common} | {p.problem_no for v in got.individual.values() for p in v}
        first, last = datetime(2026, 1, 1, tzinfo=CHINA), datetime(2026, 7, 1, tzinfo=CHINA)
        edge = {r["required_at"]: r["problem_no"] for r in ledger[:4]}
        assert edge[first] in listed and edge[last - timedelta(microseconds=1)] in listed
        assert edge[first - timedelta(microseconds=1)] not in listed and edge[last] not in listed
        assert any(u.unit_name == u.unit for u in got.units), "a unit without a registry entry"
        assert "&lt;script&gt;" in page and "<script>" not in page and "｜" in md


class _WriteAfterFirstStatement:
    """The bulletin's connection; right after its first statement another session writes a
    problem of the period (a real concurrent write, committed before the second statement)."""

    def __init__(self, conn, write) -> None:
        self.conn, self.write, self.statements = conn, write, 0

    def transaction(self, **kwargs):
        return self.conn.transaction(**kwargs)

    async def fetch(self, sql: str, *args):
        rows = await self.conn.fetch(sql, *args)
        self.statements += 1
        if self.statements == 1:
            await self.write()
        return rows


class _RacedPool:
    def __init__(self, pool, write) -> None:
        self.pool, self.write = pool, write

    @contextlib.asynccontextmanager
    async def acquire(self):
        async with self.pool.acquire() as conn:
            yield _WriteAfterFirstStatement(conn, self.write)


async def test_bulletin_counts_and_lists_come_from_one_snapshot(pool, ledger):
    late = "2026-P999999-late"

    async def write() -> None:
        await pool.execute(
            "INSERT INTO rectifications (problem_no, workflow_id, year, unit, origin_kind, list, category, "
            "severity, issued_by, stage, required_at) VALUES ($1, $1, 2026, 'transport', 'inspection', "
            "'individual', '其他', 'general', '李娜', 'rectifying', '2026-03-01T00:00:00+08:00')", late)

    try:
        raced = await Reports(_RacedPool(pool, write)).bulletin("西县", SINCE, UNTIL)
        listed = [p.problem_no for p in raced.common] + [p.problem_no for v in raced.individual.values() for p in v]
        assert late not in listed and raced.total == len(listed) == sum(u.total for u in raced.units)
        assert (await Reports(pool).bulletin("西县", SINCE, UNTIL)).total == raced.total + 1
    finally:
        await pool.execute("DELETE FROM rectifications WHERE problem_no = $1", late)


def ledger_order(rows: list[dict], keep=lambda r: True) -> list[str]:
    """Newest first, ties by problem number."""
    picked = [r for r in rows if keep(r)]
    picked.sort(key=lambda r: r["problem_no"])
    picked.sort(key=lambda r: r["required_at"], reverse=True)
    return [r["problem_no"] for r in picked]


STATUS_KEEP = {
    None: lambda r: True,
    "open": lambda r: r["stage"] != "closed",
    "overdue": lambda r: r["overdue"] and r["stage"] != "closed",
    "closed": lambda r: r["stage"] == "closed",
    "carried": lambda r: r["carried_over"] > 0 and r["stage"] != "closed",
    "escalated": lambda r: r["escalated"],
}


@pytest.mark.parametrize("status", list(STATUS_KEEP))
@pytest.mark.parametrize("unit", [None, "transport"])
async def test_keyset_pages_walk_the_whole_ledger_once(pool, ledger, status, unit):
    keep = STATUS_KEEP[status]
    want = ledger_order(ledger, lambda r: keep(r) and (unit is None or r["unit"] == unit))
    reports = Reports(pool)
    seen: list[str] = []
    before = None
    while True:
        page = await reports.page(unit=unit, status=status, before=before, limit=7)
        seen += [p.problem_no for p in page.problems]
        assert page.more == len(want) - len(seen) and not page.more_capped
        assert all(p.timeline and p.timeline[0].event == "required" for p in page.problems)
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == want
    assert [p.problem_no for p in await reports.problems(unit=unit, status=status)] == want
    exported = [p.problem_no async for chunk in reports.all_pages(unit=unit, status=status, size=5) for p in chunk]
    assert exported == want


async def test_more_is_capped_and_a_bad_cursor_is_refused(pool, ledger, monkeypatch):
    monkeypatch.setattr(reports_module, "MORE_CAP", 10)
    page = await Reports(pool).page(limit=3)
    assert (page.more, page.more_capped) == (10, True)
    assert await Reports(pool).count(cap=10) == 11
    assert await Reports(pool).count() == len(ledger)
    with pytest.raises(UnknownProblem):
        await Reports(pool).page(before="no-such-problem")


async def test_ledger_cli_pages_and_exports(pool, ledger, db_url):
    env = {**os.environ, "DUCHA_DATABASE_URL": db_url}
    want = ledger_order(ledger, STATUS_KEEP["open"])
    code, out, err = await run_cli("ledger", "--status", "open", "--limit", "5", env=env)
    assert code == 0, err
    shown = re.findall(r"^(2026-P\S+)", out, re.M)
    assert shown == want[:5]
    hint = re.search(r"还有 ([\d,]+) 个更早的问题 .* next page: ducha ledger (.+?) （", out)
    assert hint and int(hint[1].replace(",", "")) == len(want) - 5, out
    assert hint[2] == f"--status open --limit 5 --before {want[4]}"
    code, out, err = await run_cli("ledger", *hint[2].split(), env=env)
    assert code == 0, err
    assert re.findall(r"^(2026-P\S+)", out, re.M) == want[5:10]

    # --csv is a page too (the hint on stderr, stdout stays CSV); --csv --all is everything.
    code, out, err = await run_cli("ledger", "--csv", "--limit", "3", env=env)
    assert code == 0 and [r["problem_no"] for r in csv.DictReader(io.StringIO(out))] == ledger_order(ledger)[:3]
    assert "--csv --before" in err
    code, out, err = await run_cli("ledger", "--csv", "--all", env=env)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["problem_no"] for r in rows] == ledger_order(ledger)
    assert all(r["timeline"].count("required") == 1 for r in rows)
    assert f"{len(ledger)} problems" in err

    code, _, err = await run_cli("ledger", "--before", "2026-P-nope", env=env)
    assert code == 2 and "--before" in err
    code, _, err = await run_cli("ledger", "--all", "--limit", "3", env=env)
    assert code == 2 and "--all" in err


EXPLAIN_SEQSCAN_OFF = "SET LOCAL enable_seqscan = off"


async def test_migration_0012_indexes_serve_the_ledger(pool, ledger):
    """The dropped indexes are gone and the queries they served still have an index (the table is
    small here, so sequential scans are switched off to ask the planner what it would use)."""
    names = {r["indexname"] for r in await pool.fetch(
        "SELECT indexname FROM pg_indexes WHERE tablename IN ('rectifications', 'ledger_events')")}
    assert {"ledger_events_subject", "rectifications_unit"}.isdisjoint(names)
    assert {"rectifications_open_newest", "rectifications_open_unit_newest",
            "ledger_events_subject_kind_subject_id_seq_key"} <= names

    await pool.execute("ANALYZE rectifications")
    await pool.execute("ANALYZE ledger_events")

    async def plan(sql: str, *args) -> str:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(EXPLAIN_SEQSCAN_OFF)
            return "\n".join(r[0] for r in await conn.fetch("EXPLAIN (COSTS OFF) " + sql, *args))

    timeline = await plan("SELECT subject_id, seq, event FROM ledger_events WHERE subject_kind = 'rectification' "
                          "AND subject_id = ANY($1::text[]) ORDER BY subject_id, seq", [ledger[0]["problem_no"]])
    assert "ledger_events_subject_kind_subject_id_seq_key" in timeline, timeline
    one = await plan("SELECT * FROM ledger_events WHERE subject_kind = 'clue' AND subject_id = $1", "2026-0001")
    assert "ledger_events_subject_kind_subject_id_seq_key" in one, one
    # What rectifications_unit (unit, stage) served: a unit's problems, in a stage or not.
    for stage in ("", "AND r.stage = 'closed'", "AND r.stage <> 'closed'"):
        by_unit = await plan(f"SELECT * FROM rectifications r WHERE r.unit = $1 {stage} "
                             "ORDER BY r.required_at DESC, r.problem_no LIMIT 200", "transport")
        assert re.search(r"Index Cond: \(unit = ", by_unit), by_unit
    # The open problems' partial indexes are usable for the ledger's open pages (which index the
    # planner takes at a million rows is in docs/benchmarks.md).
    open_all = await plan("SELECT problem_no FROM rectifications r WHERE r.stage <> 'closed' "
                          "ORDER BY r.required_at DESC, r.problem_no LIMIT 200")
    assert "Seq Scan" not in open_all and "Index" in open_all, open_all
    # Without the full-ledger indexes (dropped in a transaction rolled back), the open pages
    # take the partial ones.
    async with pool.acquire() as conn:
        tr = conn.transaction()
        await tr.start()
        try:
            await conn.execute(EXPLAIN_SEQSCAN_OFF)
            await conn.execute("DROP INDEX rectifications_newest, rectifications_unit_newest")
            open_all = "\n".join(r[0] for r in await conn.fetch(
                "EXPLAIN (COSTS OFF) SELECT problem_no FROM rectifications r WHERE r.stage <> 'closed' "
                "ORDER BY r.required_at DESC, r.problem_no LIMIT 200"))
            open_unit = "\n".join(r[0] for r in await conn.fetch(
                "EXPLAIN (COSTS OFF) SELECT problem_no FROM rectifications r WHERE r.unit = 'transport' "
                "AND r.stage <> 'closed' ORDER BY r.required_at DESC, r.problem_no LIMIT 200"))
        finally:
            await tr.rollback()
    assert "rectifications_open_newest" in open_all, open_all
    assert "rectifications_open_unit_newest" in open_unit, open_unit
    assert await pool.fetchval("SELECT count(*) FROM pg_indexes WHERE indexname = 'rectifications_newest'") == 1
