-- Yearly rule-of-law performance assessment (法治建设绩效考核, 督考结合): one score per assessed
-- party and year, and every deduction with the record it comes from. Written by
-- activities/assessment.py; rerunning a year replaces that year's rows in one transaction.

CREATE TABLE assessments (
    year            integer NOT NULL,
    unit            text NOT NULL,                 -- registry code (enforcement unit or agency)
    party_kind      text NOT NULL CHECK (party_kind IN ('unit', 'agency')),
    score           double precision NOT NULL CHECK (score >= 0 AND score <= 100),  -- rounded to 0.1
    raw_score       double precision NOT NULL,     -- before rounding
    grade           text NOT NULL CHECK (grade IN ('优秀', '良好', '合格', '不合格')),
    grade_before_caps text NOT NULL,
    caps            text[] NOT NULL DEFAULT '{}',  -- the grade caps that applied
    rank            integer NOT NULL,              -- 1 = best; ties share a rank
    components      jsonb NOT NULL,                -- {component: {applies, weight, effective_weight, score}}
    facts           jsonb NOT NULL,                -- counts behind the score
    rubric_version  text NOT NULL,
    rubric_hash     text NOT NULL,                 -- SHA-256 of the rubric's canonical JSON
    workflow_id     text NOT NULL,
    computed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (year, unit)
);
CREATE INDEX assessments_year_rank ON assessments (year, rank);

CREATE TABLE assessment_deductions (
    id               bigserial PRIMARY KEY,
    year             integer NOT NULL,
    unit             text NOT NULL,
    component        text NOT NULL,                -- evaluation / rectification / clues / coverage
    rule             text NOT NULL,                -- e.g. rectification.overdue
    points           double precision NOT NULL,    -- the rule's points
    applied_points   double precision NOT NULL,    -- taken from the component (which stops at 0)
    weighted_points  double precision NOT NULL,    -- taken from the total score
    source_kind      text NOT NULL,                -- rectification / clue / evaluation / round / registry
    source_id        text NOT NULL,                -- problem_no, clue_no, workflow id, unit code
    source_seq       integer NOT NULL DEFAULT 0,   -- the ledger event's seq (0 when not an event)
    occurred_at      timestamptz,
    note             text NOT NULL DEFAULT '',
    FOREIGN KEY (year, unit) REFERENCES assessments (year, unit) ON DELETE CASCADE,
    UNIQUE (year, unit, rule, source_kind, source_id, source_seq)
);
CREATE INDEX assessment_deductions_source ON assessment_deductions (source_kind, source_id);
