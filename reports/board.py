"""督办看板: the board's reads of the ledger (PostgreSQL) and of Temporal's visibility. Read
only: one REPEATABLE READ READ ONLY transaction per snapshot, so every number on the page comes
from the same moment of the ledger; the counting and ordering is rules/board.py."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg
from temporalio.client import Client

from rules.board import (
    AGENCIES,
    KINDS,
    LIGHTS,
    OPEN_STAGES,
    OVERDUE_SHOWN,
    Board,
    LightCount,
    Running,
    Tally,
    agency_names,
    coverage,
    overdue_cases,
    tally_rows,
    total_of,
    visibility_query,
)

# Open cases per (group, kind, light); $1/$2/$3 are the open stages of clues, rectifications and
# inspections. {group} is the agency that must act now, or the unit the case concerns.
_OPEN = """
SELECT {clue_group} AS code, 'clue' AS kind, light, count(*) AS n
  FROM clues WHERE stage = ANY($1::text[]) {clue_where} GROUP BY 1, 3
UNION ALL
SELECT {rect_group}, 'rectification', light, count(*)
  FROM rectifications WHERE stage = ANY($2::text[]) {rect_where} GROUP BY 1, 3
UNION ALL
SELECT {insp_group}, 'inspection', light, count(*)
  FROM inspections WHERE stage = ANY($3::text[]) {insp_where} GROUP BY 1, 3"""
BY_AGENCY = _OPEN.format(
    clue_group="responsible", rect_group="responsible", insp_group="responsible",
    clue_where="AND responsible = ANY($4::text[])", rect_where="AND responsible = ANY($4::text[])",
    insp_where="AND responsible = ANY($4::text[])")
BY_UNIT = _OPEN.format(clue_group="subject_unit", rect_group="unit", insp_group="unit",
                       clue_where="", rect_where="", insp_where="")
# Overdue open cases, with what the list shows of them; the inspection's deadline of its stage.
OVERDUE = """
SELECT 'clue' AS kind, clue_no AS ref, workflow_id, subject_unit AS unit, responsible, stage,
       due_at, due_on
  FROM clues WHERE overdue AND stage = ANY($1::text[])
UNION ALL
SELECT 'rectification', problem_no, workflow_id, unit, responsible, stage, due_at, due_on
  FROM rectifications WHERE overdue AND stage = ANY($2::text[])
UNION ALL
SELECT 'inspection', workflow_id, workflow_id, unit, responsible, stage, due_at,
       CASE WHEN stage = 'self_inspection' THEN self_due_on ELSE team_due_on END
  FROM inspections WHERE overdue AND stage = ANY($3::text[])"""
OVERDUE_LIMITED = f"SELECT * FROM ({OVERDUE}) o ORDER BY due_at NULLS LAST, due_on NULLS LAST, ref LIMIT {OVERDUE_SHOWN}"
OVERDUE_COUNT = f"SELECT count(*) FROM ({OVERDUE}) o"
NAMES = "SELECT code, kind, name, active FROM parties"
VISIBILITY_SECONDS = 10
INSPECTED = """
SELECT unit, bool_or(stage = 'completed') AS completed FROM inspections WHERE year = $1 GROUP BY unit"""


class BoardReader:
    """Reads one board snapshot. `ui_base`/`namespace` build the links into the Web UI."""

    def __init__(self, pool: asyncpg.Pool, zone: ZoneInfo, ui_base: str, namespace: str,
                 task_queue: str) -> None:
        self.pool = pool
        self.zone = zone
        self.ui_base = ui_base
        self.namespace = namespace
        self.task_queue = task_queue

    async def read(self, now: datetime, client: Client | None = None) -> Board:
        today = now.astimezone(self.zone).date()
        stages = [list(OPEN_STAGES[k]) for k in KINDS]
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            parties = await conn.fetch(NAMES)
            by_agency = await conn.fetch(BY_AGENCY, *stages, list(AGENCIES))
            by_unit = await conn.fetch(BY_UNIT, *stages)
            overdue = await conn.fetch(OVERDUE_LIMITED, *stages)
            overdue_total = await conn.fetchval(OVERDUE_COUNT, *stages)
            inspected = await conn.fetch(INSPECTED, today.year)
        names = {p["code"]: p["name"] for p in parties}
        agencies_named = agency_names({p["code"]: p["name"] for p in parties if p["kind"] == "agency"})
        active_units = {p["code"]: p["name"] for p in parties if p["kind"] == "unit" and p["active"]}
        agencies = tally_rows((LightCount(r["code"], r["kind"], r["light"], r["n"]) for r in by_agency),
                              agencies_named, always=agencies_named)
        units = tally_rows((LightCount(r["code"], r["kind"], r["light"], r["n"]) for r in by_unit), names)
        running, error = (None, "")
        if client is not None:
            try:
                async with asyncio.timeout(VISIBILITY_SECONDS):
                    running = await read_running(client, self.task_queue)
            except Exception as exc:  # visibility is a second opinion: the ledger still shows
                error = f"{type(exc).__name__}: {exc}"[:300]
        return Board(
            generated_at=now, today=today, agencies=agencies, units=units, total=total_of(units),
            overdue=overdue_cases(overdue, {**agencies_named, **names}, today, self.zone,
                                  self.ui_base, self.namespace),
            overdue_total=overdue_total,
            coverage=coverage(today.year, active_units,
                              [r["unit"] for r in inspected if r["completed"]],
                              [r["unit"] for r in inspected if not r["completed"]]),
            running=running, running_error=error,
        )


async def read_running(client: Client, task_queue: str) -> Running:
    """Running workflows per kind and light, and overdue per kind, from Temporal's visibility
    (search attributes DuchaKind, DuchaLight, DuchaOverdue): 12 counts, concurrently."""
    keys = [(k, lt) for k in KINDS for lt in LIGHTS]
    queries = [visibility_query(task_queue, k, light=lt) for k, lt in keys]
    queries += [visibility_query(task_queue, k, overdue=True) for k in KINDS]
    counts = await asyncio.gather(*(client.count_workflows(q) for q in queries))
    tally = Tally()
    for (kind, light), c in zip(keys, counts, strict=False):
        tally.add(kind, light, c.count)
    overdue = {k: c.count for k, c in zip(KINDS, counts[len(keys):], strict=True)}
    return Running(tally, overdue)
