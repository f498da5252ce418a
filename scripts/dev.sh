#!/usr/bin/env bash
# scripts/dev.sh — run the native development stack in the background.
#
#   scripts/dev.sh up        start whatever is not running, wait until ready
#   scripts/dev.sh down      stop the processes recorded in $DEV_DIR
#   scripts/dev.sh status    one line per component
#
# Components, in start order: mailpit (SMTP sink), api, worker, nginx.
# With OBS=1 (`make dev OBS=1`) also, before them, jaeger (Jaeger v2: OTLP in,
# traces in memory, UI + query API) and prometheus (Debian's), and after nginx
# nginx-exporter (stub_status → Prometheus metrics); api and worker then get
# OTEL_EXPORTER_OTLP_ENDPOINT/OTEL_EXPORTER_OTLP_PROTOCOL pointing at that
# Jaeger, and the api JAEGER_UI_URL. Without OBS=1 none of these is started
# and no OTEL_* variable is set here. `down` stops every component that has
# a pid file, whichever way it was started.
# Postgres and Redis are not managed here: they must already run locally
# (Postgres on 127.0.0.1:5432 with a superuser, Redis on 127.0.0.1:6379).
#
# $DEV_DIR (default .dev/) holds <name>.log, <name>.pid, <name>.url (the URL
# that answers once the component is ready), <name>.exit (written when the
# process ends: its exit status, 128+N when signal N ended it), the rendered
# nginx config in nginx/, and with OBS=1 prometheus.yml and prometheus-data/.
# Each component runs under a small bash wrapper that records that status;
# <name>.pid names the component's own process (the one to signal). Binaries come
# from $BIN_DIR (default bin/; `make build tools`, and `make jaeger` for
# bin/jaeger). Relative DEV_DIR/BIN_DIR are taken from the current directory.
#
# Listen addresses (override them to run a second stack beside this one):
#   NGINX_LISTEN          127.0.0.1:8080   public entry point (nginx)
#   API_HTTP_ADDR         127.0.0.1:8081   → api HTTP_ADDR (nginx upstream)
#   API_INTERNAL_ADDR     127.0.0.1:9101   → api INTERNAL_ADDR
#   WORKER_INTERNAL_ADDR  127.0.0.1:9102   → worker INTERNAL_ADDR
#   MAILPIT_SMTP_ADDR     127.0.0.1:1025   → Mailpit --smtp, and the worker's
#                                            SMTP_HOST/SMTP_PORT unless set
#   MAILPIT_UI_ADDR       127.0.0.1:8025   → Mailpit --listen (UI + API)
#   NGINX_STATUS_ADDR     127.0.0.1:8082   nginx's internal stub_status listener
#                                          (/nginx-status), read by nginx-exporter
# and with OBS=1:
#   JAEGER_OTLP_GRPC_ADDR  127.0.0.1:4317  Jaeger OTLP/gRPC receiver
#   JAEGER_OTLP_HTTP_ADDR  127.0.0.1:4318  Jaeger OTLP/HTTP receiver (api and worker
#                                          export here: OTEL_EXPORTER_OTLP_ENDPOINT)
#   JAEGER_QUERY_ADDR      127.0.0.1:16686 Jaeger UI + HTTP query API (/api/services,
#                                          /api/traces/{id}); → the api's JAEGER_UI_URL
#   JAEGER_QUERY_GRPC_ADDR 127.0.0.1:16685 Jaeger query gRPC API (127.0.0.1:0 = any
#                                          free port)
#   JAEGER_METRICS_ADDR    (empty: off)    Jaeger's own Prometheus metrics listener
#   PROMETHEUS_LISTEN      127.0.0.1:9090  Prometheus (UI, API, /-/ready, remote write)
#   NGINX_EXPORTER_LISTEN  127.0.0.1:9113  nginx-exporter /metrics
# Each component's readiness check and "port already in use" check use these,
# so a second stack only needs different values (127.0.0.1:0 is not accepted
# except for JAEGER_QUERY_GRPC_ADDR, which nothing connects to).
# Several api and worker processes (load tests):
#   API_INSTANCES=N     run N api processes, all in nginx's upstream; default:
#                       as many as API_HTTP_ADDR lists, else 1
#   WORKER_INSTANCES=N  run N workers in the consumer group; default: as many
#                       as WORKER_INTERNAL_ADDR lists, else 1
#   API_HTTP_ADDR, API_INTERNAL_ADDR and WORKER_INTERNAL_ADDR may be
#   comma-separated lists, one address per instance; an instance the list
#   does not cover gets the first address's port + INSTANCE_PORT_STEP (100)
#   times its index (api 8081, 8181, 8281; worker 9102, 9202, ...).
#   Instance 1 is named api/worker as always, the others api-2, worker-3, ...
#   (pid, log, url and exit files); a WORKER_NAME given is suffixed -2, -3.
#   With OBS=1 Prometheus scrapes instance 1 of each.
# Other knobs:
#   SKIP_MAILPIT=1     do not start Mailpit (bring your own SMTP server and
#                      point SMTP_HOST/SMTP_PORT or MAILPIT_SMTP_ADDR at it)
#   SKIP_DB_SETUP=1    do not create the role/database
#   RATE_LIMIT=0       render nginx without the /api rate limit
#   READY_TIMEOUT=20   seconds each component gets to become ready
#   STOP_TIMEOUT=25    seconds each component gets to exit after SIGTERM
#   MAILPIT_ARGS       extra Mailpit flags (word-split)
#   DB_ADMIN_USER      superuser for the role/database setup (postgres)
#   OBS=1              also start jaeger, prometheus and nginx-exporter (above)
#   JAEGER_CONFIG      Jaeger config (observability/jaeger/config.yaml; it reads
#                      the JAEGER_* variables above from the environment)
#   JAEGER_UI_URL      the api's link to the Jaeger UI (default http://JAEGER_QUERY_ADDR)
#   PROMETHEUS_BIN     prometheus binary (default: prometheus on PATH, /usr/bin/prometheus)
#   PROMETHEUS_TEMPLATE  scrape config template, rendered into
#                      $DEV_DIR/prometheus.yml (observability/prometheus/
#                      prometheus.native.yml.template)
#   PROMETHEUS_SCRAPE_INTERVAL  5s   scrape and rule evaluation interval
#   PROMETHEUS_RETENTION        2d   --storage.tsdb.retention.time
#   PROMETHEUS_ARGS    extra Prometheus flags (word-split)
#   NGINX_EXPORTER_BIN nginx exporter binary (default: prometheus-nginx-exporter,
#                      Debian's name, or nginx-prometheus-exporter on PATH)
#   SKIP_NGINX_EXPORTER=1  do not start it (it is skipped with a warning when
#                      the binary is missing)
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
INSTANCE_PORT_STEP=${INSTANCE_PORT_STEP:-100}
MAILPIT_SMTP_ADDR=${MAILPIT_SMTP_ADDR:-127.0.0.1:1025}
MAILPIT_UI_ADDR=${MAILPIT_UI_ADDR:-127.0.0.1:8025}
NGINX_STATUS_ADDR=${NGINX_STATUS_ADDR:-127.0.0.1:8082}
unset INTERNAL_ADDR HTTP_ADDR

# Observability (OBS=1). The JAEGER_* listen variables are exported because
# the Jaeger config reads them itself (${env:...}).
case ${OBS:-0} in
    1 | true | yes | on) OBS=1 ;;
    *) OBS=0 ;;
esac
export JAEGER_OTLP_GRPC_ADDR=${JAEGER_OTLP_GRPC_ADDR:-127.0.0.1:4317}
export JAEGER_OTLP_HTTP_ADDR=${JAEGER_OTLP_HTTP_ADDR:-127.0.0.1:4318}
export JAEGER_QUERY_ADDR=${JAEGER_QUERY_ADDR:-127.0.0.1:16686}
export JAEGER_QUERY_GRPC_ADDR=${JAEGER_QUERY_GRPC_ADDR:-127.0.0.1:16685}
JAEGER_METRICS_ADDR=${JAEGER_METRICS_ADDR:-}
JAEGER_CONFIG=${JAEGER_CONFIG:-$repo_dir/observability/jaeger/config.yaml}
PROMETHEUS_LISTEN=${PROMETHEUS_LISTEN:-127.0.0.1:9090}
PROMETHEUS_TEMPLATE=${PROMETHEUS_TEMPLATE:-$repo_dir/observability/prometheus/prometheus.native.yml.template}
PROMETHEUS_SCRAPE_INTERVAL=${PROMETHEUS_SCRAPE_INTERVAL:-5s}
PROMETHEUS_RETENTION=${PROMETHEUS_RETENTION:-2d}
NGINX_EXPORTER_LISTEN=${NGINX_EXPORTER_LISTEN:-127.0.0.1:9113}

# Start order; `down` goes backwards (Jaeger last, so api and worker can
# flush their spans while they stop). api and worker stand for all their
# instances (see components).
COMPONENTS=(jaeger prometheus mailpit api worker nginx nginx-exporter)
OBS_COMPONENTS=(jaeger prometheus nginx-exporter)

log() { printf 'dev: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

# list_len LIST — how many entries a comma-separated list has.
list_len() {
    local a=()
    IFS=, read -r -a a <<<"$1"
    printf '%s\n' "${#a[@]}"
}

# instance_count VALUE LIST — VALUE (API_INSTANCES, WORKER_INSTANCES) when
# set, else the length of LIST (at least 1).
instance_count() {
    local n=$1 list=$2
    if [[ -z $n ]]; then
        n=$(list_len "$list")
        ((n >= 1)) || n=1
    fi
    [[ $n =~ ^[1-9][0-9]{0,2}$ ]] || die "instance counts must be 1..999, got '$n'"
    printf '%s\n' "$n"
}

# instance_addr LIST I — instance I's address (1-based): the I-th entry of
# LIST, else the first entry's port + INSTANCE_PORT_STEP * (I-1).
instance_addr() {
    local list=$1 i=$2 a=() first
    IFS=, read -r -a a <<<"$list"
    if ((i <= ${#a[@]})) && [[ -n ${a[i - 1]// /} ]]; then
        printf '%s\n' "${a[i - 1]// /}"
        return 0
    fi
    first=${a[0]// /}
    [[ $INSTANCE_PORT_STEP =~ ^[0-9]+$ ]] || die "INSTANCE_PORT_STEP must be a number, got '$INSTANCE_PORT_STEP'"
    if [[ $first =~ ^[0-9]+$ ]]; then
        printf '%s\n' $((first + INSTANCE_PORT_STEP * (i - 1)))
    elif [[ ${first##*:} =~ ^[0-9]+$ ]]; then
        printf '%s:%s\n' "${first%:*}" $((${first##*:} + INSTANCE_PORT_STEP * (i - 1)))
    else
        die "cannot derive the address of instance $i from '$first'"
    fi
}

# instance_name KIND I — api, api-2, api-3, ...
instance_name() {
    if (($2 == 1)); then
        printf '%s\n' "$1"
    else
        printf '%s-%s\n' "$1" "$2"
    fi
}

API_N=$(instance_count "${API_INSTANCES:-}" "$API_HTTP_ADDR")
WORKER_N=$(instance_count "${WORKER_INSTANCES:-}" "$WORKER_INTERNAL_ADDR")

# instance_names KIND N — the names of instances 1..N, then those of any
# higher instance that still has a pid file (left by an `up` with more).
instance_names() {
    local kind=$1 n=$2 i f b extra=()
    for ((i = 1; i <= n; i++)); do
        instance_name "$kind" "$i"
    done
    for f in "$DEV_DIR/$kind"-*.pid; do
        [[ -e $f ]] || continue
        b=${f##*/}
        b=${b%.pid}
        i=${b#"$kind"-}
        [[ $i =~ ^[0-9]+$ ]] && ((i > n)) && extra+=("$i")
    done
    if ((${#extra[@]})); then
        printf '%s\n' "${extra[@]}" | sort -n | while read -r i; do instance_name "$kind" "$i"; done
    fi
}

# components — every component name in start order, instances expanded.
components() {
    local c
    for c in "${COMPONENTS[@]}"; do
        case $c in
            api) instance_names api "$API_N" ;;
            worker) instance_names worker "$WORKER_N" ;;
            *) printf '%s\n' "$c" ;;
        esac
    done
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
exit_file() { printf '%s/%s.exit\n' "$DEV_DIR" "$1"; }

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
        nginx-exporter) [[ ${a##*/} == *nginx*exporter* ]] ;;
        api-[0-9]* | worker-[0-9]*) [[ ${a##*/} == "${name%-*}" ]] ;;
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
# NAME.log, records its pid (and, when it ends, its exit status in
# NAME.exit), waits until READY_URL answers 2xx.
launch() {
    local name=$1 url=$2 pid='' pidf logf exitf i
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
    exitf=$(exit_file "$name")
    rm -f "$pidf" "$exitf"
    printf '=== %s: starting %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$logf"

    # The wrapper shell starts the command as its child, writes the child's
    # pid (the process to signal) and, once it ends, its exit status into
    # NAME.exit (bash's $?: 128+N after signal N). `set -m` because a
    # background job of a non-interactive shell would otherwise start with
    # SIGINT and SIGQUIT ignored; the loop outlasts a SIGSTOP/SIGCONT.
    local launcher=()
    if command -v setsid >/dev/null 2>&1; then
        launcher=(setsid)
    else
        launcher=(nohup)
    fi
    # shellcheck disable=SC2016 # expanded by the inner shell
    "${launcher[@]}" bash -c 'set -m
        pidf=$0 exitf=$1
        shift
        "$@" &
        pid=$!
        echo "$pid" >"$pidf.tmp" && mv "$pidf.tmp" "$pidf"
        while :; do
            wait "$pid"
            rc=$?
            kill -0 "$pid" 2>/dev/null || break
        done
        echo "$rc" >"$exitf.tmp" && mv "$exitf.tmp" "$exitf"' \
        "$pidf" "$exitf" "$@" </dev/null >>"$logf" 2>&1 &

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

# wait_ports NAME PID HOST:PORT... — after launch: wait until every address
# accepts connections (Jaeger's query UI answers before its receivers listen).
wait_ports() {
    local name=$1 pid=$2 a deadline=$((SECONDS + READY_TIMEOUT))
    shift 2
    for a in "$@"; do
        until port_in_use "$a"; do
            alive "$pid" || fail_start "$name" "$pid" "exited during startup"
            ((SECONDS < deadline)) || fail_start "$name" "$pid" "$a not listening after ${READY_TIMEOUT}s"
            sleep 0.1
        done
    done
}

# find_bin VAR_VALUE NAME... — the first of an explicit path or NAMEs on PATH
# (or in /usr/bin, /usr/sbin); prints nothing when none exists.
find_bin() {
    local explicit=$1 n d
    shift
    if [[ -n $explicit ]]; then
        printf '%s\n' "$explicit"
        return 0
    fi
    for n in "$@"; do
        if command -v "$n" >/dev/null 2>&1; then
            command -v "$n"
            return 0
        fi
        for d in /usr/bin /usr/sbin; do
            [[ -x $d/$n ]] && {
                printf '%s\n' "$d/$n"
                return 0
            }
        done
    done
    return 0
}

# sed replacement text: escape \ & and the | delimiter
sed_escape() {
    printf '%s\n' "$1" | sed -e 's/[\\&|]/\\&/g'
}

# render_template IN OUT NAME=VALUE... — replace each ${NAME} in IN; any
# other ${UPPER_CASE} placeholder left over is an error (OUT is not written).
render_template() {
    local in=$1 out=$2 kv args=()
    shift 2
    for kv in "$@"; do
        args+=(-e "s|\${${kv%%=*}}|$(sed_escape "${kv#*=}")|g")
    done
    sed "${args[@]}" "$in" >"$out.tmp"
    # shellcheck disable=SC2016 # a literal ${NAME}
    if grep -n '\${[A-Z_][A-Z0-9_]*}' "$out.tmp" >&2; then
        rm -f "$out.tmp"
        die "unrendered placeholder in $in (see above; dev.sh provides: ${*%%=*})"
    fi
    mv "$out.tmp" "$out"
}

# start_jaeger — bin/jaeger with the repo's config; every listener comes from
# the JAEGER_* variables (exported above), read by the config itself.
start_jaeger() {
    [[ -x $BIN_DIR/jaeger ]] || die "$BIN_DIR/jaeger is missing; run 'make jaeger' first (OBS=1)"
    [[ -r $JAEGER_CONFIG ]] || die "Jaeger config $JAEGER_CONFIG is not readable"
    local otlp_grpc otlp_http query qgrpc ports=() metrics_env=()
    otlp_grpc=$(dial_addr "$JAEGER_OTLP_GRPC_ADDR")
    otlp_http=$(dial_addr "$JAEGER_OTLP_HTTP_ADDR")
    query=$(dial_addr "$JAEGER_QUERY_ADDR")
    qgrpc=$(dial_addr "$JAEGER_QUERY_GRPC_ADDR")
    ports=("$otlp_grpc" "$otlp_http" "$query")
    [[ ${qgrpc##*:} == 0 ]] || ports+=("$qgrpc")
    if [[ -n $JAEGER_METRICS_ADDR ]]; then
        local m
        m=$(dial_addr "$JAEGER_METRICS_ADDR")
        ports+=("$m")
        metrics_env=(JAEGER_METRICS_LEVEL="${JAEGER_METRICS_LEVEL:-normal}"
            JAEGER_METRICS_HOST="${m%:*}" JAEGER_METRICS_PORT="${m##*:}")
    else
        metrics_env=(JAEGER_METRICS_LEVEL=none)
    fi
    launch jaeger "http://$query/" "${ports[@]}" -- \
        env "${metrics_env[@]}" "$BIN_DIR/jaeger" --config "$JAEGER_CONFIG"
    local pid
    pid=$(read_pid jaeger) || die "jaeger: no pid file"
    wait_ports jaeger "$pid" "$otlp_grpc" "$otlp_http"
}

# start_prometheus API_INTERNAL WORKER_INTERNAL NGINX_EXPORTER — render the
# scrape config for this stack's own processes, then run Debian's Prometheus.
start_prometheus() {
    local api=$1 worker=$2 exporter=$3 prom listen cfg data
    prom=$(find_bin "${PROMETHEUS_BIN:-}" prometheus)
    [[ -n $prom && -x $prom ]] || die "prometheus not found (apt-get install prometheus, or set PROMETHEUS_BIN)"
    listen=$(dial_addr "$PROMETHEUS_LISTEN")
    cfg=$DEV_DIR/prometheus.yml
    data=$DEV_DIR/prometheus-data
    if ! running prometheus >/dev/null; then
        [[ -r $PROMETHEUS_TEMPLATE ]] ||
            die "Prometheus template $PROMETHEUS_TEMPLATE is missing (set PROMETHEUS_TEMPLATE)"
        render_template "$PROMETHEUS_TEMPLATE" "$cfg" \
            API_METRICS_TARGET="$api" \
            WORKER_METRICS_TARGET="$worker" \
            NGINX_EXPORTER_TARGET="$exporter" \
            SCRAPE_INTERVAL="$PROMETHEUS_SCRAPE_INTERVAL" \
            RULES_DIR="$repo_dir/observability/prometheus/rules"
        mkdir -p "$data"
    fi
    # shellcheck disable=SC2086 # PROMETHEUS_ARGS is a list of flags
    launch prometheus "http://$listen/-/ready" "$listen" -- \
        "$prom" --config.file="$cfg" --storage.tsdb.path="$data" \
        --storage.tsdb.retention.time="$PROMETHEUS_RETENTION" \
        --web.listen-address="$PROMETHEUS_LISTEN" \
        --enable-feature=exemplar-storage \
        --web.enable-remote-write-receiver --web.enable-lifecycle \
        ${PROMETHEUS_ARGS:-}
}

# start_nginx_exporter STATUS_ADDR — stub_status → Prometheus metrics. Skipped
# (with a warning) when the binary is missing or nginx has no status listener.
start_nginx_exporter() {
    local status=$1 bin listen
    [[ ${SKIP_NGINX_EXPORTER:-0} == 1 ]] && return 0
    bin=$(find_bin "${NGINX_EXPORTER_BIN:-}" prometheus-nginx-exporter nginx-prometheus-exporter)
    if [[ -z $bin || ! -x $bin ]]; then
        log "warning: no nginx exporter (apt-get install prometheus-nginx-exporter, or set NGINX_EXPORTER_BIN); the nginx job will be down"
        return 0
    fi
    if ! running nginx-exporter >/dev/null && ! port_in_use "$status"; then
        log "warning: nothing listens on $status (nginx stub_status); nginx-exporter not started"
        return 0
    fi
    listen=$(dial_addr "$NGINX_EXPORTER_LISTEN")
    # Flag spelling shared by Debian's 0.11 (Go flag) and upstream 1.x (kingpin).
    launch nginx-exporter "http://$listen/metrics" "$listen" -- \
        "$bin" --nginx.scrape-uri="http://$status/nginx-status" \
        --web.listen-address="$NGINX_EXPORTER_LISTEN"
}

# env_of PID NAME — the value of NAME in a running process's environment.
env_of() {
    local kv
    [[ -r /proc/$1/environ ]] || return 1
    while IFS= read -r -d '' kv; do
        [[ $kv == "$2="* ]] && {
            printf '%s\n' "${kv#*=}"
            return 0
        }
    done <"/proc/$1/environ"
    return 1
}

cmd_up() {
    local comp
    for comp in api worker $([[ ${SKIP_MAILPIT:-0} == 1 ]] || echo mailpit); do
        [[ -x $BIN_DIR/$comp ]] || die "$BIN_DIR/$comp is missing; run 'make build tools' first"
    done
    if [[ $OBS == 1 ]]; then
        # Everything OBS=1 needs, checked before anything starts.
        [[ -x $BIN_DIR/jaeger ]] || die "$BIN_DIR/jaeger is missing; run 'make jaeger' first (OBS=1)"
        [[ -r $JAEGER_CONFIG ]] || die "Jaeger config $JAEGER_CONFIG is not readable"
        local prom
        prom=$(find_bin "${PROMETHEUS_BIN:-}" prometheus)
        [[ -n $prom && -x $prom ]] || die "prometheus not found (apt-get install prometheus, or set PROMETHEUS_BIN)"
        running prometheus >/dev/null || [[ -r $PROMETHEUS_TEMPLATE ]] ||
            die "Prometheus template $PROMETHEUS_TEMPLATE is missing (set PROMETHEUS_TEMPLATE)"
    fi
    mkdir -p "$DEV_DIR"

    # Settings shared by api and worker (contract names, native defaults).
    export LOG_LEVEL=${LOG_LEVEL:-info}
    export DB_HOST=${DB_HOST:-127.0.0.1} DB_PORT=${DB_PORT:-5432}
    export DB_NAME=${DB_NAME:-carteiro} DB_USER=${DB_USER:-carteiro}
    if [[ -z ${DB_PASSWORD_FILE:-} ]]; then
        export DB_PASSWORD=${DB_PASSWORD:-$DEV_ONLY_DB_PASSWORD}
    fi
    export REDIS_ADDR=${REDIS_ADDR:-127.0.0.1:6379}

    # api_internal and worker_internal are instance 1's (Prometheus scrapes them).
    local smtp api_internal worker_internal mailpit_ui public status
    smtp=$(dial_addr "$MAILPIT_SMTP_ADDR")
    api_internal=$(dial_addr "$(instance_addr "$API_INTERNAL_ADDR" 1)")
    worker_internal=$(dial_addr "$(instance_addr "$WORKER_INTERNAL_ADDR" 1)")
    mailpit_ui=$(dial_addr "$MAILPIT_UI_ADDR")
    public=$(dial_addr "$NGINX_LISTEN")
    status=$(dial_addr "$NGINX_STATUS_ADDR")

    setup_db
    check_redis

    # Observability first, so api and worker export from their first request.
    # api_obs/worker_obs are the extra variables those two processes get.
    local api_obs=() worker_obs=()
    if [[ $OBS == 1 ]]; then
        start_jaeger
        start_prometheus "$api_internal" "$worker_internal" "$(dial_addr "$NGINX_EXPORTER_LISTEN")"
        # A traces-only endpoint inherited from the shell would win over ours.
        unset OTEL_EXPORTER_OTLP_TRACES_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
        worker_obs=(OTEL_EXPORTER_OTLP_ENDPOINT="http://$(dial_addr "$JAEGER_OTLP_HTTP_ADDR")"
            OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)
        api_obs=("${worker_obs[@]}"
            JAEGER_UI_URL="${JAEGER_UI_URL:-http://$(dial_addr "$JAEGER_QUERY_ADDR")}")
    fi

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

    # Every api instance is in nginx's upstream (API_UPSTREAM, comma-separated).
    local i http internal upstream=''
    for ((i = 1; i <= API_N; i++)); do
        http=$(instance_addr "$API_HTTP_ADDR" "$i")
        internal=$(instance_addr "$API_INTERNAL_ADDR" "$i")
        launch "$(instance_name api "$i")" "http://$(dial_addr "$internal")/readyz" \
            "$(dial_addr "$http")" "$(dial_addr "$internal")" -- \
            env HTTP_ADDR="$http" INTERNAL_ADDR="$internal" \
            "${api_obs[@]}" "$BIN_DIR/api"
        upstream+=${upstream:+,}$(dial_addr "$http")
    done

    local worker_name=()
    for ((i = 1; i <= WORKER_N; i++)); do
        internal=$(instance_addr "$WORKER_INTERNAL_ADDR" "$i")
        worker_name=()
        if [[ -n ${WORKER_NAME:-} ]] && ((i > 1)); then
            worker_name=(WORKER_NAME="$WORKER_NAME-$i")
        fi
        launch "$(instance_name worker "$i")" "http://$(dial_addr "$internal")/healthz" \
            "$(dial_addr "$internal")" -- \
            env INTERNAL_ADDR="$internal" "${worker_name[@]}" \
            SMTP_HOST="${SMTP_HOST:-${smtp%:*}}" SMTP_PORT="${SMTP_PORT:-${smtp##*:}}" \
            "${worker_obs[@]}" "$BIN_DIR/worker"
    done

    local ngx ndir
    ngx=$(nginx_bin)
    ndir=$DEV_DIR/nginx
    # A running nginx keeps the upstream it was started with (down, then up,
    # to change API_INSTANCES).
    if ! running nginx >/dev/null; then
        API_UPSTREAM=$upstream NGINX_LISTEN=$NGINX_LISTEN WEB_ROOT=${WEB_ROOT:-$repo_dir/web} \
            NGINX_STATUS_LISTEN=$NGINX_STATUS_ADDR \
            NGINX_RUN_DIR=$ndir RATE_LIMIT=${RATE_LIMIT:-1} \
            "$repo_dir/scripts/render-nginx.sh" "$ndir"
        "$ngx" -t -q -e "$ndir/error.log" -p "$ndir/" -c "$ndir/nginx.conf" ||
            die "nginx rejected the rendered config in $ndir"
    fi
    local nginx_ports=("$public")
    # The status listener, when the rendered config has one (it always opens,
    # OBS or not, so a second stack needs its own NGINX_STATUS_ADDR).
    if grep -rqs 'stub_status' "$ndir"; then
        nginx_ports+=("$status")
    fi
    launch nginx "http://$public/readyz" "${nginx_ports[@]}" -- \
        "$ngx" -e "$ndir/error.log" -p "$ndir/" -c "$ndir/nginx.conf" -g 'daemon off;'

    if [[ $OBS == 1 ]]; then
        start_nginx_exporter "$status"
        obs_check_env api "${api_obs[0]}"
        obs_check_env worker "${worker_obs[0]}"
    fi

    log "stack is up: http://$public/ (Mailpit UI: $([[ ${SKIP_MAILPIT:-0} == 1 ]] && echo skipped || echo "http://$mailpit_ui/"))"
    if [[ $OBS == 1 ]]; then
        log "observability: Jaeger http://$(dial_addr "$JAEGER_QUERY_ADDR")/ (OTLP $JAEGER_OTLP_HTTP_ADDR)," \
            "Prometheus http://$(dial_addr "$PROMETHEUS_LISTEN")/"
    fi
}

# obs_check_env NAME VAR=VALUE — warn when NAME was already running without
# the telemetry settings of this OBS=1 run (it was started by a plain `up`).
obs_check_env() {
    local name=$1 want=$2 pid have
    pid=$(running "$name") || return 0
    have=$(env_of "$pid" "${want%%=*}") || have=''
    if [[ $have != "${want#*=}" ]]; then
        log "warning: $name (pid $pid) was started without ${want}; run 'scripts/dev.sh down' (make dev-down) and up again to trace it"
    fi
}

cmd_down() {
    local i all=()
    mapfile -t all < <(components)
    # Reverse start order: the entry point first, then the workers and apis,
    # the SMTP sink after them so the workers can finish in-flight deliveries
    # while they drain, Prometheus and Jaeger last (the last spans arrive).
    for ((i = ${#all[@]} - 1; i >= 0; i--)); do
        stop "${all[i]}"
    done
}

# is_obs NAME — one of the OBS=1 components.
is_obs() {
    local c
    for c in "${OBS_COMPONENTS[@]}"; do
        [[ $c == "$1" ]] && return 0
    done
    return 1
}

cmd_status() {
    local name pid url state all=()
    mapfile -t all < <(components)
    for name in "${all[@]}"; do
        # The observability components are listed when asked for or running.
        if is_obs "$name" && [[ $OBS != 1 && ! -f $(pid_file "$name") ]]; then
            continue
        fi
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
            printf '%-14s running  pid %-7s %-9s %s\n' "$name" "$pid" "$state" "$url"
        else
            printf '%-14s stopped\n' "$name"
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
