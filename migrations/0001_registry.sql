-- Registry: agencies and administrative law-enforcement units, one table keyed by code.
CREATE TABLE parties (
    code              text PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('agency', 'unit')),
    name              text NOT NULL,
    level             text,
    category          text,
    leader            jsonb NOT NULL,
    liaison           jsonb NOT NULL,
    callback_url      text,
    callback_secret   text,               -- whsec_...; never leaves PostgreSQL except to sign
    callback_enabled  boolean NOT NULL DEFAULT true,
    disabled_reason   text,
    active            boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE registry_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
