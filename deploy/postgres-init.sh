#!/bin/sh
# One-shot, idempotent: the application's own role and database (`ducha`) on the PostgreSQL
# server that also holds Temporal's `temporal` and `temporal_visibility` databases.
# Connects with the standard libpq variables (PGHOST, PGUSER, PGPASSWORD, PGDATABASE).
# Re-running keeps the role's password in step with APP_DB_PASSWORD.
set -eu

: "${APP_DB_NAME:=ducha}"
: "${APP_DB_USER:=ducha}"
: "${APP_DB_PASSWORD:?APP_DB_PASSWORD must be set}"

psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 \
    -v app_db="$APP_DB_NAME" -v app_user="$APP_DB_USER" -v app_password="$APP_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
ALTER ROLE :"app_user" WITH LOGIN PASSWORD :'app_password';
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_db') \gexec
SQL
echo "database $APP_DB_NAME owned by $APP_DB_USER is ready"
