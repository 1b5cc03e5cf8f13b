"""督办看板 (`ducha board`): the pure counting (rules/board.py), and the board itself on real
PostgreSQL and the dev server, loaded in headless Chromium: every number on the page equals what
plain SQL over the ledger tables (and Temporal's own count) says; the page refreshes itself when
the ledger changes; it cannot write. Screenshots (wall screen and phone) are saved under the
test's tmp dir and their paths printed."""

from __future__ import annotations

import asyncio
import html.parser
import json
import random
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
import pytest_asyncio
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from config.settings import Settings
from rules import board as rules
from workers.board import start_board
from workflows.search_attributes import DUCHA_KIND, DUCHA_LIGHT, DUCHA_OVERDUE

from .browser import CHROMIUM, Browser
from .conftest import DEMO_REGISTRY, make_settings

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Written out here rather than imported, so the test does not share the board's definition.
OPEN = {"clue": {"registered", "transferred", "handling"},
        "rectification": {"rectifying", "reported", "accepted", "lookback"},
        "inspection": {"self_inspection", "joint_inspection", "evaluation"}}
CLOSED = {"clue": ["concluded", "withdrawn"], "rectification": ["closed"], "inspection": ["completed"]}
AGENCY_CODES = ["law_office", "discipline", "court", "procuratorate", "justice", "tour_office",
                "coordination_group", "county_committee"]


# --- the pure rules ------------------------------------------------------------------------------


def test_rows_are_worst_first_and_totals_add_up():
    counts = [rules.LightCount("a_unit", "clue", "green", 5), rules.LightCount("b_unit", "rectification", "red", 1),
              rules.LightCount("c_unit", "inspection", "yellow", 2), rules.LightCount("c_unit", "clue", "yellow", 1),
              rules.LightCount("b_unit", "clue", "green", 1), rules.LightCount("d_unit", "clue", "purple", 9)]
    rows = rules.tally_rows(counts, {"a_unit": "甲局"}, always=["z_agency"])
    assert [r.code for r in rows] == ["b_unit", "c_unit", "a_unit", "d_unit", "z_agency"]
    assert rows[2].name == "甲局" and rows[1].name == "c_unit"
    assert rows[1].tally.light("yellow") == 3 and rows[1].tally.kind("clue") == 1
    assert rows[3].tally.total == 0, "an unknown light is in no count"
    total = rules.total_of(rows)
    assert (total.light("red"), total.light("yellow"), total.light("green"), total.total) == (1, 3, 6, 10)
    assert total.as_dict()["by_kind"]["clue"] == {"red": 0, "yellow": 1, "green": 6}


def test_one_scan_feeds_both_tables():
    groups = [rules.OpenGroup("clue", "law_office", "market_regulation", "red", 2),
              rules.OpenGroup("rectification", "market_regulation", "market_regulation", "yellow", 3),
              rules.OpenGroup("inspection", "", "transport", "green", 1)]
    by_agency, by_unit = rules.split_groups(groups)
    assert by_agency == [rules.LightCount("law_office", "clue", "red", 2)]
    assert [(c.code, c.n) for c in by_unit] == [("market_regulation", 2), ("market_regulation", 3), ("transport", 1)]
    assert rules.sql_in(["registered", "handling"]) == "('registered', 'handling')"
    for bad in ([], ["x'; DROP TABLE clues; --"], ["阶段"]):
        with pytest.raises(ValueError):
            rules.sql_in(bad)


def test_days_overdue_count_calendar_days_in_the_county():
    today = date(2026, 3, 10)
    # 2026-03-09 17:00 UTC is already 03-10 in Shanghai: due today, 0 days
    assert rules.local_day(datetime(2026, 3, 9, 17, 0, tzinfo=UTC), None, SHANGHAI) == date(2026, 3, 10)
    assert rules.days_overdue(date(2026, 3, 10), today) == 0
    assert rules.days_overdue(date(2026, 2, 28), today) == 10
    assert rules.days_overdue(None, today) == 0 and rules.days_overdue(date(2026, 4, 1), today) == 0
    assert rules.local_day(None, date(2026, 1, 2), SHANGHAI) == date(2026, 1, 2)
    rows = [dict(kind=k, ref=r, workflow_id=f"w-{r}", unit="u", responsible=None, stage="rectifying",
                 due_at=None, due_on=d) for k, r, d in
            [("rectification", "P2", date(2026, 3, 1)), ("clue", "C1", date(2026, 3, 1)),
             ("inspection", "I9", date(2026, 1, 1))]]
    listed = rules.overdue_cases(rows, {"u": "某局"}, today, SHANGHAI, "http://ui", "default")
    assert [(c.ref, c.days_overdue) for c in listed] == [("I9", 68), ("C1", 9), ("P2", 9)]
    assert listed[0].unit_name == "某局" and listed[0].responsible_name == ""


def test_coverage_counts_registry_units_only():
    units = {"a": "甲", "b": "乙", "c": "丙", "d": "丁"}
    cov = rules.coverage(2026, units, completed=["a", "gone"], in_progress=["a", "b"])
    assert (cov.units, cov.inspected, cov.in_progress, cov.not_started, cov.percent) == (4, 1, 1, ("丙", "丁"), 25.0)
    assert rules.coverage(2026, {}, [], []).percent == 0.0


def test_visibility_queries_and_links():
    q = rules.visibility_query("ducha", "clue", light="red")
    assert q == ("TaskQueue = 'ducha' AND ExecutionStatus = 'Running' AND DuchaKind = 'clue' "
                 "AND DuchaLight = 'red'")
    assert rules.visibility_query("ducha", "inspection", overdue=True).endswith("DuchaOverdue = true")
    for bad in (("x' OR 1=1 --", "clue", None), ("ducha", "round", None), ("ducha", "clue", "blue")):
        with pytest.raises(ValueError):
            rules.visibility_query(bad[0], bad[1], light=bad[2])
    assert rules.workflow_url("http://127.0.0.1:8233/", "default", "inspection-2026-routine-a b/c") == \
        "http://127.0.0.1:8233/namespaces/default/workflows/inspection-2026-routine-a%20b%2Fc"


# --- the board on the ledger ---------------------------------------------------------------------


def today_in_china() -> date:
    return datetime.now(SHANGHAI).date()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ledger(pool) -> dict:
    """The demo registry, and a scripted mix of clues, rectifications and inspections in every
    stage and light, some overdue by a known number of days, some closed (in no count)."""
    from activities.registry import RegistryStore
    from config.yaml_file import load_yaml_model
    from schemas.registry import RegistryFile

    await RegistryStore(pool).load(load_yaml_model(DEMO_REGISTRY, RegistryFile))
    units = [r["code"] for r in await pool.fetch("SELECT code FROM parties WHERE kind = 'unit' ORDER BY code")]
    await pool.execute("UPDATE parties SET active = false WHERE code = $1", units[-1])  # left the registry
    rng = random.Random(20261207)
    year = today_in_china().year
    now = datetime.now(UTC)

    def light_and_due(kind: str, stage: str) -> tuple[str, bool, datetime | None]:
        if stage not in OPEN[kind]:
            return rng.choice(["green", "red"]), rng.random() < 0.3, None
        light = rng.choice(["green", "green", "yellow", "red"])
        overdue = light == "red" and rng.random() < 0.8
        due = now - timedelta(days=rng.randrange(1, 40), hours=rng.randrange(24)) if overdue else \
            now + timedelta(days=rng.randrange(1, 30))
        return light, overdue, due

    for i in range(45):
        stage = rng.choice([*OPEN["clue"], *CLOSED["clue"]])
        light, overdue, due = light_and_due("clue", stage)
        source, target = rng.choice([("court", "law_office"), ("tour_office", "discipline"), ("discipline", "justice")])
        responsible = (source if stage == "registered" else target) if stage in OPEN["clue"] else None
        await pool.execute(
            "INSERT INTO clues (clue_no, workflow_id, year, route, source, target, channel, importance, "
            "subject_unit, title, discovered_on, stage, responsible, due_at, due_on, overdue, light, "
            "registered_at) VALUES ($1, 'clue-' || $1, $2, 'to_law_office', $3, $4, 'judgment_enforcement', "
            "'important', $5, '线索', $6, $7, $8, $9, $10, $11, $12, $13)",
            f"B{year}-{i:04d}", year, source, target, rng.choice(units), today_in_china(), stage, responsible,
            due, due.astimezone(SHANGHAI).date() if due else None, overdue, light, now)
    for i in range(70):
        stage = rng.choice([*OPEN["rectification"], *CLOSED["rectification"]])
        light, overdue, due = light_and_due("rectification", stage)
        unit = rng.choice(units)
        responsible = {"rectifying": unit, "reported": "law_office", "lookback": "law_office"}.get(stage)
        await pool.execute(
            "INSERT INTO rectifications (problem_no, workflow_id, year, unit, origin_kind, list, category, "
            "severity, issued_by, stage, responsible, due_at, due_on, overdue, light, required_at) VALUES "
            "($1, 'rectification-' || $1, $2, $3, 'inspection', 'individual', '执法程序', 'general', '李娜', "
            "$4, $5, $6, $7, $8, $9, $10)",
            f"P{year}-{i:04d}", year, unit, stage, responsible, due,
            due.astimezone(SHANGHAI).date() if due else None, overdue, light, now)
    inspected = {}
    for i, unit in enumerate(units[:30]):
        # this year's round: two thirds completed, the rest under way; last year's and an
        # inactive unit's inspections do not count for this year's coverage
        for y in (year, year - 1):
            stage = "completed" if (i % 3 or y != year) else rng.choice(sorted(OPEN["inspection"]))
            light, overdue, due = light_and_due("inspection", stage)
            responsible = None if stage == "completed" else (unit if stage == "self_inspection" else "law_office")
            wid = f"inspection-{y}-routine-{unit}"
            await pool.execute(
                "INSERT INTO inspections (workflow_id, run_id, year, kind, unit, lead, trigger_type, stage, "
                "responsible, due_at, self_due_on, team_due_on, overdue, light, started_at) VALUES "
                "($1, 'r', $2, 'routine', $3, 'law_office', 'annual_plan', $4, $5, $6, $7, $7, $8, $9, $10)",
                wid, y, unit, stage, responsible, due, due.astimezone(SHANGHAI).date() if due else None,
                overdue, light, now)
            if y == year:
                inspected[unit] = stage
    return {"units": units, "year": year, "inspected": inspected}


async def expected_numbers(pool: asyncpg.Pool) -> dict[str, str]:
    """What the page must show, by plain SQL and Python: data-* key → text."""
    names = {r["code"]: r["name"] for r in await pool.fetch("SELECT code, name FROM parties")}
    expected: dict[str, str] = {}
    tally: Counter = Counter()
    overdue_rows = []
    today = today_in_china()
    for kind, sql in [
        ("clue", "SELECT stage, light, responsible, subject_unit AS unit, overdue, due_at, workflow_id FROM clues"),
        ("rectification", "SELECT stage, light, responsible, unit, overdue, due_at, workflow_id FROM rectifications"),
        ("inspection", "SELECT stage, light, responsible, unit, overdue, due_at, workflow_id FROM inspections"),
    ]:
        for r in await pool.fetch(sql):
            if r["stage"] not in OPEN[kind]:
                continue
            tally[("unit", r["unit"], kind, r["light"])] += 1
            tally[("unit", r["unit"], "red")] += r["light"] == "red"
            tally[("unit", r["unit"], "total")] += 1
            tally[("all", r["light"])] += 1
            tally[("all", kind)] += 1
            if r["responsible"] in AGENCY_CODES:
                tally[("agency", r["responsible"], kind, r["light"])] += 1
                tally[("agency", r["responsible"], "red")] += r["light"] == "red"
                tally[("agency", r["responsible"], "total")] += 1
            if r["overdue"]:
                overdue_rows.append(r)
                due_day = r["due_at"].astimezone(SHANGHAI).date()
                expected[f"days:{r['workflow_id']}"] = f"{(today - due_day).days} 天"
    for key, n in tally.items():
        if key[0] in ("unit", "agency"):
            expected["count:" + ":".join(key)] = str(n)
    for light in ("red", "yellow", "green"):
        expected[f"total:{light}"] = str(tally[("all", light)])
    for kind in OPEN:
        expected[f"total:{kind}"] = str(tally[("all", kind)])
    expected["total:all"] = str(sum(tally[("all", k)] for k in OPEN))
    expected["total:overdue"] = str(len(overdue_rows))
    expected["overdue:count"] = str(len(overdue_rows))
    year = today.year
    units = {r["code"] for r in await pool.fetch("SELECT code FROM parties WHERE kind = 'unit' AND active")}
    completed = {r["unit"] for r in await pool.fetch(
        "SELECT unit FROM inspections WHERE year = $1 AND stage = 'completed'", year)} & units
    running = {r["unit"] for r in await pool.fetch(
        "SELECT unit FROM inspections WHERE year = $1 AND stage <> 'completed'", year)} & units - completed
    expected["coverage:units"] = str(len(units))
    expected["coverage:inspected"] = str(len(completed))
    expected["coverage:in_progress"] = str(len(running))
    expected["coverage:percent"] = str(round(100 * len(completed) / len(units), 1))
    expected["_names"] = json.dumps(names, ensure_ascii=False)
    return expected


class Numbers(html.parser.HTMLParser):
    """The text of every element with a data-count / data-total / data-coverage / data-days /
    data-overdue / data-running attribute, keyed like expected_numbers()."""

    KEYS = {"data-count": "count", "data-total": "total", "data-coverage": "coverage",
            "data-days": "days", "data-overdue": "overdue", "data-running": "running"}

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, str] = {}
        self.open: list[str | None] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        key = next((f"{self.KEYS[a]}:{v}" for a, v in attrs.items() if a in self.KEYS), None)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag not in ("br", "img", "meta", "link", "input"):
            self.open.append(key)
            if key:
                self.found[key] = ""

    def handle_endtag(self, tag):
        if self.open:
            self.open.pop()

    def handle_data(self, data):
        for key in self.open:
            if key:
                self.found[key] += data


def numbers(dom: str) -> Numbers:
    parser = Numbers()
    parser.feed(dom)
    return parser


async def chromium(*args: str, profile: Path) -> str:
    assert await asyncio.to_thread(Path(CHROMIUM).exists), f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (make test does)"
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
        "--disable-background-networking", "--disable-component-update", "--hide-scrollbars",
        f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def running(dev_env):
    """Workflows on the dev server with the board's search attributes, on a task queue of their
    own (no worker: they stay Running), so the board's Temporal counts are known exactly."""
    client = dev_env.client
    task_queue = f"board-{uuid.uuid4().hex[:8]}"
    plan = [("clue", "red", True), ("clue", "red", False), ("clue", "green", False),
            ("rectification", "yellow", False), ("rectification", "red", True), ("inspection", "green", False)]
    handles = []
    for i, (kind, light, overdue) in enumerate(plan):
        handles.append(await client.start_workflow(
            "BoardProbe", id=f"board-probe-{task_queue}-{i}", task_queue=task_queue,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(DUCHA_KIND, kind), SearchAttributePair(DUCHA_LIGHT, light),
                SearchAttributePair(DUCHA_OVERDUE, overdue)])))
    query = f"TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running'"
    for _ in range(200):  # visibility catches up with the starts
        if (await client.count_workflows(query)).count == len(plan):
            break
        await asyncio.sleep(0.1)
    yield task_queue, plan
    for h in handles:
        await h.terminate("test done")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def board(db_url, ledger, running, dev_env):
    task_queue, _ = running
    s = make_settings(db_url, temporal_address=dev_env.client.service_client.config.target_host,
                      task_queue=task_queue, namespace=dev_env.client.namespace, board_refresh_seconds=1,
                      ui_port=8233)
    server = await start_board(s, "127.0.0.1", 0)
    yield server.url, s
    await server.stop()


async def test_the_page_in_chromium_shows_the_ledgers_numbers(board, pool, running, tmp_path):
    url, s = board
    dom = await chromium("--dump-dom", f"{url}/", profile=tmp_path / "p1")
    assert "督办看板" in dom and "逾期清单" in dom and "各执法单位" in dom
    shown = numbers(dom)
    expected = await expected_numbers(pool)
    names = json.loads(expected.pop("_names"))
    for key, value in expected.items():
        assert shown.found.get(key, "").strip() == value, (key, shown.found.get(key), value)
    # no number on the page that SQL does not explain: every count cell either matches a
    # non-empty group, or shows 0 for a group SQL has nothing in
    for key, text in shown.found.items():
        if key.startswith(("count:", "total:", "days:", "coverage:", "overdue:")) and key not in expected:
            assert text.strip() == "0", (key, text)
    assert int(expected["total:red"]) > 0 and int(expected["total:overdue"]) > 0
    # every agency has a row (zero or not); unit rows carry the registry's names
    for code in AGENCY_CODES:
        assert f"count:agency:{code}:total" in shown.found
    assert any(name in dom for code, name in names.items() if code.startswith(("market", "transport")))
    # one link per overdue case, to its page in the Web UI
    overdue_links = [h for h in shown.links if "/namespaces/default/workflows/" in h]
    assert len(overdue_links) == int(expected["overdue:count"])
    assert all(h.startswith("http://127.0.0.1:8233/namespaces/default/workflows/") for h in overdue_links)
    # Temporal's visibility: exactly the probe workflows
    _, plan = running
    for kind in ("clue", "rectification", "inspection"):
        for light in ("red", "yellow", "green"):
            want = sum(1 for k, lt, _ in plan if (k, lt) == (kind, light))
            assert shown.found[f"running:{kind}:{light}"].strip() == str(want), (kind, light)
        want = sum(1 for k, _, o in plan if k == kind and o)
        assert shown.found[f"running:{kind}:overdue"].strip() == str(want)
    # what a person sees: a wall screen and a phone
    for name, size in (("board-1920x1080.png", "1920,1080"), ("board-laptop-1280x2400.png", "1280,2400"),
                       ("board-phone-420x1400.png", "420,1400")):
        png = tmp_path / name
        await chromium(f"--screenshot={png}", f"--window-size={size}", f"{url}/", profile=tmp_path / f"p-{name}")
        assert png.stat().st_size > 10_000
        print(f"\nboard screenshot: {png}")


async def test_the_json_endpoint_matches_and_the_board_is_read_only(board, pool):
    url, s = board
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        doc = (await http.get(f"{url}/api/board")).json()
        assert (await http.get(f"{url}/healthz")).status_code == 200
        assert (await http.post(f"{url}/", content=b"x")).status_code == 405
        assert (await http.get(f"{url}/static/board.css")).status_code == 200
        assert (await http.get(f"{url}/static/../board.py")).status_code == 404
    expected = await expected_numbers(pool)
    data = doc["data"]
    assert data["total"]["by_light"] == {lt: int(expected[f"total:{lt}"]) for lt in ("red", "yellow", "green")}
    assert data["overdue_total"] == int(expected["overdue:count"])
    assert data["coverage"]["inspected"] == int(expected["coverage:inspected"])
    assert set(doc["html"]) == {"summary", "overdue", "agencies", "units", "coverage", "running"}
    # the board's sessions are read-only: a write fails in PostgreSQL itself
    from workers.board import BoardSource

    source = BoardSource(s, max_age=0)
    try:
        assert (await source.current()).board is not None
        async with source.pool.acquire() as conn:
            assert await conn.fetchval("SHOW default_transaction_read_only") == "on"
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await conn.execute("UPDATE clues SET light = 'green'")
    finally:
        await source.close()


async def test_the_page_refreshes_itself_when_the_ledger_changes(board, pool, tmp_path):
    """A new red, overdue clue appears on the open page without a reload."""
    url, _ = board
    async with Browser(tmp_path / "live") as browser:
        await browser.page_text(f"{url}/", "督办看板")

        async def value(expression: str):
            return (await browser.call("Runtime.evaluate", returnByValue=True,
                                       expression=expression))["result"].get("value")

        await value("window.sameDocument = 'yes'")
        red = int(await value("document.querySelector('[data-total=red]').textContent"))
        count = int(await value("document.querySelector('[data-overdue=count]').textContent"))
        unit = await pool.fetchval("SELECT code FROM parties WHERE kind = 'unit' AND active ORDER BY code LIMIT 1")
        due = datetime.now(UTC) - timedelta(days=3)
        await pool.execute(
            "INSERT INTO clues (clue_no, workflow_id, year, route, source, target, channel, importance, "
            "subject_unit, title, discovered_on, stage, responsible, due_at, overdue, light, registered_at) "
            "VALUES ('LIVE-1', 'clue-LIVE-1', 2026, 'to_law_office', 'court', 'law_office', "
            "'judgment_enforcement', 'important', $1, '线索', $2, 'transferred', 'law_office', $3, true, "
            "'red', now())", unit, today_in_china(), due)
        try:
            for _ in range(60):  # the page polls every second (board_refresh_seconds=1)
                await asyncio.sleep(0.5)
                if int(await value("document.querySelector('[data-total=red]').textContent")) == red + 1:
                    break
            assert int(await value("document.querySelector('[data-total=red]').textContent")) == red + 1
            assert int(await value("document.querySelector('[data-overdue=count]').textContent")) == count + 1
            assert await value("document.querySelector('[data-days=\"clue-LIVE-1\"]').textContent") == "3 天"
            assert await value("window.sameDocument") == "yes", "updated in place, not reloaded"
            assert await value("document.getElementById('status').textContent") == "数据正常"
        finally:
            await pool.execute("DELETE FROM clues WHERE clue_no = 'LIVE-1'")


async def test_without_temporal_or_postgresql_the_page_says_so(db_url, ledger):
    """Temporal unreachable: the ledger's numbers and a note; PostgreSQL unreachable: the page
    says so, /healthz answers 503, and nothing crashes."""
    from workers.embedded import free_port

    no_temporal = make_settings(db_url, temporal_address=f"127.0.0.1:{free_port()}")
    no_postgres = make_settings(f"postgresql://postgres@127.0.0.1:{free_port()}/none",
                                temporal_address=f"127.0.0.1:{free_port()}")
    async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
        server = await start_board(no_temporal, "127.0.0.1", 0)
        try:
            page = (await http.get(f"{server.url}/")).text
            assert "Temporal 暂不可用" in page and "数据正常" in page
            assert numbers(page).found["total:all"].strip() == (await expected_numbers_total(db_url))
        finally:
            await server.stop()
        server = await start_board(no_postgres, "127.0.0.1", 0)
        try:
            page = (await http.get(f"{server.url}/")).text
            health = await http.get(f"{server.url}/healthz")
        finally:
            await server.stop()
    assert "无法读取台账" in page and "暂无数据" in page
    assert health.status_code == 503


async def expected_numbers_total(db_url: str) -> str:
    conn = await asyncpg.connect(db_url)
    try:
        return str(await conn.fetchval(
            "SELECT (SELECT count(*) FROM clues WHERE stage IN ('registered', 'transferred', 'handling'))"
            " + (SELECT count(*) FROM rectifications WHERE stage <> 'closed')"
            " + (SELECT count(*) FROM inspections WHERE stage <> 'completed')"))
    finally:
        await conn.close()


def test_board_command_refuses_a_busy_port(tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "workers.cli", "board", "--port", str(port)],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and f"board: cannot listen on 127.0.0.1:{port}" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_settings_have_board_defaults():
    s = Settings()
    assert (s.board_host, s.board_port, s.board_refresh_seconds, s.board_ui_url) == ("127.0.0.1", 8791, 5, "")
