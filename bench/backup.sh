#!/usr/bin/env bash
# walsafe base backup benchmark: basebackup create / restore against pgBackRest backup / restore
# and (backup only) pg_basebackup, on the same PostgreSQL 15 data directory, on the same disk.
# MODE=incr: incremental backups and delta restores against pgBackRest's (Method, incremental
# mode, at the end of this comment).
#
# Usage: bench/backup.sh [BIN_DIR]     (default build/release/bin: run make first)
# Environment:
#   MODE=full|incr  full backups and restores (default), or incremental backups and delta
#                restores (TOOLS then a subset of "walsafe pgbackrest", default both)
#   TX=N         MODE=incr: pgbench transactions between a full backup and its incremental
#                (default: data bytes / 8 KiB / 200, about 1 % of the pages: a pgbench
#                transaction changes about two of them)
#   SCALE=N      pgbench -i scale of the data set (default 70: about 1.1 GB)
#   RUNS=N       timed runs of each command; the table shows medians (default 3)
#   TOOLS=LIST   the tools to run, a subset of "walsafe pgbackrest pg_basebackup walsafe-s3
#                walsafe-sftp" (default: the first three); ratios are printed only between tools
#                that ran. walsafe-s3 is walsafe with an s3:// repository on the npm S3 test server
#                (tests/integration/s3.sh) and walsafe-sftp with an sftp:// repository on a
#                private sshd (tests/integration/sshd.sh), both on 127.0.0.1 with their data on
#                the same disk; they are compared with walsafe's local rows (pgBackRest insists on
#                TLS for S3, which the test server does not offer)
#   CHECKSUMS=1  initdb --data-checksums (default off, as initdb): every tool then also verifies
#                the page checksums
#   KEEP=1       keep the temporary directory (printed at the end) instead of removing it
#   WALSAFE_*    reach wal-push and basebackup unchanged
#
# It prints figures; it asserts nothing about them. It exits non-zero only when the run itself
# broke (setup failed, or a backup or restore failed, which makes the figures meaningless).
#
# Method
#   1. A throwaway cluster (private socket dir, listen_addresses = '', autovacuum off so the
#      data directory does not change between runs) is loaded with pgbench -i -s SCALE (which
#      ends with a VACUUM) while archive_command = 'wal-push %p && pgbackrest archive-push %p'
#      fills both repositories; a CHECKPOINT follows, then the archiver catches up.
#   2. Each backup runs with its own tool's archive_command, the way a site that uses that tool
#      alone runs: wal-push for walsafe, pgbackrest archive-push for pgBackRest, and the
#      documentation's 'test ! -f DIR/%f && cp %p DIR/%f' for pg_basebackup -X none (ALTER
#      SYSTEM + reload before the run, not timed, once the archiver is idle). All three wait
#      until the WAL up to the backup's stop segment is archived (walsafe and pgBackRest poll
#      their repository, pg_backup_stop polls the archiver once per second for pg_basebackup),
#      so each row pays its own archiving and none pays another tool's. (One archive_command
#      pushing to both would make the tool whose push runs second wait for both; archive-check
#      = n would let pgBackRest alone skip the wait.)
#   3. Both repositories are local directories on the disk of the data directory; both encrypt
#      and compress with zstd level 3 using 2 processes/threads. Every command runs as the
#      postgres user with cwd = the run's directory, under GNU time (wall, user+sys CPU of the
#      command and its children, peak RSS of its largest process). "server CPU" is the CPU time
#      the PostgreSQL processes used from the start of the command until the archiver is idle
#      after it (backends, walsender, checkpointer, archiver and its archive_command), from
#      /proc: pg_basebackup --compress=server-zstd compresses there, and archiving runs there.
#      All backups request an immediate checkpoint (walsafe --fast, pgBackRest start-fast,
#      pg_basebackup --checkpoint=fast); on the idle cluster it has nothing to write anyway.
#   4. No page-cache drop: one warm-up read of every file of the data directory before the
#      backups (and of both repositories before the restores) gives every tool a warm cache.
#      Before each timed command: sync, so one command's writeback does not land in the next.
#   5. Backups: RUNS rounds, each tool once per round, taking turns going first. pg_basebackup's
#      output is deleted after each run (not timed); the other backups stay in their
#      repositories. Then the cluster is stopped.
#   6. Restores of the newest backup: RUNS rounds, walsafe and pgBackRest taking turns going
#      first, each into a new empty directory (not started; deleted after the run, not timed).
#      After the last round base/ of each restored directory is compared with the source's.
#   7. Per column the median of the RUNS runs; MB/s = bytes of the data directory without
#      pg_wal (what every tool copies) / median wall seconds, MB = 10^6 bytes.
#
# Method, incremental mode (MODE=incr): steps 1 to 4 as above (the cluster idle between rounds),
# then RUNS rounds of: a full backup with each tool (taking turns going first), pgbench -n -c 2
# running TX transactions in all (archived into both repositories), an incremental backup with
# each tool (walsafe create --type incr: block level; pgBackRest --type=incr: file level, 2.45
# has no block incremental). The cluster is stopped. Then per round, after a restore of the
# round's full walsafe backup into "prev" (not timed), each tool in turn: a timed restore of its
# incremental into an empty directory, and a timed delta restore of it (walsafe restore --delta,
# pgBackRest restore --delta, which compares checksums) onto a copy of prev (the copy not
# timed): the previous state, as after a bad deploy. Figures: medians as in 7; stored bytes
# (walsafe list --json stored_bytes, pgBackRest info's repository delta), incremental/full
# ratios of bytes and wall time, restore/delta wall time, peak RSS; the blocks of base/ that
# differ between the last round's full and incremental (python3); base/ of each delta restore
# compared with the restore into an empty directory (a difference fails the run).

# shellcheck source-path=SCRIPTDIR
set -euo pipefail
export LC_ALL=C
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

BIN=$(cd "${1:-build/release/bin}" && pwd)
SCALE=${SCALE:-70}
RUNS=${RUNS:-3}
MODE=${MODE:-full}
case $MODE in
full) TOOLS=${TOOLS:-walsafe pgbackrest pg_basebackup} ;;
incr) TOOLS=${TOOLS:-walsafe pgbackrest} ;;
*) die "MODE must be full or incr (got '$MODE')" ;;
esac
NET_TOOLS=() # walsafe-s3, walsafe-sftp: those of TOOLS
INCR_TOOLS=() # MODE=incr: walsafe, pgbackrest: those of TOOLS
CHECKSUMS=${CHECKSUMS:-0}
PARALLEL=2   # walsafe parallel, pgBackRest process-max
ZSTD_LEVEL=3 # all three tools

need_root "the backup tools"
need_count SCALE RUNS
for t in $TOOLS; do
    [[ $t =~ ^(walsafe|pgbackrest|pg_basebackup|walsafe-s3|walsafe-sftp)$ ]] ||
        die "TOOLS: unknown tool '$t' (walsafe pgbackrest pg_basebackup walsafe-s3 walsafe-sftp)"
    [[ $t != walsafe-* ]] || NET_TOOLS+=("$t")
    [ "$MODE" = full ] || [[ $t =~ ^(walsafe|pgbackrest)$ ]] || die "TOOLS: MODE=incr runs walsafe and pgbackrest only (got '$t')"
    [ "$MODE" = full ] || INCR_TOOLS+=("$t")
done
[ -n "${TOOLS// /}" ] || die "TOOLS is empty"
[[ $CHECKSUMS =~ ^[01]$ ]] || die "CHECKSUMS must be 0 or 1 (got '$CHECKSUMS')"
# has TOOL: whether TOOL is to run.
has() { [[ " $TOOLS " == *" $1 "* ]]; }
# wal-fetch: restore writes its path (next to basebackup) into restore_command
if has walsafe || [ ${#NET_TOOLS[@]} -gt 0 ]; then
    need_tools wal-push wal-fetch basebackup
else
    need_tools wal-push
fi
if has walsafe-s3; then
    # shellcheck source=../tests/integration/s3.sh
    . "$(cd "$(dirname "$0")/.." && pwd)/tests/integration/s3.sh"
    s3_check_deps || die "the S3 test server cannot run (see above)"
fi
if has walsafe-sftp; then
    [ -x /usr/sbin/sshd ] || die "walsafe-sftp needs openssh-server (/usr/sbin/sshd)"
    # shellcheck source=../tests/integration/sshd.sh
    . "$(cd "$(dirname "$0")/.." && pwd)/tests/integration/sshd.sh"
fi
if has pgbackrest; then
    command -v pgbackrest >/dev/null || die "pgbackrest is not installed (apt-get install -y pgbackrest)"
fi
[ -x "$PGBIN/pg_basebackup" ] || die "missing $PGBIN/pg_basebackup"
command -v jq >/dev/null || die "jq is missing (apt-get install -y jq)"
INITDB_ARGS= # for cluster_start
[ "$CHECKSUMS" = 0 ] || INITDB_ARGS=--data-checksums

bench_tmpdir walsafe-bench-backup
# PostgreSQL is stopped by the postmaster named in its postmaster.pid, the S3 test server and the
# sshd (walsafe-s3, walsafe-sftp) by the PIDs they recorded; nothing is killed by name.
trap 'bench_cleanup sshd_stop_all s3_stop_all' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bench_layout pgbr/repo pgbr/log pgbr/lock pgbr/spool pgbb pgbb-wal restore
BASEBACKUP=$DIR/bin/basebackup

# ---- 1. the configurations and the cluster -----------------------------------------------------
WS_CONF=$DIR/walsafe.conf
openssl rand -hex 32 >"$DIR/ws.key"
cat >"$WS_CONF" <<CONF
repo = '$DIR/ws-repo'
encrypt_key_file = '$DIR/ws.key'
compress_level = $ZSTD_LEVEL
parallel = $PARALLEL
pgdata = '$PGDATA_DIR'
pg_conninfo = 'host=$SOCK port=$PORT user=postgres dbname=postgres'
spool_dir = ''
CONF

PGBR_CONF=$DIR/pgbr/pgbackrest.conf
PGBR=(pgbackrest --config="$PGBR_CONF" --stanza=bench)
cat >"$PGBR_CONF" <<CONF
[global]
repo1-path=$DIR/pgbr/repo
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$(openssl rand -base64 48 | tr -d '\n')
# the backups of all runs stay (restore takes the newest): no expiry
repo1-retention-full=9999999
compress-type=zst
compress-level=$ZSTD_LEVEL
start-fast=y
archive-async=n
log-level-console=warn
log-path=$DIR/pgbr/log
lock-path=$DIR/pgbr/lock
spool-path=$DIR/pgbr/spool

[bench]
pg1-path=$PGDATA_DIR
pg1-socket-path=$SOCK
pg1-port=$PORT
CONF
chown postgres: "$DIR/ws.key" "$WS_CONF" "$PGBR_CONF"
chmod 600 "$DIR/ws.key" "$WS_CONF" "$PGBR_CONF"

# walsafe-s3 / walsafe-sftp: walsafe's configuration with a network repository
declare -A NET_CONF=() NET_FILES=() # tool -> its configuration / where its objects are files
if has walsafe-s3; then
    note "start the S3 test server on 127.0.0.1"
    s3_start "$DIR/s3" walsafe-bench >/dev/null || die "could not start the S3 test server"
    NET_CONF[walsafe-s3]=$DIR/walsafe-s3.conf
    NET_FILES[walsafe-s3]=$S3_DATA/walsafe-bench
    {
        grep -v '^repo = ' "$WS_CONF"
        printf "repo = 's3://walsafe-bench/bb'\ns3_endpoint = '%s'\ns3_uri_style = 'path'\n" "$S3_ENDPOINT"
        printf "s3_access_key_id = '%s'\ns3_secret_access_key = '%s'\n" "$S3_ACCESS_KEY" "$S3_SECRET_KEY"
    } >"${NET_CONF[walsafe-s3]}"
fi
if has walsafe-sftp; then
    note "start a private sshd on 127.0.0.1"
    SSHD_USERS=root SSHD_KEY_OWNER=postgres sshd_start "$DIR/sshd" || die "could not start sshd"
    mkdir -m 700 "$DIR/ws-sftp-repo"
    NET_CONF[walsafe-sftp]=$DIR/walsafe-sftp.conf
    NET_FILES[walsafe-sftp]=$DIR/ws-sftp-repo
    {
        grep -v '^repo = ' "$WS_CONF"
        printf "repo = 'sftp://root@127.0.0.1:%s%s'\n" "$SSHD_PORT" "$DIR/ws-sftp-repo"
        printf "sftp_identity_file = '%s'\nsftp_known_hosts = '%s'\n" "$SSHD_CLIENT_KEY" "$SSHD_KNOWN_HOSTS"
    } >"${NET_CONF[walsafe-sftp]}"
fi
for t in "${NET_TOOLS[@]}"; do
    chown postgres: "${NET_CONF[$t]}"
    chmod 600 "${NET_CONF[$t]}"
done

# each tool's archive_command (see Method 2); the load pushes into both repositories
declare -A ARCHIVE_CMD=(
    [walsafe]="$WAL_PUSH --config $WS_CONF %p"
    [pgbackrest]="${PGBR[*]} archive-push %p"
    [pg_basebackup]="test ! -f $DIR/pgbb-wal/%f && cp %p $DIR/pgbb-wal/%f"
)
for t in "${NET_TOOLS[@]}"; do ARCHIVE_CMD[$t]="$WAL_PUSH --config ${NET_CONF[$t]} %p"; done
load_archive=${ARCHIVE_CMD[walsafe]}
for t in "${NET_TOOLS[@]}"; do load_archive+=" && ${ARCHIVE_CMD[$t]}"; done
if has pgbackrest; then load_archive+=" && ${ARCHIVE_CMD[pgbackrest]}"; fi
cluster_start "$load_archive" "autovacuum = off"
if has pgbackrest; then
    # before the first segment is complete, so that archive-push finds the stanza
    note "pgbackrest stanza-create"
    (cd "$DIR" && as_pg "${PGBR[@]}" stanza-create)
fi
pgbench_load

note "wait for the archiver"
archiver_idle 600

# data bytes: the data directory without pg_wal, which none of the tools copies
DATA_BYTES=$(($(du -sb "$PGDATA_DIR" | cut -f1) - $(du -sb "$PGDATA_DIR/pg_wal" | cut -f1)))
DATA_FILES=$(find "$PGDATA_DIR" -path "$PGDATA_DIR/pg_wal" -prune -o -type f -print | wc -l)
WAL_BYTES=$(du -sb "$PGDATA_DIR/pg_wal" | cut -f1)

# ---- 2. measuring ------------------------------------------------------------------------------

# stored bytes per tool, from the last backup of each
declare -A STORED=()

# use_archive TOOL: once the archiver is idle, archive_command = TOOL's (ALTER SYSTEM, reload).
use_archive() {
    local cmd=${ARCHIVE_CMD[$1]}
    archiver_idle 120
    psql_q -c "ALTER SYSTEM SET archive_command = '${cmd//\'/\'\'}'" -c "SELECT pg_reload_conf()" >/dev/null
    sleep 0.5 # the archiver has the new setting well before the next segment is complete
}

backup_walsafe() {
    use_archive walsafe
    timed walsafe-backup "$BASEBACKUP" --config "$WS_CONF" create --fast --parallel "$PARALLEL" || return 0
}
backup_net() { # TOOL
    use_archive "$1"
    timed "$1-backup" "$BASEBACKUP" --config "${NET_CONF[$1]}" create --fast --parallel "$PARALLEL" || return 0
}
backup_walsafe-s3() { backup_net walsafe-s3; }
backup_walsafe-sftp() { backup_net walsafe-sftp; }
backup_pgbackrest() {
    use_archive pgbackrest
    timed pgbackrest-backup "${PGBR[@]}" --type=full --process-max="$PARALLEL" backup || return 0
}
backup_pg_basebackup() {
    local out
    out=$DIR/pgbb/run-$(runs_of pg_basebackup)
    use_archive pg_basebackup
    timed pg_basebackup "$PGBIN/pg_basebackup" -h "$SOCK" -p "$PORT" -U postgres -Ft \
        --compress=server-zstd:$ZSTD_LEVEL -X none --checkpoint=fast -D "$out" || true
    if [ -d "$out" ]; then
        STORED[pg_basebackup]=$(du -sb "$out" | cut -f1)
        rm -rf "$out"
    fi
}

# restore_into TOOL NAME COMMAND... : timed restore into a new empty directory (COMMAND's words
# "@DEST@" become its path); keeps the directory of the last run for the comparison.
restore_into() {
    local tool=$1 name=$2 dest
    shift 2
    dest=$DIR/restore/$tool
    rm -rf "$dest"
    mkdir -m 700 "$dest"
    chown postgres: "$dest"
    timed "$name" "${@//@DEST@/$dest}" || true
}
restore_walsafe() {
    restore_into walsafe walsafe-restore "$BASEBACKUP" --config "$WS_CONF" restore --pgdata @DEST@ --parallel "$PARALLEL"
}
restore_walsafe-s3() {
    restore_into walsafe-s3 walsafe-s3-restore "$BASEBACKUP" --config "${NET_CONF[walsafe-s3]}" restore --pgdata @DEST@ --parallel "$PARALLEL"
}
restore_walsafe-sftp() {
    restore_into walsafe-sftp walsafe-sftp-restore "$BASEBACKUP" --config "${NET_CONF[walsafe-sftp]}" restore --pgdata @DEST@ --parallel "$PARALLEL"
}
restore_pgbackrest() {
    restore_into pgbackrest pgbackrest-restore "${PGBR[@]}" --pg1-path=@DEST@ --process-max="$PARALLEL" restore
}

# rounds PREFIX RUNS TOOL... : RUNS rounds of PREFIX_TOOL for each TOOL, taking turns going first.
rounds() {
    local prefix=$1 runs=$2 r j n
    shift 2
    n=$#
    local -a tools=("$@")
    for ((r = 0; r < runs; r++)); do
        for ((j = 0; j < n; j++)); do
            note "$prefix: run $((r + 1))/$runs: ${tools[(r + j) % n]}"
            "${prefix}_${tools[(r + j) % n]}"
        done
    done
}

# ---- figures: the helpers both modes print with ----------------------------------------------
declare -A WALL=() TOTAL=() PEAK=() MBS=()
# row LABEL NAME: a line of the table; sets WALL, TOTAL (CPU + server CPU), PEAK and MBS for NAME.
row() {
    local label=$1 name=$2 runs failed wall lo hi cpu srv rss
    read -r runs failed wall lo hi cpu srv rss <<<"$(summary "$name")"
    [ "$failed" = 0 ] || BAD=1
    if [ "$wall" = - ]; then
        printf '%-20s %4s %6s %8s %13s %8s %8s %10s %8s\n' "$label" "$runs" "$failed" - - - - - -
        return
    fi
    WALL[$name]=$wall PEAK[$name]=$rss
    MBS[$name]=$(awk -v b="$DATA_BYTES" -v w="$wall" 'BEGIN {printf "%.1f", b / 1e6 / w}')
    TOTAL[$name]=$(awk -v c="$cpu" -v s="$srv" 'BEGIN {printf "%.2f", c + (s == "-" ? 0 : s)}')
    printf '%-20s %4s %6s %8s %13s %8s %8s %10s %8.1f\n' "$label" "$runs" "$failed" "$wall" "$lo..$hi" \
        "${MBS[$name]}" "$cpu" "$srv" "$(awk -v k="$rss" 'BEGIN {print k / 1024}')"
}

# ratios WHAT A B: "speed x, CPU x, peak RSS x" of A against B, or "-" without figures for both.
ratios() {
    local a=$1 b=$2
    if [ -z "${WALL[$a]:-}" ] || [ -z "${WALL[$b]:-}" ]; then
        echo "-"
        return
    fi
    printf 'speed %s, CPU %s, peak RSS %s' "$(ratio "${MBS[$a]}" "${MBS[$b]}")" \
        "$(ratio "${TOTAL[$a]}" "${TOTAL[$b]}")" "$(ratio "${PEAK[$a]}" "${PEAK[$b]}")"
}

fmt_bytes() { # BYTES -> "N bytes (x.x% of the data)"
    if [[ $1 =~ ^[0-9]+$ ]]; then
        awk -v s="$1" -v d="$DATA_BYTES" 'BEGIN {printf "%12d  (%.1f%% of the data)", s, 100 * s / d}'
    else
        printf '%12s' "$1"
    fi
}

# ---- incremental mode (MODE=incr): its own rounds, restores and figures, then the end ----------
# changed_pages A B: "changed total": the 8 KiB blocks of the files under A/base, and how many of
# them differ from the same block under B/base (a block B lacks counts as changed), or "- -"
# without python3.
changed_pages() {
    command -v python3 >/dev/null || { echo "- -"; return; }
    python3 - "$1" "$2" <<'PY'
import os, sys
a, b = sys.argv[1], sys.argv[2]
changed = total = 0
for root, _, files in os.walk(os.path.join(a, "base")):
    for name in files:
        pa = os.path.join(root, name)
        pb = os.path.join(b, os.path.relpath(pa, a))
        fb = open(pb, "rb") if os.path.exists(pb) else None
        with open(pa, "rb") as fa:
            while True:
                blk = fa.read(8192)
                if not blk:
                    break
                total += 1
                if fb is None or fb.read(8192) != blk:
                    changed += 1
        if fb:
            fb.close()
print(changed, total)
PY
}

# median VALUE...: the median of numbers (the lower middle one of an even count), or ? for none.
median() {
    local v
    v=$(printf '%s\n' "$@" | grep -E '^[0-9]+$' | sort -n | awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]}')
    echo "${v:-?}"
}

# incr_backup TOOL TYPE: a timed TOOL-TYPE backup (full or incr) with TOOL's archive_command;
# appends its id (walsafe) or label (pgBackRest) and its stored bytes to IDS[TOOL-TYPE] and
# BYTES[TOOL-TYPE] ("?" when it failed).
declare -A IDS=() BYTES=()
incr_backup() {
    local tool=$1 type=$2 name=$1-$2 id='?' bytes='?'
    use_archive "$tool"
    if [ "$tool" = walsafe ]; then
        if timed "$name" "$BASEBACKUP" --config "$WS_CONF" create --fast --parallel "$PARALLEL" --type "$type"; then
            id=$(tail -n 1 "$DIR/results/$name.out")
            bytes=$( (cd "$DIR" && as_pg "$BASEBACKUP" --config "$WS_CONF" list --json) 2>/dev/null |
                jq -r --arg id "$id" '.backups[] | select(.id == $id) | .stored_bytes // "?"' 2>/dev/null || echo '?')
        fi
    elif timed "$name" "${PGBR[@]}" --type="$type" --process-max="$PARALLEL" backup; then
        read -r id bytes < <( (cd "$DIR" && as_pg "${PGBR[@]}" --output=json info) 2>/dev/null |
            jq -r '.[0].backup | last | "\(.label) \(.info.repository.delta // "?")"' 2>/dev/null || echo '? ?')
    fi
    IDS[$name]+="$id " BYTES[$name]+="$bytes "
}

# incr_restores ROUND: the timed restores of round ROUND's incremental backups: into an empty
# directory, and as a delta onto a copy of PREV (round ROUND's full walsafe backup restored, not
# timed), each tool taking its turn going first.
incr_restores() {
    local r=$1 j t id prev=$DIR/restore/prev ws_full
    ws_full=$(echo "${IDS[walsafe-full]}" | cut -d' ' -f$((r + 1)))
    rm -rf "$prev"
    (cd "$DIR" && as_pg "$BASEBACKUP" --config "$WS_CONF" restore --pgdata "$prev" --backup "$ws_full" \
        --parallel "$PARALLEL") >/dev/null 2>"$DIR/results/prev.err" ||
        die "restore of $ws_full (the previous state) failed: $(cat "$DIR/results/prev.err")"
    for ((j = 0; j < ${#INCR_TOOLS[@]}; j++)); do
        t=${INCR_TOOLS[(r + j) % ${#INCR_TOOLS[@]}]}
        id=$(echo "${IDS[$t-incr]}" | cut -d' ' -f$((r + 1)))
        note "restores of round $((r + 1))/$RUNS: $t ($id)"
        rm -rf "$DIR/restore/$t-delta"
        cp -a "$prev" "$DIR/restore/$t-delta"
        if [ "$t" = walsafe ]; then
            restore_into walsafe walsafe-restore "$BASEBACKUP" --config "$WS_CONF" restore --pgdata @DEST@ \
                --backup "$id" --parallel "$PARALLEL"
            timed walsafe-delta "$BASEBACKUP" --config "$WS_CONF" restore --delta --pgdata "$DIR/restore/$t-delta" \
                --backup "$id" --parallel "$PARALLEL" || true
        else
            restore_into pgbackrest pgbackrest-restore "${PGBR[@]}" --set="$id" --pg1-path=@DEST@ \
                --process-max="$PARALLEL" restore
            timed pgbackrest-delta "${PGBR[@]}" --set="$id" --pg1-path="$DIR/restore/$t-delta" \
                --process-max="$PARALLEL" --delta restore || true
        fi
    done
}

# incremental_mode: the whole of MODE=incr (Method, incremental mode), figures included.
incremental_mode() {
    local r j t pct ws pg
    ARCHIVE_CMD[load]=$load_archive
    TX=${TX:-$((DATA_BYTES / 8192 / 200))}
    need_count TX
    note "warm-up read of the data directory ($DATA_BYTES bytes without pg_wal)"
    warm_read "$PGDATA_DIR" 2>/dev/null || true
    for ((r = 0; r < RUNS; r++)); do
        for ((j = 0; j < ${#INCR_TOOLS[@]}; j++)); do
            t=${INCR_TOOLS[(r + j) % ${#INCR_TOOLS[@]}]}
            note "round $((r + 1))/$RUNS: $t full backup"
            incr_backup "$t" full
        done
        note "round $((r + 1))/$RUNS: pgbench -t: $TX transactions"
        use_archive load
        as_pg "$PGBIN/pgbench" -h "$SOCK" -p "$PORT" -n -c 2 -t $((TX / 2)) postgres >/dev/null \
            2>>"$DIR/pgbench-change.log" || die "pgbench failed (see $DIR/pgbench-change.log; KEEP=1 keeps it)"
        for ((j = 0; j < ${#INCR_TOOLS[@]}; j++)); do
            t=${INCR_TOOLS[(r + j) % ${#INCR_TOOLS[@]}]}
            note "round $((r + 1))/$RUNS: $t incremental backup"
            incr_backup "$t" incr
        done
    done
    note "stop PostgreSQL"
    pg_stop "$PGDATA_DIR"
    has walsafe || die "MODE=incr needs walsafe in TOOLS (its full backup is the delta restores' previous state)"
    note "warm-up read of the repositories"
    warm_read "$DIR/ws-repo" "$DIR/pgbr/repo"
    for ((r = 0; r < RUNS; r++)); do incr_restores "$r"; done
    read -r CHANGED PAGES <<<"$(changed_pages "$DIR/restore/walsafe" "$DIR/restore/prev")"

    printf '\nwalsafe incremental backup benchmark (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    print_machine "data directory, repositories, backups and restores"
    printf 'versions: %s (source tree %s at start)' "$("$BASEBACKUP" --version)" "$BUILD_REV"
    if has pgbackrest; then printf '; %s' "$(pgbackrest version)"; fi
    printf '; %s\n' "$("$PGBIN/postgres" --version)"
    printf 'data: pgbench -i -s %s: %d bytes in %d files without pg_wal; data checksums %s\n' "$SCALE" \
        "$DATA_BYTES" "$DATA_FILES" "$([ "$CHECKSUMS" = 1 ] && echo on || echo off)"
    printf 'change: pgbench -n -c 2, %d transactions in all between a full backup and its incremental:\n' "$TX"
    printf '        %s of %s blocks of base/ differ between the last round'"'"'s full and incremental (%s)\n' \
        "$CHANGED" "$PAGES" "$(awk -v c="$CHANGED" -v p="$PAGES" 'BEGIN {if (p + 0) printf "%.2f %%", 100 * c / p; else print "-"}')"
    printf 'method: %d rounds: full backups, the change, incremental backups (tools taking turns going\n' "$RUNS"
    printf '        first); then per round: restore of the incremental into an empty directory, and delta\n'
    printf '        restore of it onto a copy of the round'"'"'s full backup restored (the previous state; the\n'
    printf '        copy is not timed); medians; sync before each; warm page cache; all as postgres; local\n'
    printf '        repositories on the same disk; restores not started\n'
    printf 'settings: walsafe     create --type full|incr --fast --parallel %d / restore [--delta] --parallel %d;\n' \
        "$PARALLEL" "$PARALLEL"
    printf '                      zstd %d; encrypted; block-level incremental (block digests)\n' "$ZSTD_LEVEL"
    printf '          pgBackRest  backup --type=full|incr / restore [--delta] --set; process-max %d; zst %d;\n' \
        "$PARALLEL" "$ZSTD_LEVEL"
    printf '                      aes-256-cbc; file-level incremental (2.45: no block incremental)\n'

    printf '\n%-20s %4s %6s %8s %13s %8s %8s %10s %8s\n' phase runs failed "wall s" "wall min..max" "MB/s" \
        "CPU s" "server CPU" "RSS MB"
    row "walsafe full" walsafe-full
    row "walsafe incr" walsafe-incr
    has pgbackrest && row "pgBackRest full" pgbackrest-full
    has pgbackrest && row "pgBackRest incr" pgbackrest-incr
    row "walsafe restore" walsafe-restore
    row "walsafe delta" walsafe-delta
    has pgbackrest && row "pgBackRest restore" pgbackrest-restore
    has pgbackrest && row "pgBackRest delta" pgbackrest-delta
    printf '\nmedians; MB/s = data bytes / wall (also for incrementals and deltas); RSS MB: peak of the\n'
    printf 'largest process; restore = the incremental into an empty directory; delta = --delta onto\n'
    printf 'the previous state\n'

    printf '\n%-12s %14s %14s %9s %11s %13s %10s\n' tool "full bytes" "incr bytes" "incr/full" \
        "incr wall x" "delta speedup" "peak RSS MB"
    for t in "${INCR_TOOLS[@]}"; do
        # shellcheck disable=SC2086 # lists of numbers
        read -r full incr <<<"$(median ${BYTES[$t-full]}) $(median ${BYTES[$t-incr]})"
        pct=$(awk -v i="$incr" -v f="$full" 'BEGIN {if (f + 0 && i ~ /^[0-9]+$/) printf "%.2f %%", 100 * i / f; else print "-"}')
        ws=- pg=-
        [ -z "${WALL[$t-incr]:-}" ] || [ -z "${WALL[$t-full]:-}" ] || ws=$(ratio "${WALL[$t-incr]}" "${WALL[$t-full]}")
        [ -z "${WALL[$t-delta]:-}" ] || [ -z "${WALL[$t-restore]:-}" ] || pg=$(ratio "${WALL[$t-restore]}" "${WALL[$t-delta]}")
        printf '%-12s %14s %14s %9s %11s %13s %10s\n' "$t" "$full" "$incr" "$pct" "$ws" "$pg" \
            "$(for n in full incr restore delta; do echo "${PEAK[$t-$n]:-0}"; done | sort -n | tail -1 |
                awk '{printf "%.1f", $1 / 1024}')"
    done
    printf '\nbytes: stored (walsafe list --json stored_bytes; pgBackRest info repository delta), medians;\n'
    printf 'incr wall x = incremental / full backup wall time; delta speedup = restore into an empty\n'
    printf 'directory / delta restore wall time; peak RSS: the largest of the four phases\n'
    printf 'targets (issue 17): incr bytes <= 5 %% of the full, incr wall <= 0.5x, delta speedup >= 3x,\n'
    printf 'peak RSS <= 64 MB\n'

    printf '\nrestored base/: delta restore against the restore into an empty directory\n'
    for t in "${INCR_TOOLS[@]}"; do
        if [ -d "$DIR/restore/$t/base" ] && [ -d "$DIR/restore/$t-delta/base" ]; then
            if diff -rq -x pg_internal.init -x pgsql_tmp "$DIR/restore/$t/base" "$DIR/restore/$t-delta/base" >/dev/null; then
                printf '  %-12s identical\n' "$t"
            else
                printf '  %-12s DIFFERENT\n' "$t"
                BAD=1
            fi
        else
            printf '  %-12s missing\n' "$t"
            BAD=1
        fi
    done
    stderr_of walsafe-full walsafe-incr pgbackrest-full pgbackrest-incr walsafe-restore walsafe-delta \
        pgbackrest-restore pgbackrest-delta
}
if [ "$MODE" = incr ]; then
    incremental_mode
    bench_finish "some runs failed or a delta restore differs (see above)"
    exit 0
fi

# ---- 3. backups --------------------------------------------------------------------------------
BACKUP_TOOLS=() RESTORE_TOOLS=()
for t in walsafe pgbackrest pg_basebackup walsafe-s3 walsafe-sftp; do
    if has "$t"; then BACKUP_TOOLS+=("$t"); fi
done
for t in walsafe pgbackrest walsafe-s3 walsafe-sftp; do
    if has "$t"; then RESTORE_TOOLS+=("$t"); fi
done

note "warm-up read of the data directory ($DATA_BYTES bytes without pg_wal)"
warm_read "$PGDATA_DIR" 2>/dev/null || true # a file may vanish meanwhile
rounds backup "$RUNS" "${BACKUP_TOOLS[@]}"

if has walsafe; then
    STORED[walsafe]=$( (cd "$DIR" && as_pg "$BASEBACKUP" --config "$WS_CONF" list --json) 2>/dev/null |
        jq -r '.backups | map(select(.status == "complete")) | last | .stored_bytes // "?"' 2>/dev/null || echo '?')
fi
for t in "${NET_TOOLS[@]}"; do
    STORED[$t]=$( (cd "$DIR" && as_pg "$BASEBACKUP" --config "${NET_CONF[$t]}" list --json) 2>/dev/null |
        jq -r '.backups | map(select(.status == "complete")) | last | .stored_bytes // "?"' 2>/dev/null || echo '?')
done
if has pgbackrest; then
    STORED[pgbackrest]=$( (cd "$DIR" && as_pg "${PGBR[@]}" --output=json info) 2>/dev/null |
        jq -r '.[0].backup | last | .info.repository.size // "?"' 2>/dev/null || echo '?')
fi

note "stop PostgreSQL"
pg_stop "$PGDATA_DIR"

# ---- 4. restores -------------------------------------------------------------------------------
if [ ${#RESTORE_TOOLS[@]} -gt 0 ]; then
    note "warm-up read of the repositories"
    warm_read "$DIR/ws-repo" "$DIR/pgbr/repo" "${NET_FILES[@]}"
    rounds restore "$RUNS" "${RESTORE_TOOLS[@]}"
fi

# same_base TOOL: how base/ of the last restore of TOOL compares with the source's.
declare -A SAME=()
for t in "${RESTORE_TOOLS[@]}"; do
    d=$DIR/restore/$t
    if [ ! -d "$d/base" ]; then
        SAME[$t]="no base/"
        continue
    fi
    n=$(find "$PGDATA_DIR/base" -name pgsql_tmp -prune -o -type f ! -name pg_internal.init -print | wc -l)
    differ=$(diff -rq -x pg_internal.init -x pgsql_tmp "$PGDATA_DIR/base" "$d/base" | wc -l || true)
    if [ "$differ" = 0 ]; then SAME[$t]="identical ($n files)"; else SAME[$t]="$differ of $n files differ or are missing"; fi
done

# ---- 5. figures --------------------------------------------------------------------------------
printf '\n'
printf 'walsafe base backup benchmark (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
print_machine "data directory, repositories, backups and restores"
versions=("$("$WAL_PUSH" --version)")
if has walsafe; then versions=("$("$BASEBACKUP" --version)"); fi
if has pgbackrest; then versions+=("$(pgbackrest version)"); fi
versions+=("$("$PGBIN/postgres" --version)")
printf 'versions: %s (source tree %s at start)' "${versions[0]}" "$BUILD_REV"
printf '; %s' "${versions[@]:1}"
printf '\n'
printf 'data: pgbench -i -s %s: %d bytes in %d files without pg_wal (pg_wal: %d bytes, not copied); data checksums %s\n' \
    "$SCALE" "$DATA_BYTES" "$DATA_FILES" "$WAL_BYTES" "$([ "$CHECKSUMS" = 1 ] && echo on || echo off)"
printf 'method: %d runs of each, rounds with the tools taking turns going first; medians; sync before each;\n' "$RUNS"
printf '        warm page cache (one read of the data directory before the backups, of the repositories\n'
printf '        before the restores; no cache drop); all as postgres; repositories local, same disk;\n'
printf '        each backup with its own tool'"'"'s archive_command (wal-push / pgbackrest archive-push / cp for\n'
printf '        pg_basebackup -X none) and waiting until its WAL is archived (pg_backup_stop checks once a second);\n'
printf '        immediate checkpoint for all; cluster idle, autovacuum off\n'
printf 'settings: walsafe        create --fast --parallel %d / restore --parallel %d; zstd %d; encrypted (key file)\n' \
    "$PARALLEL" "$PARALLEL" "$ZSTD_LEVEL"
printf '          pgBackRest     backup --type=full / restore; process-max %d; zst %d; aes-256-cbc; start-fast;\n' \
    "$PARALLEL" "$ZSTD_LEVEL"
printf '                         file log at info\n'
printf '          pg_basebackup  -Ft --compress=server-zstd:%d -X none --checkpoint=fast; not encrypted; manifest\n' \
    "$ZSTD_LEVEL"
printf '                         with CRC32C; compresses in the server (CPU: in server CPU; memory: in no column)\n'
printf '          restores are not started (no WAL replay); base/ of the last restore compared with the source\n'

printf '\n%-20s %4s %6s %8s %13s %8s %8s %10s %8s\n' phase runs failed "wall s" "wall min..max" "MB/s" "CPU s" \
    "server CPU" "RSS MB"
has walsafe && row "walsafe backup" walsafe-backup
has pgbackrest && row "pgBackRest backup" pgbackrest-backup
has pg_basebackup && row "pg_basebackup" pg_basebackup
has walsafe && row "walsafe restore" walsafe-restore
has pgbackrest && row "pgBackRest restore" pgbackrest-restore
for t in "${NET_TOOLS[@]}"; do
    row "${t#walsafe-} backup" "$t-backup"
    row "${t#walsafe-} restore" "$t-restore"
done
printf '\nwall s, CPU s (user+sys of the command and its children), server CPU s (PostgreSQL processes incl.\n'
printf 'archive_command, from the start until the archiver is idle; - when stopped) and RSS MB (peak of the\n'
printf 'largest process): medians; MB/s = data bytes / wall\n'
printf '\nratios walsafe/other: speed = MB/s ratio (>1: walsafe faster); CPU = (CPU + server CPU) ratio and\n'
printf 'peak RSS ratio (<1: walsafe uses less)\n'
if has walsafe && has pgbackrest; then
    printf '  walsafe/pgBackRest     backup: %s\n' "$(ratios walsafe-backup pgbackrest-backup)"
    printf '  walsafe/pgBackRest     restore: %s\n' "$(ratios walsafe-restore pgbackrest-restore)"
fi
if has walsafe && has pg_basebackup; then
    printf '  walsafe/pg_basebackup  backup: %s\n' "$(ratios walsafe-backup pg_basebackup)"
fi
if has walsafe; then
    for t in "${NET_TOOLS[@]}"; do
        printf '  %-22s backup: %s\n' "${t#walsafe-}/local" "$(ratios "$t-backup" walsafe-backup)"
        printf '  %-22s restore: %s\n' "${t#walsafe-}/local" "$(ratios "$t-restore" walsafe-restore)"
    done
fi

printf '\nstored bytes of one backup (data: %d bytes)\n' "$DATA_BYTES"
has walsafe && printf '  walsafe        %s  (list --json stored_bytes)\n' "$(fmt_bytes "${STORED[walsafe]:-?}")"
has pgbackrest && printf '  pgBackRest     %s  (info: repository size)\n' "$(fmt_bytes "${STORED[pgbackrest]:-?}")"
has pg_basebackup && printf '  pg_basebackup  %s  (base.tar.zst + backup_manifest)\n' "$(fmt_bytes "${STORED[pg_basebackup]:-?}")"
for t in "${NET_TOOLS[@]}"; do printf '  %-13s  %s  (list --json stored_bytes)\n' "${t#walsafe-}" "$(fmt_bytes "${STORED[$t]:-?}")"; done
if [ ${#RESTORE_TOOLS[@]} -gt 0 ]; then
    printf '\nrestored base/ against the source\n'
    for t in "${RESTORE_TOOLS[@]}"; do printf '  %-13s  %s\n' "$t" "${SAME[$t]}"; done
fi

stderr_of walsafe-backup pgbackrest-backup pg_basebackup walsafe-restore pgbackrest-restore \
    "${NET_TOOLS[@]/%/-backup}" "${NET_TOOLS[@]/%/-restore}"
bench_finish "some runs failed (see above)"
