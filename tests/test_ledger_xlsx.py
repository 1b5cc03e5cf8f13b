"""`ducha ledger --xlsx FILE`: the ledger as a workbook, checked cell by cell against SQL on a few
hundred generated problems (real PostgreSQL, this module's own database): a sheet per stage in
the ledger's order, frozen header, auto-filters, real dates, the traffic light as a filled cell,
widths that fit Chinese, and a stage longer than a sheet continued on the next one."""

from __future__ import annotations

import os
import random
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import pytest_asyncio

from documents import ledger_xlsx
from documents.xlsx import LIGHTS, text_width
from rules.bulletin import STAGE_NAMES

from .support import run_cli

CHINA = timezone(timedelta(hours=8))
ZONE = ZoneInfo("Asia/Shanghai")
UNITS = {"market_regulation": "县市场监督管理局", "transport": "县交通运输局", "u_x": "X"}
STAGES = list(STAGE_NAMES)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ledger(pool) -> int:
    rng = random.Random(15)
    await pool.executemany(
        "INSERT INTO parties (code, kind, name, leader, liaison) VALUES ($1, 'unit', $2, '{}', '{}') "
        "ON CONFLICT (code) DO NOTHING", list(UNITS.items()))
    rows = []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(300):
        at = start + timedelta(seconds=rng.randrange(0, 300 * 86400))
        if i < 5:
            at = datetime(2026, 3, 3, 9, 0, tzinfo=CHINA)  # ties: the problem number orders them
        stage = STAGES[i % 5] if i < 250 else "closed"
        rows.append((f"2026-P{i:04d}", rng.choice(list(UNITS)), rng.choice(["common", "individual"]),
                     rng.choice(["执法程序", "文书规范"]), stage, date(2026, 12, 31) - timedelta(days=i),
                     rng.random() < 0.3, rng.choice(["green", "yellow", "red"]), at,
                     at + timedelta(days=40) if stage == "closed" else None, "行政处罚案卷缺少听证告知书" * (i % 3 + 1)))
    await pool.executemany(
        "INSERT INTO rectifications (problem_no, workflow_id, year, unit, origin_kind, list, category, severity, "
        "description, opinion, issued_by, stage, due_on, overdue, light, required_at, closed_at) "
        "VALUES ($1, 'rectification-' || $1, 2026, $2, 'inspection', $3, $4, 'general', $11, '补正', '李娜', "
        "$5, $6, $7, $8, $9, $10)", rows)
    return len(rows)


async def test_workbook_against_the_ledger(pool, ledger, tmp_path):
    path = tmp_path / "ledger.xlsx"
    # 61 rows a sheet (60 problems + header): 已销号 (110 problems) continues on a second sheet.
    result = await ledger_xlsx.export(pool, path, ZONE, max_rows=61)
    assert result.total == ledger
    wb = openpyxl.load_workbook(path)
    names = [STAGE_NAMES[s] for s in STAGES]
    assert wb.sheetnames == ["汇总", *names, "已销号（续2）"]
    expected = {r["problem_no"]: r for r in await pool.fetch(
        "SELECT r.*, p.name AS unit_name FROM rectifications r JOIN parties p ON p.code = r.unit")}
    order = [r["problem_no"] for r in await pool.fetch(
        "SELECT problem_no FROM rectifications ORDER BY required_at DESC, problem_no")]
    seen: list[str] = []
    for title in wb.sheetnames[1:]:
        ws = wb[title]
        assert ws.freeze_panes == "A2"
        assert ws.auto_filter.ref == f"A1:S{ws.max_row}"
        header = [c.value for c in ws[1]]
        assert header == ledger_xlsx.HEADER
        assert ws.max_row <= 61
        for name, col in (("问题描述", "R"), ("单位", "B")):
            width = ws.column_dimensions[col].width
            longest = max(text_width(c.value) for c in ws[col][1:]) if ws.max_row > 1 else 0
            assert width >= min(longest, 60), (title, name)
        for cells in ws.iter_rows(min_row=2):
            v = {h: c for h, c in zip(header, cells, strict=True)}
            r = expected[v["问题编号"].value]
            seen.append(r["problem_no"])
            assert STAGE_NAMES[r["stage"]] == title.split("（")[0]
            assert v["单位"].value == r["unit_name"]
            assert v["整改时限"].is_date and v["整改时限"].value.date() == r["due_on"]
            assert v["下达时间"].is_date
            local = r["required_at"].astimezone(ZONE).replace(tzinfo=None)  # the county's clock
            assert abs(v["下达时间"].value - local) < timedelta(milliseconds=1)
            assert (v["销号时间"].value is None) == (r["closed_at"] is None)
            light = v["督办灯"]
            assert light.value == LIGHTS[r["light"]][0]
            assert light.fill.fill_type == "solid" and light.fill.fgColor.rgb.endswith(LIGHTS[r["light"]][1])
            assert v["逾期"].value == ("是" if r["overdue"] else "否")
    # Every problem once, and within a stage in the ledger's order (newest first, ties by number).
    assert sorted(seen) == sorted(expected)
    for stage in STAGES:
        in_sheets = [no for no in seen if expected[no]["stage"] == stage]
        assert in_sheets == [no for no in order if expected[no]["stage"] == stage]
    summary = {row[0]: row[1:] for row in wb["汇总"].iter_rows(min_row=2, values_only=True)}
    counts = {r["stage"]: r["n"] for r in await pool.fetch(
        "SELECT stage, count(*) AS n FROM rectifications GROUP BY stage")}
    for stage in STAGES:
        assert summary[STAGE_NAMES[stage]][0] == counts[stage]
    assert summary["合计"][0] == ledger


async def test_cli_filters_and_refuses_bad_input(pool, ledger, db_url, tmp_path):
    env = {**os.environ, "DUCHA_DATABASE_URL": db_url}
    out = tmp_path / "overdue.xlsx"
    code, stdout, stderr = await run_cli("ledger", "--status", "overdue", "--unit", "transport",
                                         "--xlsx", str(out), env=env)
    assert code == 0, stderr
    n = await pool.fetchval("SELECT count(*) FROM rectifications WHERE unit = 'transport' AND overdue "
                            "AND stage <> 'closed'")
    assert f"共 {n} 个问题" in stdout
    wb = openpyxl.load_workbook(out, read_only=True)
    rows = [r for title in wb.sheetnames[1:] for r in wb[title].iter_rows(min_row=2, values_only=True)]
    assert len(rows) == n and all(r[2] == "transport" and r[9] == "是" for r in rows)
    code, _, stderr = await run_cli("ledger", "--xlsx", str(tmp_path / "x.xlsx"), "--limit", "5", env=env)
    assert code == 2 and "--xlsx" in stderr and "Traceback" not in stderr
    code, _, stderr = await run_cli("ledger", "--xlsx", str(tmp_path / "x.csv"), env=env)
    assert code == 2 and ".xlsx" in stderr and not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("text,width", [("abc", 3), ("县市场监管局", 12), ("2026-P0001", 10), ("（一）", 6)])
def test_text_width_counts_wide_characters_twice(text, width):
    assert text_width(text) == width
