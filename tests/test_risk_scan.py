"""Risk indicators and the RiskScan: `ducha indicators load FILE.csv` (a subprocess, against this
module's PostgreSQL), thresholds, windows, the scan's default period, and never a second open
special inspection of one unit. Workflows run on the time-skipping server with real activities."""

from __future__ import annotations

import os
import uuid

from schemas import ids
from schemas.risk import RiskScanResult
from workflows.catalog import ALL_WORKFLOWS
from workflows.risk_scan import RiskScan
from workflows.unit_inspection import UnitInspection

from .support import assert_replays, run_cli

HEADER = "unit,period,complaints,lost_lawsuits,revoked_decisions\n"


def cli_env(db_url: str) -> dict[str, str]:
    return {**os.environ, "DUCHA_DATABASE_URL": db_url}


async def load(tmp_path, db_url: str, body: str, name: str = "indicators.csv") -> tuple[int, str, str]:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return await run_cli("indicators", "load", str(path), env=cli_env(db_url))


async def scan(env, **start) -> tuple[RiskScanResult, object]:
    environment, tq = env
    handle = await environment.client.start_workflow(
        RiskScan.run, start, id=f"risk-scan-t{uuid.uuid4().hex[:6]}", task_queue=tq)
    return await handle.result(), handle


async def test_load_is_idempotent_and_reports_what_changed(tmp_path, db_url, pool, receiver):
    body = HEADER + "transport,2026-07,3,0,0\nhealth,2026-07,1,1,0\n"
    code, out, err = await load(tmp_path, db_url, "\ufeff" + body)  # Excel's BOM is fine
    assert code == 0, err
    assert "added 2" in out and "+ transport 2026-07" in out
    code, out, _ = await load(tmp_path, db_url, body)
    assert "unchanged 2" in out
    code, out, _ = await load(tmp_path, db_url, body.replace("health,2026-07,1,1,0", "health,2026-07,1,2,0"))
    assert "updated 1" in out and "~ health 2026-07" in out
    assert await pool.fetchval("SELECT lost_lawsuits FROM risk_indicators WHERE unit='health' AND period='2026-07'") == 2
    code, out, _ = await run_cli("indicators", "show", "--period", "2026-07", "--json", env=cli_env(db_url))
    assert code == 0 and '"unit": "health"' in out


async def test_bad_file_names_every_bad_line_and_writes_nothing(tmp_path, db_url, pool, receiver):
    before = await pool.fetchval("SELECT count(*) FROM risk_indicators")
    body = (HEADER + "education,2026-08,1,0,0\n" + "education,2026-13,1,0,0\n" + "forestry,2026-08,-1,0,0\n"
            + "education,2026-08,2,0,0\n")
    code, _, err = await load(tmp_path, db_url, body, "bad.csv")
    assert code != 0
    assert "bad.csv:3: period" in err and "bad.csv:4: complaints" in err and "bad.csv:5:" in err and "重复" in err
    code, _, err = await load(tmp_path, db_url, HEADER + "no_such_unit,2026-08,1,0,0\n", "unknown.csv")
    assert code != 0 and "no_such_unit" in err
    code, _, err = await load(tmp_path, db_url, "unit,period\nx,2026-08\n", "short.csv")
    assert code != 0 and "complaints" in err
    assert await pool.fetchval("SELECT count(*) FROM risk_indicators") == before


async def test_units_over_a_threshold_get_one_special_inspection_each_never_two(env, tmp_path, db_url, pool):
    environment, _ = env
    code, _, err = await load(tmp_path, db_url, HEADER + "\n".join([
        "ecology_environment,2026-09,25,0,0",   # complaints over
        "urban_management,2026-09,2,4,1",       # lost lawsuits over
        "agriculture,2026-09,19,2,2",           # just under every threshold
        "water_resources,2026-08,10,0,0",       # over only with a two-month window
        "water_resources,2026-09,10,0,0",
    ]) + "\n")
    assert code == 0, err
    thresholds = {"complaints": 20, "lost_lawsuits": 3, "revoked_decisions": 3}
    result, h = await scan(env, period="2026-09", thresholds=thresholds)
    assert [f.unit for f in result.flagged] == ["ecology_environment", "urban_management"]
    assert result.flagged[1].reasons == ["行政诉讼败诉 4 ≥ 3"]
    year = (await environment.get_current_time()).year
    assert sorted(link.workflow_id for link in result.started) == [
        ids.inspection(year, "special", u) for u in ("ecology_environment", "urban_management")]
    for link in result.started:
        st = await environment.client.get_workflow_handle(link.workflow_id).query(UnitInspection.status)
        assert (st.kind, st.lead, st.trigger.type, st.trigger.ref) == ("special", "law_office", "indicator", h.id)
    await assert_replays(h, ALL_WORKFLOWS)

    # The next scan finds them open: nothing is started twice.
    again, h2 = await scan(env, period="2026-09", thresholds=thresholds)
    assert (again.started, sorted(link.workflow_id for link in again.already_open)) == (
        [], sorted(link.workflow_id for link in result.started))
    await assert_replays(h2, ALL_WORKFLOWS)

    # A two-month window adds water_resources (10 + 10 complaints); at most one start per scan.
    wide, _ = await scan(env, period="2026-09", window_months=2, thresholds=thresholds, max_starts=1)
    assert (wide.first_period, [f.unit for f in wide.flagged]) == (
        "2026-08", ["ecology_environment", "urban_management", "water_resources"])
    assert wide.not_started == ["urban_management", "water_resources"]
    assert [link.workflow_id for link in wide.already_open] == [result.started[0].workflow_id]
    assert await pool.fetchval("SELECT count(*) FROM inspections WHERE kind='special' AND trigger_type='indicator'") == 2


async def test_scan_without_a_period_reads_last_month(env, tmp_path, db_url):
    environment, _ = env
    now = (await environment.get_current_time())
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    last = f"{year}-{month:02d}"
    code, _, err = await load(tmp_path, db_url, HEADER + f"civil_affairs,{last},0,0,5\n", "last.csv")
    assert code == 0, err
    result, h = await scan(env, period=None)
    assert result.period == last
    assert [f.unit for f in result.flagged] == ["civil_affairs"]
    assert [link.workflow_id.rsplit("-", 1)[-1] for link in result.started] == ["civil_affairs"]
    await assert_replays(h, ALL_WORKFLOWS)
