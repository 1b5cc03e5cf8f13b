-- The ledger (台账): one append-only event table for every process, plus one snapshot table per
-- process. Activities write both idempotently: events are keyed by (kind, subject, seq).
CREATE TABLE ledger_events (
    id            bigserial PRIMARY KEY,
    subject_kind  text NOT NULL,          -- clue / rectification / inspection / round
    subject_id    text NOT NULL,          -- clue_no, problem_no, workflow id
    seq           integer NOT NULL,       -- position in the workflow's own history of actions
    event         text NOT NULL,
    actor         text NOT NULL DEFAULT '',
    agency        text NOT NULL DEFAULT '',
    occurred_at   timestamptz NOT NULL,
    data          jsonb NOT NULL DEFAULT '{}'::jsonb,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subject_kind, subject_id, seq)
);
CREATE INDEX ledger_events_subject ON ledger_events (subject_kind, subject_id);
CREATE INDEX ledger_events_time ON ledger_events (occurred_at);

-- 线索台账
CREATE TABLE clues (
    clue_no          text PRIMARY KEY,
    workflow_id      text NOT NULL,
    year             integer NOT NULL,
    route            text NOT NULL,
    source           text NOT NULL,
    target           text NOT NULL,
    channel          text NOT NULL,
    importance       text NOT NULL,
    subject_unit     text NOT NULL,
    title            text NOT NULL,
    details          text NOT NULL DEFAULT '',
    discovered_on    date NOT NULL,
    stage            text NOT NULL,
    responsible      text,
    due_on           date,
    due_at           timestamptz,
    provisional      boolean NOT NULL DEFAULT false,
    overdue          boolean NOT NULL DEFAULT false,
    missed_deadlines integer NOT NULL DEFAULT 0,
    escalations      integer NOT NULL DEFAULT 0,
    light            text NOT NULL DEFAULT 'green',
    outcome          text,
    special_inspection_requested boolean NOT NULL DEFAULT false,
    escalated_from   text,
    registered_at    timestamptz NOT NULL,
    transferred_at   timestamptz,
    acknowledged_at  timestamptz,
    closed_at        timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX clues_open_due ON clues (due_at) WHERE stage IN ('registered', 'transferred', 'handling');
CREATE INDEX clues_source_stage ON clues (source, stage);
CREATE INDEX clues_unit ON clues (subject_unit, year);
CREATE INDEX clues_year_route ON clues (year, route);

-- Clue numbers handed out by `ducha clue new`: YYYY-NNNN, one counter per year.
CREATE TABLE clue_numbers (
    year  integer PRIMARY KEY,
    last  integer NOT NULL
);
