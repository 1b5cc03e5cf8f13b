"""AnnualAssessment end to end on the time-skipping server with real activities, PostgreSQL and
receiver: a year of ledger rows seeded directly in PostgreSQL, scores and deductions checked
against values computed by hand, each party's callback carrying only its own result."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.assessment import AssessmentActivities
from activities.ledger import append_event, upsert_snapshot
from config.chain_key import ChainKey
from schemas import ids
from schemas.assessment import AssessmentResult, PublishScores, ScoreYear
from schemas.inspection import InspectionSnapshot
from schemas.ledger import ClueSnapshot, LedgerEvent, RectificationSnapshot
from workflows.assessment import AnnualAssessment
from workflows.catalog import ALL_WORKFLOWS
from workflows.search_attributes import DUCHA_KIND, DUCHA_STAGE, DUCHA_YEAR

from .conftest import make_settings
from .support import assert_replays, wait_for

CHINA = timezone(timedelta(hours=8))
MR, NR, EE, TR = "market_regulation", "natural_resources", "ecology_environment", "transport"
AGENCIES = {"law_office", "discipline", "court", "procuratorate", "justice", "tour_office", "coordination_group"}

KEY = ChainKey.generate()


def at(year: int, month: int, day: int, hour: int = 10) -> datetime:
    return datetime(year, month, day, hour, tzinfo=CHINA)


async def inspection(pool, wid: str, unit: str, year: int, *, kind: str = "routine", stage: str = "completed",
                     score: float | None = None, round_id: str | None = None) -> None:
    snap = InspectionSnapshot(
        workflow_id=wid, run_id=uuid.uuid4().hex, year=year, kind=kind, unit=unit,
        lead="coordination_group" if kind == "routine" else "law_office", trigger_type="request",
        trigger_ref="", round_id=round_id, stage=stage, responsible=None, self_due_on=None, team_due_on=None,
        due_at=None, provisional=False, overdue=False, self_inspection_missed=False, light="green",
        methods=2, findings=1, rectifications=1, clues=0, score=score, grade=None,
        started_at=at(year, 3, 2), self_submitted_at=at(year, 3, 10), evaluated_at=at(year, 4, 1) if score else None,
        completed_at=at(year, 4, 8) if stage == "completed" else None)
    async with pool.acquire() as conn:
        await upsert_snapshot(conn, "inspections", "workflow_id", snap)
        await append_event(conn, KEY, "inspection", wid, LedgerEvent(seq=0, event="started", occurred_at=at(year, 3, 2)))
        if score is not None:
            await conn.execute(
                "INSERT INTO inspection_evaluations (workflow_id, unit, year, kind, score, grade, agency, operator) "
                "VALUES ($1,$2,$3,$4,$5,'pass','coordination_group','李娜')", wid, unit, year, kind, score)


async def problem(pool, no: str, unit: str, events: list[tuple[str, datetime]]) -> None:
    """A rectification with its timeline; events[0] is ("required", when)."""
    names = [e for e, _ in events]
    closed = next((t for e, t in events if e == "closed"), None)
    required_at = events[0][1]
    snap = RectificationSnapshot(
        problem_no=no, workflow_id=ids.rectification(no), year=required_at.year, unit=unit,
        origin_kind="inspection", origin_ref="", list="individual", category="执法程序", severity="general",
        issued_by="李娜", stage="closed" if closed else "rectifying", responsible=None, due_on=None, due_at=None,
        provisional=False, overdue=False, missed_deadlines=names.count("overdue"), escalated="escalated" in names,
        extensions=names.count("deadline_extended"), reopened=names.count("reopened"), carried_over=0,
        light="green", required_at=required_at, reported_at=None, accepted_at=None, lookback_due_at=None,
        closed_at=closed)
    async with pool.acquire() as conn:
        await upsert_snapshot(conn, "rectifications", "problem_no", snap)
        for seq, (event, when) in enumerate(events):
            await append_event(conn, KEY, "rectification", no, LedgerEvent(seq=seq, event=event, occurred_at=when,
                                                                      data={"stage": "x"}))


async def clue(pool, no: str, route: str, source: str, target: str, year: int,
               events: list[tuple[str, datetime, str | None]]) -> None:
    snap = ClueSnapshot(
        clue_no=no, workflow_id=ids.clue(no), year=year, route=route, source=source, target=target,
        channel="judgment_enforcement", importance="important", subject_unit=MR, title="测试线索",
        discovered_on=date(year, 2, 1), stage="concluded", responsible=None, due_on=None, due_at=None,
        provisional=False, overdue=False, missed_deadlines=sum(1 for e in events if e[2]), escalations=0,
        light="green", outcome=None, special_inspection_requested=False, escalated_from=None,
        registered_at=events[0][1], transferred_at=None, acknowledged_at=None, closed_at=None)
    async with pool.acquire() as conn:
        await upsert_snapshot(conn, "clues", "clue_no", snap)
        for seq, (event, when, responsible) in enumerate(events):
            data = {"responsible": responsible, "deadline": event.split(".")[0]} if responsible else {}
            await append_event(conn, KEY, "clue", no, LedgerEvent(seq=seq, event=event, occurred_at=when, data=data))


@pytest.fixture(scope="module")
async def year(env, pool, receiver) -> int:
    """Seed one year (the one before the test server's clock) of ledger rows."""
    environment, _ = env
    y = (await environment.get_current_time()).astimezone(CHINA).year - 1
    round_id = ids.annual_round(y)
    await pool.execute(
        "INSERT INTO inspection_rounds (round_id, year, stage, start_on, due_on, batches, max_parallel, planned_at) "
        "VALUES ($1, $2, 'completed', $3, $4, 2, 100, $5)", round_id, y, date(y, 3, 1), date(y, 12, 31), at(y, 3, 1))
    for unit, batch in ((MR, 1), (NR, 1), (EE, 2), (TR, 2)):
        await pool.execute("INSERT INTO round_units (round_id, unit, batch, opens_on, priority) VALUES ($1,$2,$3,$4,0)",
                           round_id, unit, batch, date(y, 3 * batch, 1))
    # Inspections: MR routine 98 + special 100; NR 95; EE evaluated 70 but feedback not issued (not
    # covered); TR none. Last year's poor score of MR must not count.
    await inspection(pool, ids.inspection(y, "routine", MR), MR, y, score=98, round_id=round_id)
    await inspection(pool, ids.inspection(y, "special", MR), MR, y, kind="special", score=100)
    await inspection(pool, ids.inspection(y - 1, "routine", MR), MR, y - 1, score=10)
    await inspection(pool, ids.inspection(y, "routine", NR), NR, y, score=95, round_id=round_id)
    await inspection(pool, ids.inspection(y, "routine", EE), EE, y, stage="evaluation", score=70, round_id=round_id)
    # Rectifications.
    await problem(pool, f"{y}-P1", MR, [("required", at(y, 3, 1)), ("overdue", at(y, 4, 1)), ("reported", at(y, 4, 3)),
                                       ("accepted", at(y, 4, 10)), ("lookback_due", at(y, 7, 9)), ("closed", at(y, 7, 12))])
    await problem(pool, f"{y}-P2", MR, [("required", at(y, 4, 20)), ("due_soon", at(y, 5, 15)), ("overdue", at(y, 5, 20)),
                                       ("escalated", at(y, 5, 27))])
    await problem(pool, f"{y}-P3", NR, [("required", at(y, 5, 1)), ("reported", at(y, 5, 10)), ("accepted", at(y, 5, 12)),
                                       ("lookback_due", at(y, 8, 10)), ("reopened", at(y, 8, 12)),
                                       ("reported", at(y, 9, 1)), ("accepted", at(y, 9, 3))])
    await problem(pool, f"{y - 1}-P4", NR, [("required", at(y - 1, 11, 2)), ("overdue", at(y - 1, 12, 3)),
                                           ("carried_over", at(y, 1, 1, 0))])  # still overdue a year later
    await problem(pool, f"{y}-P5", EE, [("required", at(y, 12, 20)), ("overdue", at(y + 1, 1, 5))])  # next year's
    await problem(pool, f"{y}-P6", TR, [("required", at(y, 6, 1)), ("overdue", at(y, 7, 1)),
                                       ("deadline_extended", at(y, 7, 2)), ("reported", at(y, 7, 20)),
                                       ("accepted", at(y, 7, 22))])
    # Clues: the court missed a transfer deadline, justice two deadlines, discipline one next year.
    await clue(pool, f"{y}-0001", "to_law_office", "court", "law_office", y, [
        ("registered", at(y, 2, 1), None), ("transfer.overdue", at(y, 2, 18), "court"),
        ("transferred", at(y, 2, 19), None), ("acknowledged", at(y, 2, 20), None), ("concluded", at(y, 3, 20), None)])
    await clue(pool, f"{y}-0002", "to_justice", "discipline", "justice", y, [
        ("registered", at(y, 6, 1), None), ("transferred", at(y, 6, 1), None),
        ("acknowledge.overdue", at(y, 6, 5), "justice"), ("acknowledged", at(y, 6, 8), None),
        ("handling.overdue", at(y, 7, 20), "justice")])
    await clue(pool, f"{y}-0003", "to_discipline", "law_office", "discipline", y, [
        ("registered", at(y, 12, 1), None), ("transferred", at(y, 12, 1), None),
        ("acknowledged", at(y, 12, 2), None), ("handling.overdue", at(y + 1, 1, 15), "discipline")])
    return y


async def run(env, payload: dict, suffix: str = "") -> tuple[object, AssessmentResult]:
    environment, tq = env
    year = payload.get("year")
    handle = await environment.client.start_workflow(
        AnnualAssessment.run, payload, task_queue=tq,
        id=(ids.annual_assessment(year) if year else f"{ids.ANNUAL_ASSESSMENT}auto") + suffix)
    # The assessment has no timers: waiting for it must not skip time. With skipping on, the test
    # server's clock can race through activity heartbeat timeouts while `publish_scores` sends 30+
    # callbacks in real time, and a later run's "last year" is no longer this module's year.
    with environment.auto_time_skipping_disabled():
        return handle, await handle.result()


async def scores(pool, year: int) -> dict[str, dict]:
    return {r["unit"]: dict(r) for r in await pool.fetch("SELECT * FROM assessments WHERE year = $1", year)}


async def deductions(pool, year: int, unit: str) -> list[tuple]:
    rows = await pool.fetch(
        "SELECT rule, source_id, source_seq, points, applied_points, weighted_points FROM assessment_deductions "
        "WHERE year = $1 AND unit = $2 ORDER BY component, rule, source_id, source_seq", year, unit)
    return [(r["rule"], r["source_id"], r["source_seq"], r["points"], r["applied_points"],
             round(r["weighted_points"], 6)) for r in rows]


async def test_scores_and_deductions_match_the_hand_computed_values(env, pool, receiver, year):
    handle, result = await run(env, {"year": year})
    y = year
    s = await scores(pool, y)
    units = await pool.fetchval("SELECT count(*) FROM parties WHERE kind = 'unit' AND active")
    assert set(s) >= AGENCIES and len(s) == units + len(AGENCIES), "every unit and the clue agencies"
    assert "county_committee" not in s
    # MR: evaluation (98+100)/2 = 99; rectification 100 − 5 − 5 − 15 − 3 = 72; clues 100; coverage 100
    #     0.5×99 + 0.3×72 + 0.1×100 + 0.1×100 = 91.1 → 优秀, capped to 良好 (escalated)
    mr = s[MR]
    assert (mr["score"], mr["grade_before_caps"], mr["grade"], mr["caps"]) == (91.1, "优秀", "良好", ["escalated"])
    assert {c: v["score"] for c, v in mr["components"].items()} == {
        "evaluation": 99, "rectification": 72, "clues": 100, "coverage": 100}
    assert await deductions(pool, y, MR) == [
        ("evaluation.score", ids.inspection(y, "routine", MR), 0, 1.0, 1.0, 0.5),
        ("evaluation.score", ids.inspection(y, "special", MR), 0, 0.0, 0.0, 0.0),
        ("rectification.escalated", f"{y}-P2", 3, 15, 15, 4.5),
        ("rectification.open_at_year_end", f"{y}-P2", 2, 3, 3, 0.9),
        ("rectification.overdue", f"{y}-P1", 1, 5, 5, 1.5),
        ("rectification.overdue", f"{y}-P2", 2, 5, 5, 1.5),
    ]
    # NR: 95; reopened −5, last year's problem still overdue −3 → 92: 47.5 + 27.6 + 10 + 10 = 95.1
    nr = s[NR]
    assert (nr["score"], nr["grade"], nr["caps"]) == (95.1, "优秀", [])
    assert [d[:3] for d in await deductions(pool, y, NR)] == [
        ("evaluation.score", ids.inspection(y, "routine", NR), 0),
        ("rectification.open_at_year_end", f"{y - 1}-P4", 1),
        ("rectification.reopened", f"{y}-P3", 4)]
    # EE: evaluated 70 but not covered; its overdue falls in the next year: 35 + 30 + 10 + 0 = 75 合格
    ee = s[EE]
    assert (ee["score"], ee["grade"], ee["caps"]) == (75.0, "合格", [])
    assert [d[:2] for d in await deductions(pool, y, EE)] == [
        ("coverage.not_covered", ids.annual_round(y)), ("evaluation.score", ids.inspection(y, "routine", EE))]
    # TR: no evaluation (100), one overdue later extended (95), not covered: 50 + 28.5 + 10 + 0 = 88.5 → 合格 (cap)
    tr = s[TR]
    assert (tr["score"], tr["grade_before_caps"], tr["grade"], tr["caps"]) == (88.5, "良好", "合格", ["not_covered"])
    # A unit with nothing recorded: 90, capped to 合格 because nobody inspected it.
    quiet = s["health"]
    assert (quiet["score"], quiet["grade"]) == (90.0, "合格")
    assert [d[:2] for d in await deductions(pool, y, "health")] == [("coverage.not_covered", "health")]
    # Agencies are scored on their clue deadlines only.
    assert (s["court"]["score"], s["court"]["grade"]) == (90.0, "优秀")
    assert (s["justice"]["score"], s["justice"]["grade"]) == (80.0, "良好")
    assert [d[:3] for d in await deductions(pool, y, "justice")] == [
        ("clues.missed_deadline", f"{y}-0002", 2), ("clues.missed_deadline", f"{y}-0002", 4)]
    assert s["discipline"]["score"] == 100.0, "a deadline missed next January counts next year"
    assert s["court"]["components"]["coverage"]["applies"] is False
    # Ranking: ties share a rank.
    ranked = sorted(s.values(), key=lambda r: r["rank"])
    assert ranked[0]["score"] == 100.0 and ranked[-1]["unit"] == EE
    assert s["court"]["rank"] == s["health"]["rank"], "equal scores share a rank"
    assert all(r["rubric_version"] == "2026.1" and len(r["rubric_hash"]) == 64 for r in s.values())
    # The workflow's own result is a small summary.
    assert result.year == y and result.summary.units == len(s)
    assert result.summary.mean == round(sum(r["score"] for r in s.values()) / len(s), 1)
    assert result.summary.grades == {g: sum(r["grade"] == g for r in s.values())
                                     for g in {r["grade"] for r in s.values()}}
    assert result.summary.deductions == await pool.fetchval(
        "SELECT count(*) FROM assessment_deductions WHERE year = $1", y)
    assert result.published is not None and result.published.published == len(s) and result.published.committee
    st = await handle.query(AnnualAssessment.status)
    assert (st.year, st.stage) == (y, "published")
    desc = await handle.describe()
    sa = desc.typed_search_attributes
    assert (sa.get(DUCHA_KIND), sa.get(DUCHA_YEAR), sa.get(DUCHA_STAGE)) == ("assessment", y, "published")
    await assert_replays(handle, ALL_WORKFLOWS)

    # Each party gets its own score only; county_committee gets the summary.
    await wait_for(lambda: {r.recipient for r in receiver.events("assessment.published")} >= set(s) | {"county_committee"},
                   timeout=60)
    got = receiver.events("assessment.published")
    assert all(r.verified for r in got)
    for r in got:
        data = r.body["data"]
        if r.recipient == "county_committee":
            assert r.webhook_id == f"assessment-{y}-summary" and data["units"] == len(s)
            assert data["ranking_units"][0] == ranked[0]["unit"] and data["mean"] == result.summary.mean
            continue
        assert r.webhook_id == f"assessment-{y}-{r.recipient}"
        assert data["unit"] == r.recipient and data["score"] == s[r.recipient]["score"]
        assert data["grade"] == s[r.recipient]["grade"]
        others = set(s) - {r.recipient}
        assert not any(f'"{o}"' in str(r.body).replace("'", '"') for o in others), "no other party's data"
        assert "ranking_units" not in data and "rank" not in data
    mine = next(r.body["data"] for r in got if r.recipient == MR)
    assert mine["deductions"] == 6 and mine["deduction_rules"].count("rectification.overdue") == 2
    assert f"rectification:{y}-P2" in mine["deduction_sources"] and mine["score_rectification"] == 72
    assert mine["caps"] == ["escalated"]


async def test_rerun_replaces_the_year_and_sends_nothing_twice(env, pool, receiver, year):
    await wait_for(lambda: len(receiver.events("assessment.published")) > 0, timeout=60)
    before = await pool.fetch("SELECT unit, score, grade, rank FROM assessments WHERE year = $1 ORDER BY unit", year)
    n_deductions = await pool.fetchval("SELECT count(*) FROM assessment_deductions WHERE year = $1", year)
    # null year: the year before the start (a schedule's nominal start, else the workflow's).
    handle, result = await run(env, {"year": None}, suffix="-again")
    assert result.year == year
    after = await pool.fetch("SELECT unit, score, grade, rank FROM assessments WHERE year = $1 ORDER BY unit", year)
    assert [tuple(r) for r in after] == [tuple(r) for r in before]
    assert await pool.fetchval("SELECT count(*) FROM assessment_deductions WHERE year = $1", year) == n_deductions
    ids = await pool.fetchval("SELECT count(*) FROM callback_events WHERE event_id LIKE $1", f"assessment-{year}-%")
    assert ids == len(before) + 1, "same event ids: each party is told once"
    await assert_replays(handle, ALL_WORKFLOWS)

    # New facts change the year's rows on the next run (compute only, no notification).
    await problem(pool, f"{year}-P7", TR, [("required", at(year, 9, 1)), ("overdue", at(year, 10, 1)),
                                          ("escalated", at(year, 10, 9))])
    _, result = await run(env, {"year": year, "notify": False}, suffix="-corrected")
    assert result.published is None
    tr = await pool.fetchrow("SELECT score, grade FROM assessments WHERE year = $1 AND unit = $2", year, TR)
    # rectification 100 − 5 − 5 − 15 − 3 = 72: 50 + 21.6 + 10 + 0 = 81.6, capped to 合格
    assert (tr["score"], tr["grade"]) == (81.6, "合格")
    assert await pool.fetchval("SELECT count(*) FROM assessment_deductions WHERE year = $1", year) == n_deductions + 3
    assert await pool.fetchval("SELECT count(*) FROM callback_events WHERE event_id LIKE $1",
                               f"assessment-{year}-%") == ids


async def test_a_year_that_has_not_begun_is_refused(env):
    environment, _ = env
    future = (await environment.get_current_time()).astimezone(CHINA).year + 1
    with pytest.raises(WorkflowFailureError) as info:
        await run(env, {"year": future})
    assert "尚未开始" in str(info.value.cause)
    environment, tq = env
    handle = await environment.client.start_workflow(AnnualAssessment.run, None, id=f"{ids.ANNUAL_ASSESSMENT}null",
                                                     task_queue=tq)
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert "AssessmentStart" in str(info.value.cause), "a null input fails clearly instead of retrying"


async def test_a_bad_rubric_fails_without_retrying(pool, db_url, tmp_path, year):
    bad = tmp_path / "rubric.yaml"
    bad.write_text('version: "x"\nweights: {evaluation: 0.9}\n', encoding="utf-8")
    acts = AssessmentActivities(pool, make_settings(db_url, assessment_rubric=bad))
    with pytest.raises(ApplicationError) as info:
        await acts.score_year(ScoreYear(year=year, workflow_id="t"))
    assert info.value.non_retryable and "rubric.yaml:2" in str(info.value)
    with pytest.raises(ApplicationError, match="callbacks"):
        await acts.publish_scores(PublishScores(year=year, occurred_at=datetime.now(CHINA)))


def test_the_schedule_runs_on_10_january_in_shanghai_for_the_year_before(db_url):
    from workers.schedules import build, definitions

    s = make_settings(db_url)
    [d] = [d for d in definitions(s) if d.schedule_id == "annual-assessment"]
    schedule = build(d, s)
    [cal] = schedule.spec.calendars
    assert schedule.spec.time_zone_name == "Asia/Shanghai"
    assert ([r.start for r in cal.month], [r.start for r in cal.day_of_month], [r.start for r in cal.hour]) == (
        [1], [10], [9])
    assert d.workflow == AnnualAssessment.run and d.arg.year is None
    assert schedule.action.workflow == "AnnualAssessment"  # the type name on the wire
