# s3.sh - a private S3-compatible server on 127.0.0.1 for S3 tests and benchmarks, plus the
# fault proxy that can sit in front of it (sourced).
#
#   . tests/integration/s3.sh
#   trap 's3_stop_all; fp_stop_all' EXIT     # or chain them into the caller's own EXIT trap
#   s3_start "$T/s3" walsafe-test || exit 1
#   repo = 's3://walsafe-test/prefix', s3_endpoint = '$S3_ENDPOINT', s3_uri_style = 'path',
#   s3_access_key_id = '$S3_ACCESS_KEY', s3_secret_access_key = '$S3_SECRET_KEY'
#   s3_aws s3 ls --recursive s3://walsafe-test     # the Debian awscli as an independent client
#   s3_object_file walsafe-test prefix/main/identity  # the file the server stores it in
#
# The server is @20minutes/s3rver (pinned in tests/s3/package.json; install it with
# `npm ci --prefix tests/s3`), a fork of s3rver that verifies SigV4 signatures (a wrong secret
# gets 403 SignatureDoesNotMatch). Credentials S3RVER / S3RVER. Known limits of the server: it
# answers ListMultipartUploads with NotImplemented and AbortMultipartUpload with 405, ignores
# Content-MD5, and a PUT cut mid-body leaves a truncated object under the final key.
#
# s3_start DIR [BUCKET] starts it with a fresh data directory DIR/data (DIR must not hold a
# running server), the bucket BUCKET (default walsafe-test) created, on a port the kernel
# picks (-p 0: no race with other tests), and returns once the log says "listening". It sets
# S3_DIR S3_DATA S3_PORT S3_PID S3_ENDPOINT S3_BUCKET S3_LOG S3_ACCESS_KEY S3_SECRET_KEY, or
# returns non-zero with the reason on stderr and nothing left running.
#
# fp_start DIR TARGET_PORT [MODE [N]] starts tests/tools/faultproxy on a free port in front of
# TARGET_PORT; its mode file is DIR/mode (fp_mode DIR MODE [N] switches it for the next
# connection). Sets FP_PORT FP_PID FP_DIR. FAULTPROXY names the binary (default: the one the
# Makefile builds next to BIN_DIR, i.e. $BIN_DIR/../tests/tools/faultproxy).
#
# s3_stop DIR, then s3_restart DIR: an outage; the server comes back on the same port with the
# same objects.
#
# Servers are stopped only by the PID recorded when they were started (and checked against
# /proc/PID/cmdline first); nothing is ever killed by name.

S3_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
S3_LAUNCHER=$S3_ROOT/tests/s3/launch.js
S3_ACCESS_KEY=S3RVER
S3_SECRET_KEY=S3RVER
S3_AWS=${S3_AWS:-/usr/bin/aws}
S3_STARTED=()
FP_STARTED=()
# DIR -> PID as started: a server is still stopped when DIR (with its pid file) is gone.
declare -gA S3_PIDS FP_PIDS

_s3_alive() { # PID: alive and not a zombie
    local stat
    [ -n "$1" ] && stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat:0:1}" != Z ]
}

_s3_is_ours() { # PID STRING: the process runs with STRING in its command line
    _s3_alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -F -- "$2"
}

_s3_wait_gone() { # PID: up to 5 s
    local i
    for i in $(seq 1 100); do
        _s3_alive "$1" || return 0
        sleep 0.05
    done
    return 1
}

# s3_check_deps: the server can be started (node >= 20 and the npm package installed).
s3_check_deps() {
    local v
    command -v node >/dev/null || { echo "node is not installed (scripts/install-deps.sh)" >&2; return 1; }
    v=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null)
    [ "${v:-0}" -ge 20 ] 2>/dev/null ||
        { echo "node $(node --version 2>/dev/null) is too old: @20minutes/s3rver needs node >= 20" >&2; return 1; }
    [ -f "$S3_ROOT/tests/s3/node_modules/@20minutes/s3rver/lib/cli.js" ] ||
        { echo "the S3 test server is not installed: run npm ci --prefix $S3_ROOT/tests/s3" >&2; return 1; }
}

# s3_start DIR [BUCKET]: see the top of this file.
s3_start() {
    local dir=$1 bucket=${2:-walsafe-test} pid port i
    s3_check_deps || return 1
    dir=$(mkdir -p "$dir" && cd "$dir" && pwd) || { echo "s3_start: cannot create $1" >&2; return 1; }
    if _s3_is_ours "$(cat "$dir/s3rver.pid" 2>/dev/null)" "$dir/data"; then
        echo "s3_start: a server already runs in $dir" >&2
        return 1
    fi
    rm -rf "$dir/data"
    : >"$dir/s3rver.log"
    # --openssl-legacy-provider: s3rver makes continuation tokens with DES, which node's OpenSSL 3
    # has only there; without it any listing longer than one page fails with an InternalError.
    node --openssl-legacy-provider "$S3_LAUNCHER" -d "$dir/data" -a 127.0.0.1 -p 0 \
        --configure-bucket "$bucket" \
        </dev/null >>"$dir/s3rver.log" 2>&1 &
    pid=$!
    disown "$pid" 2>/dev/null # no job notice when it is stopped
    echo "$pid" >"$dir/s3rver.pid"
    S3_PIDS[$dir]=$pid
    S3_STARTED+=("$dir")
    for i in $(seq 1 300); do
        port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$dir/s3rver.log" | head -1)
        if [ -n "$port" ]; then
            S3_DIR=$dir S3_DATA=$dir/data S3_PORT=$port S3_PID=$pid S3_BUCKET=$bucket
            S3_ENDPOINT=http://127.0.0.1:$port S3_LOG=$dir/s3rver.log
            return 0
        fi
        _s3_alive "$pid" || break
        sleep 0.05
    done
    echo "s3_start: the S3 server did not start in $dir; its log:" >&2
    tail -20 "$dir/s3rver.log" | sed 's/^/    /' >&2
    s3_stop "$dir"
    return 1
}

# s3_restart [DIR]: starts the server of DIR again after s3_stop (an outage): the same port, the
# same data directory (objects and buckets kept), registered and stopped like the first start;
# returns once the log says "listening" again. Sets S3_PID; non-zero (the reason on stderr and
# nothing left running) if it does not come up, e.g. when the port was taken meanwhile.
s3_restart() {
    local dir=${1:-$S3_DIR} bucket=${S3_BUCKET:-walsafe-test} port pid from i
    if _s3_is_ours "$(cat "$dir/s3rver.pid" 2>/dev/null)" "$dir/data"; then
        echo "s3_restart: the server in $dir still runs" >&2
        return 1
    fi
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$dir/s3rver.log" | head -1)
    [ -n "$port" ] && [ -d "$dir/data" ] ||
        { echo "s3_restart: no earlier start in $dir (no port in its log or no data)" >&2; return 1; }
    from=$(($(wc -l <"$dir/s3rver.log") + 1))
    node --openssl-legacy-provider "$S3_LAUNCHER" -d "$dir/data" -a 127.0.0.1 -p "$port" --configure-bucket "$bucket" \
        </dev/null >>"$dir/s3rver.log" 2>&1 &
    pid=$!
    disown "$pid" 2>/dev/null
    echo "$pid" >"$dir/s3rver.pid"
    S3_PIDS[$dir]=$pid
    for i in $(seq 1 300); do
        if tail -n +"$from" "$dir/s3rver.log" | grep -q "listening on 127\.0\.0\.1:$port"; then
            S3_PID=$pid
            return 0
        fi
        _s3_alive "$pid" || break
        sleep 0.05
    done
    echo "s3_restart: the S3 server did not start again on port $port in $dir; its log:" >&2
    tail -n +"$from" "$dir/s3rver.log" | tail -20 | sed 's/^/    /' >&2
    s3_stop "$dir"
    return 1
}

# s3_stop [DIR]: SIGTERM (then SIGKILL) the server started in DIR, by its recorded PID.
s3_stop() {
    local dir=${1:-$S3_DIR} pid
    pid=$(cat "$dir/s3rver.pid" 2>/dev/null) || pid=${S3_PIDS[$dir]:-}
    [ -n "$pid" ] || return 0
    if _s3_is_ours "$pid" "$dir/data"; then
        kill -TERM "$pid" 2>/dev/null
        _s3_wait_gone "$pid" || { kill -KILL "$pid" 2>/dev/null; _s3_wait_gone "$pid"; }
    fi
    rm -f "$dir/s3rver.pid"
    unset "S3_PIDS[$dir]"
}

s3_stop_all() {
    local d
    for d in "${S3_STARTED[@]+"${S3_STARTED[@]}"}"; do s3_stop "$d"; done
}

# s3_aws ARGS...: the Debian awscli against the server, with the test credentials and no user
# configuration (~/.aws is never read).
s3_aws() {
    env -u AWS_PROFILE -u AWS_SESSION_TOKEN AWS_CONFIG_FILE=/dev/null \
        AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true \
        AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
        AWS_DEFAULT_REGION=us-east-1 AWS_PAGER= \
        "$S3_AWS" --endpoint-url "$S3_ENDPOINT" "$@"
}

# s3_object_file BUCKET KEY: where the server keeps the object's bytes.
s3_object_file() { echo "$S3_DATA/$1/$2._S3rver_object"; }

# ---- fault proxy ----

FAULTPROXY=${FAULTPROXY:-${BIN_DIR:+$BIN_DIR/../tests/tools/faultproxy}}

# fp_start DIR TARGET_PORT [MODE [N]]: see the top of this file.
fp_start() {
    local dir=$1 target=$2 pid port i
    shift 2
    [ -n "$FAULTPROXY" ] && [ -x "$FAULTPROXY" ] ||
        { echo "fp_start: no faultproxy binary at '${FAULTPROXY}' (make <BUILD>/tests/tools/faultproxy)" >&2; return 1; }
    dir=$(mkdir -p "$dir" && cd "$dir" && pwd) || { echo "fp_start: cannot create $1" >&2; return 1; }
    echo "${*:-pass}" >"$dir/mode"
    : >"$dir/faultproxy.out"
    "$FAULTPROXY" -f "$dir/mode" 0 "$target" </dev/null >"$dir/faultproxy.out" 2>"$dir/faultproxy.log" &
    pid=$!
    disown "$pid" 2>/dev/null
    echo "$pid" >"$dir/faultproxy.pid"
    FP_PIDS[$dir]=$pid
    FP_STARTED+=("$dir")
    for i in $(seq 1 100); do
        port=$(sed -n "s/^faultproxy pid $pid port \([0-9][0-9]*\)$/\1/p" "$dir/faultproxy.out")
        if [ -n "$port" ]; then
            FP_DIR=$dir FP_PORT=$port FP_PID=$pid
            return 0
        fi
        _s3_alive "$pid" || break
        sleep 0.05
    done
    echo "fp_start: faultproxy did not start: $(cat "$dir/faultproxy.log")" >&2
    fp_stop "$dir"
    return 1
}

# fp_mode DIR MODE [N]: the mode for the proxy's next connection (atomic rename, so the proxy
# never reads a half-written file). The proxy reads the file for every connection it accepts;
# only its listener follows the mode on its own (closed under refuse, checked every 100 ms):
# returns once the listener is closed (refuse) or open (any other mode), as `ss` sees it (no
# probe connection, which would count as one of the proxy's connections); non-zero after 5 s.
fp_mode() {
    local dir=$1 port want i
    shift
    echo "$*" >"$dir/mode.new" && mv -f "$dir/mode.new" "$dir/mode"
    port=$(sed -n 's/^faultproxy pid [0-9]* port \([0-9][0-9]*\)$/\1/p' "$dir/faultproxy.out")
    [ -n "$port" ] || { sleep 0.3; return 0; }
    want=open
    [ "${1:-}" = refuse ] && want=closed
    for i in $(seq 1 250); do
        if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
            [ "$want" = open ] && return 0
        else
            [ "$want" = closed ] && return 0
        fi
        sleep 0.02
    done
    echo "fp_mode: the proxy in $dir did not get its listener $want for mode '$*' within 5 s" >&2
    return 1
}

fp_stop() {
    local dir=${1:-$FP_DIR} pid
    pid=$(cat "$dir/faultproxy.pid" 2>/dev/null) || pid=${FP_PIDS[$dir]:-}
    [ -n "$pid" ] || return 0
    if _s3_is_ours "$pid" "$dir/mode"; then
        kill -TERM "$pid" 2>/dev/null
        _s3_wait_gone "$pid" || { kill -KILL "$pid" 2>/dev/null; _s3_wait_gone "$pid"; }
    fi
    rm -f "$dir/faultproxy.pid"
    unset "FP_PIDS[$dir]"
}

fp_stop_all() {
    local d
    for d in "${FP_STARTED[@]+"${FP_STARTED[@]}"}"; do fp_stop "$d"; done
}
