-- Operator queries on a large ledger (docs/benchmarks.md, "Ledger queries"). Reports.problems
-- lists problems newest first and cuts the page with LIMIT; without an index in that order
-- PostgreSQL reads and sorts every matching row (a whole unit, or the whole table) for each page.
-- With these it reads the 50 rows of the page.

-- 台账 first page (no filter).
CREATE INDEX rectifications_newest ON rectifications (required_at DESC, problem_no);

-- One unit's ledger page, and its open problems (status open: stage <> 'closed').
CREATE INDEX rectifications_unit_newest ON rectifications (unit, required_at DESC, problem_no);

-- The county-wide overdue list (催办): few rows, but every one of them was sorted per page.
CREATE INDEX rectifications_overdue_newest ON rectifications (required_at DESC, problem_no)
    WHERE overdue AND stage <> 'closed';
