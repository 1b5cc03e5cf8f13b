-- Inspections (督察): yearly rounds, unit inspections with their methods, findings and
-- evaluations, and the risk indicators behind special inspections. Timelines are ledger_events
-- (subject_kind 'round' / 'inspection', subject_id the workflow id).

-- 年度平时督察台账: one row per round, updated at its milestones.
CREATE TABLE inspection_rounds (
    round_id       text PRIMARY KEY,                  -- workflow id, annual-inspection-{year}
    year           integer NOT NULL,
    stage          text NOT NULL,
    start_on       date NOT NULL,
    due_on         date NOT NULL,
    batches        integer NOT NULL,
    max_parallel   integer NOT NULL,
    total          integer NOT NULL DEFAULT 0,
    planned        integer NOT NULL DEFAULT 0,
    in_progress    integer NOT NULL DEFAULT 0,
    completed      integer NOT NULL DEFAULT 0,
    overdue        integer NOT NULL DEFAULT 0,
    failed         integer NOT NULL DEFAULT 0,
    not_covered    integer NOT NULL DEFAULT 0,
    paused         boolean NOT NULL DEFAULT false,
    gap_escalated  boolean NOT NULL DEFAULT false,
    runs           integer NOT NULL DEFAULT 1,
    planned_at     timestamptz NOT NULL,
    closed_at      timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inspection_rounds_year ON inspection_rounds (year);

-- The round's plan: which batch each unit is in, and why it is where it is.
CREATE TABLE round_units (
    round_id      text NOT NULL REFERENCES inspection_rounds (round_id),
    unit          text NOT NULL,
    batch         integer NOT NULL,
    opens_on      date NOT NULL,
    priority      integer NOT NULL,               -- position in the plan's priority order
    carried_over  integer NOT NULL DEFAULT 0,
    last_score    double precision,
    postponed     text NOT NULL DEFAULT '',       -- the reason of the last postponement
    added         boolean NOT NULL DEFAULT false, -- joined the round after it was planned
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (round_id, unit)
);

-- 督察台账: one row per unit inspection.
CREATE TABLE inspections (
    workflow_id            text PRIMARY KEY,
    run_id                 text NOT NULL,         -- first run: a second run under the same id is refused
    year                   integer NOT NULL,
    kind                   text NOT NULL CHECK (kind IN ('routine', 'special', 'joint')),
    unit                   text NOT NULL,
    lead                   text NOT NULL,
    trigger_type           text NOT NULL,
    trigger_ref            text NOT NULL DEFAULT '',
    round_id               text,
    stage                  text NOT NULL,
    responsible            text,
    self_due_on            date,
    team_due_on            date,
    due_at                 timestamptz,
    provisional            boolean NOT NULL DEFAULT false,
    overdue                boolean NOT NULL DEFAULT false,
    self_inspection_missed boolean NOT NULL DEFAULT false,
    light                  text NOT NULL DEFAULT 'green',
    methods                integer NOT NULL DEFAULT 0,
    findings               integer NOT NULL DEFAULT 0,
    rectifications         integer NOT NULL DEFAULT 0,
    clues                  integer NOT NULL DEFAULT 0,
    score                  double precision,
    grade                  text,
    started_at             timestamptz NOT NULL,
    self_submitted_at      timestamptz,
    evaluated_at           timestamptz,
    completed_at           timestamptz,
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inspections_unit ON inspections (unit, kind, stage);
CREATE INDEX inspections_round ON inspections (round_id, stage);
CREATE INDEX inspections_year ON inspections (year, kind);

-- 督察方式: hear reports, review case files, on-site checks, random tests, visit the public.
CREATE TABLE inspection_methods (
    workflow_id  text NOT NULL REFERENCES inspections (workflow_id),
    n            integer NOT NULL,
    method       text NOT NULL,
    summary      text NOT NULL,
    done_on      date NOT NULL,
    count        integer,
    agency       text NOT NULL,
    operator     text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, n)
);

-- 督察发现问题: common (共性) and individual (个性) problem lists.
CREATE TABLE inspection_findings (
    workflow_id           text NOT NULL REFERENCES inspections (workflow_id),
    n                     integer NOT NULL,
    problem_no            text NOT NULL UNIQUE,
    unit                  text NOT NULL,
    year                  integer NOT NULL,
    description           text NOT NULL,
    category              text NOT NULL,
    list                  text NOT NULL CHECK (list IN ('common', 'individual')),
    basis                 text NOT NULL DEFAULT '',
    severity              text NOT NULL,
    suspected_misconduct  boolean NOT NULL DEFAULT false,
    misconduct_note       text NOT NULL DEFAULT '',
    opinion               text NOT NULL DEFAULT '',
    agency                text NOT NULL,
    operator              text NOT NULL,
    rectification_id      text,
    clue_id               text,
    recorded_at           timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, n)
);
CREATE INDEX inspection_findings_year ON inspection_findings (year, list, category);

-- 重点评估: the latest evaluation of each inspection; next year's round reads last year's
-- scores from here (worst first).
CREATE TABLE inspection_evaluations (
    workflow_id   text PRIMARY KEY REFERENCES inspections (workflow_id),
    unit          text NOT NULL,
    year          integer NOT NULL,
    kind          text NOT NULL,
    score         double precision NOT NULL,
    grade         text NOT NULL,
    comments      text NOT NULL DEFAULT '',
    agency        text NOT NULL,
    operator      text NOT NULL,
    evaluated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inspection_evaluations_year ON inspection_evaluations (year, unit);

-- Risk indicators per unit and month, loaded by `ducha indicators load FILE.csv`.
CREATE TABLE risk_indicators (
    unit               text NOT NULL,
    period             text NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    complaints         integer NOT NULL CHECK (complaints >= 0),
    lost_lawsuits      integer NOT NULL CHECK (lost_lawsuits >= 0),
    revoked_decisions  integer NOT NULL CHECK (revoked_decisions >= 0),
    source             text NOT NULL DEFAULT '',
    loaded_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (unit, period)
);
CREATE INDEX risk_indicators_period ON risk_indicators (period);
