#!/usr/bin/env bash
# scripts/dev.sh — run the native development stack in the background.
#
#   scripts/dev.sh up        start whatever is not running, wait until ready
#   scripts/dev.sh down      stop the processes recorded in $DEV_DIR
#   scripts/dev.sh status    one line per component
#
# Components, in start order: mailpit (SMTP sink), api, worker, nginx.
# Postgres and Redis are not managed here: they must already run locally
# (Postgres on 127.0.0.1:5432 with a superuser, Redis on 127.0.0.1:6379).
#
# $DEV_DIR (default .dev/) holds <name>.log, <name>.pid, <name>.url (the URL
# that answers once the component is ready) and the rendered nginx config in
# nginx/. Binaries come from $BIN_DIR (default bin/; `make build tools`).
# Relative DEV_DIR/BIN_DIR are taken from the current directory.
#
# Listen addresses (override them to run a second stack beside this one):
#   NGINX_LISTEN          127.0.0.1:8080   public entry point (nginx)
#   API_HTTP_ADDR         127.0.0.1:8081   → api HTTP_ADDR (nginx upstream)
#   API_INTERNAL_ADDR     127.0.0.1:9101   → api INTERNAL_ADDR
#   WORKER_INTERNAL_ADDR  127.0.0.1:9102   → worker INTERNAL_ADDR
#   MAILPIT_SMTP_ADDR     127.0.0.1:1025   → Mailpit --smtp, and the worker's
#                                            SMTP_HOST/SMTP_PORT unless set
#   MAILPIT_UI_ADDR       127.0.0.1:8025   → Mailpit --listen (UI + API)
# Other knobs:
#   SKIP_MAILPIT=1     do not start Mailpit (bring your own SMTP server and
#                      point SMTP_HOST/SMTP_PORT or MAILPIT_SMTP_ADDR at it)
#   SKIP_DB_SETUP=1    do not create the role/database
#   RATE_LIMIT=0       render nginx without the /api rate limit
#   READY_TIMEOUT=20   seconds each component gets to become ready
#   STOP_TIMEOUT=25    seconds each component gets to exit after SIGTERM
#   MAILPIT_ARGS       extra Mailpit flags (word-split)
#   DB_ADMIN_USER      superuser for the role/database setup (postgres)
# Every variable of the contract (LOG_LEVEL, DB_*, REDIS_*, SMTP_*, MAIL_*,
# WORKER_*, OUTBOX_*, ...) is passed through to api and worker; unset ones
# take the binaries' native defaults. INTERNAL_ADDR and HTTP_ADDR are set per
# process from the variables above (a stray exported INTERNAL_ADDR is ignored).
set -euo pipefail

# The local Postgres role gets this password unless DB_PASSWORD or
# DB_PASSWORD_FILE says otherwise. DEVELOPMENT ONLY: it is in the repository,
# so it protects nothing. Compose deployments use .secrets/ (make secrets).
readonly DEV_ONLY_DB_PASSWORD='carteiro-dev-only-NOT-A-SECRET'

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

abspath() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$(pwd)" "$1" ;;
    esac
}

DEV_DIR=$(abspath "${DEV_DIR:-$repo_dir/.dev}")
BIN_DIR=$(abspath "${BIN_DIR:-$repo_dir/bin}")
READY_TIMEOUT=${READY_TIMEOUT:-20}
STOP_TIMEOUT=${STOP_TIMEOUT:-25}

NGINX_LISTEN=${NGINX_LISTEN:-127.0.0.1:8080}
API_HTTP_ADDR=${API_HTTP_ADDR:-${HTTP_ADDR:-127.0.0.1:8081}}
API_INTERNAL_ADDR=${API_INTERNAL_ADDR:-127.0.0.1:9101}
WORKER_INTERNAL_ADDR=${WORKER_INTERNAL_ADDR:-127.0.0.1:9102}
MAILPIT_SMTP_ADDR=${MAILPIT_SMTP_ADDR:-127.0.0.1:1025}
MAILPIT_UI_ADDR=${MAILPIT_UI_ADDR:-127.0.0.1:8025}
unset INTERNAL_ADDR HTTP_ADDR

COMPONENTS=(mailpit api worker nginx)

log() { printf 'dev: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

# dial_addr LISTEN_ADDR → host:port to connect to. Wildcard and empty hosts
# ("", "*", 0.0.0.0, [::], ::) become 127.0.0.1; a bare port gets 127.0.0.1.
dial_addr() {
    local a=$1 host port
    a=${a%% *} # nginx listen parameters ("127.0.0.1:8080 reuseport")
    if [[ $a =~ ^[0-9]+$ ]]; then
        host='' port=$a
    else
        host=${a%:*} port=${a##*:}
    fi
    case "$host" in
        '' | '*' | 0.0.0.0 | '[::]' | '::') host=127.0.0.1 ;;
    esac
    printf '%s:%s\n' "$host" "$port"
}

# port_in_use host:port — something accepts TCP connections there.
port_in_use() {
    local host=${1%:*} port=${1##*:}
    host=${host#[}
    host=${host%]}
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

pid_file() { printf '%s/%s.pid\n' "$DEV_DIR" "$1"; }
log_file() { printf '%s/%s.log\n' "$DEV_DIR" "$1"; }
url_file() { printf '%s/%s.url\n' "$DEV_DIR" "$1"; }

read_pid() {
    local f pid=''
    f=$(pid_file "$1")
    [[ -f $f ]] || return 1
    read -r pid <"$f" || true
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    printf '%s\n' "$pid"
}

# argv0 PID — the process's argv[0] (empty for a zombie).
argv0() {
    local a=''
    { IFS= read -r -d '' a <"/proc/$1/cmdline"; } 2>/dev/null || true
    printf '%s\n' "$a"
}

# alive PID — exists and is not a zombie (a zombie has an empty cmdline).
alive() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -r /proc/$pid/cmdline ]] || return 0 # no procfs: trust kill -0
    [[ -n $(argv0 "$pid") ]]
}

# is_ours NAME PID — PID is alive and still runs NAME's program, so a pid
# recycled by an unrelated process after a crash is never signalled.
is_ours() {
    local name=$1 pid=$2 a
    alive "$pid" || return 1
    [[ -r /proc/$pid/cmdline ]] || return 0
    a=$(argv0 "$pid")
    case "$name" in
        nginx) [[ $a == nginx:* || ${a##*/} == nginx ]] ;;
        *) [[ ${a##*/} == "$name" ]] ;;
    esac
}

# running NAME → prints the pid and succeeds when NAME runs; removes a stale
# pid file (process gone or pid now used by something else).
running() {
    local name=$1 pid
    pid=$(read_pid "$name") || {
        rm -f "$(pid_file "$name")"
        return 1
    }
    if is_ours "$name" "$pid"; then
        printf '%s\n' "$pid"
        return 0
    fi
    log "$name: removing stale pid file (pid $pid is not running $name)"
    rm -f "$(pid_file "$name")" "$(url_file "$name")"
    return 1
}

# terminate NAME PID — SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL.
terminate() {
    local name=$1 pid=$2 i
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 4; i++)); do
        alive "$pid" || break
        sleep 0.25
    done
    if alive "$pid"; then
        log "$name (pid $pid) still running after ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 20; i++)); do
            alive "$pid" || break
            sleep 0.25
        done
    fi
    rm -f "$(pid_file "$name")" "$(url_file "$name")"
}

# stop NAME — stop the process recorded in NAME.pid, if it still runs NAME.
stop() {
    local name=$1 pid
    if pid=$(running "$name"); then
        terminate "$name" "$pid"
    fi
    rm -f "$(pid_file "$name")" "$(url_file "$name")"
}

# fail_start NAME PID MESSAGE — report, show the log tail, stop what we started.
fail_start() {
    local name=$1 pid=$2 msg=$3 logf
    logf=$(log_file "$name")
    log "$name: $msg"
    if [[ -s $logf ]]; then
        log "last lines of $logf:"
        tail -n 40 "$logf" | sed 's/^/    /' >&2
    fi
    if [[ -n $pid ]] && alive "$pid"; then
        terminate "$name" "$pid"
    fi
    rm -f "$(pid_file "$name")" "$(url_file "$name")"
    exit 1
}

# launch NAME READY_URL PORT... -- COMMAND...
# Starts COMMAND in its own session (it outlives this script), logs to
# NAME.log, records its pid, waits until READY_URL answers 2xx.
launch() {
    local name=$1 url=$2 pid='' pidf logf i
    shift 2
    local ports=()
    while [[ $1 != -- ]]; do
        ports+=("$1")
        shift
    done
    shift

    if pid=$(running "$name"); then
        log "$name already running (pid $pid)"
        return 0
    fi
    for p in "${ports[@]}"; do
        if port_in_use "$p"; then
            die "$name: $p is already in use by another process (not started by this DEV_DIR); free it or choose another address"
        fi
    done

    pidf=$(pid_file "$name")
    logf=$(log_file "$name")
    rm -f "$pidf"
    printf '=== %s: starting %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$logf"

    # The inner shell writes its own pid and execs the command, so the pid
    # file names the real process whether or not setsid had to fork.
    local launcher=()
    if command -v setsid >/dev/null 2>&1; then
        launcher=(setsid)
    else
        launcher=(nohup)
    fi
    # shellcheck disable=SC2016 # expanded by the inner shell
    "${launcher[@]}" bash -c 'echo "$$" >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
        "$pidf" "$@" </dev/null >>"$logf" 2>&1 &

    for ((i = 0; i < 100; i++)); do
        pid=$(read_pid "$name") && break
        sleep 0.05
    done
    [[ -n $pid ]] || fail_start "$name" "" "did not start (no pid file)"

    printf '%s\n' "$url" >"$(url_file "$name")"
    local deadline=$((SECONDS + READY_TIMEOUT))
    while :; do
        alive "$pid" || fail_start "$name" "$pid" "exited during startup"
        if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
            break
        fi
        ((SECONDS < deadline)) || fail_start "$name" "$pid" "not ready after ${READY_TIMEOUT}s ($url)"
        sleep 0.25
    done
    log "$name ready (pid $pid, $url)"
}

setup_db() {
    [[ ${SKIP_DB_SETUP:-0} == 1 ]] && return 0
    command -v psql >/dev/null 2>&1 || die "psql not found (install postgresql-client or set SKIP_DB_SETUP=1)"
    local admin=${DB_ADMIN_USER:-postgres} host=${DB_ADMIN_HOST:-$DB_HOST} pw
    if [[ -n ${DB_PASSWORD_FILE:-} ]]; then
        [[ -r $DB_PASSWORD_FILE ]] || die "DB_PASSWORD_FILE $DB_PASSWORD_FILE is not readable"
        pw=$(<"$DB_PASSWORD_FILE")
    else
        pw=$DB_PASSWORD
    fi
    # psql variables + \gexec: names and password are quoted by format(%I/%L).
    if ! PGCONNECT_TIMEOUT=3 psql -X -q -v ON_ERROR_STOP=1 -h "$host" -p "$DB_PORT" \
        -U "$admin" -d postgres \
        -v role="$DB_USER" -v pw="$pw" -v db="$DB_NAME" >/dev/null <<'SQL'; then
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'role', :'pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
        die "could not create role/database on Postgres at $host:$DB_PORT as $admin (is it running? set DB_ADMIN_USER, or SKIP_DB_SETUP=1)"
    fi
}

check_redis() {
    command -v redis-cli >/dev/null 2>&1 || return 0
    local host=${REDIS_ADDR%:*} port=${REDIS_ADDR##*:}
    if ! REDISCLI_AUTH=${REDIS_PASSWORD:-} timeout 3 redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1; then
        log "warning: Redis at $REDIS_ADDR does not answer PING; the worker will not get messages"
    fi
}

nginx_bin() {
    if [[ -n ${NGINX_BIN:-} ]]; then
        printf '%s\n' "$NGINX_BIN"
    elif command -v nginx >/dev/null 2>&1; then
        command -v nginx
    elif [[ -x /usr/sbin/nginx ]]; then
        printf '%s\n' /usr/sbin/nginx
    else
        die "nginx not found (install it or set NGINX_BIN)"
    fi
}

cmd_up() {
    local comp
    for comp in api worker $([[ ${SKIP_MAILPIT:-0} == 1 ]] || echo mailpit); do
        [[ -x $BIN_DIR/$comp ]] || die "$BIN_DIR/$comp is missing; run 'make build tools' first"
    done
    mkdir -p "$DEV_DIR"

    # Settings shared by api and worker (contract names, native defaults).
    export LOG_LEVEL=${LOG_LEVEL:-info}
    export DB_HOST=${DB_HOST:-127.0.0.1} DB_PORT=${DB_PORT:-5432}
    export DB_NAME=${DB_NAME:-carteiro} DB_USER=${DB_USER:-carteiro}
    if [[ -z ${DB_PASSWORD_FILE:-} ]]; then
        export DB_PASSWORD=${DB_PASSWORD:-$DEV_ONLY_DB_PASSWORD}
    fi
    export REDIS_ADDR=${REDIS_ADDR:-127.0.0.1:6379}

    local smtp api_http api_internal worker_internal mailpit_ui public
    smtp=$(dial_addr "$MAILPIT_SMTP_ADDR")
    api_http=$(dial_addr "$API_HTTP_ADDR")
    api_internal=$(dial_addr "$API_INTERNAL_ADDR")
    worker_internal=$(dial_addr "$WORKER_INTERNAL_ADDR")
    mailpit_ui=$(dial_addr "$MAILPIT_UI_ADDR")
    public=$(dial_addr "$NGINX_LISTEN")

    setup_db
    check_redis

    if [[ ${SKIP_MAILPIT:-0} != 1 ]]; then
        # No --database: Mailpit keeps a temporary database that it deletes on exit.
        # shellcheck disable=SC2086 # MAILPIT_ARGS is a list of flags
        launch mailpit "http://$mailpit_ui/readyz" "$smtp" "$mailpit_ui" -- \
            "$BIN_DIR/mailpit" \
            --smtp "$MAILPIT_SMTP_ADDR" --listen "$MAILPIT_UI_ADDR" \
            --disable-version-check --block-remote-css-and-fonts \
            --smtp-auth-accept-any --smtp-auth-allow-insecure --smtp-disable-rdns \
            ${MAILPIT_ARGS:-}
    fi

    launch api "http://$api_internal/readyz" "$api_http" "$api_internal" -- \
        env HTTP_ADDR="$API_HTTP_ADDR" INTERNAL_ADDR="$API_INTERNAL_ADDR" \
        "$BIN_DIR/api"

    launch worker "http://$worker_internal/healthz" "$worker_internal" -- \
        env INTERNAL_ADDR="$WORKER_INTERNAL_ADDR" \
        SMTP_HOST="${SMTP_HOST:-${smtp%:*}}" SMTP_PORT="${SMTP_PORT:-${smtp##*:}}" \
        "$BIN_DIR/worker"

    local ngx ndir
    ngx=$(nginx_bin)
    ndir=$DEV_DIR/nginx
    if ! running nginx >/dev/null; then
        API_UPSTREAM=$api_http NGINX_LISTEN=$NGINX_LISTEN WEB_ROOT=${WEB_ROOT:-$repo_dir/web} \
            NGINX_RUN_DIR=$ndir RATE_LIMIT=${RATE_LIMIT:-1} \
            "$repo_dir/scripts/render-nginx.sh" "$ndir"
        "$ngx" -t -q -e "$ndir/error.log" -p "$ndir/" -c "$ndir/nginx.conf" ||
            die "nginx rejected the rendered config in $ndir"
    fi
    launch nginx "http://$public/readyz" "$public" -- \
        "$ngx" -e "$ndir/error.log" -p "$ndir/" -c "$ndir/nginx.conf" -g 'daemon off;'

    log "stack is up: http://$public/ (Mailpit UI: $([[ ${SKIP_MAILPIT:-0} == 1 ]] && echo skipped || echo "http://$mailpit_ui/"))"
}

cmd_down() {
    local i
    # Reverse start order: the entry point first, the SMTP sink last so the
    # worker can finish in-flight deliveries while it drains.
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
        stop "${COMPONENTS[i]}"
    done
}

cmd_status() {
    local name pid url state
    for name in "${COMPONENTS[@]}"; do
        url=''
        if [[ -f $(url_file "$name") ]]; then
            read -r url <"$(url_file "$name")" || true
        fi
        if pid=$(running "$name" 2>/dev/null); then
            if [[ -z $url ]]; then
                state=unknown
            elif curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
                state=ready
            else
                state=not-ready
            fi
            printf '%-8s running  pid %-7s %-9s %s\n' "$name" "$pid" "$state" "$url"
        else
            printf '%-8s stopped\n' "$name"
        fi
    done
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 up|down|status" >&2
        exit 2
        ;;
esac
