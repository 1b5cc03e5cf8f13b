"""The yearly acceptance report's data (年度验收报告), read-only from the ledger.

What belongs to year Y: inspections and clues whose `year` is Y, problems raised in Y (the
`rectifications.year`, as `ducha ledger` shows them by `required_at`), the assessment of Y. Each
record is reported as it stands now, like `ducha ledger`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import asyncpg

from rules.rubric import COMPONENTS
from schemas.codes import AgencyCode
from schemas.ids import annual_assessment
from schemas.report import (
    AnnualReportData,
    BatchCoverage,
    CategoryCount,
    ClueDeadlines,
    DeductionRow,
    FunnelStep,
    LevelStep,
    MonthCoverage,
    PartyMisses,
    ProblemRow,
    ScoreRow,
    Totals,
    UnitCoverage,
    UnitRectification,
)

ROUTE_NAMES = {"to_law_office": "a. 移送县委依法治县办", "to_discipline": "b. 移送县纪委监委",
               "to_justice": "c. 移送县司法局"}
# (deadline, the event that meets it, the event without which it never started)
CLUE_DEADLINES = (("transfer", "transferred", None), ("acknowledge", "acknowledged", "transferred"),
                  ("handling", "concluded", "acknowledged"))
FUNNEL = (("required", "下达整改"), ("reported", "报告整改"), ("accepted", "验收通过"),
          ("looked_back", "回头看"), ("closed", "销号"), ("escalated", "拒不整改升级"))

COMMITTEE = AgencyCode.COUNTY_COMMITTEE.value


class AnnualReport:
    def __init__(self, pool: asyncpg.Pool, zone: ZoneInfo) -> None:
        self.pool = pool
        self.zone = zone

    def _month(self, at: datetime) -> str:
        return f"{at.astimezone(self.zone):%Y-%m}"

    async def build(self, year: int) -> AnnualReportData:
        async with self.pool.acquire() as conn:
            county = await conn.fetchval("SELECT value FROM registry_meta WHERE key = 'county'") or ""
            parties = {r["code"]: r for r in await conn.fetch("SELECT code, name, kind, active FROM parties")}
            inspections = await conn.fetch(
                "SELECT i.*, e.score AS eval_score FROM inspections i "
                "LEFT JOIN inspection_evaluations e USING (workflow_id) WHERE i.year = $1 "
                "ORDER BY i.workflow_id", year)
            batches = await conn.fetch(
                "SELECT ru.round_id, ru.unit, ru.batch, ru.opens_on FROM round_units ru "
                "JOIN inspection_rounds r USING (round_id) WHERE r.year = $1 ORDER BY ru.round_id, ru.batch",
                year)
            problems = await conn.fetch(
                "SELECT r.*, coalesce(p.name, r.unit) AS unit_name, "
                "array(SELECT DISTINCT e.event FROM ledger_events e WHERE e.subject_kind = 'rectification' "
                "      AND e.subject_id = r.problem_no) AS events, "
                "(SELECT count(*) FROM ledger_events e WHERE e.subject_kind = 'rectification' "
                "      AND e.subject_id = r.problem_no AND e.event = 'rejected')::int AS rejects "
                "FROM rectifications r LEFT JOIN parties p ON p.code = r.unit WHERE r.year = $1 "
                "ORDER BY r.problem_no", year)
            clues = await conn.fetch(
                "SELECT c.clue_no, c.route, array(SELECT e.event FROM ledger_events e "
                "  WHERE e.subject_kind = 'clue' AND e.subject_id = c.clue_no) AS events, "
                "array(SELECT e.data->>'responsible' FROM ledger_events e WHERE e.subject_kind = 'clue' "
                "  AND e.subject_id = c.clue_no AND e.event LIKE '%.overdue') AS missed_by "
                "FROM clues c WHERE c.year = $1 ORDER BY c.clue_no", year)
            scores = await conn.fetch(
                "SELECT a.*, coalesce(p.name, a.unit) AS name, "
                "(SELECT count(*) FROM assessment_deductions d WHERE d.year = a.year AND d.unit = a.unit)::int "
                "  AS n_deductions FROM assessments a LEFT JOIN parties p ON p.code = a.unit "
                "WHERE a.year = $1 ORDER BY a.rank, a.unit", year)
            deductions = await conn.fetch(
                "SELECT * FROM assessment_deductions WHERE year = $1 "
                "ORDER BY unit, component, occurred_at NULLS LAST, id", year)
            committee = await conn.fetchval(
                "SELECT count(*) FROM callback_deliveries d WHERE d.recipient = $2 AND d.status = 'delivered' "
                "AND (d.event_id = $1 OR d.event_id LIKE $1 || '-r%')",
                f"assessment-{year}-summary", COMMITTEE)

        name = {c: p["name"] for c, p in parties.items()}
        # --- coverage ------------------------------------------------------------------------
        units = sorted({c for c, p in parties.items() if p["kind"] == "unit" and p["active"]}
                       | {i["unit"] for i in inspections if parties.get(i["unit"], {"kind": "unit"})["kind"] == "unit"})
        by_unit: dict[str, list] = defaultdict(list)
        for i in inspections:
            by_unit[i["unit"]].append(i)
        coverage_units = []
        first_cover: dict[str, datetime] = {}
        for u in units:
            rows = by_unit.get(u, [])
            done = [i for i in rows if i["stage"] == "completed"]
            if done:
                first_cover[u] = min(i["completed_at"] or i["updated_at"] for i in done)
            evals = [i["eval_score"] for i in rows if i["eval_score"] is not None]
            coverage_units.append(UnitCoverage(
                unit=u, name=name.get(u, u), covered=bool(done), inspections=len(rows), completed=len(done),
                kinds=",".join(sorted({i["kind"] for i in rows})),
                score=round(sum(evals) / len(evals), 1) if evals else None))
        months = [f"{year}-{m:02d}" for m in range(1, 13)]
        started = Counter(self._month(i["started_at"]) for i in inspections)
        completed = Counter(self._month(i["completed_at"]) for i in inspections
                            if i["stage"] == "completed" and i["completed_at"])
        newly = Counter(self._month(at) for at in first_cover.values())
        months += sorted((set(started) | set(completed) | set(newly)) - set(months))
        by_month, running = [], 0
        for m in months:
            running += newly.get(m, 0)
            by_month.append(MonthCoverage(month=m, started=started.get(m, 0), completed=completed.get(m, 0),
                                          newly_covered=newly.get(m, 0), covered_to_date=running))
        groups: dict[tuple, list] = defaultdict(list)
        for b in batches:
            groups[(b["round_id"], b["batch"])].append(b)
        by_batch = [BatchCoverage(round_id=r, batch=n, opens_on=min(b["opens_on"] for b in bs),
                                  planned=len(bs), completed=sum(b["unit"] in first_cover for b in bs),
                                  not_covered=sum(b["unit"] not in first_cover for b in bs))
                    for (r, n), bs in sorted(groups.items())]
        # --- problems ------------------------------------------------------------------------
        rows = [ProblemRow(
            problem_no=p["problem_no"], unit=p["unit"], unit_name=p["unit_name"], list=p["list"],
            category=p["category"], severity=p["severity"], stage=p["stage"], due_on=p["due_on"],
            missed_deadlines=p["missed_deadlines"], escalated=p["escalated"], reopened=p["reopened"],
            carried_over=p["carried_over"], required_at=p["required_at"],
            accepted="accepted" in p["events"],
            looked_back=bool({"lookback_due", "closed", "reopened"} & set(p["events"])),
            closed_at=p["closed_at"]) for p in problems]
        cats: dict[str, Counter] = defaultdict(Counter)
        per_unit: dict[str, UnitRectification] = {}
        for p in rows:
            cats[p.category][p.list] += 1
            u = per_unit.setdefault(p.unit, UnitRectification(unit=p.unit, name=p.unit_name, total=0, on_time=0,
                                                              overdue=0, escalated=0, closed=0, open=0))
            u.total += 1
            u.on_time += p.missed_deadlines == 0
            u.overdue += p.missed_deadlines > 0
            u.escalated += p.escalated
            u.closed += p.stage == "closed"
            u.open += p.stage != "closed"
        categories = sorted((CategoryCount(category=c, total=sum(n.values()), common=n["common"],
                                           individual=n["individual"]) for c, n in cats.items()),
                            key=lambda c: (-c.total, c.category))
        reported = sum(1 for p in problems if "reported" in p["events"])
        counts = {"required": len(rows), "reported": reported, "accepted": sum(p.accepted for p in rows),
                  "looked_back": sum(p.looked_back for p in rows),
                  "closed": sum(p.stage == "closed" for p in rows), "escalated": sum(p.escalated for p in rows)}
        funnel = [FunnelStep(step=s, name=n, count=counts[s]) for s, n in FUNNEL]
        # --- clue deadlines ------------------------------------------------------------------
        routes: dict[str, Counter] = {r: Counter() for r in ROUTE_NAMES}
        misses: Counter = Counter()
        for c in clues:
            events = set(c["events"])
            tally = routes.setdefault(c["route"], Counter())
            tally["clues"] += 1
            for deadline, done_event, needs in CLUE_DEADLINES:
                if needs and needs not in events:
                    continue
                if f"{deadline}.overdue" in events:
                    tally["missed"] += 1
                elif done_event in events:
                    tally["met"] += 1
                elif "withdrawn" not in events:
                    tally["pending"] += 1
            misses.update(w for w in c["missed_by"] if w)
        clue_rows = [ClueDeadlines(route=r, name=ROUTE_NAMES.get(r, r), clues=t["clues"], met=t["met"],
                                   missed=t["missed"], pending=t["pending"]) for r, t in routes.items()]
        miss_rows = [PartyMisses(party=p, name=name.get(p, p), missed=n)
                     for p, n in sorted(misses.items(), key=lambda kv: (-kv[1], kv[0]))]
        # --- scores --------------------------------------------------------------------------
        score_rows = [ScoreRow(
            rank=s["rank"], unit=s["unit"], name=s["name"], kind=s["party_kind"], score=s["score"],
            grade=s["grade"], deductions=s["n_deductions"], caps=list(s["caps"]),
            **{c: (round(s["components"][c]["score"], 2) if s["components"][c]["applies"] else None)
               for c in COMPONENTS}) for s in scores]
        deduction_rows = [DeductionRow(**{k: d[k] for k in DeductionRow.model_fields}) for d in deductions]
        # --- level by level ------------------------------------------------------------------
        n_insp = len(inspections)
        evals = [i["eval_score"] for i in inspections if i["eval_score"] is not None]
        mean = round(sum(s.score for s in score_rows) / len(score_rows), 1) if score_rows else None
        accepted = counts["accepted"]
        levels = [
            LevelStep(chain="inspection", step="self_inspection", name="部门自查",
                      done=sum(i["self_submitted_at"] is not None for i in inspections), of=n_insp,
                      note=f"逾期未自查 {sum(i['self_inspection_missed'] for i in inspections)} 个"),
            LevelStep(chain="inspection", step="joint_inspection", name="联动检查",
                      done=sum(i["methods"] > 0 for i in inspections), of=n_insp,
                      note=f"督察方式 {sum(i['methods'] for i in inspections)} 项次，"
                           f"发现问题 {sum(i['findings'] for i in inspections)} 个"),
            LevelStep(chain="inspection", step="evaluation", name="重点评估",
                      done=sum(i["evaluated_at"] is not None for i in inspections), of=n_insp,
                      note=f"平均 {sum(evals) / len(evals):.1f} 分" if evals else "尚无评估"),
            LevelStep(chain="inspection", step="feedback", name="问题反馈",
                      done=sum(i["stage"] == "completed" for i in inspections), of=n_insp,
                      note=f"下达整改 {sum(i['rectifications'] for i in inspections)} 项，"
                           f"移送纪委监委线索 {sum(i['clues'] for i in inspections)} 条"),
            LevelStep(chain="acceptance", step="rectification", name="部门整改", done=reported, of=len(rows),
                      note=f"逾期 {sum(p.missed_deadlines > 0 for p in rows)} 个，"
                           f"拒不整改升级 {counts['escalated']} 个"),
            LevelStep(chain="acceptance", step="acceptance", name="督察组验收", done=accepted, of=len(rows),
                      note=f"退回重新整改 {sum(p['rejects'] for p in problems)} 次"),
            LevelStep(chain="acceptance", step="lookback", name="回头看销号", done=counts["closed"],
                      of=accepted, note=f"回头看 {counts['looked_back']} 个，"
                                        f"问题反弹 {sum(p.reopened for p in rows)} 次"),
            LevelStep(chain="acceptance", step="committee", name="党委听取报告", done=1 if committee else 0, of=1,
                      note=(f"考核 {len(score_rows)} 个单位，平均 {mean} 分" if score_rows else "尚未考核")
                           + ("，已报县委" if committee else "")),
        ]
        totals = Totals(
            units=len(units), covered=len(first_cover), inspections=n_insp,
            inspections_completed=sum(i["stage"] == "completed" for i in inspections),
            problems=len(rows), common=sum(p.list == "common" for p in rows),
            individual=sum(p.list == "individual" for p in rows), closed=counts["closed"],
            escalated=counts["escalated"], clues=len(clues),
            clue_deadlines_met=sum(c.met for c in clue_rows),
            clue_deadlines_missed=sum(c.missed for c in clue_rows), assessed=len(score_rows), mean_score=mean)
        return AnnualReportData(
            year=year, county=county, generated_at=datetime.now(UTC),
            rubric_version=scores[0]["rubric_version"] if scores else None, totals=totals,
            coverage_by_month=by_month, coverage_by_batch=by_batch, coverage_units=coverage_units,
            problems=rows, problems_by_category=categories, rectification_by_unit=sorted(
                per_unit.values(), key=lambda u: u.unit), funnel=funnel, clue_deadlines=clue_rows,
            clue_misses_by_party=miss_rows, scores=score_rows, deductions=deduction_rows, levels=levels)


# --- archives (档案资料) --------------------------------------------------------------------------

# Record kind → (file stem, query). `$1` is the year; later queries use ids found earlier.
ARCHIVE_KINDS = (
    "clues", "clue_events", "rounds", "round_units", "round_events", "inspections", "inspection_events",
    "inspection_methods", "inspection_findings", "inspection_evaluations", "rectifications",
    "rectification_events", "callback_events", "callback_deliveries", "callback_attempts", "assessments",
    "assessment_deductions",
)


class YearRecords:
    """Every record of a year, as plain dicts in a stable order, for the archive."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def collect(self, year: int) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):

            async def q(sql: str, *args) -> list[dict]:
                return [dict(r) for r in await conn.fetch(sql, *args)]

            async def events(kind: str, ids: list[str]) -> list[dict]:
                return await q("SELECT * FROM ledger_events WHERE subject_kind = $1 AND subject_id = ANY($2::text[]) "
                               "ORDER BY subject_id, seq", kind, ids)

            out["clues"] = await q("SELECT * FROM clues WHERE year = $1 ORDER BY clue_no", year)
            out["clue_events"] = await events("clue", [r["clue_no"] for r in out["clues"]])
            out["rounds"] = await q("SELECT * FROM inspection_rounds WHERE year = $1 ORDER BY round_id", year)
            rounds = [r["round_id"] for r in out["rounds"]]
            out["round_units"] = await q("SELECT * FROM round_units WHERE round_id = ANY($1::text[]) "
                                         "ORDER BY round_id, batch, unit", rounds)
            out["round_events"] = await events("round", rounds)
            out["inspections"] = await q("SELECT * FROM inspections WHERE year = $1 ORDER BY workflow_id", year)
            wids = [r["workflow_id"] for r in out["inspections"]]
            out["inspection_events"] = await events("inspection", wids)
            for table, order in (("inspection_methods", "workflow_id, n"), ("inspection_findings", "workflow_id, n"),
                                 ("inspection_evaluations", "workflow_id")):
                out[table] = await q(f"SELECT * FROM {table} WHERE workflow_id = ANY($1::text[]) ORDER BY {order}", wids)
            out["rectifications"] = await q("SELECT * FROM rectifications WHERE year = $1 ORDER BY problem_no", year)
            out["rectification_events"] = await events("rectification", [r["problem_no"] for r in out["rectifications"]])
            workflows = ([r["workflow_id"] for r in out["clues"]] + rounds + wids
                         + [r["workflow_id"] for r in out["rectifications"]] + [annual_assessment(year)])
            out["callback_events"] = await q(
                "SELECT * FROM callback_events WHERE workflow_id = ANY($1::text[]) "
                "OR (type = 'bulletin.published' AND data->>'from' LIKE $2) ORDER BY event_id",
                workflows, f"{year}-%")
            ids = [r["event_id"] for r in out["callback_events"]]
            out["callback_deliveries"] = await q("SELECT * FROM callback_deliveries WHERE event_id = ANY($1::text[]) "
                                                 "ORDER BY event_id, recipient", ids)
            out["callback_attempts"] = await q("SELECT * FROM callback_attempts WHERE event_id = ANY($1::text[]) "
                                               "ORDER BY event_id, recipient, attempt_no, id", ids)
            out["assessments"] = await q("SELECT * FROM assessments WHERE year = $1 ORDER BY unit", year)
            out["assessment_deductions"] = await q("SELECT * FROM assessment_deductions WHERE year = $1 "
                                                   "ORDER BY unit, id", year)
        return {k: out[k] for k in ARCHIVE_KINDS}
