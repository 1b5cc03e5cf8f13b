-- 整改销号台账: one row per problem; its timeline is ledger_events (subject_kind 'rectification').
CREATE TABLE rectifications (
    problem_no       text PRIMARY KEY,
    workflow_id      text NOT NULL,
    year             integer NOT NULL,
    unit             text NOT NULL,
    origin_kind      text NOT NULL,
    origin_ref       text NOT NULL DEFAULT '',
    list             text NOT NULL,
    category         text NOT NULL,
    severity         text NOT NULL,
    description      text NOT NULL DEFAULT '',
    basis            text NOT NULL DEFAULT '',
    opinion          text NOT NULL DEFAULT '',
    issued_by        text NOT NULL,
    stage            text NOT NULL,
    responsible      text,
    due_on           date,
    due_at           timestamptz,
    provisional      boolean NOT NULL DEFAULT false,
    overdue          boolean NOT NULL DEFAULT false,
    missed_deadlines integer NOT NULL DEFAULT 0,
    escalated        boolean NOT NULL DEFAULT false,
    extensions       integer NOT NULL DEFAULT 0,
    reopened         integer NOT NULL DEFAULT 0,
    carried_over     integer NOT NULL DEFAULT 0,
    light            text NOT NULL DEFAULT 'green',
    required_at      timestamptz NOT NULL,
    reported_at      timestamptz,
    accepted_at      timestamptz,
    lookback_due_at  timestamptz,
    closed_at        timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rectifications_unit ON rectifications (unit, stage);
CREATE INDEX rectifications_stage_due ON rectifications (stage, due_at);
CREATE INDEX rectifications_category ON rectifications (category, year);
CREATE INDEX rectifications_year ON rectifications (year, list);
CREATE INDEX rectifications_open_overdue ON rectifications (unit) WHERE overdue AND stage <> 'closed';
