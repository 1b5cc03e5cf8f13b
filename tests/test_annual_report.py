"""The acceptance report and the archive after a simulated year on the demo county.

The year is simulated with the real workflows on the time-skipping server: unit inspections
(feedback starts the rectifications), rectifications accepted, rejected, closed, reopened and
escalated (which opens a special inspection and a discipline clue), clues met and missed, the
year end, and the AnnualAssessment of 10 January. Then `ducha report annual` must agree with
`ducha ledger --csv` and with direct SQL, `ducha archive` must verify, and the HTML must show its
charts in headless Chromium."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import os
import shutil
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from temporalio.service import RPCError

from rules.annual_report import BLUE, GREEN, RED
from schemas import ids
from schemas.assessment import AssessmentResult
from schemas.inspection import InspectionResult, InspectionStatus
from schemas.rectification import RectificationStatus
from workflows.annual_round import AnnualInspectionRound
from workflows.assessment import AnnualAssessment
from workflows.clue_transfer import ClueTransfer
from workflows.rectification import Rectification
from workflows.unit_inspection import UnitInspection

from .support import run_cli, wait_for_async

CHINA = timezone(timedelta(hours=8))
CHROMIUM = "/usr/bin/chromium"


@dataclass
class Year:
    year: int
    out: Path
    cli_env: dict[str, str]
    assessment: AssessmentResult
    covered: set[str]  # units whose routine inspection was completed
    refused: str  # the unit that never rectified (escalated)
    uncovered: str  # a unit that never self-inspected, never covered


OPERATORS: dict[str, str] = {}


def who(party: str) -> dict[str, str]:
    """An update's `operator` and `agency`: a registered operator of the party (demo registry)."""
    return {"operator": OPERATORS[party], "agency": party}


async def _load_operators(pool) -> None:
    OPERATORS.update({r["party"]: r["id"] for r in await pool.fetch(
        "SELECT DISTINCT ON (party) party, id FROM operators WHERE active ORDER BY party, id")})


async def _inspect(env, wid: str, unit: str, *, findings: list[dict], score: float | None,
                   self_inspect: bool = True) -> InspectionResult | None:
    """Drive the round's inspection of `unit` through the chain (as far as `score` allows)."""
    environment, _ = env
    handle = environment.client.get_workflow_handle_for(UnitInspection.run, wid)
    await wait_for_async(lambda: _status(handle), lambda s: s is not None and len(s.deadlines) == 2)

    async def act(update: Callable[..., Awaitable[InspectionStatus]], /, **arg) -> InspectionStatus:
        return await handle.execute_update(update, arg)

    team = who("coordination_group")
    if self_inspect:
        await act(UnitInspection.submit_self_inspection, **who(unit), summary="已完成自查", problems_found=1)
    if score is None:
        return None
    await act(UnitInspection.record_method, **team, method="hear_report", summary="听取汇报")
    await act(UnitInspection.record_method, **team, method="review_case_files", summary="评查案卷20卷", count=20)
    for f in findings:
        await act(UnitInspection.record_finding, **team, **f)
    await act(UnitInspection.evaluate, **team, score=score, grade="good" if score >= 80 else "pass", comments="总体规范")
    await act(UnitInspection.issue_feedback, **team, opinion="请逐项整改并按期报告", due_in_working_days=5, bulletin="西法督通〔1〕号")
    return await handle.result()


async def _status(handle) -> InspectionStatus | None:
    try:
        return await handle.query(UnitInspection.status)
    except RPCError:
        return None  # not started yet


def _finding(category: str, lst: str = "individual") -> dict:
    return {"description": f"{category}方面存在问题", "category": category, "list": lst, "basis": "相关规定"}


def _rect(env, wid: str):
    environment, _ = env
    return environment.client.get_workflow_handle(wid)


async def _do(handle, update: Callable[..., Awaitable[RectificationStatus]], /, **arg) -> RectificationStatus:
    return await handle.execute_update(update, arg)


async def _clue(env, no: str, **inp):
    environment, tq = env
    return await environment.client.start_workflow(ClueTransfer.run, {"clue_no": no, **inp}, id=ids.clue(no),
                                                   task_queue=tq)


async def _pass_time(environment, until: datetime) -> None:
    """Skip the test server's clock to `until` a few days at a time: every timer in between
    fires in order and one skip never waits on a whole year's work."""
    while (left := until - await environment.get_current_time()) > timedelta(0):
        await environment.sleep(min(left, timedelta(days=3)))


@pytest.fixture(scope="module")
async def simulated(env, pool, db_url, receiver, tmp_path_factory) -> Year:
    environment, tq = env
    now = (await environment.get_current_time()).astimezone(CHINA)
    if (datetime(now.year + 1, 1, 1, tzinfo=CHINA) - now).days < 200:  # too little year left: next year
        await _pass_time(environment, datetime(now.year + 1, 1, 5, 9, tzinfo=CHINA))
        now = (await environment.get_current_time()).astimezone(CHINA)
    y = now.year
    await _load_operators(pool)

    # 年度平时督察 in two batches over every unit of the demo county.
    round_id = ids.annual_round(y)
    await environment.client.start_workflow(AnnualInspectionRound.run, {"year": y, "batches": 2}, id=round_id,
                                            task_queue=tq)
    await wait_for_async(lambda: pool.fetch("SELECT unit, batch, opens_on FROM round_units WHERE round_id = $1 "
                                            "ORDER BY batch, unit", round_id), lambda rows: len(rows) > 10)
    plan = await pool.fetch("SELECT unit, batch, opens_on FROM round_units WHERE round_id = $1 ORDER BY batch, unit",
                            round_id)
    first = [r["unit"] for r in plan if r["batch"] == 1]
    second = [r for r in plan if r["batch"] == 2]
    a, b, c, d, busy, idle = first[:6]
    wid = {u: ids.inspection(y, "routine", u) for u in (a, b, c, d, busy, idle, second[0]["unit"])}

    # 逐级检查: four units of the first batch completed, one still being inspected, one that never
    # self-inspected; one of the second batch completed when it opens.
    ra = await _inspect(env, wid[a], a, findings=[_finding("执法程序"), _finding("执法公正", "common")], score=86)
    rb = await _inspect(env, wid[b], b, findings=[_finding("文书规范")], score=92)
    await _inspect(env, wid[c], c, findings=[], score=96)
    rd = await _inspect(env, wid[d], d, findings=[_finding("执法程序", "common")], score=75)
    await _inspect(env, wid[busy], busy, findings=[], score=None)
    assert ra and rb and rd

    # 逐级验收. The time-skipping test server stops skipping time once a child workflow whose
    # parent has closed completes (temporalio/sdk-typescript#1101): the problem closed off here is
    # one raised by hand from a tour's feedback; the inspections' own problems stay open.
    team = who("law_office")
    r1 = _rect(env, ra.rectifications[0])  # accepted; its look-back falls due
    await _do(r1, Rectification.submit_report, **who(a), measures="已补正程序")
    accepted = await _do(r1, Rectification.review, **team, decision="accept")
    r2 = _rect(env, ra.rectifications[1])  # rejected once, then accepted
    await _do(r2, Rectification.submit_report, **who(a), measures="已整改")
    await _do(r2, Rectification.review, **team, decision="reject", reason="证据不足")
    await _do(r2, Rectification.submit_report, **who(a), measures="补充证据")
    await _do(r2, Rectification.review, **team, decision="accept")
    r3 = _rect(env, rd.rectifications[0])  # accepted, the look-back fails: reopened
    await _do(r3, Rectification.submit_report, **who(d), measures="已整改")
    await _do(r3, Rectification.review, **team, decision="accept")
    r4 = await environment.client.start_workflow(Rectification.run, {
        "problem_no": f"{y}-T001", "unit": c, "origin": {"kind": "tour", "ref": f"西巡反馈〔{y}〕2号"},
        "list": "individual", "category": "行政审批", "description": "审批超时限", "basis": "相关规定",
        "opinion": "压缩审批时限", "due_in_working_days": 10, "lookback_after_days": 90, "severity": "general",
        "issued_by": OPERATORS["law_office"]}, id=ids.rectification(f"{y}-T001"), task_queue=tq)
    await wait_for_async(lambda: r4.query(Rectification.status), lambda st: bool(st.deadlines))
    await _do(r4, Rectification.submit_report, **who(c), measures="已压缩时限")
    await _do(r4, Rectification.review, **team, decision="accept")  # closed after the look-back
    # b's problem is left alone: overdue, then escalated (拒不整改).

    # 线索: route a met on time, route c missed by justice, a routine clue not transferred.
    today = now.date().isoformat()
    ca = await _clue(env, f"{y}-9001", route="to_law_office", source="court", channel="judgment_enforcement",
                     importance="important", discovered_on=today, subject_unit=a, title="执行中发现程序违法",
                     reported_by=OPERATORS["court"])
    await ca.execute_update(ClueTransfer.transfer, who("court"))
    await ca.execute_update(ClueTransfer.acknowledge, who("law_office"))
    await ca.execute_update(ClueTransfer.report_result,
                            {**who("law_office"), "outcome": "substantiated", "summary": "经核查属实"})
    cc = await _clue(env, f"{y}-9002", route="to_justice", source="discipline", channel="supervision_review",
                     importance="important", discovered_on=today, subject_unit=b, title="执法行为不当",
                     reported_by=OPERATORS["discipline"])
    await cc.execute_update(ClueTransfer.transfer, who("discipline"))
    await _clue(env, f"{y}-9003", route="to_law_office", source="procuratorate", channel="public_interest_litigation",
                importance="routine", discovered_on=today, subject_unit=c, title="公益诉讼中发现问题",
                reported_by=OPERATORS["procuratorate"])

    # 回头看 when it falls due (90 days after acceptance).
    await _pass_time(environment, datetime.fromisoformat(accepted.lookback_due_at) + timedelta(hours=1))
    await wait_for_async(lambda: r4.query(Rectification.status),
                         lambda st: st.stage == "lookback")
    await _do(r4, Rectification.record_lookback, **team, result="pass", findings="抽查规范")
    await _do(r3, Rectification.record_lookback, **team, result="fail", findings="问题反弹")

    # The second batch opens; one of its units is inspected.
    opens = second[0]["opens_on"]
    await _pass_time(environment, datetime(opens.year, opens.month, opens.day, 12, tzinfo=CHINA))
    e = second[0]["unit"]
    await _inspect(env, wid[e], e, findings=[], score=88)

    # The rest of the year passes (deadlines, escalations, the round's due date, year end), then
    # the schedule's day: 10 January.
    await _pass_time(environment, datetime(y + 1, 1, 10, 9, 30, tzinfo=CHINA))
    handle = await environment.client.start_workflow(
        AnnualAssessment.run, {"year": None}, id=ids.annual_assessment(y), task_queue=tq)
    result = await handle.result()
    assert result.year == y, "null year: the year before the start"

    out = tmp_path_factory.mktemp("annual")
    cli_env = {**os.environ, "DUCHA_DATABASE_URL": db_url, "DUCHA_TASK_QUEUE": tq}
    code, stdout, err = await run_cli("report", "annual", str(y), "--out", str(out / "report"), env=cli_env)
    assert code == 0, err
    assert "report.html" in stdout
    return Year(year=y, out=out, cli_env=cli_env, assessment=result, covered={a, b, c, d, e}, refused=b,
                uncovered=idle)


def _data(sim: Year) -> dict:
    return json.loads((sim.out / "report" / "data.json").read_text(encoding="utf-8"))


def _html(sim: Year) -> str:
    return (sim.out / "report" / "report.html").read_text(encoding="utf-8")


async def _ledger(sim: Year) -> list[dict]:
    code, out, err = await run_cli("ledger", "--csv", "--all", env=sim.cli_env)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    return [r for r in rows if datetime.fromisoformat(r["required_at"]).astimezone(CHINA).year == sim.year]


async def test_the_report_numbers_match_ducha_ledger(simulated):
    sim = simulated
    ledger = await _ledger(sim)
    data = _data(sim)
    html = _html(sim)
    assert len(ledger) >= 5, "the simulated year raised problems: 4 from inspections, 1 from a tour"
    t = data["totals"]
    assert t["problems"] == len(ledger)
    assert {p["problem_no"] for p in data["problems"]} == {r["problem_no"] for r in ledger}
    assert t["closed"] == sum(r["stage"] == "closed" for r in ledger) >= 1
    assert t["escalated"] == sum(r["escalated"] == "True" for r in ledger) >= 1
    assert (t["common"], t["individual"]) == (sum(r["list"] == "common" for r in ledger),
                                              sum(r["list"] == "individual" for r in ledger))
    funnel = {f["step"]: f["count"] for f in data["funnel"]}
    events = {r["problem_no"]: {e.split(" ", 1)[1] for e in r["timeline"].split("; ") if e} for r in ledger}
    assert funnel == {
        "required": len(ledger),
        "reported": sum("reported" in e for e in events.values()),
        "accepted": sum("accepted" in e for e in events.values()),
        "looked_back": sum(bool({"lookback_due", "closed", "reopened"} & e) for e in events.values()),
        "closed": t["closed"], "escalated": t["escalated"]}
    assert funnel["reported"] >= funnel["accepted"] >= funnel["looked_back"] >= funnel["closed"] >= 1
    # By category and per unit, in data.json and in the HTML tables.
    cats = Counter(r["category"] for r in ledger)
    assert {c["category"]: c["total"] for c in data["problems_by_category"]} == dict(cats)
    for category, n in cats.items():
        common = sum(r["category"] == category and r["list"] == "common" for r in ledger)
        assert f"<td>{category}</td><td>{n}</td><td>{common}</td><td>{n - common}</td>" in html
    for unit in {r["unit"] for r in ledger}:
        rows = [r for r in ledger if r["unit"] == unit]
        line = [rows[0]["unit_name"], len(rows), sum(r["missed_deadlines"] == "0" for r in rows),
                sum(r["missed_deadlines"] != "0" for r in rows), sum(r["escalated"] == "True" for r in rows),
                sum(r["stage"] == "closed" for r in rows), sum(r["stage"] != "closed" for r in rows)]
        assert "<tr>" + "".join(f"<td>{v}</td>" for v in line) + "</tr>" in html, line
    for r in ledger:
        assert r["problem_no"] in html
    # The funnel table shows the same counts.
    assert f"<td>下达整改</td><td>{len(ledger)}</td><td>100.0%</td>" in html
    assert f"<td>销号</td><td>{t['closed']}</td>" in html


async def test_the_report_numbers_match_the_ledger_tables(simulated, pool):
    sim = simulated
    y = sim.year
    data = _data(sim)
    t = data["totals"]
    covered = await pool.fetchval(
        "SELECT count(DISTINCT unit) FROM inspections WHERE year = $1 AND stage = 'completed'", y)
    assert t["covered"] == covered == len(sim.covered), "one unit is still being inspected, others never were"
    assert t["inspections"] == await pool.fetchval("SELECT count(*) FROM inspections WHERE year = $1", y)
    assert t["units"] == await pool.fetchval("SELECT count(*) FROM parties WHERE kind = 'unit' AND active")
    months = {m["month"]: m for m in data["coverage_by_month"]}
    assert sum(m["completed"] for m in months.values()) == t["inspections_completed"]
    assert max(m["covered_to_date"] for m in months.values()) == covered
    assert {u["unit"] for u in data["coverage_units"] if u["covered"]} == sim.covered
    batches = {b["batch"]: b for b in data["coverage_by_batch"]}
    assert sorted(batches) == [1, 2] and sum(b["completed"] for b in batches.values()) == len(sim.covered)
    assert sum(b["planned"] for b in batches.values()) == t["units"]
    assert batches[2]["completed"] == 1 and batches[1]["completed"] == 4
    assert sum(1 for m in months.values() if m["newly_covered"]) == 2, "the first batch, then the second"
    # Clue deadlines, recomputed here from the clue events.
    rows = await pool.fetch(
        "SELECT c.route, array_agg(e.event) AS events FROM clues c JOIN ledger_events e "
        "ON e.subject_kind = 'clue' AND e.subject_id = c.clue_no WHERE c.year = $1 GROUP BY c.clue_no, c.route", y)
    missed = Counter()
    for r in rows:
        missed[r["route"]] += len({e for e in r["events"] if e.endswith(".overdue")})
    got = {c["route"]: c for c in data["clue_deadlines"]}
    assert {k: v["missed"] for k, v in got.items() if v["missed"]} == {k: v for k, v in missed.items() if v}
    assert got["to_justice"]["missed"] >= 1, "justice never acknowledged"
    assert got["to_law_office"]["met"] >= 3, "the court's clue: transfer, acknowledge, handling on time"
    assert sum(c["clues"] for c in data["clue_deadlines"]) == t["clues"] == await pool.fetchval(
        "SELECT count(*) FROM clues WHERE year = $1", y)
    # Scores are the assessment's rows.
    db = {r["unit"]: r for r in await pool.fetch("SELECT * FROM assessments WHERE year = $1", y)}
    assert {s["unit"]: (s["score"], s["grade"], s["rank"]) for s in data["scores"]} == {
        u: (r["score"], r["grade"], r["rank"]) for u, r in db.items()}
    assert len(data["deductions"]) == await pool.fetchval(
        "SELECT count(*) FROM assessment_deductions WHERE year = $1", y)
    assert await pool.fetchval("SELECT count(*) FROM assessment_deductions WHERE year = $1 AND unit = $2 "
                               "AND rule = 'rectification.escalated'", y, sim.refused) >= 1, "refused to rectify"
    assert db[sim.uncovered]["grade"] == "合格" and db[sim.uncovered]["caps"] == ["not_covered"]
    levels = {lv["step"]: lv for lv in data["levels"]}
    assert levels["feedback"]["done"] == t["inspections_completed"]
    assert levels["committee"]["note"].startswith(f"考核 {len(db)} 个单位")
    # The CSVs carry the same tables.
    text = (sim.out / "report" / "scores.csv").read_text(encoding="utf-8-sig")
    assert len(list(csv.DictReader(io.StringIO(text)))) == len(db)
    text = (sim.out / "report" / "problems.csv").read_text(encoding="utf-8-sig")
    assert len(list(csv.DictReader(io.StringIO(text)))) == t["problems"]


async def test_the_html_is_self_contained_and_in_chinese(simulated):
    html = _html(simulated)
    assert html.startswith("<!DOCTYPE html>") and 'lang="zh-CN"' in html
    assert f"{simulated.year}年度法治督察验收报告" in html
    for heading in ("督察覆盖", "发现问题", "整改漏斗", "线索移送办理", "绩效考核结果", "逐级检查验收",
                    "部门自查", "联动检查", "重点评估", "问题反馈", "部门整改", "督察组验收", "党委听取报告",
                    "共性问题清单", "个性问题清单"):
        assert heading in html, heading
    assert html.count("<svg") == 6
    lowered = html.lower()
    assert "<script" not in lowered and "http://" not in lowered and "https://" not in lowered
    assert "src=" not in lowered and "<link" not in lowered and "url(" not in lowered


async def test_the_archive_verifies_and_its_counts_match_the_ledger(simulated, pool, tmp_path):
    sim = simulated
    y = sim.year
    zpath = tmp_path / f"档案-{y}.zip"
    code, out, err = await run_cli("archive", str(y), "--out", str(zpath), env=sim.cli_env)
    assert code == 0, err
    assert "SHA-256" in out
    code, out, err = await run_cli("archive", "verify", str(zpath), env=sim.cli_env)
    assert code == 0 and out.startswith("OK"), err
    with zipfile.ZipFile(zpath) as z:
        manifest = json.loads(z.read("manifest.json"))
        counts = manifest["counts"]
        expect = {
            "clues": "SELECT count(*) FROM clues WHERE year = $1",
            "clue_events": "SELECT count(*) FROM ledger_events e JOIN clues c ON e.subject_kind = 'clue' "
                           "AND e.subject_id = c.clue_no WHERE c.year = $1",
            "inspections": "SELECT count(*) FROM inspections WHERE year = $1",
            "inspection_events": "SELECT count(*) FROM ledger_events e JOIN inspections i ON "
                                 "e.subject_kind = 'inspection' AND e.subject_id = i.workflow_id WHERE i.year = $1",
            "inspection_methods": "SELECT count(*) FROM inspection_methods m JOIN inspections i USING (workflow_id) "
                                  "WHERE i.year = $1",
            "inspection_findings": "SELECT count(*) FROM inspection_findings f JOIN inspections i USING (workflow_id) "
                                   "WHERE i.year = $1",
            "inspection_evaluations": "SELECT count(*) FROM inspection_evaluations WHERE year = $1",
            "rectifications": "SELECT count(*) FROM rectifications WHERE year = $1",
            "rectification_events": "SELECT count(*) FROM ledger_events e JOIN rectifications r ON "
                                    "e.subject_kind = 'rectification' AND e.subject_id = r.problem_no WHERE r.year = $1",
            "assessments": "SELECT count(*) FROM assessments WHERE year = $1",
            "assessment_deductions": "SELECT count(*) FROM assessment_deductions WHERE year = $1",
        }
        for kind, sql in expect.items():
            assert counts[kind] == await pool.fetchval(sql, y), kind
        assert counts["clues"] >= 3 and counts["rectification_events"] > counts["rectifications"]
        ledger = await _ledger(sim)
        assert counts["rectifications"] == len(ledger)
        # Callbacks: the assessment's and the workflows' own, each delivery with its attempts.
        deliveries = [json.loads(line) for line in z.read("records/callback_deliveries.jsonl").splitlines()]
        assert any(d["event_id"] == f"assessment-{y}-summary" and d["recipient"] == "county_committee"
                   for d in deliveries)
        assert any(d["event_id"].startswith("rectification-") for d in deliveries)
        assert counts["callback_attempts"] >= sum(d["status"] == "delivered" for d in deliveries) > 0
        # Every record line is JSON; the ledger events keep their hash chain.
        events = [json.loads(line) for line in z.read("records/rectification_events.jsonl").splitlines()]
        assert all(len(e["hash"]) == 64 for e in events)
        assert {e["subject_id"] for e in events} == {r["problem_no"] for r in ledger}
        report = z.read("report/report.html").decode()
        assert f"{y}年度法治督察验收报告" in report
        for f in manifest["files"]:
            assert f["sha256"] == hashlib.sha256(z.read(f["name"])).hexdigest()
        assert {f["name"] for f in manifest["files"]} | {"manifest.json"} == set(z.namelist())


async def test_a_tampered_archive_fails_verification(simulated, tmp_path):
    sim = simulated
    good = tmp_path / "good.zip"
    code, _, err = await run_cli("archive", str(sim.year), "--out", str(good), env=sim.cli_env)
    assert code == 0, err

    def rewrite(dest: Path, change) -> None:
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(dest, "w") as out:
            for item in src.infolist():
                data = change(item.filename, src.read(item.filename))
                if data is not None:
                    out.writestr(item.filename, data)

    edited = tmp_path / "edited.zip"
    rewrite(edited, lambda name, data: data.replace(b'"stage": "closed"', b'"stage": "rectifying"', 1)
            if name == "records/rectifications.jsonl" else data)
    code, _, err = await run_cli("archive", "verify", str(edited), env=sim.cli_env)
    assert code == 1 and "records/rectifications.jsonl: SHA-256" in err, err
    dropped = tmp_path / "dropped.zip"
    rewrite(dropped, lambda name, data: None if name == "records/clues.jsonl" else data)
    code, _, err = await run_cli("archive", "verify", str(dropped), env=sim.cli_env)
    assert code == 1 and "records/clues.jsonl" in err and "missing" in err, err
    added = tmp_path / "added.zip"
    rewrite(added, lambda name, data: data)
    with zipfile.ZipFile(added, "a") as z:
        z.writestr("records/extra.jsonl", b"{}\n")
    code, _, err = await run_cli("archive", "verify", str(added), env=sim.cli_env)
    assert code == 1 and "records/extra.jsonl" in err, err
    code, _, err = await run_cli("archive", "verify", str(tmp_path / "none.zip"), env=sim.cli_env)
    assert code == 1
    code, _, err = await run_cli("archive", "1999", "--out", str(tmp_path / "x.zip"), env=sim.cli_env)
    assert code == 2 and "2000" in err


def png_pixels(data: bytes) -> tuple[int, int, int, bytes]:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes): (width, height, bytes per pixel, pixels)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, [], 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    out = bytearray()
    prev = bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        ftype, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif ftype == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += line
        prev = line
    return width, height, bpp, bytes(out)


def colours(pixels: bytes, bpp: int) -> Counter:
    """How many pixels of each RGB colour."""
    return Counter(zip(pixels[0::bpp], pixels[1::bpp], pixels[2::bpp], strict=True))


def count_colour(hist: Counter, hex_colour: str, tolerance: int = 6) -> int:
    target = bytes.fromhex(hex_colour.lstrip("#"))
    return sum(n for rgb, n in hist.items() if all(abs(rgb[k] - target[k]) <= tolerance for k in range(3)))


def _installed(path: str) -> bool:
    return Path(path).exists()


async def test_the_report_opens_in_headless_chromium_with_its_charts_drawn(simulated, tmp_path):
    assert _installed(CHROMIUM), f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (make test does)"
    html = simulated.out / "report" / "report.html"
    png = tmp_path / "report.png"
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1200,2400",
        html.resolve().as_uri(), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0 and png.exists(), err.decode(errors="replace")[-2000:]
    width, height, bpp, pixels = await asyncio.to_thread(png_pixels, png.read_bytes())
    assert (width, height) == (1200, 2400)
    hist = await asyncio.to_thread(colours, pixels, bpp)
    blue, red, green = (count_colour(hist, c) for c in (BLUE, RED, GREEN))
    # Bars only: completed inspections, batches, categories, the funnel and the ranking are blue,
    # uncovered units, escalations and missed clue deadlines red, clue deadlines met green
    # (nothing else on the page has these colours).
    assert blue > 20_000, blue
    assert red > 2_000, red
    assert green > 1_000, green
    shutil.copy(png, simulated.out / "report.png")
