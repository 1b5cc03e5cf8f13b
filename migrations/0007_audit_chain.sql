-- Tamper-evident ledger (责任追究 needs evidence): ledger_events is append-only and every row is
-- chained to the one before it by SHA-256, so editing or deleting any row breaks the chain.
-- `ducha audit verify` walks the chain. Production also grants the application role only
-- SELECT and INSERT on this table (docs/deployment.md).

ALTER TABLE ledger_events ADD COLUMN prev_hash text, ADD COLUMN hash text;

-- The text that is hashed: every business column, in a fixed form (jsonb prints canonically).
CREATE FUNCTION ledger_event_canonical(e ledger_events) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT concat_ws(E'\x1f', e.id::text, e.subject_kind, e.subject_id, e.seq::text, e.event,
                     e.actor, e.agency,
                     to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                     e.data::text)
$$;

CREATE FUNCTION ledger_event_hash(prev text, e ledger_events) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(coalesce(prev, '') || E'\x1e' || ledger_event_canonical(e), 'UTF8')), 'hex')
$$;

-- One row holding the chain's head; locking it serialises appends so the chain is a line.
CREATE TABLE ledger_chain_head (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_id   bigint,
    hash      text
);

-- Chain the rows written before this migration, in id order.
DO $$
DECLARE
    r ledger_events;
    prev text := NULL;
    last bigint := NULL;
BEGIN
    FOR r IN SELECT * FROM ledger_events ORDER BY id LOOP
        UPDATE ledger_events SET prev_hash = prev, hash = ledger_event_hash(prev, r) WHERE id = r.id;
        prev := ledger_event_hash(prev, r);
        last := r.id;
    END LOOP;
    INSERT INTO ledger_chain_head (only_row, last_id, hash) VALUES (true, last, prev);
END
$$;

CREATE FUNCTION ledger_events_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head ledger_chain_head;
BEGIN
    SELECT * INTO head FROM ledger_chain_head FOR UPDATE;
    -- Number the row while holding the head lock, so id order is chain order.
    NEW.id := nextval(pg_get_serial_sequence('ledger_events', 'id'));
    NEW.prev_hash := head.hash;
    NEW.hash := ledger_event_hash(head.hash, NEW);
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_events_chain BEFORE INSERT ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_events_chain();

-- The head moves only for rows really inserted (ON CONFLICT DO NOTHING skips this trigger).
CREATE FUNCTION ledger_events_advance_head() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledger_chain_head SET last_id = NEW.id, hash = NEW.hash;
    RETURN NULL;
END
$$;
CREATE TRIGGER ledger_events_advance_head AFTER INSERT ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_events_advance_head();

CREATE FUNCTION ledger_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_events is append-only (台账事件只能追加)';
END
$$;
CREATE TRIGGER ledger_events_no_update_delete BEFORE UPDATE OR DELETE ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION ledger_events_append_only();
CREATE TRIGGER ledger_events_no_truncate BEFORE TRUNCATE ON ledger_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_append_only();
