"""督办看板 (the supervision board): the pure side. Counting open cases by traffic light per
agency and per unit, the overdue list with its days overdue, this year's inspection coverage, the
visibility queries for Temporal and the links into the Web UI. No I/O: reports/board.py reads
the ledger into the shapes below, workers/board.py serves them.

Open cases only: a closed rectification, a concluded clue or a completed inspection needs no
supervision any more, so it is in no count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo

from schemas.clue import Stage as ClueStage
from schemas.codes import AGENCY_NAMES, AgencyCode
from schemas.inspection import Stage as InspectionStage
from schemas.rectification import Stage as RectificationStage

KINDS = ("clue", "rectification", "inspection")
KIND_NAMES = {"clue": "线索", "rectification": "整改", "inspection": "督察"}
LIGHTS = ("red", "yellow", "green")  # the board's order: what needs attention first
LIGHT_NAMES = {"green": "绿灯", "yellow": "黄灯", "red": "红灯"}
# The stages in which a case is open, per kind (the ledger's `stage` column).
OPEN_STAGES: dict[str, tuple[str, ...]] = {
    "clue": (ClueStage.REGISTERED.value, ClueStage.TRANSFERRED.value, ClueStage.HANDLING.value),
    "rectification": tuple(s.value for s in RectificationStage if s is not RectificationStage.CLOSED),
    "inspection": tuple(s.value for s in InspectionStage if s is not InspectionStage.COMPLETED),
}
AGENCIES = tuple(a.value for a in AgencyCode)
STAGE_NAMES = {
    "registered": "待移送", "transferred": "待签收", "handling": "办理中",
    "rectifying": "整改中", "reported": "待验收", "accepted": "已验收", "lookback": "回头看",
    "self_inspection": "部门自查", "joint_inspection": "联动检查", "evaluation": "重点评估",
}
OVERDUE_SHOWN = 200  # rows of the overdue list on the page; the count is always complete


@dataclass(frozen=True)
class LightCount:
    """One group of the ledger's GROUP BY: `n` open cases of `kind` with light `light` whose
    group (an agency that must act, or the unit concerned) is `code`."""

    code: str
    kind: str
    light: str
    n: int


@dataclass
class Tally:
    """kind → light → count, over the open cases of one row (or of the whole county)."""

    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {k: dict.fromkeys(LIGHTS, 0) for k in KINDS})

    def add(self, kind: str, light: str, n: int) -> None:
        if kind in self.counts and light in self.counts[kind]:
            self.counts[kind][light] += n

    def light(self, light: str) -> int:
        return sum(self.counts[k][light] for k in KINDS)

    def kind(self, kind: str) -> int:
        return sum(self.counts[kind].values())

    @property
    def total(self) -> int:
        return sum(self.kind(k) for k in KINDS)

    def as_dict(self) -> dict:
        return {"by_kind": self.counts, "by_light": {lt: self.light(lt) for lt in LIGHTS},
                "total": self.total}


@dataclass
class BoardRow:
    code: str
    name: str
    tally: Tally


def tally_rows(counts: Iterable[LightCount], names: Mapping[str, str],
               always: Iterable[str] = ()) -> list[BoardRow]:
    """One row per code, worst first: most red, then most yellow, then most cases, then code.
    Codes in `always` get a row even without open cases (the county's agencies)."""
    rows: dict[str, BoardRow] = {c: BoardRow(c, names.get(c, c), Tally()) for c in always}
    for c in counts:
        row = rows.setdefault(c.code, BoardRow(c.code, names.get(c.code, c.code), Tally()))
        row.tally.add(c.kind, c.light, c.n)
    return sorted(rows.values(), key=lambda r: (-r.tally.light("red"), -r.tally.light("yellow"),
                                                -r.tally.total, r.code))


@dataclass(frozen=True)
class OpenGroup:
    """One group of the ledger's single GROUP BY over open cases: `n` cases of `kind` with
    light `light`, concerning `unit`, that `responsible` must act on now."""

    kind: str
    responsible: str
    unit: str
    light: str
    n: int


def split_groups(groups: Iterable[OpenGroup]) -> tuple[list[LightCount], list[LightCount]]:
    """(per agency that must act, per unit concerned): a case whose responsible party is a unit
    (it must rectify or self-inspect) counts for that unit only."""
    by_agency, by_unit = [], []
    for g in groups:
        if g.responsible in AGENCIES:
            by_agency.append(LightCount(g.responsible, g.kind, g.light, g.n))
        by_unit.append(LightCount(g.unit, g.kind, g.light, g.n))
    return by_agency, by_unit


def sql_in(values: Iterable[str]) -> str:
    """A SQL list of literals, for stage lists (identifiers only, so a planner can match them
    against partial indexes)."""
    items = list(values)
    if not items or not all(v.replace("_", "").isalnum() and v.isascii() for v in items):
        raise ValueError(f"not a list of identifiers: {items!r}")
    return "(" + ", ".join(f"'{v}'" for v in items) + ")"


def total_of(rows: Iterable[BoardRow]) -> Tally:
    total = Tally()
    for row in rows:
        for kind in KINDS:
            for light in LIGHTS:
                total.add(kind, light, row.tally.counts[kind][light])
    return total


def agency_names(registry: Mapping[str, str]) -> dict[str, str]:
    """Names of the agencies: the registry's, else the statutory ones."""
    return {**{a.value: n for a, n in AGENCY_NAMES.items()}, **registry}


@dataclass(frozen=True)
class OverdueCase:
    kind: str
    ref: str  # clue number, problem number, or the inspection's workflow id
    workflow_id: str
    unit: str
    unit_name: str
    responsible: str
    responsible_name: str
    stage: str
    due_on: date | None
    days_overdue: int
    url: str

    @property
    def stage_name(self) -> str:
        return STAGE_NAMES.get(self.stage, self.stage)


def local_day(due_at: datetime | None, due_on: date | None, zone: ZoneInfo) -> date | None:
    """The day a deadline falls on in the county's time zone (due_at wins over due_on)."""
    if due_at is not None:
        return due_at.astimezone(zone).date()
    return due_on


def days_overdue(due_day: date | None, today: date) -> int:
    """Calendar days since the deadline's day (0 on the day itself or without a deadline)."""
    if due_day is None:
        return 0
    return max(0, (today - due_day).days)


def workflow_url(ui_base: str, namespace: str, workflow_id: str) -> str:
    """The workflow's page in the Temporal Web UI."""
    return (f"{ui_base.rstrip('/')}/namespaces/{quote(namespace, safe='')}"
            f"/workflows/{quote(workflow_id, safe='')}")


def overdue_cases(rows: Iterable[Mapping], names: Mapping[str, str], today: date, zone: ZoneInfo,
                  ui_base: str, namespace: str) -> list[OverdueCase]:
    """Overdue open cases, longest overdue first (then kind and reference, for a stable page).
    `rows`: mappings with kind, ref, workflow_id, unit, responsible, stage, due_at, due_on."""
    cases = []
    for r in rows:
        day = local_day(r["due_at"], r["due_on"], zone)
        responsible = r["responsible"] or ""
        cases.append(OverdueCase(
            kind=r["kind"], ref=r["ref"], workflow_id=r["workflow_id"], unit=r["unit"],
            unit_name=names.get(r["unit"], r["unit"]), responsible=responsible,
            responsible_name=names.get(responsible, responsible), stage=r["stage"], due_on=day,
            days_overdue=days_overdue(day, today),
            url=workflow_url(ui_base, namespace, r["workflow_id"]),
        ))
    return sorted(cases, key=lambda c: (-c.days_overdue, KINDS.index(c.kind) if c.kind in KINDS else 9, c.ref))


@dataclass(frozen=True)
class Coverage:
    """This year's full-coverage inspection: units with a completed inspection / all units."""

    year: int
    units: int
    inspected: int
    in_progress: int
    not_started: tuple[str, ...]  # names of the units with no inspection this year yet

    @property
    def percent(self) -> float:
        return round(100 * self.inspected / self.units, 1) if self.units else 0.0


def coverage(year: int, units: Mapping[str, str], completed: Iterable[str],
             in_progress: Iterable[str]) -> Coverage:
    """`units`: code → name of the registry's active units; inspections of codes not among them
    (a unit since removed) do not count."""
    done = set(completed) & set(units)
    running = (set(in_progress) & set(units)) - done
    waiting = sorted(set(units) - done - running)
    return Coverage(year, len(units), len(done), len(running), tuple(units[c] for c in waiting))


# --- Temporal visibility ------------------------------------------------------------------------


def visibility_query(task_queue: str, kind: str, *, light: str | None = None,
                     overdue: bool | None = None) -> str:
    """A List Filter for the running workflows of one kind on the service's task queue."""
    if "'" in task_queue or kind not in KINDS or (light is not None and light not in LIGHTS):
        raise ValueError(f"cannot build a visibility query for {task_queue!r}/{kind!r}/{light!r}")
    query = f"TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running' AND DuchaKind = '{kind}'"
    if light is not None:
        query += f" AND DuchaLight = '{light}'"
    if overdue is not None:
        query += f" AND DuchaOverdue = {'true' if overdue else 'false'}"
    return query


@dataclass
class Running:
    """What Temporal's visibility says: running workflows per kind and light, and overdue."""

    tally: Tally
    overdue: dict[str, int]

    def as_dict(self) -> dict:
        return {**self.tally.as_dict(), "overdue": self.overdue}


@dataclass
class Board:
    generated_at: datetime
    today: date
    agencies: list[BoardRow]
    units: list[BoardRow]
    total: Tally
    overdue: list[OverdueCase]
    overdue_total: int
    coverage: Coverage
    running: Running | None
    running_error: str = ""

    def as_dict(self) -> dict:
        def rows(items: list[BoardRow]) -> list[dict]:
            return [{"code": r.code, "name": r.name, **r.tally.as_dict()} for r in items]

        cov = self.coverage
        return {
            "generated_at": self.generated_at.isoformat(), "today": self.today.isoformat(),
            "total": self.total.as_dict(), "agencies": rows(self.agencies), "units": rows(self.units),
            "overdue_total": self.overdue_total,
            "overdue": [{"kind": c.kind, "ref": c.ref, "workflow_id": c.workflow_id, "unit": c.unit,
                         "responsible": c.responsible, "stage": c.stage,
                         "due_on": c.due_on.isoformat() if c.due_on else None,
                         "days_overdue": c.days_overdue, "url": c.url} for c in self.overdue],
            "coverage": {"year": cov.year, "units": cov.units, "inspected": cov.inspected,
                         "in_progress": cov.in_progress, "percent": cov.percent},
            "running": self.running.as_dict() if self.running else None,
            "running_error": self.running_error,
        }
