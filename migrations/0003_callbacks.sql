-- Signed agency callbacks: the events published by workflows, one delivery per event and
-- recipient, and an append-only log of every HTTP attempt. Written idempotently by
-- activities/callbacks.py; docs/agencies.md describes what agencies receive.

CREATE TABLE callback_events (
    event_id     text PRIMARY KEY,                 -- deterministic idempotency key
    type         text NOT NULL,                    -- dotted event type, e.g. clue.transferred
    workflow_id  text NOT NULL,
    summary      text NOT NULL,
    data         jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurred_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX callback_events_workflow ON callback_events (workflow_id);

CREATE TABLE callback_deliveries (
    id                    bigserial PRIMARY KEY,   -- what `ducha callbacks redeliver ID` takes
    event_id              text NOT NULL REFERENCES callback_events (event_id),
    recipient             text NOT NULL,           -- registry code
    status                text NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'delivered', 'failed', 'dead', 'skipped')),
    attempts              integer NOT NULL DEFAULT 0,
    last_status           integer,                 -- last HTTP status, NULL for network errors
    last_error            text,
    delivery_workflow_id  text,                    -- the CallbackDelivery run now responsible
    delivered_at          timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, recipient)
);
CREATE INDEX callback_deliveries_open ON callback_deliveries (status, updated_at)
    WHERE status IN ('failed', 'dead');
CREATE INDEX callback_deliveries_recipient ON callback_deliveries (recipient, created_at);

CREATE TABLE callback_attempts (
    id           bigserial PRIMARY KEY,
    event_id     text NOT NULL,
    recipient    text NOT NULL,
    endpoint     text NOT NULL,                    -- scheme://host[:port]/path, query dropped
    attempt_no   integer NOT NULL,                 -- 1-based, counted across redeliveries
    http_status  integer,
    latency_ms   integer,
    error        text,
    at           timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (event_id, recipient) REFERENCES callback_deliveries (event_id, recipient)
);
CREATE INDEX callback_attempts_delivery ON callback_attempts (event_id, recipient, attempt_no);

-- The attempt log is evidence: rows are only ever appended.
CREATE FUNCTION callback_attempts_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'callback_attempts is append-only';
END
$$;
CREATE TRIGGER callback_attempts_no_update_delete
    BEFORE UPDATE OR DELETE ON callback_attempts
    FOR EACH ROW EXECUTE FUNCTION callback_attempts_append_only();

-- Secret rotation: after `ducha registry set-endpoint` replaces a secret, callbacks are signed
-- with both secrets until callback_secret_previous_until, so agencies can switch at leisure.
ALTER TABLE parties
    ADD COLUMN callback_secret_previous        text,
    ADD COLUMN callback_secret_previous_until  timestamptz;
