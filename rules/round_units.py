"""The units of a yearly round, kept compact and counted as they change: pure, no I/O, no clock.

A round over 10,000 units must not walk every unit on each report from an inspection (that made a
round's cost grow with the square of its size), and its whole state travels as its continue-as-new
input, which Temporal refuses above 2 MB. So the units are columns in plan order — unit `i` is the
i-th in priority order and its priority is `i` — with one status letter each, the rarely used
fields kept only where set, and every count operators see (in total and per batch) updated where a
unit's status, batch or postponement changes, never recounted.

Status letters:
    p  planned      待督察 (its batch has not opened, or it waits for a free slot)
    i  in progress  督察中
    o  in progress, and its inspection has reported a missed deadline (逾期)
    c  completed    已覆盖
    f  failed       督察流程异常终止 (not covered; add_unit plans it again)

A unit's inspection is `inspection-{year}-routine-{code}`, `-2`, `-3`… for later attempts, so the
workflow id is derived from the attempt number and never stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice

from schemas import ids

LETTERS = "piocf"
_P, _I, _O, _C, _F = LETTERS.encode("ascii")
_NOT_COMPLETED = re.compile(rb"[^c]")

COUNTS = ("total", "planned", "in_progress", "completed", "failed", "overdue", "postponed", "added")
BATCH_COUNTS = ("total", "planned", "in_progress", "completed", "overdue", "failed")


def workflow_id(year: int, code: str, attempt: int) -> str | None:
    """The id of a unit's `attempt`-th inspection in the round of `year` (None before the first)."""
    if attempt < 1:
        return None
    return ids.inspection(year, "routine", code, attempt)


class RoundUnits:
    """Every unit of one round, with running counts. Built from the columns the round carries
    across continue-as-new (`columns()` gives them back); O(n) to build, O(1) per change."""

    def __init__(self, year: int, codes: Sequence[str], batch: Sequence[int], status: str,
                 attempts: Sequence[int], *, postponed: Mapping[int, str] | None = None,
                 added: Iterable[int] = (), carried_over: Mapping[int, int] | None = None,
                 last_score: Mapping[int, float] | None = None,
                 focus: Mapping[int, Sequence[str]] | None = None) -> None:
        n = len(codes)
        added = list(added)
        if not len(batch) == len(status) == len(attempts) == n:
            raise ValueError(f"unit columns differ in length: {n} codes, {len(batch)} batches, "
                             f"{len(status)} status letters, {len(attempts)} attempts")
        if set(status) - set(LETTERS):
            raise ValueError(f"unknown unit status letters in {status!r} (known: {LETTERS})")
        self.year = year
        self.codes = list(codes)
        self.index = {code: i for i, code in enumerate(self.codes)}
        if len(self.index) != n:
            raise ValueError("duplicate unit codes")
        self.batch = list(batch)
        self.status = bytearray(status.encode("ascii"))
        self.attempts = list(attempts)
        for name, keys in (("postponed", postponed), ("added", added), ("carried_over", carried_over),
                           ("last_score", last_score), ("focus", focus)):
            bad = [i for i in (keys or ()) if not 0 <= i < n]
            if bad:
                raise ValueError(f"{name} names units that do not exist: {bad[:5]}")
        self.postponed = {i: r for i, r in (postponed or {}).items() if r}
        self.added = set(added)
        self.carried_over = {i: c for i, c in (carried_over or {}).items() if c}
        self.last_score = dict(last_score or {})
        self.focus = {i: list(f) for i, f in (focus or {}).items() if f}
        self.counts = dict.fromkeys(COUNTS, 0)
        self.counts["added"] = len(self.added)
        self.per_batch: list[dict[str, int]] = []
        self.running: dict[str, int] = {}  # workflow id -> unit, for the units in progress
        for i in range(n):
            self._enter(i)

    @classmethod
    def planned(cls, year: int, plan: Sequence[tuple[str, int]], *,
                carried_over: Mapping[str, int] | None = None, last_score: Mapping[str, float | None] | None = None,
                focus: Mapping[str, Sequence[str]] | None = None) -> RoundUnits:
        """A new round: `plan` is (code, batch index) in priority order, every unit planned."""
        where = {code: i for i, (code, _) in enumerate(plan)}

        def by_index(values: Mapping | None) -> dict:
            return {where[c]: v for c, v in (values or {}).items() if c in where and v is not None}

        return cls(year, [c for c, _ in plan], [b for _, b in plan], "p" * len(plan), [0] * len(plan),
                   carried_over=by_index(carried_over), last_score=by_index(last_score), focus=by_index(focus))

    def columns(self) -> dict:
        """The compact form carried across continue-as-new (schemas.round.UnitTable)."""
        return {"codes": list(self.codes), "batch": list(self.batch), "status": self.status.decode("ascii"),
                "attempts": list(self.attempts), "postponed": dict(sorted(self.postponed.items())),
                "added": sorted(self.added), "carried_over": dict(sorted(self.carried_over.items())),
                "last_score": dict(sorted(self.last_score.items())),
                "focus": {i: list(f) for i, f in sorted(self.focus.items())}}

    # --- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.codes)

    def __contains__(self, code: str) -> bool:
        return code in self.index

    def letter(self, i: int) -> str:
        return chr(self.status[i])

    def is_planned(self, i: int) -> bool:
        return self.status[i] == _P

    def in_progress(self, i: int) -> bool:
        return self.status[i] in (_I, _O)

    def is_failed(self, i: int) -> bool:
        return self.status[i] == _F

    def workflow_id(self, i: int) -> str | None:
        """The id of the unit's latest inspection (None when none was started)."""
        return workflow_id(self.year, self.codes[i], self.attempts[i])

    def batch_counts(self, b: int) -> dict[str, int]:
        return dict(self._batch(b))

    def planned_in(self, b: int) -> list[int]:
        """The planned units of batch `b`, in priority order (O(n): once when a batch opens)."""
        status = self.status
        return [i for i, x in enumerate(self.batch) if x == b and status[i] == _P]

    def not_covered(self, limit: int | None = None) -> list[str]:
        """Codes of the units not completed, in priority order (the first `limit`)."""
        found = (m.start() for m in _NOT_COMPLETED.finditer(self.status))
        return [self.codes[i] for i in islice(found, limit)]

    def done(self, *, gap_escalated: bool) -> bool:
        """Nothing planned or in progress, and every unit covered or the gap escalated."""
        c = self.counts
        if c["planned"] or c["in_progress"]:
            return False
        return c["completed"] == c["total"] or gap_escalated

    # --- changes (each keeps the counts) -----------------------------------------------------

    def start(self, i: int) -> str:
        """A planned unit's next inspection starts; its workflow id."""
        if self.status[i] != _P:
            raise ValueError(f"{self.codes[i]} is not planned ({self.letter(i)})")
        self._leave(i)
        self.attempts[i] += 1
        self.status[i] = _I
        self._enter(i)
        return self.workflow_id(i)  # type: ignore[return-value]

    def mark_overdue(self, i: int) -> None:
        if self.status[i] == _I:
            self._set(i, _O)

    def complete(self, i: int) -> None:
        self._set(i, _C)
        self.focus.pop(i, None)  # only needed to start an inspection, and a covered unit never starts again

    def fail(self, i: int) -> None:
        if self.in_progress(i):
            self._set(i, _F)

    def add(self, code: str, batch: int) -> int:
        """A unit added mid-year (新增单位), planned into `batch`; its index (= its priority)."""
        if code in self.index:
            raise ValueError(f"{code} is in the round already")
        i = len(self.codes)
        self.codes.append(code)
        self.index[code] = i
        self.batch.append(batch)
        self.status.append(_P)
        self.attempts.append(0)
        self.added.add(i)
        self.counts["added"] += 1
        self._enter(i)
        return i

    def plan_again(self, i: int, batch: int) -> None:
        """add_unit on a unit of the round (a failed one): planned into `batch`, marked added."""
        self._leave(i)
        self.status[i] = _P
        self.batch[i] = batch
        self.postponed.pop(i, None)
        if i not in self.added:
            self.added.add(i)
            self.counts["added"] += 1
        self._enter(i)

    def postpone(self, i: int, batch: int, reason: str) -> None:
        """推迟: the unit moves to `batch` with its reason."""
        self._leave(i)
        self.batch[i] = batch
        if reason:
            self.postponed[i] = reason
        else:
            self.postponed.pop(i, None)
        self._enter(i)

    # --- bookkeeping -----------------------------------------------------------------------

    def _batch(self, b: int) -> dict[str, int]:
        while len(self.per_batch) <= b:
            self.per_batch.append(dict.fromkeys(BATCH_COUNTS, 0))
        return self.per_batch[b]

    def _keys(self, i: int) -> tuple[str, ...]:
        s = self.status[i]
        if s == _P:
            return ("planned", "postponed") if i in self.postponed else ("planned",)
        if s == _I:
            return ("in_progress",)
        if s == _O:
            return ("in_progress", "overdue")
        if s == _C:
            return ("completed",)
        return ("failed",)

    def _enter(self, i: int) -> None:
        self._count(i, 1)
        if self.status[i] in (_I, _O):
            self.running[self.workflow_id(i)] = i  # type: ignore[index]

    def _leave(self, i: int) -> None:
        self._count(i, -1)
        if self.status[i] in (_I, _O):
            self.running.pop(self.workflow_id(i), None)  # type: ignore[arg-type]

    def _count(self, i: int, by: int) -> None:
        row = self._batch(self.batch[i])
        self.counts["total"] += by
        row["total"] += by
        for key in self._keys(i):
            self.counts[key] += by
            if key != "postponed":
                row[key] += by

    def _set(self, i: int, letter: int) -> None:
        self._leave(i)
        self.status[i] = letter
        self._enter(i)
