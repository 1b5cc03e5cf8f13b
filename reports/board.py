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
    KINDS,
    LIGHTS,
    OPEN_STAGES,
    OVERDUE_SHOWN,
    Board,
    OpenGroup,
    Running,
    Tally,
    agency_names,
    coverage,
    overdue_cases,
    split_groups,
    sql_in,
    tally_rows,
    total_of,
    visibility_query,
)
from schemas.inspection import Stage as InspectionStage
from schemas.rectification import Stage as RectificationStage

_CLUE_OPEN = f"stage IN {sql_in(OPEN_STAGES['clue'])}"
# Every stage but the last is open (rules.board.OPEN_STAGES); written as `<>` so the planner
# matches the partial indexes of migrations 0005/0010 (`WHERE overdue AND stage <> 'closed'`).
_RECT_OPEN = f"stage <> '{RectificationStage.CLOSED.value}'"
_INSP_OPEN = f"stage <> '{InspectionStage.COMPLETED.value}'"
# Every open case, counted once per (kind, who must act, unit, light): one scan of each table
# gives both the agencies' and the units' counts (rules.board.split_groups).
OPEN_GROUPS = f"""
SELECT 'clue' AS kind, coalesce(responsible, '') AS responsible, subject_unit AS unit, light, count(*) AS n
  FROM clues WHERE {_CLUE_OPEN} GROUP BY 2, 3, 4
UNION ALL
SELECT 'rectification', coalesce(responsible, ''), unit, light, count(*)
  FROM rectifications WHERE {_RECT_OPEN} GROUP BY 2, 3, 4
UNION ALL
SELECT 'inspection', coalesce(responsible, ''), unit, light, count(*)
  FROM inspections WHERE {_INSP_OPEN} GROUP BY 2, 3, 4"""
# Overdue open cases, longest overdue first, with what the list shows of them (the inspection's
# deadline of its stage) and how many there are in all (`total`, the same scan).
OVERDUE = f"""
SELECT o.*, count(*) OVER () AS total FROM (
  SELECT 'clue' AS kind, clue_no AS ref, workflow_id, subject_unit AS unit, responsible, stage,
         due_at, due_on
    FROM clues WHERE overdue AND {_CLUE_OPEN}
  UNION ALL
  SELECT 'rectification', problem_no, workflow_id, unit, responsible, stage, due_at, due_on
    FROM rectifications WHERE overdue AND {_RECT_OPEN}
  UNION ALL
  SELECT 'inspection', workflow_id, workflow_id, unit, responsible, stage, due_at,
         CASE WHEN stage = 'self_inspection' THEN self_due_on ELSE team_due_on END
    FROM inspections WHERE overdue AND {_INSP_OPEN}
) o ORDER BY o.due_at NULLS LAST, o.due_on NULLS LAST, o.ref LIMIT {OVERDUE_SHOWN}"""
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
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            parties = await conn.fetch(NAMES)
            groups = await conn.fetch(OPEN_GROUPS)
            overdue = await conn.fetch(OVERDUE)
            inspected = await conn.fetch(INSPECTED, today.year)
        names = {p["code"]: p["name"] for p in parties}
        agencies_named = agency_names({p["code"]: p["name"] for p in parties if p["kind"] == "agency"})
        active_units = {p["code"]: p["name"] for p in parties if p["kind"] == "unit" and p["active"]}
        by_agency, by_unit = split_groups(OpenGroup(g["kind"], g["responsible"], g["unit"], g["light"], g["n"])
                                          for g in groups)
        agencies = tally_rows(by_agency, agencies_named, always=agencies_named)
        units = tally_rows(by_unit, names)
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
            overdue_total=overdue[0]["total"] if overdue else 0,
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
