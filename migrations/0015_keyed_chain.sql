-- Keyed audit chains (docs/reliability.md, "The audit trail").
--
-- 0007 chained ledger_events with SHA-256 computed by PostgreSQL: whoever owns the database
-- could recompute it after editing a row. From this migration on each new row of
-- `ledger_events` and of `authorization_log` (its own chain) carries an HMAC-SHA256 computed by
-- the application with a key the database never holds (DUCHA_LEDGER_CHAIN_KEY), and the head of
-- each chain is anchored outside PostgreSQL (LedgerAnchor workflow, archive manifests).
--
--   chain_alg  'sha256'       rows from before this migration (0007's chain; authorization_log
--                             rows are chained the same way here, once)
--              'hmac-sha256'  every row after `audit_chain_heads.keyed_after`; hash =
--                             hex HMAC-SHA256(key, 'hmac-sha256' 0x1e prev_hash 0x1e canonical row)
--
-- The application appends (activities/ledger.py `chained_insert`): `audit_chain_lock(chain)`
-- locks the chain's head row and hands out the next id, the application computes the HMAC and
-- inserts the row with prev_hash/hash/chain_alg; the trigger checks the row links to the head and
-- the head then advances, all in the caller's transaction. The application role holds no UPDATE
-- on the heads: only these SECURITY DEFINER functions move them.
-- A row inserted without chain_alg (plain SQL past the application) is still chained, SHA-256
-- as before, and `ducha audit verify` names it: an unkeyed row after the switch-over.
-- (Numbered 0015: 0013 and 0014 are the operators' principal and the document numbers.)

-- --- one head per chain ---------------------------------------------------------------------
CREATE TABLE audit_chain_heads (
    chain        text PRIMARY KEY CHECK (chain IN ('ledger_events', 'authorization_log')),
    last_id      bigint,                 -- id of the newest row (NULL: empty chain)
    hash         text,                   -- its hash / HMAC
    rows         bigint NOT NULL DEFAULT 0,
    keyed_after  bigint NOT NULL,        -- rows with a greater id must be hmac-sha256
    switched_at  timestamptz NOT NULL DEFAULT now()
);

-- Every row so far is 0007's SHA-256 (the default fills them without firing the append-only
-- guard). The default stays: a plain INSERT, even with the triggers off (the bench's bulk load),
-- is an unkeyed row, which verification names.
ALTER TABLE ledger_events ADD COLUMN chain_alg text NOT NULL DEFAULT 'sha256'
    CONSTRAINT ledger_events_chain_alg CHECK (chain_alg IN ('sha256', 'hmac-sha256'));

INSERT INTO audit_chain_heads (chain, last_id, hash, rows, keyed_after)
SELECT 'ledger_events', h.last_id, h.hash, (SELECT count(*) FROM ledger_events), coalesce(h.last_id, 0)
FROM ledger_chain_head h;
INSERT INTO audit_chain_heads (chain, last_id, hash, rows, keyed_after)
SELECT 'ledger_events', NULL, NULL, 0, 0 WHERE NOT EXISTS (SELECT 1 FROM audit_chain_heads);

-- 0007's triggers and single head give way to the ones below.
DROP TRIGGER ledger_events_chain ON ledger_events;
DROP TRIGGER ledger_events_advance_head ON ledger_events;
DROP FUNCTION ledger_events_chain();
DROP FUNCTION ledger_events_advance_head();
DROP TABLE ledger_chain_head;

-- --- canonical text of a row (what is hashed), for the application and for verification ----
CREATE FUNCTION ledger_event_text(id bigint, subject_kind text, subject_id text, seq integer, event text,
                                  actor text, agency text, occurred_at timestamptz, data jsonb)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT concat_ws(E'\x1f', id::text, subject_kind, subject_id, seq::text, event, actor, agency,
                     to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                     data::text)
$$;
-- Same text as 0007's (the SHA-256 rows verify unchanged).
CREATE OR REPLACE FUNCTION ledger_event_canonical(e ledger_events) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT ledger_event_text(e.id, e.subject_kind, e.subject_id, e.seq, e.event, e.actor, e.agency,
                             e.occurred_at, e.data)
$$;

ALTER TABLE authorization_log ADD COLUMN prev_hash text, ADD COLUMN hash text,
    ADD COLUMN chain_alg text NOT NULL DEFAULT 'sha256' CHECK (chain_alg IN ('sha256', 'hmac-sha256'));

CREATE FUNCTION authorization_text(id bigint, at timestamptz, operator text, agency text, action text,
                                   workflow_id text, allowed boolean, reason text, activity_key text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT concat_ws(E'\x1f', id::text,
                     to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                     operator, agency, action, workflow_id, allowed::text, reason, coalesce(activity_key, ''))
$$;
CREATE FUNCTION authorization_canonical(a authorization_log) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT authorization_text(a.id, a.at, a.operator, a.agency, a.action, a.workflow_id, a.allowed,
                              a.reason, a.activity_key)
$$;
CREATE FUNCTION authorization_hash(prev text, a authorization_log) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(coalesce(prev, '') || E'\x1e' || authorization_canonical(a), 'UTF8')), 'hex')
$$;

-- The authorization decisions logged so far: chained once, SHA-256, in id order.
DO $$
DECLARE
    r authorization_log;
    prev text := NULL;
    last bigint := NULL;
    n bigint := 0;
BEGIN
    ALTER TABLE authorization_log DISABLE TRIGGER authorization_log_no_update_delete;
    FOR r IN SELECT * FROM authorization_log ORDER BY id LOOP
        UPDATE authorization_log SET prev_hash = prev, hash = authorization_hash(prev, r), chain_alg = 'sha256'
        WHERE id = r.id;
        prev := authorization_hash(prev, r);
        last := r.id;
        n := n + 1;
    END LOOP;
    ALTER TABLE authorization_log ENABLE TRIGGER authorization_log_no_update_delete;
    INSERT INTO audit_chain_heads (chain, last_id, hash, rows, keyed_after)
    VALUES ('authorization_log', last, prev, n, coalesce(last, 0));
END
$$;
CREATE TRIGGER authorization_log_no_truncate BEFORE TRUNCATE ON authorization_log
    FOR EACH STATEMENT EXECUTE FUNCTION authorization_log_append_only();

-- --- appending ------------------------------------------------------------------------------
-- Lock the chain's head for this transaction and hand out the next id (id order = chain order).
CREATE FUNCTION audit_chain_lock(p_chain text, OUT next_id bigint, OUT prev_hash text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    SELECT h.hash INTO prev_hash FROM audit_chain_heads h WHERE h.chain = p_chain FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit chain % has no head row (链头缺失)', p_chain;
    END IF;
    next_id := nextval(pg_get_serial_sequence(p_chain, 'id'));
END
$$;

-- BEFORE INSERT: a keyed row must follow the head it was computed from; an unkeyed row (plain
-- SQL, chain_alg left at its default) is chained with SHA-256 as in 0007, and verification
-- reports it.
CREATE FUNCTION audit_chain_link() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    head audit_chain_heads;
BEGIN
    SELECT * INTO head FROM audit_chain_heads WHERE chain = TG_TABLE_NAME FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit chain % has no head row (链头缺失)', TG_TABLE_NAME;
    END IF;
    IF NEW.chain_alg = 'sha256' THEN
        NEW.id := nextval(pg_get_serial_sequence(TG_TABLE_NAME, 'id'));
        NEW.prev_hash := head.hash;
        IF TG_TABLE_NAME = 'ledger_events' THEN
            NEW.hash := encode(sha256(convert_to(coalesce(head.hash, '') || E'\x1e' || ledger_event_text(
                NEW.id, NEW.subject_kind, NEW.subject_id, NEW.seq, NEW.event, NEW.actor, NEW.agency,
                NEW.occurred_at, NEW.data), 'UTF8')), 'hex');
        ELSE
            NEW.hash := encode(sha256(convert_to(coalesce(head.hash, '') || E'\x1e' || authorization_text(
                NEW.id, NEW.at, NEW.operator, NEW.agency, NEW.action, NEW.workflow_id, NEW.allowed,
                NEW.reason, NEW.activity_key), 'UTF8')), 'hex');
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.chain_alg <> 'hmac-sha256' OR NEW.hash IS NULL
       OR NEW.prev_hash IS DISTINCT FROM head.hash OR NEW.id <= coalesce(head.last_id, 0) THEN
        RAISE EXCEPTION '% row does not follow the chain head (台账链接不符：请经应用追加)', TG_TABLE_NAME;
    END IF;
    RETURN NEW;
END
$$;

-- AFTER INSERT: the head moves only for rows really inserted (ON CONFLICT DO NOTHING skips it).
CREATE FUNCTION audit_chain_advance() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE audit_chain_heads SET last_id = NEW.id, hash = NEW.hash, rows = rows + 1
    WHERE chain = TG_TABLE_NAME;
    RETURN NULL;
END
$$;

CREATE TRIGGER ledger_events_chain BEFORE INSERT ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION audit_chain_link();
CREATE TRIGGER ledger_events_advance_head AFTER INSERT ON ledger_events
    FOR EACH ROW EXECUTE FUNCTION audit_chain_advance();
CREATE TRIGGER authorization_log_chain BEFORE INSERT ON authorization_log
    FOR EACH ROW EXECUTE FUNCTION audit_chain_link();
CREATE TRIGGER authorization_log_advance_head AFTER INSERT ON authorization_log
    FOR EACH ROW EXECUTE FUNCTION audit_chain_advance();

-- The heads themselves: no one but the functions above moves them (the owner can, as it can do
-- anything here; the anchors outside PostgreSQL are what catch that).
CREATE FUNCTION audit_chain_heads_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_chain_heads moves only with an appended row (链头只随追加移动)';
END
$$;
CREATE TRIGGER audit_chain_heads_no_delete BEFORE DELETE ON audit_chain_heads
    FOR EACH ROW EXECUTE FUNCTION audit_chain_heads_guard();
CREATE TRIGGER audit_chain_heads_no_truncate BEFORE TRUNCATE ON audit_chain_heads
    FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_heads_guard();

-- SECURITY DEFINER functions are not for everyone by default.
REVOKE ALL ON FUNCTION audit_chain_lock(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_chain_link() FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_chain_advance() FROM PUBLIC;
