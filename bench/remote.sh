#!/usr/bin/env bash
# walsafe remote base backup benchmark: `basebackup create` streamed over the replication protocol
# (no pgdata: BASE_BACKUP over TCP on 127.0.0.1, docs/design/remote.md) against a local create
# (pgdata set: pg_backup_start and a walk of the data directory) and against
# `pg_basebackup -Ft -X none --compress=client-zstd:3` over the same TCP connection, on the same
# PostgreSQL 15 data set (issue 18, item 7).
#
# Usage: bench/remote.sh [BIN_DIR]     (default build/release/bin: run make first)
# Environment:
#   SCALE=N   pgbench -i scale of the data set (default 70: about 1.1 GB)
#   RUNS=N    timed runs of each command; the table shows medians (default 3)
#   KEEP=1    keep the temporary directory (printed at the end) instead of removing it
#
# It prints figures and the issue's targets beside them; it asserts nothing about them. It exits
# non-zero only when the run itself broke (setup failed, or a backup failed).
#
# Method
#   1. A throwaway cluster (bench/lib.sh cluster_start: fsync off, autovacuum off here) listens on
#      its private socket and on 127.0.0.1 (pg_hba.conf: scram-sha-256 for TCP); the role
#      walsafe_repl has REPLICATION and nothing else, its password in a .pgpass file (PGPASSFILE).
#      archive_command is wal-push into the walsafe repository, for every row: each backup waits
#      until the WAL up to its stop position is archived (walsafe polls its repository;
#      pg_basebackup -X none makes the server wait for the archiver, checking once a second: up to
#      1 s of its wall time). pgbench -i -s SCALE, a
#      CHECKPOINT, then the archiver catches up.
#   2. RUNS rounds, the three commands taking turns going first, each after a sync, as postgres,
#      under GNU time (wall, user+sys CPU of the command and its children, peak RSS of its largest
#      process: on a central backup host, the backup host's memory):
#        remote         basebackup create --fast, configuration without pgdata, connecting as
#                       walsafe_repl to 127.0.0.1
#        local          basebackup create --fast, configuration with pgdata, as postgres on the
#                       socket
#        pg_basebackup  -h 127.0.0.1 -U walsafe_repl -Ft -X none --compress=client-zstd:3
#                       --checkpoint=fast -D DIR (DIR deleted after each run, not timed)
#      Both walsafe rows: zstd 3, encrypted, parallel 2, the same repository; every backup stays.
#   3. Warm page cache: one read of the data directory before the first round, no cache drop.
#   4. Medians over the RUNS runs; MB/s = bytes of the data directory without pg_wal / median wall
#      seconds, MB = 10^6 bytes.

# shellcheck source-path=SCRIPTDIR
set -euo pipefail
export LC_ALL=C
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

BIN=$(cd "${1:-build/release/bin}" && pwd)
SCALE=${SCALE:-70}
RUNS=${RUNS:-3}
PARALLEL=2
ZSTD_LEVEL=3
TOOLS=(remote local pg_basebackup)

need_root "basebackup and pg_basebackup"
need_count SCALE RUNS
need_tools wal-push wal-fetch basebackup
[ -x "$PGBIN/pg_basebackup" ] || die "missing $PGBIN/pg_basebackup"
command -v jq >/dev/null || die "jq is missing (apt-get install -y jq)"

bench_tmpdir walsafe-bench-remote
trap 'bench_cleanup' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bench_layout pgbb
BASEBACKUP=$DIR/bin/basebackup
PW="bench-$(openssl rand -hex 12)"
PGPASS=$DIR/pgpass

# ---- 1. the configurations and the cluster -----------------------------------------------------
openssl rand -hex 32 >"$DIR/ws.key"
common="repo = '$DIR/ws-repo'
encrypt_key_file = '$DIR/ws.key'
compress_level = $ZSTD_LEVEL
parallel = $PARALLEL
spool_dir = ''"
LOCAL_CONF=$DIR/local.conf
REMOTE_CONF=$DIR/remote.conf
printf '%s\npgdata = %s\npg_conninfo = %s\n' "$common" "'$PGDATA_DIR'" \
    "'host=$SOCK port=$PORT user=postgres dbname=postgres'" >"$LOCAL_CONF"
printf '%s\npg_conninfo = %s\n' "$common" \
    "'host=127.0.0.1 port=$PORT user=walsafe_repl dbname=postgres'" >"$REMOTE_CONF"
echo "127.0.0.1:$PORT:*:walsafe_repl:$PW" >"$PGPASS"
chown postgres: "$DIR/ws.key" "$LOCAL_CONF" "$REMOTE_CONF" "$PGPASS"
chmod 600 "$DIR/ws.key" "$LOCAL_CONF" "$REMOTE_CONF" "$PGPASS"

cluster_start "$WAL_PUSH --config $LOCAL_CONF %p" "autovacuum = off" \
    "listen_addresses = '127.0.0.1'" "password_encryption = 'scram-sha-256'"
cat >"$PGDATA_DIR/pg_hba.conf" <<'HBA'
local   all          postgres                   trust
local   replication  postgres                   trust
host    replication  walsafe_repl  127.0.0.1/32  scram-sha-256
host    all          walsafe_repl  127.0.0.1/32  scram-sha-256
HBA
psql_q -c "CREATE ROLE walsafe_repl LOGIN REPLICATION PASSWORD '$PW'" -c "SELECT pg_reload_conf()" >/dev/null
pgbench_load

note "wait for the archiver"
archiver_idle 600
DATA_BYTES=$(($(du -sb "$PGDATA_DIR" | cut -f1) - $(du -sb "$PGDATA_DIR/pg_wal" | cut -f1)))
DATA_FILES=$(find "$PGDATA_DIR" -path "$PGDATA_DIR/pg_wal" -prune -o -type f -print | wc -l)

# ---- 2. the runs -------------------------------------------------------------------------------
# timed (bench/lib.sh) as postgres, which keeps the environment: PGPASSFILE reaches the commands
export PGPASSFILE=$PGPASS
run_remote() { timed remote "$BASEBACKUP" --config "$REMOTE_CONF" create --fast || BAD=1; }
run_local() { timed local "$BASEBACKUP" --config "$LOCAL_CONF" create --fast || BAD=1; }
run_pg_basebackup() {
    local out=$DIR/pgbb/out
    rm -rf "$out"
    timed pg_basebackup "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PORT" -U walsafe_repl -w -Ft -X none \
        --compress=client-zstd:$ZSTD_LEVEL --checkpoint=fast -D "$out" || BAD=1
    [ ! -d "$out" ] || PGBB_BYTES=$(du -sb "$out" | cut -f1)
    rm -rf "$out"
}

note "warm-up read of the data directory ($DATA_BYTES bytes without pg_wal)"
warm_read "$PGDATA_DIR" 2>/dev/null || true
for ((r = 0; r < RUNS; r++)); do
    for ((j = 0; j < ${#TOOLS[@]}; j++)); do
        t=${TOOLS[(r + j) % ${#TOOLS[@]}]}
        note "run $((r + 1))/$RUNS: $t"
        "run_$t"
        archiver_idle 600
    done
done
# stored_bytes ROW: stored bytes of the last backup of ROW (remote or local), from list --json
stored_bytes() {
    local id
    id=$(grep -E '^[0-9]{8}T[0-9]{6}Z$' "$DIR/results/$1.out" 2>/dev/null | tail -n 1) || true
    (cd "$DIR" && as_pg "$BASEBACKUP" --config "$LOCAL_CONF" list --json) 2>/dev/null |
        jq -r --arg id "${id:-none}" '.backups[] | select(.id == $id) | .stored_bytes' 2>/dev/null | grep . || echo '?'
}
STORED_REMOTE=$(stored_bytes remote)
STORED_LOCAL=$(stored_bytes local)
pg_stop "$PGDATA_DIR"

# ---- 3. figures --------------------------------------------------------------------------------
declare -A MBS=() RSS_MB=()
printf '\nwalsafe remote base backup benchmark (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
print_machine "data directory, repository and pg_basebackup's output"
printf 'versions: %s (source tree %s at start); %s\n' "$("$BASEBACKUP" --version)" "$BUILD_REV" \
    "$("$PGBIN/postgres" --version)"
printf 'data: pgbench -i -s %s: %d bytes in %d files without pg_wal\n' "$SCALE" "$DATA_BYTES" "$DATA_FILES"
printf 'method: %d rounds, the commands taking turns going first; medians; sync before each; warm page\n' "$RUNS"
printf '        cache; all as postgres; archive_command wal-push for all; immediate checkpoint for all;\n'
printf '        remote and pg_basebackup over TCP 127.0.0.1 as walsafe_repl (REPLICATION only, scram-sha-256)\n'
printf '        pg_basebackup -X none: its server waits for the archiver, which it checks once a second;\n'
printf '        walsafe polls its repository (every 100 ms)\n'
printf 'settings: walsafe  zstd %d, encrypted, parallel %d; pg_basebackup -Ft -X none --compress=client-zstd:%d\n' \
    "$ZSTD_LEVEL" "$PARALLEL" "$ZSTD_LEVEL"
printf '\n%-14s %4s %6s %8s %13s %8s %8s %10s %8s\n' command runs failed "wall s" "wall min..max" "MB/s" "CPU s" \
    "server CPU" "RSS MB"
for t in "${TOOLS[@]}"; do
    read -r runs failed wall lo hi cpu scpu rss <<<"$(summary "$t")"
    if [ "$wall" = - ]; then
        printf '%-14s %4s %6s %8s %13s %8s %8s %10s %8s\n' "$t" "$runs" "$failed" - - - - - -
        continue
    fi
    MBS[$t]=$(awk -v b="$DATA_BYTES" -v w="$wall" 'BEGIN {printf "%.1f", b / 1e6 / w}')
    RSS_MB[$t]=$(awk -v k="$rss" 'BEGIN {printf "%.1f", k / 1024}')
    printf '%-14s %4s %6s %8s %13s %8s %8s %10s %8s\n' "$t" "$runs" "$failed" "$wall" "$lo..$hi" \
        "${MBS[$t]}" "$cpu" "$scpu" "${RSS_MB[$t]}"
done
printf '\nmedians; CPU s: user+sys of the command and its children; server CPU: the cluster'"'"'s processes\n'
printf '(the walsender, the archiver and its wal-push) during the run; RSS MB: peak of\n'
printf 'the largest process; MB/s = data bytes / wall\n'
printf '\nremote against the targets of issue 18 (figures, not a verdict):\n'
if [ -n "${MBS[remote]:-}" ]; then
    [ -z "${MBS[local]:-}" ] ||
        printf '  throughput remote / local          %s  (target >= 0.8)\n' "$(ratio "${MBS[remote]}" "${MBS[local]}")"
    [ -z "${MBS[pg_basebackup]:-}" ] ||
        printf '  throughput remote / pg_basebackup  %s  (target >= 1.5)\n' "$(ratio "${MBS[remote]}" "${MBS[pg_basebackup]}")"
    printf '  peak RSS of remote create          %s MB  (target <= 64)\n' "${RSS_MB[remote]}"
fi
printf '\nstored bytes of one backup (data: %d bytes): remote %s, local %s (list --json stored_bytes),\n' \
    "$DATA_BYTES" "$STORED_REMOTE" "$STORED_LOCAL"
printf '  pg_basebackup %s (base.tar.zst and backup_manifest)\n' "${PGBB_BYTES:-?}"
stderr_of "${TOOLS[@]}"
bench_finish "some runs failed (see above)"
