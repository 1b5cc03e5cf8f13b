-- Operators (操作人员) of every agency and unit, and the audit of every authorization decision.
CREATE TABLE operators (
    id          text PRIMARY KEY,                  -- what updates carry in "operator"
    party       text NOT NULL REFERENCES parties (code),
    name        text NOT NULL,
    roles       text[] NOT NULL DEFAULT '{}',
    active      boolean NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operators_party ON operators (party);

CREATE TABLE authorization_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    operator     text NOT NULL,
    agency       text NOT NULL,
    action       text NOT NULL,
    workflow_id  text NOT NULL,
    allowed      boolean NOT NULL,
    reason       text NOT NULL DEFAULT ''
);
CREATE INDEX authorization_log_refused ON authorization_log (at) WHERE NOT allowed;

CREATE FUNCTION authorization_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'authorization_log is append-only';
END
$$;
CREATE TRIGGER authorization_log_no_update_delete BEFORE UPDATE OR DELETE ON authorization_log
    FOR EACH ROW EXECUTE FUNCTION authorization_log_append_only();
