#!/bin/sh
# One-shot, idempotent: wait for the Temporal frontend, create the namespace, register the
# project's custom search attributes (arguments NAME=TYPE, from docker-compose.yml).
# Runs in temporalio/admin-tools (busybox sh + the `temporal` CLI). Safe to run again.
set -eu

: "${TEMPORAL_ADDRESS:=temporal:7233}"
: "${NAMESPACE:=default}"
: "${NAMESPACE_RETENTION:=720h}"
: "${WAIT_SECONDS:=180}"

host=${TEMPORAL_ADDRESS%:*}
port=${TEMPORAL_ADDRESS##*:}
# Prefer the IPv4 address of the service: the server binds 0.0.0.0, and the CLI may otherwise
# try an IPv6 address first (the samples-server compose scripts do the same).
ip=$(getent ahosts "$host" 2>/dev/null | awk '/STREAM/ && $1 ~ /^[0-9.]+$/ { print $1; exit }' || true)
TEMPORAL_ADDRESS="${ip:-$host}:$port"
export TEMPORAL_ADDRESS # read by every `temporal` command below

echo "waiting for Temporal at $TEMPORAL_ADDRESS (up to ${WAIT_SECONDS}s)"
deadline=$(($(date +%s) + WAIT_SECONDS))
until temporal operator cluster health >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "Temporal at $TEMPORAL_ADDRESS is not serving after ${WAIT_SECONDS}s" >&2
        exit 1
    fi
    sleep 2
done

if temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
    echo "namespace $NAMESPACE exists"
else
    temporal operator namespace create --namespace "$NAMESPACE" --retention "$NAMESPACE_RETENTION"
    echo "namespace $NAMESPACE created (retention $NAMESPACE_RETENTION)"
fi

# A new namespace reaches the frontend's namespace cache on its next refresh (10s by default).
until temporal operator search-attribute list --namespace "$NAMESPACE" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "namespace $NAMESPACE is not usable after ${WAIT_SECONDS}s" >&2
        exit 1
    fi
    sleep 2
done

registered_type() { # NAME -> its type in this namespace, or nothing; fails if the list fails
    listing=$(temporal operator search-attribute list --namespace "$NAMESPACE")
    printf '%s\n' "$listing" | awk -v n="$1" '$1 == n { print $2 }'
}

changed=0
for pair in "$@"; do
    name=${pair%%=*}
    type=${pair#*=}
    if [ -z "$name" ] || [ "$name" = "$pair" ] || [ -z "$type" ]; then
        echo "bad argument '$pair': expected NAME=TYPE" >&2
        exit 2
    fi
    current=$(registered_type "$name")
    if [ "$current" = "$type" ]; then
        echo "search attribute $name ($type) exists"
        continue
    fi
    if [ -n "$current" ]; then
        # The server would silently keep the old type; a search attribute's type cannot change.
        echo "search attribute $name is registered as $current, expected $type" >&2
        exit 1
    fi
    temporal operator search-attribute create --namespace "$NAMESPACE" --name "$name" --type "$type"
    changed=1
done

for pair in "$@"; do
    name=${pair%%=*}
    type=${pair#*=}
    current=$(registered_type "$name")
    if [ "$current" != "$type" ]; then
        echo "search attribute $name: expected $type, found '${current:-missing}'" >&2
        exit 1
    fi
done

if [ "$changed" = 1 ]; then
    # Frontends pick up namespace changes on their cache refresh (system.namespaceCacheRefreshInterval,
    # 10s by default); wait so that the first workflow started afterwards can use the new attributes.
    sleep "${CACHE_REFRESH_SECONDS:-12}"
fi
echo "namespace $NAMESPACE ready with $# custom search attribute(s)"
