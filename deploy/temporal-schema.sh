#!/bin/sh
# One-shot, idempotent: create or upgrade Temporal's two PostgreSQL databases with the schema
# files shipped in the same temporalio/admin-tools version as the server.
# `create` ignores an existing database, `setup-schema -v 0.0` skips a database that already
# has a newer version, and `update-schema` applies only the versions not applied yet — so this
# is also the upgrade step when TEMPORAL_VERSION changes.
# Connection: SQL_HOST, SQL_PORT, SQL_USER; SQL_PASSWORD is read by temporal-sql-tool from the
# environment, so it never appears on a command line.
set -eu

: "${SQL_HOST:=postgresql}"
: "${SQL_PORT:=5432}"
: "${SQL_USER:?SQL_USER must be set}"
: "${SQL_PASSWORD:?SQL_PASSWORD must be set}"
: "${TEMPORAL_DB:=temporal}"
: "${TEMPORAL_VISIBILITY_DB:=temporal_visibility}"
schema_dir=/etc/temporal/schema/postgresql/v12

echo "waiting for PostgreSQL at $SQL_HOST:$SQL_PORT"
tries=0
until nc -z -w 2 "$SQL_HOST" "$SQL_PORT"; do
    tries=$((tries + 1))
    if [ "$tries" -ge 60 ]; then
        echo "PostgreSQL at $SQL_HOST:$SQL_PORT is not reachable" >&2
        exit 1
    fi
    sleep 2
done

sql_tool() { # DATABASE COMMAND [ARGS...]
    db=$1
    shift
    temporal-sql-tool --plugin postgres12 --ep "$SQL_HOST" -p "$SQL_PORT" -u "$SQL_USER" --db "$db" "$@"
}

setup() { # DATABASE SCHEMA_SUBDIR
    sql_tool "$1" create
    sql_tool "$1" setup-schema -v 0.0
    sql_tool "$1" update-schema -d "$schema_dir/$2/versioned"
}

setup "$TEMPORAL_DB" temporal
setup "$TEMPORAL_VISIBILITY_DB" visibility
echo "Temporal schema is up to date in $TEMPORAL_DB and $TEMPORAL_VISIBILITY_DB"
