"""The yearly round's units (rules/round_units.py) and its continue-as-new state (schemas/round.py):
counts kept as units change always equal a recount, the compact state survives the hand-over,
the state of runs started before the compact format is read, and a 10,000-unit state stays small.
Pure: no server, no database."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from rules.round_units import BATCH_COUNTS, RoundUnits, workflow_id
from schemas import ids
from schemas.round import RoundStart, RoundState, UnitTable

YEAR = 2027


def recount(u: RoundUnits) -> tuple[dict, list[dict], dict]:
    """What the counts must be, from scratch (as the round used to count on every event)."""
    c = dict.fromkeys(u.counts, 0)
    per: list[dict] = [dict.fromkeys(BATCH_COUNTS, 0) for _ in range(max(len(u.per_batch), max(u.batch, default=-1) + 1))]
    running = {}
    names = {"p": ["planned"], "i": ["in_progress"], "o": ["in_progress", "overdue"], "c": ["completed"],
             "f": ["failed"]}
    for i in range(len(u)):
        letter, row = u.letter(i), per[u.batch[i]]
        c["total"] += 1
        row["total"] += 1
        for key in names[letter]:
            c[key] += 1
            row[key] += 1
        c["postponed"] += letter == "p" and bool(u.postponed.get(i))
        c["added"] += i in u.added
        if letter in "io":
            running[u.workflow_id(i)] = i
    return c, per, running


def assert_counted(u: RoundUnits) -> None:
    c, per, running = recount(u)
    assert u.counts == c
    assert [u.batch_counts(b) for b in range(len(per))] == per
    assert u.running == running


def small() -> RoundUnits:
    return RoundUnits.planned(YEAR, [("transport", 0), ("health", 0), ("education", 1), ("taxation", 2)],
                              carried_over={"transport": 2}, last_score={"health": 55.0, "education": None},
                              focus={"transport": ["OLD-T-1", "OLD-T-2"]})


def test_workflow_ids_follow_the_attempts():
    assert workflow_id(YEAR, "transport", 0) is None
    assert workflow_id(YEAR, "transport", 1) == "inspection-2027-routine-transport"
    assert workflow_id(YEAR, "transport", 3) == "inspection-2027-routine-transport-3"


def test_a_planned_round_counts_per_batch_and_keeps_the_sparse_fields():
    u = small()
    assert (len(u), u.counts["planned"], u.counts["total"]) == (4, 4, 4)
    assert [u.batch_counts(b)["total"] for b in range(3)] == [2, 1, 1]
    assert (u.carried_over, u.last_score, u.focus) == ({0: 2}, {1: 55.0}, {0: ["OLD-T-1", "OLD-T-2"]})
    assert u.planned_in(0) == [0, 1] and u.planned_in(2) == [3]
    assert u.not_covered() == ["transport", "health", "education", "taxation"] and u.not_covered(2) == [
        "transport", "health"]
    assert_counted(u)


def test_a_unit_through_start_overdue_fail_again_and_complete():
    u = small()
    assert u.start(0) == "inspection-2027-routine-transport"
    assert u.running == {"inspection-2027-routine-transport": 0} and u.in_progress(0)
    u.mark_overdue(0)
    assert (u.letter(0), u.counts["overdue"], u.counts["in_progress"]) == ("o", 1, 1)
    u.fail(0)
    assert (u.letter(0), u.counts["failed"], u.counts["overdue"], u.running) == ("f", 1, 0, {})
    u.mark_overdue(0)  # only while in progress
    assert u.letter(0) == "f"
    u.plan_again(0, 2)
    assert (u.letter(0), u.batch[0], 0 in u.added, u.counts["added"]) == ("p", 2, True, 1)
    assert u.start(0) == "inspection-2027-routine-transport-2"
    assert u.workflow_id(0) == "inspection-2027-routine-transport-2"
    u.complete(0)
    assert (u.letter(0), u.counts["completed"], 0 in u.focus) == ("c", 1, False)
    assert u.not_covered() == ["health", "education", "taxation"]
    with pytest.raises(ValueError, match="not planned"):
        u.start(0)
    assert_counted(u)


def test_postponed_counts_only_while_planned_and_added_units_come_last():
    u = small()
    u.postpone(2, 3, "机构改革")
    assert (u.counts["postponed"], u.batch_counts(3)["total"], u.batch_counts(1)["total"]) == (1, 1, 0)
    u.start(2)
    assert u.counts["postponed"] == 0 and u.postponed == {2: "机构改革"}
    i = u.add("commerce", 1)
    assert (i, u.codes[i], u.counts["added"], u.counts["total"], u.batch_counts(1)["planned"]) == (4, "commerce", 1, 5, 1)
    with pytest.raises(ValueError, match="already"):
        u.add("commerce", 1)
    assert_counted(u)


def test_columns_round_trip_through_the_state_model():
    u = small()
    u.start(0)
    u.mark_overdue(0)
    u.start(1)
    u.complete(1)
    u.postpone(3, 2, "推迟")
    u.add("commerce", 2)
    table = UnitTable.model_validate_json(UnitTable(**u.columns()).model_dump_json())
    again = RoundUnits(YEAR, table.codes, table.batch, table.status, table.attempts, postponed=table.postponed,
                       added=table.added, carried_over=table.carried_over, last_score=table.last_score,
                       focus=table.focus)
    assert again.columns() == u.columns()
    assert (again.counts, again.per_batch, again.running) == (u.counts, u.per_batch, u.running)


OPS = st.lists(st.tuples(st.sampled_from(["start", "overdue", "complete", "fail", "again", "postpone", "add"]),
                         st.integers(0, 40), st.integers(0, 5)), max_size=120)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 30), batches=st.integers(1, 4), ops=OPS)
def test_counts_kept_as_units_change_always_equal_a_recount(n, batches, ops):
    u = RoundUnits.planned(YEAR, [(f"u{i:02d}", i * batches // max(1, n)) for i in range(n)])
    for op, k, b in ops:
        if op == "add":
            u.add(f"new{len(u)}", b)
        elif len(u) == 0:
            continue
        else:
            i = k % len(u)
            if op == "start" and u.is_planned(i):
                u.start(i)
            elif op == "overdue":
                u.mark_overdue(i)
            elif op == "complete":
                u.complete(i)
            elif op == "fail":
                u.fail(i)
            elif op == "again" and u.is_failed(i):
                u.plan_again(i, b)
            elif op == "postpone" and u.is_planned(i):
                u.postpone(i, b, "推迟原因" if k % 2 else "")
        assert_counted(u)
    letters = [u.letter(i) for i in range(len(u))]
    assert u.not_covered() == [u.codes[i] for i, x in enumerate(letters) if x != "c"]
    assert u.done(gap_escalated=True) == (not any(x in "pio" for x in letters))


def test_bad_columns_are_refused():
    with pytest.raises(ValueError, match="length"):
        RoundUnits(YEAR, ["a1", "b1"], [0], "pp", [0, 0])
    with pytest.raises(ValueError, match="status"):
        RoundUnits(YEAR, ["a1"], [0], "x", [0])
    with pytest.raises(ValueError, match="duplicate"):
        RoundUnits(YEAR, ["a1", "a1"], [0, 0], "pp", [0, 0])
    with pytest.raises(ValueError, match="do not exist"):
        RoundUnits(YEAR, ["a1"], [0], "p", [0], postponed={3: "x"})
    for bad, message in [({"status": "px"}, "status"), ({"codes": ["a1", "a1"]}, "重复"),
                         ({"added": [7]}, "out of range"), ({"attempts": [0]}, "length")]:
        with pytest.raises(ValidationError, match=message):
            UnitTable(**{"codes": ["a1", "b1"], "batch": [0, 0], "status": "pp", "attempts": [0, 0], **bad})


# --- the state of runs started before the compact format ------------------------------------

def old_state() -> dict:
    """A mid-round state as the round wrote it before the compact format (schemas/round.py at
    7181a5b: `units` as {code: UnitSlot}, the queue by code, `gap_units`)."""
    def wid(unit: str, attempt: int = 1) -> str:
        return ids.inspection(YEAR, "routine", unit, attempt)

    return {
        "year": YEAR, "start_on": f"{YEAR}-01-05", "due_on": f"{YEAR}-12-31", "max_parallel": 2,
        "batches": [{"number": 1, "opens_on": f"{YEAR}-01-05", "opened": True},
                    {"number": 2, "opens_on": f"{YEAR}-07-03", "opened": False},
                    {"number": 3, "opens_on": f"{YEAR}-11-20", "opened": False}],
        "units": {
            "health": {"batch": 0, "priority": 1, "status": "completed", "workflow_id": wid("health"),
                       "attempts": 1, "last_score": 55.0, "level": "county"},
            "transport": {"batch": 0, "priority": 0, "status": "in_progress", "workflow_id": wid("transport"),
                          "attempts": 1, "carried_over": 1, "focus": ["OLD-T-1"], "overdue": True},
            "forestry": {"batch": 2, "priority": 3, "status": "planned", "postponed": "机构改革"},
            "agriculture": {"batch": 0, "priority": 2, "status": "planned", "level": "township"},
            "statistics": {"batch": 0, "priority": 4, "status": "failed", "workflow_id": wid("statistics", 2),
                           "attempts": 2, "added": True},
            "commerce": {"batch": 1, "priority": 5, "status": "planned", "added": True},
        },
        "queue": ["agriculture"], "paused": False, "pause_reason": "", "seq": 6, "gap_escalated": False,
        "gap_units": [], "runs": 2, "started": 3, "next_reconcile_at": f"{YEAR}-01-12T01:00:00Z",
        "history": [{"at": f"{YEAR}-01-05T01:00:00Z", "action": "batch_opened", "operator": "系统",
                     "agency": "coordination_group", "note": ""}],
        "planned_at": f"{YEAR - 1}-12-30T01:00:00Z",
    }


def test_the_old_state_format_is_read_and_converted():
    start = RoundStart.model_validate_json(json.dumps({"year": YEAR, "batches": 3, "max_parallel": 2,
                                                       "state": old_state()}))
    s = start.state
    t = s.table
    assert t.codes == ["transport", "health", "agriculture", "forestry", "statistics", "commerce"]
    assert (t.batch, t.status, t.attempts) == ([0, 0, 0, 2, 0, 1], "ocppfp", [1, 1, 0, 0, 2, 0])
    assert (t.postponed, t.added, t.carried_over, t.last_score, t.focus) == (
        {3: "机构改革"}, [4, 5], {0: 1}, {1: 55.0}, {0: ["OLD-T-1"]})
    assert (s.queue, s.gap_count, s.seq, s.runs, s.started) == ([2], 0, 6, 2, 3)
    assert s.next_reconcile_at == datetime(YEAR, 1, 12, 1, tzinfo=UTC) and s.batches[0].opened
    u = RoundUnits(YEAR, t.codes, t.batch, t.status, t.attempts, postponed=t.postponed, added=t.added,
                   carried_over=t.carried_over, last_score=t.last_score, focus=t.focus)
    # The workflow ids the old state stored are the ones derived from the attempts.
    for code, slot in old_state()["units"].items():
        assert u.workflow_id(u.index[code]) == slot.get("workflow_id")
    assert (u.counts["in_progress"], u.counts["overdue"], u.counts["postponed"], u.counts["added"]) == (1, 1, 1, 2)
    # And it goes on in the compact format.
    assert RoundState.model_validate_json(s.model_dump_json()) == s


def test_a_gap_escalated_old_state_keeps_its_count():
    data = old_state() | {"gap_escalated": True, "gap_units": ["transport", "agriculture"]}
    assert RoundState.model_validate(data).gap_count == 2


def test_a_state_naming_a_missing_batch_or_unit_is_refused():
    good = RoundState.model_validate(old_state()).model_dump(mode="json")
    with pytest.raises(ValidationError, match="batch"):
        RoundState.model_validate(good | {"batches": good["batches"][:1]})
    with pytest.raises(ValidationError, match="queue"):
        RoundState.model_validate(good | {"queue": [99]})


def test_a_10000_unit_state_stays_far_below_the_payload_limit():
    n = 10_000
    u = RoundUnits.planned(YEAR, [(f"fanout_{i:05d}", i * 4 // n) for i in range(n)],
                           carried_over={f"fanout_{i:05d}": 1 for i in range(0, n, 50)},
                           focus={f"fanout_{i:05d}": [f"P{YEAR - 1}-{i:05d}"] for i in range(0, n, 50)})
    for i in range(0, 5_000):
        u.start(i)
        if i < 4_800:
            u.complete(i)
    state = RoundState(year=YEAR, start_on=date(YEAR, 1, 5), due_on=date(YEAR, 12, 31), max_parallel=200,
                       batches=[{"number": b + 1, "opens_on": date(YEAR, 1 + 3 * b, 5)} for b in range(4)],
                       table=UnitTable(**u.columns()), queue=list(range(5_000, 7_500)),
                       planned_at=datetime(YEAR - 1, 12, 30, tzinfo=UTC))
    size = len(RoundStart(year=YEAR, state=state).model_dump_json())
    assert size < 300_000, size  # the old format took about 2 MB here
