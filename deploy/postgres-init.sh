#!/bin/sh
# One-shot, idempotent: the application's roles and database (`ducha`) on the PostgreSQL server
# that also holds Temporal's `temporal` and `temporal_visibility` databases.
#   OWNER_DB_USER (ducha)     owns database `ducha` and its schema; `ducha migrate` only
#   APP_DB_USER   (ducha_app) the service: LOGIN and nothing else; `ducha migrate` grants it
#                             SELECT/INSERT on the audit tables and what it needs elsewhere
# Connects with the standard libpq variables (PGHOST, PGUSER, PGPASSWORD, PGDATABASE).
# Re-running keeps both passwords in step with OWNER_DB_PASSWORD / APP_DB_PASSWORD.
set -eu

: "${APP_DB_NAME:=ducha}"
: "${OWNER_DB_USER:=ducha}"
: "${OWNER_DB_PASSWORD:?OWNER_DB_PASSWORD must be set}"
: "${APP_DB_USER:=ducha_app}"
: "${APP_DB_PASSWORD:?APP_DB_PASSWORD must be set}"

psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 \
    -v app_db="$APP_DB_NAME" -v owner_user="$OWNER_DB_USER" -v owner_password="$OWNER_DB_PASSWORD" \
    -v app_user="$APP_DB_USER" -v app_password="$APP_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'owner_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner_user') \gexec
ALTER ROLE :"owner_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_password';
SELECT format('CREATE ROLE %I LOGIN', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
ALTER ROLE :"app_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'app_password';
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'owner_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_db') \gexec
-- Upgrading from the single-role layout (the service was the owner `ducha`): nothing to move,
-- `ducha migrate` grants the new role.
SQL
echo "database $APP_DB_NAME owned by $OWNER_DB_USER; service role $APP_DB_USER is ready"
