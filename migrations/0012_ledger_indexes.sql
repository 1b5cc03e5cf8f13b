-- Ledger indexes after the 1,000,000-problem benchmark (docs/benchmarks.md, "Ledger queries").

-- Redundant: the unique key ledger_events (subject_kind, subject_id, seq) has these two columns
-- first and serves every lookup of a subject's timeline (ORDER BY seq included); this one was
-- only written to, on every event.
DROP INDEX IF EXISTS ledger_events_subject;

-- Redundant since 0010: rectifications_unit_newest (unit, required_at DESC, problem_no) serves
-- every query by unit in the ledger's order, and the open problems of a unit have their own
-- index below. No query filters by unit and stage = '...' together except the ledger's
-- status=closed by unit, which reads its page from rectifications_unit_newest.
DROP INDEX IF EXISTS rectifications_unit;

-- Open problems (stage <> 'closed', about 8 % of the ledger at steady state) newest first, for
-- `ducha ledger --status open|overdue|carried` and the count of rows after a page: without them a
-- page of one unit's open problems, or how many more there are, reads every problem of the unit
-- (or of the county) to find the few still open.
CREATE INDEX rectifications_open_newest ON rectifications (required_at DESC, problem_no)
    WHERE stage <> 'closed';
CREATE INDEX rectifications_open_unit_newest ON rectifications (unit, required_at DESC, problem_no)
    WHERE stage <> 'closed';
