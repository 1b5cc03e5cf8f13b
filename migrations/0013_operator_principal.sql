-- The JWT `sub` each operator signs in to the Web UI as (registry YAML `principal`). Temporal
-- records it on the history events their actions carry (docs/deployment.md, 身份核验); the
-- identity check maps it back to the operator. One sign-in per operator, one operator per
-- sign-in; deferred, so one registry load may move a sign-in from one operator to another.
ALTER TABLE operators ADD COLUMN principal text;
ALTER TABLE operators ADD CONSTRAINT operators_principal_unique UNIQUE (principal) DEFERRABLE INITIALLY DEFERRED;
