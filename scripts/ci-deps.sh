#!/usr/bin/env bash
# scripts/ci-deps.sh — make this machine ready for `make test` (run as root).
#
# Idempotent and quick on a rerun: installs only the Debian packages that are
# missing, starts Postgres and Redis only when they do not answer, and prints
# the versions the tests will use. Called by .ci/run; usable on a fresh dev box.
set -euo pipefail

# prometheus, prometheus-alertmanager (with amtool) and the nginx, Postgres
# and Redis exporters serve `make dev OBS=1` and the observability
# end-to-end tests (bin/jaeger is built from the tools module).
# wrk drives `make bench`'s accept-path load (pgbench comes with postgresql).
# nodejs parses and evaluates the k6 scripts (services/internal/deploy/k6_test.go).
# gettext-base's envsubst is what the official nginx image renders templates
# with: the tests compare internal/nginxtemplate's output with it.
# etcd-server is the store of the kube-apiserver that validates the Kubernetes
# manifests (services/internal/deploy/kubernetes_apiserver_test.go starts its
# own etcd on free loopback ports; the package's own service is kept from
# starting below).
# docker.io (the Docker Engine) and debootstrap (the stand-ins' Debian base)
# serve `make test-compose` (deploy/composetest); dockerd is started below.
# postfix brings smtp-source, `make bench`'s public SMTP ceiling; its debconf
# question is answered "No configuration" and its service kept from starting
# (below): no mail server runs on this machine. busybox runs the queue's
# password command under the shell and tools of the redis alpine image
# (services/internal/deploy TestQueueCommand).
PACKAGES=(nginx chromium prometheus prometheus-nginx-exporter prometheus-alertmanager
    prometheus-postgres-exporter prometheus-redis-exporter curl ca-certificates wrk nodejs gettext-base
    etcd-server docker.io debootstrap postfix busybox)

log() { printf 'ci-deps: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        log "packages present: ${PACKAGES[*]}"
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "missing packages (${missing[*]}) and not root"
    log "installing: ${missing[*]}"

    # Keep the packages' own services (nginx on :80, prometheus on :9090,
    # alertmanager on :9093, the exporters on :9113, :9187 and :9121, etcd
    # on :2379, postfix on :25) from starting: the tests run their own
    # instances.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    # postfix asks what kind of mail server to set up; none: only its
    # smtp-source is used.
    echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    } || rc=$?
    if ((created_policy)); then
        rm -f "$policy"
    fi
    ((rc == 0)) || die "apt-get failed (exit $rc)"
}

wait_for() {
    local what=$1 i
    shift
    for ((i = 0; i < 60; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "$what did not come up"
}

start_postgres() {
    if pg_isready -q -h 127.0.0.1; then
        log "postgres: running"
        return 0
    fi
    command -v pg_ctlcluster >/dev/null 2>&1 || die "postgres is not running and pg_ctlcluster is missing"
    local version
    version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
    [[ -n $version ]] || die "no cluster under /etc/postgresql"
    log "postgres: starting cluster $version/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_for postgres pg_isready -q -h 127.0.0.1
}

start_redis() {
    if redis-cli -h 127.0.0.1 ping 2>/dev/null | grep -q PONG; then
        log "redis: running"
        return 0
    fi
    command -v redis-server >/dev/null 2>&1 || die "redis is not running and redis-server is missing"
    log "redis: starting"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for redis sh -c 'redis-cli -h 127.0.0.1 ping | grep -q PONG'
}

# dockerd runs in the background (no systemd here), logging to
# /var/log/dockerd.log; started only when no engine answers.
start_docker() {
    if docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
        log "docker: running"
        return 0
    fi
    command -v dockerd >/dev/null 2>&1 || die "docker is not running and dockerd is missing"
    log "docker: starting dockerd"
    setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
    local i
    for ((i = 0; i < 240; i++)); do
        docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "dockerd did not come up (see /var/log/dockerd.log)"
}

versions() {
    local v
    echo '--- versions'
    go version
    /usr/sbin/nginx -v 2>&1
    chromium --version 2>/dev/null || echo 'chromium: not found'
    v=$(prometheus --version 2>&1 | head -n 1) || true
    echo "${v:-prometheus: not found}"
    v=$(prometheus-nginx-exporter --version 2>&1 | head -n 1) || true
    echo "${v:-prometheus-nginx-exporter: not found}"
    v=$(prometheus-alertmanager --version 2>&1 | head -n 1) || true
    echo "${v:-prometheus-alertmanager: not found}"
    v=$(prometheus-postgres-exporter --version 2>&1 | head -n 1) || true
    echo "${v:-prometheus-postgres-exporter: not found}"
    v=$(prometheus-redis-exporter --version 2>&1 | head -n 1) || true
    echo "${v:-prometheus-redis-exporter: not found}"
    psql --version
    redis-server --version
    v=$(etcd --version 2>&1 | head -n 1) || true
    echo "${v:-etcd: not found}"
    v=$(wrk --version 2>&1 | head -n 1) || true
    echo "${v:-wrk: not found}"
    v=$(dpkg-query -W -f='smtp-source (postfix ${Version})' postfix 2>/dev/null) || true
    echo "${v:-postfix: not found}"
    v=$(curl --version | head -n 1) || true
    echo "$v"
    v=$(make --version | head -n 1) || true
    echo "$v"
    v=$(docker version --format 'Docker Engine {{.Server.Version}}, client {{.Client.Version}}' 2>&1) || true
    echo "$v"
    echo '---'
}

install_packages
start_postgres
start_redis
start_docker
versions
