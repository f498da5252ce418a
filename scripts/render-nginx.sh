#!/bin/sh
# Render nginx/**/*.template into OUT_DIR for the native (non-container) stack.
#
#   scripts/render-nginx.sh OUT_DIR
#   nginx -t -p OUT_DIR -c OUT_DIR/nginx.conf
#   nginx    -p OUT_DIR -c OUT_DIR/nginx.conf [-g 'daemon off;']
#   nginx    -p OUT_DIR -c OUT_DIR/nginx.conf -s quit
#
# Does what the official nginx image's entrypoint does in compose (envsubst of
# every *.template under nginx/, same relative layout, suffix dropped), but
# with sed (gettext envsubst may be absent) and only for the placeholders
# below, so nginx's own $variables are never touched.
#
# Environment (native defaults):
#   API_UPSTREAM      host:port of the Go API        127.0.0.1:8081
#                     (or a comma-separated list: one `server` line each in
#                     `upstream api`, e.g. for scripts/dev.sh API_INSTANCES=2)
#   NGINX_LISTEN      listen address                 127.0.0.1:8080
#   WEB_ROOT          static files                   <repo>/web
#   NGINX_RUN_DIR     pid file and temp dirs         OUT_DIR
#   NGINX_ACCESS_LOG  JSON access log                OUT_DIR/access.log
#   NGINX_ERROR_LOG   error log                      OUT_DIR/error.log
#   API_RATE_LIMIT    on|off                         from RATE_LIMIT, else on
#   NGINX_STATUS_LISTEN stub_status listener        127.0.0.1:8082
#                     (/nginx-status, read by nginx-prometheus-exporter)
#   NGINX_STATUS_ALLOW who may read it: an          127.0.0.1
#                     address, a CIDR or `all`; everyone else gets 403
#   NGINX_TRACING     native|otel: which            native
#                     snippets/tracing-*.conf the http block includes (otel
#                     needs nginx's OpenTelemetry module, see nginx/README.md)
#   RATE_LIMIT        0/false/off turns the /api rate limit off
#   NGINX_USER        worker user when run as root   nobody (root if nobody
#                     could not read WEB_ROOT or NGINX_RUN_DIR)
set -eu

usage() {
    echo "usage: $0 OUT_DIR" >&2
    exit 2
}

[ $# -eq 1 ] || usage
[ -n "$1" ] || usage

die() {
    echo "render-nginx: $*" >&2
    exit 1
}

# absolute PATH (relative paths are taken from the current directory)
abspath() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$(pwd)" "$1" ;;
    esac
}

script_dir=$(cd "$(dirname "$0")" && pwd)
repo_dir=$(cd "$script_dir/.." && pwd)
template_dir="$repo_dir/nginx"

mkdir -p "$1"
out_dir=$(cd "$1" && pwd)

API_UPSTREAM=${API_UPSTREAM:-127.0.0.1:8081}
NGINX_LISTEN=${NGINX_LISTEN:-127.0.0.1:8080}
WEB_ROOT=$(abspath "${WEB_ROOT:-$repo_dir/web}")
NGINX_RUN_DIR=$(abspath "${NGINX_RUN_DIR:-$out_dir}")
NGINX_ACCESS_LOG=${NGINX_ACCESS_LOG:-$out_dir/access.log}
NGINX_ERROR_LOG=${NGINX_ERROR_LOG:-$out_dir/error.log}
NGINX_STATUS_LISTEN=${NGINX_STATUS_LISTEN:-127.0.0.1:8082}
NGINX_STATUS_ALLOW=${NGINX_STATUS_ALLOW:-127.0.0.1}
NGINX_TRACING=${NGINX_TRACING:-native}

if [ -z "${API_RATE_LIMIT:-}" ]; then
    case "${RATE_LIMIT:-1}" in
        0 | false | off | no) API_RATE_LIMIT=off ;;
        *) API_RATE_LIMIT=on ;;
    esac
fi
case "$API_RATE_LIMIT" in
    on | off) ;;
    *) die "API_RATE_LIMIT must be on or off, got '$API_RATE_LIMIT'" ;;
esac
case "$NGINX_TRACING" in
    native | otel) ;;
    *) die "NGINX_TRACING must be native or otel, got '$NGINX_TRACING'" ;;
esac

# Log targets: files become absolute; stderr, /dev/..., syslog:..., off stay.
log_target() {
    case "$1" in
        stderr | off | syslog:* | /*) printf '%s\n' "$1" ;;
        *) abspath "$1" ;;
    esac
}
NGINX_ACCESS_LOG=$(log_target "$NGINX_ACCESS_LOG")
NGINX_ERROR_LOG=$(log_target "$NGINX_ERROR_LOG")

# Values are pasted into nginx directives: no whitespace (except in the
# listen parameters), quotes, semicolons or braces.
check_value() {
    name=$1 value=$2 spaces_ok=${3:-}
    [ -n "$value" ] || die "$name is empty"
    case "$value" in
        *[\;\{\}\"\'\\\$]*) die "$name contains a character nginx would misread: '$value'" ;;
    esac
    if [ -z "$spaces_ok" ]; then
        case "$value" in
            *[[:space:]]*) die "$name must not contain whitespace: '$value'" ;;
        esac
    fi
    # no newlines at all (sed replacement below is line based)
    [ "$(printf '%s' "$value" | wc -l)" -eq 0 ] || die "$name contains a newline"
}
check_value API_UPSTREAM "$API_UPSTREAM"
case "$API_UPSTREAM" in
    ,* | *, | *,,*) die "API_UPSTREAM has an empty entry: '$API_UPSTREAM'" ;;
esac
check_value NGINX_LISTEN "$NGINX_LISTEN" spaces
check_value WEB_ROOT "$WEB_ROOT"
check_value NGINX_RUN_DIR "$NGINX_RUN_DIR"
check_value NGINX_ACCESS_LOG "$NGINX_ACCESS_LOG"
check_value NGINX_ERROR_LOG "$NGINX_ERROR_LOG"
check_value NGINX_STATUS_LISTEN "$NGINX_STATUS_LISTEN" spaces
check_value NGINX_STATUS_ALLOW "$NGINX_STATUS_ALLOW"
# an IPv4/IPv6 address or CIDR, or `all`: one `allow` directive
case "$NGINX_STATUS_ALLOW" in
    all) ;;
    *[!0-9A-Fa-f.:/]*) die "NGINX_STATUS_ALLOW must be an address, a CIDR or all, got '$NGINX_STATUS_ALLOW'" ;;
esac

[ -f "$WEB_ROOT/index.html" ] || die "WEB_ROOT has no index.html: $WEB_ROOT"

# Directories nginx needs before it starts (it creates the temp dirs itself).
mkdir -p "$NGINX_RUN_DIR"
for log in "$NGINX_ACCESS_LOG" "$NGINX_ERROR_LOG"; do
    case "$log" in
        /dev/* | stderr | off | syslog:*) ;;
        *) mkdir -p "$(dirname "$log")" ;;
    esac
done

# sed replacement text: escape \ & and the | delimiter
sed_escape() {
    printf '%s\n' "$1" | sed -e 's/[\\&|]/\\&/g'
}

# The `server ${API_UPSTREAM};` line, once per address of the list, with
# the line's indentation (a sed replacement with \n line breaks).
upstream_lines=
rest=$API_UPSTREAM
while :; do
    one=${rest%%,*}
    upstream_lines="$upstream_lines${upstream_lines:+;\\n\\1server }$(sed_escape "$one")"
    [ "$one" = "$rest" ] && break
    rest=${rest#*,}
done

render() {
    sed \
        -e "s|^\\([[:space:]]*\\)server \${API_UPSTREAM};|\\1server $upstream_lines;|" \
        -e "s|\${API_UPSTREAM}|$(sed_escape "$API_UPSTREAM")|g" \
        -e "s|\${NGINX_LISTEN}|$(sed_escape "$NGINX_LISTEN")|g" \
        -e "s|\${WEB_ROOT}|$(sed_escape "$WEB_ROOT")|g" \
        -e "s|\${NGINX_RUN_DIR}|$(sed_escape "$NGINX_RUN_DIR")|g" \
        -e "s|\${NGINX_ACCESS_LOG}|$(sed_escape "$NGINX_ACCESS_LOG")|g" \
        -e "s|\${NGINX_ERROR_LOG}|$(sed_escape "$NGINX_ERROR_LOG")|g" \
        -e "s|\${API_RATE_LIMIT}|$(sed_escape "$API_RATE_LIMIT")|g" \
        -e "s|\${NGINX_STATUS_LISTEN}|$(sed_escape "$NGINX_STATUS_LISTEN")|g" \
        -e "s|\${NGINX_STATUS_ALLOW}|$(sed_escape "$NGINX_STATUS_ALLOW")|g" \
        -e "s|\${NGINX_TRACING}|$(sed_escape "$NGINX_TRACING")|g" \
        "$1"
}

# Every directory reachable and the file readable for "others"? (Root
# ignores permissions, so look at the mode bits; group membership and ACLs
# are not considered, which errs on the safe side.)
others_can_read() {
    target=$1
    if [ -d "$target" ]; then
        [ -n "$(find "$target" -maxdepth 0 -perm -0005 2>/dev/null)" ] || return 1
    else
        [ -n "$(find "$target" -maxdepth 0 -perm -0004 2>/dev/null)" ] || return 1
    fi
    dir=$(dirname "$target")
    while :; do
        [ -n "$(find "$dir" -maxdepth 0 -perm -0001 2>/dev/null)" ] || return 1
        [ "$dir" = / ] && return 0
        dir=$(dirname "$dir")
    done
}

user_line=
if [ "$(id -u)" -eq 0 ]; then
    if [ -z "${NGINX_USER:-}" ]; then
        if others_can_read "$WEB_ROOT/index.html" && others_can_read "$NGINX_RUN_DIR"; then
            NGINX_USER=nobody
        else
            NGINX_USER=root
            echo "render-nginx: warning: $WEB_ROOT or $NGINX_RUN_DIR is not readable by" \
                "other users; nginx workers will run as root (set NGINX_USER to override)" >&2
        fi
    fi
    check_value NGINX_USER "$NGINX_USER"
    if [ "$NGINX_USER" = nobody ] && ! getent group nobody >/dev/null 2>&1 &&
        getent group nogroup >/dev/null 2>&1; then
        user_line="user nobody nogroup;"
    else
        user_line="user $NGINX_USER;"
    fi
fi

# Fresh output: stale conf.d/*.conf files would still be included.
rm -f "$out_dir/nginx.conf" "$out_dir"/conf.d/*.conf "$out_dir"/snippets/*.conf

count=0
tmp_list="$out_dir/.templates.$$"
trap 'rm -f "$tmp_list"' EXIT
find "$template_dir" -type f -name '*.template' >"$tmp_list"
while IFS= read -r template; do
    rel=${template#"$template_dir/"}
    out="$out_dir/${rel%.template}"
    mkdir -p "$(dirname "$out")"
    if [ "$rel" = nginx.conf.template ] && [ -n "$user_line" ]; then
        { printf '%s\n' "$user_line"; render "$template"; } >"$out.tmp"
    else
        render "$template" >"$out.tmp"
    fi
    # shellcheck disable=SC2016 # a literal ${NAME}
    if grep -n '\${[A-Z_][A-Z0-9_]*}' "$out.tmp" >&2; then
        rm -f "$out.tmp"
        die "unrendered placeholder in $rel (see above)"
    fi
    mv "$out.tmp" "$out"
    count=$((count + 1))
done <"$tmp_list"

[ "$count" -gt 0 ] || die "no templates found in $template_dir"
[ -f "$out_dir/nginx.conf" ] || die "nginx.conf.template missing in $template_dir"

echo "render-nginx: $count files rendered into $out_dir" \
    "(upstream $API_UPSTREAM, listen $NGINX_LISTEN, status $NGINX_STATUS_LISTEN," \
    "rate limit $API_RATE_LIMIT, tracing $NGINX_TRACING)" >&2
