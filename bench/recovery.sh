#!/usr/bin/env bash
# walsafe recovery benchmark: wall time for a real PostgreSQL 15 to replay archived WAL from a
# base backup through restore_command = wal-fetch (with prefetch, and without) versus
# pgBackRest archive-get with archive-async, on the same WAL, the same base backup, the same disk.
#
# Usage: bench/recovery.sh [BIN_DIR]     (make bench-recovery builds first and passes build/release/bin)
# Environment:
#   RECOVERY_GB=N        GiB of WAL to replay: N * 64 segments of 16 MiB (default 3)
#   SCALE=N              pgbench -i -s of the throwaway cluster (default 50)
#   PREFETCH_PARALLEL=N  walsafe's parallel and pgBackRest's process-max (default 2)
#   ROUNDS=N             recoveries per tool, rotating which goes first (default 1)
#   KEEP=1               keep the temporary directory
#
# It prints figures and asserts nothing about them; it exits non-zero when the run itself broke
# (setup, a recovery that did not finish, or recoveries that disagree on the data).
#
# Method
#   1. A throwaway cluster (bench/lib.sh cluster_start: fsync off, archive_command copies each
#      segment) is loaded with pgbench -i -s SCALE; pg_basebackup -X none -c fast takes the base
#      backup; rounds of pgbench (TPC-B, 5 s) and an UPDATE of a tenth of pgbench_accounts run
#      until RECOVERY_GB GiB of WAL after the backup's start segment are archived (TPC-B alone
#      makes WAL too slowly on a small machine). The cluster is stopped.
#   2. Both repositories receive those segments (not timed; two at a time): wal-push with
#      parallel = 1, pgBackRest archive-push; both zstd level 3 and encrypted.
#   3. For each tool: a fresh copy of the base backup, recovery.signal, restore_command through
#      the tool, no recovery target (to the end of the archive, then promotion), archive_mode off,
#      the backup's own settings otherwise (fsync off, as on the primary). The time is from
#      pg_ctl start to pg_is_in_recovery() = false (polled every 0.1 s). Before each run: the
#      previous run's background fetcher has ended, sync, the repositories are read once (page
#      cache warm). After it: one query of pgbench totals, which must agree across all runs.
#      Rows: walsafe-prefetch (parallel = PREFETCH_PARALLEL, prefetch on), pgbackrest-async
#      (archive-async=y, archive-get-queue-max=1GiB, process-max = PREFETCH_PARALLEL),
#      walsafe-serial (parallel = 1: one fetch per call, no prefetch).

# shellcheck source-path=SCRIPTDIR
set -euo pipefail
export LC_ALL=C
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

BIN=$(cd "${1:-build/release/bin}" && pwd)
RECOVERY_GB=${RECOVERY_GB:-3}
SCALE=${SCALE:-50}
PF_PARALLEL=${PREFETCH_PARALLEL:-2}
ROUNDS=${ROUNDS:-1}

need_root pgBackRest
need_count RECOVERY_GB SCALE PF_PARALLEL ROUNDS
SEGMENTS=$((RECOVERY_GB * 64))
need_tools
command -v pgbackrest >/dev/null || die "pgbackrest is not installed (apt-get install -y pgbackrest)"
[ -x "$PGBIN/pg_basebackup" ] || die "missing $PGBIN/pg_basebackup"

bench_tmpdir walsafe-recovery
RESTORE=$DIR/restore
# The restored cluster, started with pg_start, is stopped with the first one (bench_cleanup), by
# the postmaster in its postmaster.pid, never by name.
trap 'bench_cleanup' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bench_layout pgbr/repo pgbr/log pgbr/lock pgbr/spool ws-spool

# ---- 1. base backup and WAL ---------------------------------------------------------------------
cluster_start "test ! -f $DIR/wal-all/%f && cp %p $DIR/wal-all/%f"
pgbench_load
note "pg_basebackup -X none"
as_pg "$PGBIN/pg_basebackup" -h "$SOCK" -p "$PORT" -X none -c fast -D "$DIR/base" >/dev/null
START_SEG=$(sed -n 's/^START WAL LOCATION: .*(file \([0-9A-F]*\))$/\1/p' "$DIR/base/backup_label")
[[ $START_SEG =~ ^[0-9A-F]{24}$ ]] || die "no start segment in the base backup's backup_label"
TLI=${START_SEG:0:8}
FIRST=$START_SEG
LAST=$(seg_after "$START_SEG" $((SEGMENTS - 1)))
note "pgbench (TPC-B) and bulk updates until $FIRST .. $LAST ($SEGMENTS segments) are archived"
deadline=$((SECONDS + 3600))
round=0
while :; do
    cur=$(psql_q -c "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
    [[ $cur > $LAST ]] && break
    [ $SECONDS -lt $deadline ] || die "WAL generation did not reach $LAST in an hour (at $cur)"
    as_pg "$PGBIN/pgbench" -h "$SOCK" -p "$PORT" -n -c 4 -j 2 -T 5 postgres >/dev/null 2>>"$DIR/pgbench-run.log" ||
        { cat "$DIR/pgbench-run.log" >&2; die "pgbench failed"; }
    psql_q -c "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 10 = $((round % 10))" >/dev/null
    round=$((round + 1))
done
while :; do
    archived=$(psql_q -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
    [[ ! $archived < $LAST ]] && break
    [ $SECONDS -lt $deadline ] || die "the archiver did not reach $LAST (at '$archived')"
    sleep 0.2
done

PGBR_CONF=$DIR/pgbr/pgbackrest.conf
cat >"$PGBR_CONF" <<CONF
[global]
repo1-path=$DIR/pgbr/repo
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$(openssl rand -base64 48 | tr -d '\n')
compress-type=zst
compress-level=3
log-level-console=warn
log-path=$DIR/pgbr/log
lock-path=$DIR/pgbr/lock
spool-path=$DIR/pgbr/spool

[bench]
pg1-path=$PGDATA_DIR
pg1-socket-path=$SOCK
pg1-port=$PORT
CONF
chown postgres: "$PGBR_CONF"
chmod 600 "$PGBR_CONF"
note "pgbackrest stanza-create"
as_pg pgbackrest --config="$PGBR_CONF" --stanza=bench stanza-create
note "stop PostgreSQL"
pg_stop "$PGDATA_DIR"

(umask 077 && openssl rand -hex 32 >"$DIR/ws.key")
for v in prefetch serial; do
    cat >"$DIR/walsafe-$v.conf" <<CONF
repo = '$DIR/ws-repo'
cluster = 'main'
encrypt_key_file = '$DIR/ws.key'
compress_level = 3
spool_dir = '$DIR/ws-spool'
parallel = $([ $v = prefetch ] && echo "$PF_PARALLEL" || echo 1)
CONF
    chmod 600 "$DIR/walsafe-$v.conf"
done
# pg_control for the push look-alike: wal-push checks .backup files against it (none here).
cp "$PGDATA_DIR/global/pg_control" "$DIR/push/global/pg_control"
: >"$DIR/segments"
for i in $(seq 0 $((SEGMENTS - 1))); do
    seg=$(seg_after "$FIRST" "$i")
    [ "$(stat -c %s "$DIR/wal-all/$seg" 2>/dev/null)" = 16777216 ] || die "segment $seg was not archived whole"
    mv "$DIR/wal-all/$seg" "$DIR/push/pg_wal/$seg"
    echo "$seg" >>"$DIR/segments"
done
rm -rf "$DIR/wal-all"
chown -R postgres: "$DIR"

# ---- 2. both repositories -------------------------------------------------------------------------
note "archive $SEGMENTS segments into both repositories (not timed, two at a time)"
# shellcheck disable=SC2016 # expanded by the postgres shell
as_pg bash -c 'cd "$1" && xargs -P 2 -I{} sh -c "WALSAFE_PARALLEL=1 \"$2\" --config \"$3\" pg_wal/{}" <"$4"' \
    push "$DIR/push" "$WAL_PUSH" "$DIR/walsafe-serial.conf" "$DIR/segments" || die "wal-push failed"
# shellcheck disable=SC2016
as_pg bash -c 'cd "$1" && xargs -P 2 -I{} pgbackrest --config="$2" --stanza=bench --pg1-path="$1" archive-push pg_wal/{} <"$3"' \
    push "$DIR/push" "$PGBR_CONF" "$DIR/segments" || die "pgbackrest archive-push failed"
rm -rf "$DIR/push/pg_wal" # the repositories hold the WAL now
WAL_BYTES=$((SEGMENTS * 16777216))

# ---- 3. recoveries ----------------------------------------------------------------------------------
declare -A CMD=(
    [walsafe-prefetch]="$WAL_FETCH --config $DIR/walsafe-prefetch.conf %f %p"
    [pgbackrest-async]="pgbackrest --config=$PGBR_CONF --stanza=bench --pg1-path=$RESTORE --archive-async=y --archive-get-queue-max=1GiB --process-max=$PF_PARALLEL archive-get %f %p"
    [walsafe-serial]="$WAL_FETCH --config $DIR/walsafe-serial.conf %f %p"
)
NAMES=(walsafe-prefetch pgbackrest-async walsafe-serial)
declare -A SECS=() RESTORED=() TOTALS=()
export WALSAFE_PREFETCH_IDLE_TIMEOUT=2

quiet() { # no background fetcher of the previous run left; pgBackRest's queue emptied
    local deadline=$((SECONDS + 120))
    while [ -n "$(find "$DIR/ws-spool" -mindepth 2 -maxdepth 2 -name 'prefetch-*' 2>/dev/null)" ] ||
        pgrep -u postgres -f -- "--config=$PGBR_CONF" >/dev/null; do
        [ $SECONDS -lt $deadline ] || die "a background fetcher of the previous run did not end"
        sleep 0.2
    done
    rm -rf "$DIR/pgbr/spool/archive"
}

recover() { # NAME ROUND
    local name=$1 r=$2 t0 t1 state
    quiet
    rm -rf "$RESTORE"
    cp -a "$DIR/base" "$RESTORE"
    rm -f "$RESTORE/postmaster.pid"
    cat >>"$RESTORE/postgresql.auto.conf" <<CONF
restore_command = '${CMD[$name]}'
archive_mode = off
CONF
    touch "$RESTORE/recovery.signal"
    chown -R postgres: "$RESTORE"
    sync
    warm_read "$DIR/ws-repo" "$DIR/pgbr/repo"
    note "recovery $r/$ROUNDS through $name ($RECOVERY_GB GiB of WAL)"
    t0=$(date +%s%N)
    pg_start --no-wait "$RESTORE" "$DIR/restore-$name.$r.log"
    while :; do
        state=$(psql_q -c "SELECT pg_is_in_recovery()" 2>/dev/null || true)
        [ "$state" = f ] && break
        if [ $((($(date +%s%N) - t0) / 1000000000)) -gt 3600 ]; then
            tail -20 "$DIR/restore-$name.$r.log" >&2
            die "recovery through $name did not finish within an hour"
        fi
        if ! pg_running "$RESTORE" && [ -z "$state" ]; then
            sleep 1
            pg_running "$RESTORE" || {
                tail -20 "$DIR/restore-$name.$r.log" >&2
                die "the server recovering through $name stopped"
            }
        fi
        sleep 0.1
    done
    t1=$(date +%s%N)
    SECS[$name.$r]=$(awk -v n=$((t1 - t0)) 'BEGIN {printf "%.1f", n / 1e9}')
    RESTORED[$name.$r]=$(grep -c 'restored log file ".*" from archive' "$DIR/restore-$name.$r.log" || true)
    TOTALS[$name.$r]=$(psql_q -c "SELECT (SELECT sum(abalance) FROM pgbench_accounts) || '/' ||
        (SELECT sum(bbalance) FROM pgbench_branches) || '/' || (SELECT count(*) FROM pgbench_history)")
    pg_stop "$RESTORE"
}

for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < ${#NAMES[@]}; i++)); do
        recover "${NAMES[(i + r - 1) % ${#NAMES[@]}]}" "$r"
    done
done
quiet

# ---- 4. figures -------------------------------------------------------------------------------------
BAD=0
ref=${TOTALS[walsafe-prefetch.1]}
printf '\nwalsafe recovery benchmark (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
print_machine "repositories, spools, base backup and the recovering cluster"
printf 'versions: %s (source tree %s at start); %s; %s\n' "$("$WAL_FETCH" --version)" "$BUILD_REV" \
    "$(pgbackrest version)" "$("$PGBIN/postgres" --version)"
printf 'data: pg_basebackup -X none of pgbench -s %s, then %d real 16 MiB WAL segments %s..%s (%.2f GiB, TPC-B + bulk UPDATEs)\n' \
    "$SCALE" "$SEGMENTS" "$FIRST" "$LAST" "$(awk -v b="$WAL_BYTES" 'BEGIN {print b / 1073741824}')"
printf 'settings: both zstd level 3 and encrypted; recovery to the end of the archive, then promotion;\n'
printf '          walsafe-prefetch: parallel = %s; pgbackrest-async: archive-async=y, archive-get-queue-max=1GiB,\n' "$PF_PARALLEL"
printf '          process-max=%s; walsafe-serial: parallel = 1; the server keeps the backup'"'"'s settings (fsync off)\n' "$PF_PARALLEL"
printf '\n%-17s %6s %10s %10s %9s  %s\n' run round "seconds" "WAL MiB/s" restored "pgbench totals"
for ((r = 1; r <= ROUNDS; r++)); do
    for name in "${NAMES[@]}"; do
        printf '%-17s %6s %10s %10s %9s  %s\n' "$name" "$r" "${SECS[$name.$r]}" \
            "$(awk -v b="$WAL_BYTES" -v s="${SECS[$name.$r]}" 'BEGIN {printf "%.0f", b / 1048576 / s}')" \
            "${RESTORED[$name.$r]}" "${TOTALS[$name.$r]}"
        [ "${TOTALS[$name.$r]}" = "$ref" ] || BAD=1
        [ "${RESTORED[$name.$r]}" -ge "$SEGMENTS" ] || BAD=1
    done
done
med() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {printf "%.1f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
declare -A MED=()
for name in "${NAMES[@]}"; do
    vals=()
    for ((r = 1; r <= ROUNDS; r++)); do vals+=("${SECS[$name.$r]}"); done
    MED[$name]=$(med "${vals[@]}")
done
printf '\nmedian seconds: walsafe-prefetch %s, pgbackrest-async %s, walsafe-serial %s\n' \
    "${MED[walsafe-prefetch]}" "${MED[pgbackrest-async]}" "${MED[walsafe-serial]}"
printf 'ratio of times (>1: walsafe faster): pgbackrest-async/walsafe-prefetch %s; walsafe-serial/walsafe-prefetch %s\n' \
    "$(ratio "${MED[pgbackrest-async]}" "${MED[walsafe-prefetch]}")" \
    "$(ratio "${MED[walsafe-serial]}" "${MED[walsafe-prefetch]}")"
for name in "${NAMES[@]}"; do
    n=$(cat "$DIR"/restore-"$name".*.log | grep -c -E 'wal-fetch.*(WARNING|ERROR)|ERROR:.*archive-get' || true)
    [ "$n" = 0 ] || printf 'note: %s lines of warnings/errors from %s in its server logs\n' "$n" "$name"
done
if [ "$BAD" != 0 ]; then
    echo "bench: the recoveries disagree on the data or did not restore every segment: the figures above are not valid" >&2
    exit 1
fi
