#!/usr/bin/env bash
# walsafe logical backup benchmark: `logicalbackup create` (pg_dump -Fc streamed through zstd,
# AES-256-GCM and into the repository) against the script users write today, pg_dump -Fc to a
# local file plus zstd, on the same pgbench database (issue 20, item 8).
#
# Usage: bench/logical.sh [BIN_DIR]     (default build/release/bin: run make first)
# Environment:
#   SCALE=N   pgbench -i scale of the database (default 70: about 1.1 GB)
#   RUNS=N    timed runs of each command; the table shows medians (default 3)
#   KEEP=1    keep the temporary directory (printed at the end) instead of removing it
#
# It prints figures and the issue's targets beside them; it asserts nothing about them. It exits
# non-zero only when the run itself broke (setup failed, or a command failed).
#
# Method
#   1. A throwaway cluster (bench/lib.sh cluster_start, autovacuum off), pgbench -i -s SCALE into
#      database postgres, a CHECKPOINT.
#   2. RUNS rounds, the commands taking turns going first, each after a sync, as postgres:
#        logicalbackup     logicalbackup create --db postgres: compress_level 3, encrypted, into a
#                          local repository (temp file, fsync, rename)
#        pg_dump|zstd      pg_dump -Fc (its default gzip inside) | zstd -3 -o FILE; sync FILE
#        pg_dump-Z0|zstd   pg_dump -Fc -Z0 | zstd -3 -o FILE; sync FILE (what logicalbackup runs)
#      Wall time by bash; peak RSS of logicalbackup's own process: VmHWM of /proc/PID/status,
#      sampled every 0.1 s (pg_dump, its child, is not counted: GNU time would report the larger
#      of the two); for the pipelines GNU time's %M (the largest process of the pipeline).
#   3. Medians over the RUNS runs; MB/s = bytes of the database (pg_database_size) / median wall
#      seconds, MB = 10^6 bytes.

# shellcheck source-path=SCRIPTDIR
set -euo pipefail
export LC_ALL=C
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

BIN=$(cd "${1:-build/release/bin}" && pwd)
SCALE=${SCALE:-70}
RUNS=${RUNS:-3}
ZSTD_LEVEL=3
TOOLS=(logical pgdump_zstd pgdump_z0_zstd)

need_root "logicalbackup and pg_dump"
need_count SCALE RUNS
need_tools wal-push wal-fetch logicalbackup
command -v zstd >/dev/null || die "zstd is missing (apt-get install -y zstd)"
command -v jq >/dev/null || die "jq is missing (apt-get install -y jq)"

bench_tmpdir walsafe-bench-logical
trap 'bench_cleanup' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bench_layout out
LB=$DIR/bin/logicalbackup
CONF=$DIR/ws.conf
openssl rand -hex 32 >"$DIR/ws.key"
printf '%s\n' "repo = '$DIR/ws-repo'" "encrypt_key_file = '$DIR/ws.key'" \
    "compress_level = $ZSTD_LEVEL" "spool_dir = '$DIR/out'" \
    "pg_conninfo = 'host=$SOCK port=$PORT user=postgres dbname=postgres'" >"$CONF"
chown postgres: "$DIR/ws.key" "$CONF"
chmod 600 "$DIR/ws.key" "$CONF"

cluster_start "/bin/true" "autovacuum = off"
pgbench_load
DB_BYTES=$(psql_q -c "SELECT pg_database_size('postgres')")

# timed NAME COMMAND: COMMAND (a shell line) as postgres after a sync; appends
# "wall_s - - max_rss_kb - exit_status" to $DIR/results/NAME (summary's format). For NAME logical
# the RSS is logicalbackup's VmHWM, else GNU time's %M.
timed() {
    local name=$1 res=$DIR/results/$1 rc=0 t0 t1 rss pid hwm
    sync
    t0=$EPOCHREALTIME
    if [ "$name" = logical ]; then
        as_pg sh -c "$2" >>"$res.out" 2>>"$res.err" &
        pid=$!
        rss=0
        while kill -0 "$pid" 2>/dev/null; do
            for p in $(pgrep -f "^$LB " || true); do
                hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
                [ "${hwm:-0}" -le "$rss" ] || rss=$hwm
            done
            sleep 0.1
        done
        wait "$pid" || rc=$?
    else
        as_pg "$TIME" -f %M -o "$res.time" sh -c "$2" >>"$res.out" 2>>"$res.err" || rc=$?
        rss=$(tail -n 1 "$res.time")
    fi
    t1=$EPOCHREALTIME
    echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}') 0 0 $rss - $rc" >>"$res"
    if [ $rc != 0 ]; then
        note "FAILED (exit $rc): $2"
        tail -n 5 "$res.err" | sed 's/^/    /' >&2
        BAD=1
    fi
}
PGDUMP="$PGBIN/pg_dump -h $SOCK -p $PORT -U postgres -Fc"
run_logical() { timed logical "$LB --config $CONF create --db postgres"; }
run_pgdump_zstd() {
    rm -f "$DIR/out/a.zst"
    timed pgdump_zstd "$PGDUMP postgres | zstd -q -$ZSTD_LEVEL -o $DIR/out/a.zst && sync $DIR/out/a.zst"
    STORED[pgdump_zstd]=$(stat -c %s "$DIR/out/a.zst")
}
run_pgdump_z0_zstd() {
    rm -f "$DIR/out/b.zst"
    timed pgdump_z0_zstd "$PGDUMP -Z0 postgres | zstd -q -$ZSTD_LEVEL -o $DIR/out/b.zst && sync $DIR/out/b.zst"
    STORED[pgdump_z0_zstd]=$(stat -c %s "$DIR/out/b.zst")
}
declare -A STORED=() MBS=()

note "database postgres: $DB_BYTES bytes"
for ((r = 0; r < RUNS; r++)); do
    for ((j = 0; j < ${#TOOLS[@]}; j++)); do
        t=${TOOLS[(r + j) % ${#TOOLS[@]}]}
        note "run $((r + 1))/$RUNS: $t"
        "run_$t"
    done
done
as_pg "$LB" --config "$CONF" list --json >"$DIR/list.json"
STORED[logical]=$(jq '.logical_backups[-1].stored_bytes' "$DIR/list.json")

# ---- figures ------------------------------------------------------------------------------------
print_machine "the repository and the pipelines' files"
printf 'data: pgbench -i -s %s, database postgres %d bytes; build %s; zstd level %s\n' \
    "$SCALE" "$DB_BYTES" "$BUILD_REV" "$ZSTD_LEVEL"
printf '\n%-18s %5s %7s %9s %9s %9s %11s %12s\n' command runs failed "wall s" "MB/s" "min s" \
    "peak RSS MB" "stored MB"
for t in "${TOOLS[@]}"; do
    read -r n failed wall lo _ _ _ rss <<<"$(summary "$t")"
    MBS[$t]=$(awk -v b="$DB_BYTES" -v w="$wall" 'BEGIN {printf "%.1f", w == "-" ? 0 : b / 1e6 / w}')
    printf '%-18s %5s %7s %9s %9s %9s %11s %12s\n' "$t" "$n" "$failed" "$wall" "${MBS[$t]}" "$lo" \
        "$(awk -v k="$rss" 'BEGIN {printf "%.1f", k / 1024}')" \
        "$(awk -v b="${STORED[$t]:-0}" 'BEGIN {printf "%.1f", b / 1e6}')"
done
printf '\ntargets (issue 20): logicalbackup >= 1.0x the throughput of pg_dump -Fc | zstd (%sx here;\n' \
    "$(ratio "${MBS[logical]}" "${MBS[pgdump_zstd]}")"
printf '%s -Z0 variant: %sx), peak RSS of its process <= 32 MB\n' "  the" \
    "$(ratio "${MBS[logical]}" "${MBS[pgdump_z0_zstd]}")"
stderr_of "${TOOLS[@]}"
bench_finish "a command failed"
