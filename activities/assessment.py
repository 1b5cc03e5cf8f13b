"""The yearly assessment (法治建设绩效考核) in PostgreSQL: gather every party's facts for a year,
score them with the rubric, save scores and deductions, and publish each party's own result.

Which records count for year Y (docs/assessment.md):
- inspections and their evaluations whose `year` is Y (coverage: one of them completed);
- ledger events that occurred in Y (Asia/Shanghai): rectification overdue / escalated / reopened,
  clue `*.overdue` with the party as `responsible`;
- the state of every problem at 24:00 on 31 December: still overdue and not rectified counts once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, time
from typing import TYPE_CHECKING

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from config.yaml_file import FileError, load_yaml_model
from rules.rubric import (
    COMPONENT_NAMES,
    GRADES,
    EvaluationFact,
    RecordFact,
    Rubric,
    UnitFacts,
    UnitScore,
    score,
)
from schemas import ids
from schemas.assessment import (
    PublishScores,
    PublishSummary,
    RankedScore,
    ScoreYear,
    YearSummary,
)
from schemas.codes import AgencyCode
from schemas.events import EventType, PublishEvent

if TYPE_CHECKING:
    from activities.callbacks import CallbackActivities
    from config.settings import Settings

log = structlog.get_logger("ducha.assessment")

COMMITTEE = AgencyCode.COUNTY_COMMITTEE.value
DEADLINE_NAMES = {"transfer": "移送期限", "acknowledge": "签收期限", "handling": "办理期限"}
# A problem's state after each of its ledger events (other events leave it unchanged).
STATE_AFTER = {
    "required": "on_time", "deadline_extended": "on_time", "rejected": "on_time", "reopened": "on_time",
    "overdue": "overdue", "escalated": "overdue", "reported": "reported", "accepted": "accepted",
    "lookback_due": "lookback", "closed": "closed",
}
GRADE_KEYS = ("excellent", "good", "pass", "fail")
MAX_LISTED = 100  # deductions listed in one party's callback (the body stays small)


def convention_id(year: int) -> str:
    """The assessment's workflow id by convention; callbacks name it whoever started the run."""
    return ids.annual_assessment(year)


def event_id(year: int, party: str, revision: int = 1) -> str:
    return f"assessment-{year}-{party}" + (f"-r{revision}" if revision > 1 else "")


def year_bounds(year: int, zone) -> tuple[datetime, datetime]:
    """[00:00 on 1 January, 00:00 on 1 January of the next year) in the county's time zone."""
    return (datetime.combine(date(year, 1, 1), time(), zone),
            datetime.combine(date(year + 1, 1, 1), time(), zone))


def rank(scores: list[UnitScore]) -> list[tuple[int, UnitScore]]:
    """Best first; equal scores share a rank (1, 2, 2, 4), ties in code order."""
    ordered = sorted(scores, key=lambda s: (-s.score, s.unit))
    out: list[tuple[int, UnitScore]] = []
    for i, s in enumerate(ordered):
        r = out[-1][0] if out and out[-1][1].score == s.score else i + 1
        out.append((r, s))
    return out


def load_rubric(settings: Settings) -> Rubric:
    try:
        return load_yaml_model(settings.assessment_rubric, Rubric)
    except FileError as exc:
        raise ApplicationError(f"考核计分规则文件有误 / bad assessment rubric:\n{exc}",
                               type="BadRubric", non_retryable=True) from None


class AssessmentActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings,
                 callbacks: CallbackActivities | None = None) -> None:
        self.pool = pool
        self.settings = settings
        self.callbacks = callbacks

    # --- facts ---------------------------------------------------------------------------

    async def gather(self, year: int, rubric: Rubric) -> list[UnitFacts]:
        """Every assessed party's facts for the year, in code order."""
        start, end = year_bounds(year, self.settings.zone)
        async with self.pool.acquire() as conn:
            parties = {r["code"]: r for r in await conn.fetch(
                "SELECT code, name, kind, active FROM parties")}
            evaluations = await conn.fetch(
                "SELECT workflow_id, unit, score, kind, evaluated_at FROM inspection_evaluations "
                "WHERE year = $1 ORDER BY workflow_id", year)
            covered = await conn.fetch(
                "SELECT workflow_id, unit FROM inspections WHERE year = $1 AND stage = 'completed' "
                "ORDER BY workflow_id", year)
            planned = await conn.fetch(
                "SELECT ru.unit, min(ru.round_id) AS round_id FROM round_units ru "
                "JOIN inspection_rounds r USING (round_id) WHERE r.year = $1 GROUP BY ru.unit", year)
            problems = await conn.fetch(
                "SELECT unit, count(*)::int AS n FROM rectifications WHERE year = $1 GROUP BY unit", year)
            # Problems raised before the year end and not closed before the year began.
            rect_events = await conn.fetch(
                "SELECT r.unit, r.problem_no, e.seq, e.event, e.occurred_at FROM rectifications r "
                "JOIN ledger_events e ON e.subject_kind = 'rectification' AND e.subject_id = r.problem_no "
                "WHERE r.required_at < $2 AND e.occurred_at < $2 AND e.event = ANY($3::text[]) "
                "AND NOT EXISTS (SELECT 1 FROM ledger_events c WHERE c.subject_kind = 'rectification' "
                "  AND c.subject_id = r.problem_no AND c.event = 'closed' AND c.occurred_at < $1) "
                "ORDER BY r.problem_no, e.seq",
                start, end, list(STATE_AFTER))
            clue_events = await conn.fetch(
                "SELECT e.subject_id AS clue_no, e.seq, e.event, e.occurred_at, "
                "e.data->>'responsible' AS responsible, e.data->>'deadline' AS deadline "
                "FROM ledger_events e WHERE e.subject_kind = 'clue' AND e.event LIKE '%.overdue' "
                "AND e.occurred_at >= $1 AND e.occurred_at < $2 ORDER BY e.subject_id, e.seq",
                start, end)

        agencies = set(rubric.assessed_agencies)
        facts: dict[str, UnitFacts] = {}

        def party(code: str, *, against: bool = False) -> UnitFacts | None:
            """The facts of an assessed party; None for a party that is not assessed."""
            if code in facts:
                return facts[code]
            p = parties.get(code)
            kind = p["kind"] if p else "unit"
            if kind == "agency" and code not in agencies and not against:
                return None
            facts[code] = UnitFacts(unit=code, name=p["name"] if p else code, kind=kind, year=year)
            return facts[code]

        for code, p in sorted(parties.items()):
            if p["active"] and (p["kind"] == "unit" or code in agencies):
                party(code)
        for r in evaluations:
            if (f := party(r["unit"])) is not None:
                f.evaluations.append(_evaluation(r))
        for r in covered:
            if (f := party(r["unit"])) is not None:
                f.covered_by.append(r["workflow_id"])
        rounds = {r["unit"]: r["round_id"] for r in planned}
        for r in problems:
            if (f := party(r["unit"], against=True)) is not None:
                f.problems = r["n"]
        for f in self._rectification_facts(rect_events, start):
            if (p := party(f[0], against=True)) is not None:
                p.rectification.append(f[1])
        for r in clue_events:
            who = r["responsible"]
            if not who or (f := party(who)) is None:
                continue
            name = r["deadline"] or r["event"].removesuffix(".overdue")
            f.clues.append(RecordFact(rule="missed_deadline", source_kind="clue", source_id=r["clue_no"],
                                      seq=r["seq"], occurred_at=r["occurred_at"],
                                      detail=DEADLINE_NAMES.get(name, name)))
        for f in facts.values():
            if not f.covered_by:
                f.coverage_source = ("round", rounds[f.unit]) if f.unit in rounds else ("registry", f.unit)
        return [facts[c] for c in sorted(facts)]

    @staticmethod
    def _rectification_facts(rows, start: datetime) -> list[tuple[str, RecordFact]]:
        """Deductible events of the year, and each problem still overdue at the year end."""
        out: list[tuple[str, RecordFact]] = []
        by_problem: dict[str, list] = defaultdict(list)
        for r in rows:
            by_problem[r["problem_no"]].append(r)
        for no, events in by_problem.items():
            state, standing = "on_time", None
            unit = events[0]["unit"]
            for e in events:
                state = STATE_AFTER[e["event"]]
                if e["event"] in ("overdue", "escalated"):
                    standing = standing or e
                elif state != "overdue":
                    standing = None
                if e["event"] in ("overdue", "escalated", "reopened") and e["occurred_at"] >= start:
                    out.append((unit, RecordFact(rule=e["event"], source_kind="rectification", source_id=no,
                                                 seq=e["seq"], occurred_at=e["occurred_at"])))
            if state == "overdue" and standing is not None:
                out.append((unit, RecordFact(rule="open_at_year_end", source_kind="rectification",
                                             source_id=no, seq=standing["seq"])))
        return out

    # --- score_year ----------------------------------------------------------------------

    @activity.defn(name="assessment.score_year")
    async def score_year(self, req: ScoreYear) -> YearSummary:
        """Score every assessed party for the year and replace the year's rows (idempotent)."""
        rubric = load_rubric(self.settings)
        digest = rubric.digest()
        scores = [score(f, rubric) for f in await self.gather(req.year, rubric)]
        ranked = rank(scores)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('assessment'), $1)", req.year)
            await conn.execute("DELETE FROM assessments WHERE year = $1", req.year)
            await conn.executemany(
                "INSERT INTO assessments (year, unit, party_kind, score, raw_score, grade, grade_before_caps, "
                "caps, rank, components, facts, rubric_version, rubric_hash, workflow_id) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
                [(req.year, s.unit, s.kind, s.score, s.raw_score, s.grade, s.grade_before_caps, s.caps, r,
                  {c: v.model_dump() for c, v in s.components.items()}, _fact_counts(s), rubric.version,
                  digest, req.workflow_id) for r, s in ranked],
            )
            await conn.executemany(
                "INSERT INTO assessment_deductions (year, unit, component, rule, points, applied_points, "
                "weighted_points, source_kind, source_id, source_seq, occurred_at, note) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
                [(req.year, s.unit, d.component, d.rule, d.points, d.applied_points, d.weighted_points,
                  d.source_kind, d.source_id, d.source_seq, d.occurred_at, d.note)
                 for s in scores for d in s.deductions],
            )
        log.info("assessment scored", year=req.year, parties=len(scores), rubric=rubric.version)
        values = [s.score for s in scores]
        best = [RankedScore(unit=s.unit, score=s.score, grade=s.grade) for _, s in ranked]
        return YearSummary(
            year=req.year, units=len(scores),
            mean=round(sum(values) / len(values), 1) if values else None,
            grades={g: n for g, n in Counter(s.grade for s in scores).items()},
            deductions=sum(len(s.deductions) for s in scores),
            top=best[:5], bottom=best[-5:][::-1] if len(best) > 5 else [],
            rubric_version=rubric.version, rubric_hash=digest,
        )

    # --- publish_scores ------------------------------------------------------------------

    @activity.defn(name="assessment.publish_scores")
    async def publish_scores(self, req: PublishScores) -> PublishSummary:
        """`assessment.published`: each party gets only its own score, grade and deductions;
        county_committee gets the summary. Event ids make a retry or rerun send nothing twice."""
        if self.callbacks is None:
            raise ApplicationError("回调未配置 / callbacks are not configured", type="NoCallbacks",
                                   non_retryable=True)
        rows = await self.pool.fetch(
            "SELECT a.*, coalesce(p.name, a.unit) AS name FROM assessments a "
            "LEFT JOIN parties p ON p.code = a.unit WHERE a.year = $1 ORDER BY a.unit", req.year)
        if not rows:
            raise ApplicationError(f"{req.year} 年度尚无考核结果 / no scores for {req.year}",
                                   type="NoScores", non_retryable=True)
        deductions: dict[str, list] = defaultdict(list)
        for d in await self.pool.fetch(
                "SELECT unit, rule, applied_points, weighted_points, source_kind, source_id FROM "
                "assessment_deductions WHERE year = $1 ORDER BY unit, component, occurred_at NULLS LAST, id",
                req.year):
            deductions[d["unit"]].append(d)
        details = activity.info().heartbeat_details if activity.in_activity() else []
        done, skipped = (int(details[0]), list(details[1])) if details else (0, [])
        wid = convention_id(req.year)
        for i in range(done, len(rows)):
            row = rows[i]
            result = await self.callbacks.publish(_party_event(req, wid, row, deductions[row["unit"]]))
            skipped += result.skipped
            if activity.in_activity():
                activity.heartbeat(i + 1, skipped)
        result = await self.callbacks.publish(_committee_event(req, wid, rows))
        log.info("assessment published", year=req.year, parties=len(rows), skipped=len(skipped))
        return PublishSummary(year=req.year, published=len(rows) - len(skipped), skipped=skipped,
                              committee=COMMITTEE in result.queued)


def _evaluation(r) -> EvaluationFact:
    return EvaluationFact(source_id=r["workflow_id"], score=r["score"], kind=r["kind"], at=r["evaluated_at"])


def _fact_counts(s: UnitScore) -> dict:
    by_rule = Counter(d.rule for d in s.deductions)
    return {
        "evaluations": by_rule.get("evaluation.score", 0),
        "covered": "coverage.not_covered" not in by_rule,
        **{rule.split(".", 1)[1]: n for rule, n in by_rule.items()
           if rule.startswith(("rectification.", "clues."))},
    }


def _party_event(req: PublishScores, wid: str, row, items: list) -> PublishEvent:
    comps = row["components"]
    listed = items[:MAX_LISTED]
    parts = "，".join(f"{COMPONENT_NAMES[c]} {v['score']:.1f}" for c, v in comps.items() if v["applies"])
    return PublishEvent(
        event_id=event_id(req.year, row["unit"], req.revision), type=EventType.ASSESSMENT_PUBLISHED,
        recipients=[row["unit"]], workflow_id=wid, occurred_at=req.occurred_at,
        summary=(f"{req.year}年度法治建设绩效考核：{row['name']} 得分 {row['score']:.1f}，等次{row['grade']}"
                 f"（{parts}）；扣分 {len(items)} 项")[:500],
        data={
            "year": req.year, "unit": row["unit"], "score": row["score"], "grade": row["grade"],
            **{f"score_{c}": round(v["score"], 2) for c, v in comps.items() if v["applies"]},
            "caps": list(row["caps"]), "deductions": len(items), "deductions_listed": len(listed),
            "deduction_rules": [d["rule"] for d in listed],
            "deduction_points": [round(d["weighted_points"], 3) for d in listed],
            "deduction_sources": [f"{d['source_kind']}:{d['source_id']}" for d in listed],
            "rubric_version": row["rubric_version"], "revision": req.revision,
        },
    )


def _committee_event(req: PublishScores, wid: str, rows: list) -> PublishEvent:
    ordered = sorted(rows, key=lambda r: (r["rank"], r["unit"]))
    grades = Counter(r["grade"] for r in rows)
    mean = round(sum(r["score"] for r in rows) / len(rows), 1)
    counts = "、".join(f"{g} {grades.get(g, 0)}" for g in GRADES)
    return PublishEvent(
        event_id=event_id(req.year, "summary", req.revision), type=EventType.ASSESSMENT_PUBLISHED,
        recipients=[COMMITTEE], workflow_id=wid, occurred_at=req.occurred_at,
        summary=f"{req.year}年度法治建设绩效考核结果：共考核 {len(rows)} 个单位，平均 {mean:.1f} 分；{counts}",
        data={
            "year": req.year, "units": len(rows), "mean": mean,
            **{key: grades.get(g, 0) for key, g in zip(GRADE_KEYS, GRADES, strict=True)},
            "ranking_units": [r["unit"] for r in ordered][:200],
            "ranking_scores": [r["score"] for r in ordered][:200],
            "rubric_version": rows[0]["rubric_version"], "rubric_hash": rows[0]["rubric_hash"],
            "revision": req.revision,
        },
    )
