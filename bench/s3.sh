#!/usr/bin/env bash
# walsafe S3 benchmark: wal-push / wal-fetch into a local S3-compatible server against the same
# programs into a local-directory repository, on the same real PostgreSQL 15 WAL segments.
#
# Usage: bench/s3.sh [BIN_DIR]         (default build/release/bin)
# Environment:
#   SEGMENTS=N   number of 16 MiB WAL segments to push and fetch (default 50)
#   SCALE=N      pgbench -i scale of the throwaway cluster (default 50)
#   MP_CALLS=N   calls of the multipart run (default 5)
#   KEEP=1       keep the temporary directory (printed at the end) instead of removing it
#   WALSAFE_*    reach wal-push/wal-fetch unchanged (e.g. WALSAFE_PARALLEL=1)
#
# It prints figures; it asserts nothing about them. It exits non-zero only when the run itself
# broke (setup failed, or a push/fetch call failed, which makes the figures meaningless).
#
# Method (that of bench/wal.sh, with the S3 server in place of pgBackRest)
#   1. A throwaway cluster copies each completed segment out with archive_command = 'cp';
#      pgbench -i -s SCALE, a CHECKPOINT, then pgbench (TPC-B) until SEGMENTS more segments are
#      complete: those are the data set.
#   2. The S3 server of the integration tests (tests/integration/s3.sh: @20minutes/s3rver, a
#      node process that verifies SigV4 and stores objects as plain files) runs on 127.0.0.1
#      with a fresh data directory on the same disk as the local repository. Both
#      repositories are encrypted, zstd level 3; only `repo` (and the s3_* keys) differ.
#   3. As the postgres user, each segment is pushed (then, in a second phase, fetched) once per
#      repository, one process per call via sh -c with cwd = a data-directory look-alike, the
#      two repositories interleaved segment by segment and taking turns going first. Every
#      call is timed on its own (bash $EPOCHREALTIME) and wrapped in /usr/bin/time -f %M for
#      its peak RSS. Before each phase: sync, and a read of its inputs (segments, and for
#      fetch both repositories' files) so both read page-cache-warm data.
#   4. segments/s = calls / sum of latencies; median and p90 per call in ms.
#   5. Multipart: MP_CALLS pushes of a segment with compress = none, s3_part_size = 5MB,
#      parallel = 2 (so a 16 MiB segment is 4 parts, 2 in flight); peak RSS against the bound
#      part_size x parallel + 32 MB.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "${1:-build/release/bin}" && pwd)
SEGMENTS=${SEGMENTS:-50}
SCALE=${SCALE:-50}
MP_CALLS=${MP_CALLS:-5}
PGBIN=/usr/lib/postgresql/15/bin
TIME=/usr/bin/time
MP_PART_MB=5
MP_PARALLEL=2

die() { echo "bench: $*" >&2; exit 1; }
note() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
as_pg() { runuser -u postgres -- "$@"; }

[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and the programs are run as the postgres user)"
[[ $SEGMENTS =~ ^[1-9][0-9]*$ ]] || die "SEGMENTS must be a positive integer (got '$SEGMENTS')"
[[ $SCALE =~ ^[1-9][0-9]*$ ]] || die "SCALE must be a positive integer (got '$SCALE')"
[[ $MP_CALLS =~ ^[1-9][0-9]*$ ]] || die "MP_CALLS must be a positive integer (got '$MP_CALLS')"
for f in "$BIN/wal-push" "$BIN/wal-fetch" "$PGBIN/initdb" "$PGBIN/pg_ctl" "$PGBIN/pgbench" "$PGBIN/psql"; do
    [ -x "$f" ] || die "missing $f"
done
[ -x "$TIME" ] || die "$TIME is missing (apt-get install -y time)"
command -v openssl >/dev/null || die "openssl is missing"
# shellcheck source=../tests/integration/s3.sh
. "$ROOT/tests/integration/s3.sh"
s3_check_deps || die "the S3 test server cannot run (see above)"

DIR=$(mktemp -d "${TMPDIR:-/tmp}/walsafe-bench-s3.XXXXXX")
PGDATA_DIR=$DIR/pgdata
SOCK=$DIR/sock
PORT=$((20000 + RANDOM % 20000)) # names the socket file only: listen_addresses = ''
BUCKET=walsafe-bench

cleanup() {
    local rc=$?
    s3_stop_all # by the PID it recorded; nothing is killed by name
    if [ -f "$PGDATA_DIR/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null 2>&1 ||
            as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "bench: kept $DIR" >&2
    else
        rm -rf "$DIR"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$SOCK" "$DIR/wal-all" "$DIR/push/global" "$DIR/push/pg_wal" "$DIR/fetch/global" \
    "$DIR/fetch/pg_wal" "$DIR/results" "$DIR/bin"
mkdir -m 700 "$DIR/ws-repo"
# A private copy of the binaries: a rebuild during the run must not change (or break) them.
cp "$BIN/wal-push" "$BIN/wal-fetch" "$DIR/bin/"
WAL_PUSH=$DIR/bin/wal-push
WAL_FETCH=$DIR/bin/wal-fetch
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
BUILD_REV=$(git --no-optional-locks -C "$BIN" describe --always --dirty 2>/dev/null || echo unknown)
chmod 700 "$DIR"
chown -R postgres: "$DIR"

psql_q() { as_pg "$PGBIN/psql" -X -h "$SOCK" -p "$PORT" -d postgres -Atq -v ON_ERROR_STOP=1 "$@"; }

# ---- 1. real WAL ----------------------------------------------------------------------------
note "initdb + start PostgreSQL 15 in $PGDATA_DIR"
as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -A trust -U postgres --no-sync >/dev/null
cat >>"$PGDATA_DIR/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$SOCK'
wal_level = replica
archive_mode = on
archive_command = 'test ! -f $DIR/wal-all/%f && cp %p $DIR/wal-all/%f'
# only the WAL matters: do not wait for the disk while generating it
fsync = off
synchronous_commit = off
max_wal_size = 1GB
CONF
as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$DIR/postgres.log" -w start >/dev/null

note "pgbench -i -s $SCALE"
as_pg "$PGBIN/pgbench" -h "$SOCK" -p "$PORT" -i -q -s "$SCALE" postgres >/dev/null 2>"$DIR/pgbench-init.log" ||
    { cat "$DIR/pgbench-init.log" >&2; die "pgbench -i failed"; }
psql_q -c "CHECKPOINT" >/dev/null
BOUNDARY=$(psql_q -c "SELECT pg_walfile_name(pg_switch_wal())")
TLI=${BOUNDARY:0:8}
seg_after() { # name of the segment N after segment $1 (same timeline, 16 MiB segments)
    local n=$((16#${1:8:8} * 256 + 16#${1:16:8} + $2))
    printf '%s%08X%08X' "$TLI" $((n / 256)) $((n % 256))
}
FIRST=$(seg_after "$BOUNDARY" 1)
LAST=$(seg_after "$BOUNDARY" "$SEGMENTS")

note "pgbench (TPC-B) until $FIRST .. $LAST are archived"
deadline=$((SECONDS + 1200))
while :; do
    cur=$(psql_q -c "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
    [[ $cur > $LAST ]] && break
    [ $SECONDS -lt $deadline ] || die "WAL generation did not reach $LAST in 20 minutes (at $cur)"
    as_pg "$PGBIN/pgbench" -h "$SOCK" -p "$PORT" -n -c 4 -j 2 -T 5 postgres >/dev/null 2>>"$DIR/pgbench-run.log" ||
        { cat "$DIR/pgbench-run.log" >&2; die "pgbench failed"; }
done
while :; do
    archived=$(psql_q -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
    [[ ! $archived < $LAST ]] && break
    [ $SECONDS -lt $deadline ] || die "the archiver did not reach $LAST (at '$archived')"
    sleep 0.2
done

note "stop PostgreSQL, stage $SEGMENTS segments"
as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null
for i in $(seq 1 "$SEGMENTS"); do
    seg=$(seg_after "$BOUNDARY" "$i")
    [ "$(stat -c %s "$DIR/wal-all/$seg" 2>/dev/null)" = 16777216 ] || die "segment $seg was not archived whole"
    mv "$DIR/wal-all/$seg" "$DIR/push/pg_wal/$seg"
    echo "$seg"
done >"$DIR/segments"
rm -rf "$DIR/wal-all"
for d in push fetch; do cp "$PGDATA_DIR/global/pg_control" "$DIR/$d/global/pg_control"; done
chown -R postgres: "$DIR"

# ---- 2. the S3 server and the configurations ---------------------------------------------------
note "start the S3 test server"
s3_start "$DIR/s3" "$BUCKET" || die "could not start the S3 test server"
S3_VERSION=$(node -p "require('$ROOT/tests/s3/node_modules/@20minutes/s3rver/package.json').version")

openssl rand -hex 32 >"$DIR/ws.key"
common="cluster = 'main'
encrypt_key_file = '$DIR/ws.key'
compress_level = 3"
s3_keys="s3_endpoint = '$S3_ENDPOINT'
s3_uri_style = 'path'
s3_access_key_id = '$S3_ACCESS_KEY'
s3_secret_access_key = '$S3_SECRET_KEY'"
printf "repo = '%s'\n%s\n" "$DIR/ws-repo" "$common" >"$DIR/local.conf"
printf "repo = 's3://%s/bench'\n%s\n%s\n" "$BUCKET" "$common" "$s3_keys" >"$DIR/s3.conf"
printf "repo = 's3://%s/multipart'\n%s\n%s\ncompress = 'none'\ns3_part_size = '%dMB'\nparallel = %d\n" \
    "$BUCKET" "$common" "$s3_keys" "$MP_PART_MB" "$MP_PARALLEL" >"$DIR/s3-mp.conf"
chown postgres: "$DIR/ws.key" "$DIR"/*.conf
chmod 600 "$DIR/ws.key" "$DIR"/*.conf

# ---- 3. timed phases --------------------------------------------------------------------------
# Args: CWD SEGMENT_LIST MODE(push|fetch) REFERENCE_DIR RESULT_DIR NAME COMMAND_PREFIX [NAME PREFIX]...
# Writes RESULT_DIR/NAME: "segment exit_status latency_us max_rss_kb identical(1/0/-)" per call.
timed_loop() {
    local cwd=$1 list=$2 mode=$3 ref=$4 res=$5 seg cmd t0 t1 rc rss same i=0 j k out
    local -a names=() prefixes=()
    shift 5
    while [ $# -ge 2 ]; do names+=("$1"); prefixes+=("$2"); shift 2; done
    cd "$cwd" || return 1
    for k in "${names[@]}"; do : >"$res/$k"; done
    while read -r seg; do
        for ((j = 0; j < ${#names[@]}; j++)); do
            k=$(((i + j) % ${#names[@]}))
            out=$res/${names[k]}
            if [ "$mode" = fetch ]; then
                rm -f pg_wal/RECOVERYXLOG # PostgreSQL unlinks it before calling restore_command
                cmd="${prefixes[k]} $seg pg_wal/RECOVERYXLOG"
            else
                cmd="${prefixes[k]} pg_wal/$seg"
            fi
            t0=$EPOCHREALTIME
            /usr/bin/time -f %M -o "$out.rss" sh -c "$cmd" 2>>"$out.err"
            rc=$?
            t1=$EPOCHREALTIME
            rss=$(tail -n 1 "$out.rss")
            same=-
            if [ "$mode" = fetch ]; then
                if [ $rc = 0 ] && cmp -s pg_wal/RECOVERYXLOG "$ref/$seg"; then same=1; else same=0; fi
            fi
            echo "$seg $rc $((${t1/./} - ${t0/./})) $rss $same" >>"$out"
        done
        i=$((i + 1))
    done <"$list"
    for k in "${names[@]}"; do rm -f "$res/$k.rss"; done
    rm -f pg_wal/RECOVERYXLOG
}

run_phase() { # CWD MODE SEGMENT_LIST NAME PREFIX [NAME PREFIX]...
    local cwd=$1 mode=$2 list=$3
    shift 3
    note "phase: $mode, $(($# / 2)) commands interleaved, $(wc -l <"$list") calls each"
    sync
    cat "$DIR"/push/pg_wal/* >/dev/null
    if [ "$mode" = fetch ]; then
        find "$DIR/ws-repo" "$S3_DATA" -type f -exec cat {} + >/dev/null
    fi
    as_pg bash -c "$(declare -f timed_loop); timed_loop \"\$@\"" timed_loop \
        "$cwd" "$list" "$mode" "$DIR/push/pg_wal" "$DIR/results" "$@"
}

run_phase "$DIR/push" push "$DIR/segments" \
    local-push "$WAL_PUSH --config $DIR/local.conf" \
    s3-push "$WAL_PUSH --config $DIR/s3.conf"
run_phase "$DIR/fetch" fetch "$DIR/segments" \
    local-fetch "$WAL_FETCH --config $DIR/local.conf" \
    s3-fetch "$WAL_FETCH --config $DIR/s3.conf"
head -n "$MP_CALLS" "$DIR/segments" >"$DIR/segments-mp"
run_phase "$DIR/push" push "$DIR/segments-mp" \
    s3-multipart-push "$WAL_PUSH --config $DIR/s3-mp.conf"

# ---- 4. figures -------------------------------------------------------------------------------
# stats FILE -> "calls failed segs_per_s median_ms p90_ms max_ms peak_rss_kb identical"
stats() {
    sort -n -k3,3 "$1" | awk '
        { lat[NR] = $3; sum += $3; if ($2 != 0) failed++; if ($4 != "-" && $4 > rss) rss = $4
          if ($5 == "1") same++; else if ($5 == "0") diff++ }
        END {
            n = NR
            med = (n % 2) ? lat[(n + 1) / 2] : (lat[n / 2] + lat[n / 2 + 1]) / 2
            k = int(0.9 * n); if (k < 0.9 * n) k++          # nearest rank
            ident = (same + diff) ? sprintf("%d/%d", same, same + diff) : "-"
            printf "%d %d %.2f %.1f %.1f %.1f %s %s\n", n, failed + 0, n / (sum / 1e6),
                   med / 1000, lat[k] / 1000, lat[n] / 1000, (rss ? rss : "-"), ident
        }'
}

printf '\n'
printf 'walsafe S3 benchmark (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
printf 'machine: %s CPUs, %s, %s, kernel %s\n' "$(nproc)" \
    "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
    "$(awk '/MemTotal/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo)" "$(uname -r)"
printf 'load average: %s at start, %s at end (other work on the machine skews the figures)\n' \
    "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'disk: %s (%s) for both repositories and the segments\n' "$(df --output=source "$DIR" | tail -1)" \
    "$(df --output=fstype "$DIR" | tail -1)"
printf 'versions: %s (source tree %s at start); S3 server @20minutes/s3rver %s on node %s; %s\n' \
    "$("$WAL_PUSH" --version)" "$BUILD_REV" "$S3_VERSION" "$(node --version)" "$("$PGBIN/postgres" --version)"
printf 'data: %d real 16 MiB WAL segments %s..%s (pgbench -s %s TPC-B after a checkpoint)\n' \
    "$SEGMENTS" "$FIRST" "$LAST" "$SCALE"
printf 'settings: both repositories encrypted, zstd level 3, walsafe parallel = %s, s3_part_size default;\n' \
    "${WALSAFE_PARALLEL:-default}"
printf '          one process per segment via sh -c, cwd = data directory, as postgres; serial, repositories interleaved;\n'
printf '          S3 over http://127.0.0.1 (SigV4 signed and verified); the server (node) shares the %s CPUs\n' "$(nproc)"
printf '\n%-19s %6s %6s %10s %11s %8s %8s %8s %12s %9s\n' phase calls failed segments/s \
    "1/median" "median ms" "p90 ms" "max ms" "peak RSS KB" identical
declare -A SPS MPS MED RSS
bad=0
for name in local-push s3-push local-fetch s3-fetch s3-multipart-push; do
    read -r n failed sps med p90 max rss ident <<<"$(stats "$DIR/results/$name")"
    SPS[$name]=$sps MED[$name]=$med RSS[$name]=$rss
    MPS[$name]=$(awk -v m="$med" 'BEGIN {printf "%.2f", 1000 / m}')
    label=$name
    [ "$name" = s3-multipart-push ] && label="s3-push multipart"
    printf '%-19s %6s %6s %10s %11s %8s %8s %8s %12s %9s\n' "$label" "$n" "$failed" "$sps" \
        "${MPS[$name]}" "$med" "$p90" "$max" "$rss" "$ident"
    [ "$failed" = 0 ] || bad=1
    [[ $ident != */* ]] || [ "${ident%/*}" = "${ident#*/}" ] || bad=1
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
printf '\nsegments/s = calls / summed latency; 1/median = segments/s at the median latency\n'
printf 'ratio s3/local (<1: S3 slower)   segments/s: push %s, fetch %s;   1/median: push %s, fetch %s\n' \
    "$(ratio "${SPS[s3-push]}" "${SPS[local-push]}")" "$(ratio "${SPS[s3-fetch]}" "${SPS[local-fetch]}")" \
    "$(ratio "${MPS[s3-push]}" "${MPS[local-push]}")" "$(ratio "${MPS[s3-fetch]}" "${MPS[local-fetch]}")"
printf 'peak RSS s3/local: push %s, fetch %s\n' \
    "$(ratio "${RSS[s3-push]}" "${RSS[local-push]}")" "$(ratio "${RSS[s3-fetch]}" "${RSS[local-fetch]}")"

bound_kb=$(((MP_PART_MB * MP_PARALLEL + 32) * 1024))
mp_parts=$(grep -a -F "multipart/main/wal/" "$S3_LOG" | grep -c -F "?partNumber=" || true)
printf '\nmultipart: %d pushes of a 16 MiB segment, compress = none, s3_part_size = %dMB, parallel = %d (%d part uploads seen by the server)\n' \
    "$MP_CALLS" "$MP_PART_MB" "$MP_PARALLEL" "$mp_parts"
printf '  peak RSS %s KB; bound part_size x parallel + 32 MB = %d KB (%s)\n' "${RSS[s3-multipart-push]}" \
    "$bound_kb" "$([ "${RSS[s3-multipart-push]}" -le "$bound_kb" ] && echo within || echo ABOVE)"

raw=$((SEGMENTS * 16777216))
local_bytes=$(find "$DIR/ws-repo" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
s3_bytes=$(find "$S3_DATA/$BUCKET/bench" -name '*._S3rver_object' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
printf '\nstored bytes (WAL in: %d bytes): local %d (%d files), S3 %d (%d objects)\n' "$raw" \
    "$local_bytes" "$(find "$DIR/ws-repo" -type f | wc -l)" "$s3_bytes" \
    "$(find "$S3_DATA/$BUCKET/bench" -name '*._S3rver_object' | wc -l)"

for name in local-push s3-push local-fetch s3-fetch s3-multipart-push; do
    f=$DIR/results/$name.err
    if [ -s "$f" ]; then
        printf '\nstderr of %s (%d lines, first 5):\n' "$name" "$(wc -l <"$f")"
        head -n 5 "$f" | sed 's/^/  /'
    fi
done
if [ $bad != 0 ]; then
    echo "bench: some calls failed or fetched different bytes: the figures above are not valid" >&2
    exit 1
fi
