#!/bin/sh
# The postgres stand-in's entrypoint (see the Dockerfile beside it for what it
# keeps of the official image's docker-entrypoint.sh): initialise an empty
# PGDATA from the POSTGRES_* variables, then run the server.
set -eu

die() {
    echo "docker-entrypoint.sh: $*" >&2
    exit 1
}

# POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE, not both (as the official image).
password() {
    if [ -n "${POSTGRES_PASSWORD:-}" ] && [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        die "both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set (but are exclusive)"
    fi
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        cat "$POSTGRES_PASSWORD_FILE"
    else
        printf '%s' "${POSTGRES_PASSWORD:-}"
    fi
}

init() {
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    pass=$(password)
    [ -n "$pass" ] || die "no POSTGRES_PASSWORD(_FILE): this stand-in never initialises without a password"
    pwfile=$(mktemp)
    printf '%s\n' "$pass" >"$pwfile"
    # POSTGRES_INITDB_ARGS is split into words, as the official image does.
    # shellcheck disable=SC2086
    initdb --username="$user" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-}
    rm -f "$pwfile"
    printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >>"$PGDATA/pg_hba.conf"
    if [ "$db" != postgres ]; then
        printf 'CREATE DATABASE "%s";\n' "$db" | postgres --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "docker-entrypoint.sh: PostgreSQL init process complete; ready for start up."
}

case "${1:-}" in
    -*) set -- postgres "$@" ;;
esac

if [ "${1:-}" = postgres ]; then
    [ "$(id -u)" != 0 ] || die "start this stand-in as the postgres user (user: postgres), not root"
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        init
    fi
fi
exec "$@"
