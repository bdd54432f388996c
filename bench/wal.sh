#!/usr/bin/env bash
# walsafe WAL archiving benchmark: wal-push / wal-fetch against pgBackRest archive-push /
# archive-get, on the same real PostgreSQL 15 WAL segments, on the same disk.
#
# Usage: bench/wal.sh [BIN_DIR]        (make bench builds first and passes build/release/bin)
# Environment:
#   SEGMENTS=N   number of 16 MiB WAL segments to push and fetch (default 100)
#   SCALE=N      pgbench -i scale of the throwaway cluster (default 50)
#   KEEP=1       keep the temporary directory (printed at the end) instead of removing it
#   MODE=local   walsafe against a repository directory on the same disk (default); MODE=sftp
#                also runs walsafe against an sftp:// repository on a private sshd on loopback
#                (tests/integration/sshd.sh; same disk, same settings), interleaved with the
#                other tools, and adds its rows and the ratio sftp/local
#   WALSAFE_*    reach wal-push/wal-fetch unchanged (e.g. WALSAFE_PARALLEL=1)
#
# It prints figures; it asserts nothing about them. It exits non-zero only when the run itself
# broke (setup failed, or a push/fetch call failed, which makes the figures meaningless).
#
# Method
#   1. A throwaway cluster (private socket dir, listen_addresses = '') copies each completed
#      segment out with archive_command = 'cp'. pgbench -i -s SCALE loads it, a CHECKPOINT
#      follows, then pgbench (TPC-B) runs until SEGMENTS more segments are complete; those
#      segments (OLTP WAL with the full-page images that checkpoints cause) are the data set.
#   2. The cluster is stopped. A data-directory look-alike (copy of global/pg_control, pg_wal
#      holding the staged segments) is the working directory of every push, and another one
#      with an empty pg_wal that of every fetch, as the archiver and the startup process have.
#   3. Each phase runs as the postgres user (pgBackRest refuses root; walsafe gets the same
#      treatment) and calls the tool once per segment, serially, the way PostgreSQL does:
#      system("sh -c '<command>'") with cwd = data directory. Every call is timed on its own
#      (bash $EPOCHREALTIME, no fork) and wrapped in /usr/bin/time -f %M for its peak RSS.
#      Push phase: walsafe, pgBackRest and (as a reference) the zstd CLI, interleaved segment
#      by segment, taking turns going first; then the fetch phase likewise. Before each phase:
#      sync (so one phase's writeback does not land in the next) and a read of its inputs
#      (so all tools read the same page-cache-warm files).
#   4. segments/s = calls / sum of that tool's call latencies. Latencies are per call, in ms,
#      and include the fork/exec of time and sh (a few ms, the same for every tool).
set -euo pipefail
export LC_ALL=C

BIN=$(cd "${1:-build/release/bin}" && pwd)
SEGMENTS=${SEGMENTS:-100}
SCALE=${SCALE:-50}
MODE=${MODE:-local}
PGBIN=/usr/lib/postgresql/15/bin
TIME=/usr/bin/time

die() { echo "bench: $*" >&2; exit 1; }
note() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
as_pg() { runuser -u postgres -- "$@"; }

[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and pgBackRest are run as the postgres user)"
[[ $SEGMENTS =~ ^[1-9][0-9]*$ ]] || die "SEGMENTS must be a positive integer (got '$SEGMENTS')"
[[ $SCALE =~ ^[1-9][0-9]*$ ]] || die "SCALE must be a positive integer (got '$SCALE')"
[[ $MODE =~ ^(local|sftp)$ ]] || die "MODE must be local or sftp (got '$MODE')"
if [ "$MODE" = sftp ]; then
    [ -x /usr/sbin/sshd ] || die "MODE=sftp needs openssh-server (/usr/sbin/sshd)"
    # shellcheck source=../tests/integration/sshd.sh
    . "$(cd "$(dirname "$0")/.." && pwd)/tests/integration/sshd.sh"
fi
for f in "$BIN/wal-push" "$BIN/wal-fetch" "$PGBIN/initdb" "$PGBIN/pg_ctl" "$PGBIN/pgbench" "$PGBIN/psql"; do
    [ -x "$f" ] || die "missing $f"
done
command -v pgbackrest >/dev/null || die "pgbackrest is not installed (apt-get install -y pgbackrest)"
[ -x "$TIME" ] || die "$TIME is missing (apt-get install -y time)"
command -v openssl >/dev/null || die "openssl is missing"

DIR=$(mktemp -d "${TMPDIR:-/tmp}/walsafe-bench.XXXXXX")
PGDATA_DIR=$DIR/pgdata
SOCK=$DIR/sock
PORT=$((20000 + RANDOM % 20000)) # names the socket file only: listen_addresses = ''

cleanup() {
    local rc=$?
    # the private sshd (MODE=sftp): stopped by the PID in its pid file, never by name
    if declare -F sshd_stop_all >/dev/null; then sshd_stop_all; fi
    if [ -f "$PGDATA_DIR/postmaster.pid" ]; then
        # pg_ctl stops the postmaster named in postmaster.pid; nothing is killed by name.
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
    "$DIR/fetch/pg_wal" "$DIR/pgbr/repo" "$DIR/pgbr/log" "$DIR/pgbr/lock" "$DIR/pgbr/spool" \
    "$DIR/results" "$DIR/bin"
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
# The segment that holds the checkpoint is closed here; the data set is the SEGMENTS after it.
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
    # not yet complete unless the insert position is already past $LAST
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

# pgBackRest's stanza-create checks the running cluster.
PGBR_CONF=$DIR/pgbr/pgbackrest.conf
cat >"$PGBR_CONF" <<CONF
[global]
repo1-path=$DIR/pgbr/repo
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$(openssl rand -base64 48 | tr -d '\n')
compress-type=zst
compress-level=3
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
chown postgres: "$PGBR_CONF"
chmod 600 "$PGBR_CONF"
note "pgbackrest stanza-create"
as_pg pgbackrest --config="$PGBR_CONF" --stanza=bench stanza-create

note "stop PostgreSQL, stage $SEGMENTS segments"
as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null
for i in $(seq 1 "$SEGMENTS"); do
    seg=$(seg_after "$BOUNDARY" "$i")
    [ "$(stat -c %s "$DIR/wal-all/$seg" 2>/dev/null)" = 16777216 ] || die "segment $seg was not archived whole"
    mv "$DIR/wal-all/$seg" "$DIR/push/pg_wal/$seg"
    echo "$seg"
done >"$DIR/segments"
rm -rf "$DIR/wal-all" # the other segments, not needed
for d in push fetch; do cp "$PGDATA_DIR/global/pg_control" "$DIR/$d/global/pg_control"; done
chown -R postgres: "$DIR"

# walsafe: encrypted, zstd level 3, same disk.
openssl rand -hex 32 >"$DIR/ws.key"
cat >"$DIR/walsafe.conf" <<CONF
repo = '$DIR/ws-repo'
cluster = 'main'
encrypt_key_file = '$DIR/ws.key'
compress_level = 3
CONF
chown postgres: "$DIR/ws.key" "$DIR/walsafe.conf"
chmod 600 "$DIR/ws.key" "$DIR/walsafe.conf"

# walsafe over SFTP: the same settings, the repository a directory of the same disk, served by a
# private sshd on 127.0.0.1 (login as root: Debian locks the postgres account's password, and
# sshd without PAM refuses locked accounts even for keys; the key files belong to postgres, who
# runs the tools).
SFTP_CMDS_PUSH=() SFTP_CMDS_FETCH=() SFTP_NAMES=()
if [ "$MODE" = sftp ]; then
    note "start a private sshd on 127.0.0.1"
    SSHD_USERS=root SSHD_KEY_OWNER=postgres sshd_start "$DIR/sshd" || die "could not start sshd"
    mkdir -m 700 "$DIR/ws-sftp-repo"
    cat >"$DIR/walsafe-sftp.conf" <<CONF
repo = 'sftp://root@127.0.0.1:$SSHD_PORT$DIR/ws-sftp-repo'
cluster = 'main'
encrypt_key_file = '$DIR/ws.key'
compress_level = 3
sftp_identity_file = '$SSHD_CLIENT_KEY'
sftp_known_hosts = '$SSHD_KNOWN_HOSTS'
CONF
    chown postgres: "$DIR/walsafe-sftp.conf"
    chmod 600 "$DIR/walsafe-sftp.conf"
    SFTP_NAMES=(walsafe-sftp-push walsafe-sftp-fetch)
    SFTP_CMDS_PUSH=(walsafe-sftp-push "$WAL_PUSH --config $DIR/walsafe-sftp.conf")
    SFTP_CMDS_FETCH=(walsafe-sftp-fetch "$WAL_FETCH --config $DIR/walsafe-sftp.conf")
fi

# ---- 2. timed phases --------------------------------------------------------------------------
# Runs as postgres: one call per segment and tool, serially, as PostgreSQL's archiver and startup
# process do. The tools are interleaved segment by segment (and take turns going first), so a
# load change on the machine hits all of them alike instead of deciding a ratio.
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

run_phase() { # CWD MODE NAME PREFIX [NAME PREFIX]...
    local cwd=$1 mode=$2
    shift 2
    note "phase: $mode, $(($# / 2)) commands interleaved, $SEGMENTS calls each"
    sync # the previous phase's writeback must not land in this one
    cat "$DIR"/push/pg_wal/* >/dev/null # same page-cache-warm inputs (and fetch references) for all
    if [ "$mode" = fetch ]; then
        find "$DIR/ws-repo" "$DIR/pgbr/repo" ${SFTP_NAMES[0]:+"$DIR/ws-sftp-repo"} -type f \
            -exec cat {} + >/dev/null
    fi
    as_pg bash -c "$(declare -f timed_loop); timed_loop \"\$@\"" timed_loop \
        "$cwd" "$DIR/segments" "$mode" "$DIR/push/pg_wal" "$DIR/results" "$@"
}

# Reference, not a tool under test: the zstd CLI at the same level on the same segment, with the
# same sh/time wrapping: no checksum, no encryption, no file written.
run_phase "$DIR/push" push \
    walsafe-push "$WAL_PUSH --config $DIR/walsafe.conf" \
    pgbackrest-push "pgbackrest --config=$PGBR_CONF --stanza=bench --pg1-path=$DIR/push archive-push" \
    zstd-cli "zstd -3 -q -c >/dev/null" \
    "${SFTP_CMDS_PUSH[@]}"
run_phase "$DIR/fetch" fetch \
    walsafe-fetch "$WAL_FETCH --config $DIR/walsafe.conf" \
    pgbackrest-get "pgbackrest --config=$PGBR_CONF --stanza=bench --pg1-path=$DIR/fetch archive-get" \
    "${SFTP_CMDS_FETCH[@]}"

# ---- 3. figures -------------------------------------------------------------------------------
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
printf 'walsafe WAL archiving benchmark (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
printf 'machine: %s CPUs, %s, %s, kernel %s\n' "$(nproc)" \
    "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
    "$(awk '/MemTotal/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo)" "$(uname -r)"
printf 'load average: %s at start, %s at end (other work on the machine skews the figures)\n' \
    "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'disk: %s (%s) for repos and segments\n' "$(df --output=source "$DIR" | tail -1)" \
    "$(df --output=fstype "$DIR" | tail -1)"
printf 'versions: %s (source tree %s at start); %s; %s; %s\n' "$("$WAL_PUSH" --version)" "$BUILD_REV" "$(pgbackrest version)" \
    "$("$PGBIN/postgres" --version)" "$(zstd --version | sed 's/^\*\*\* //; s/, by.*//')"
printf 'data: %d real 16 MiB WAL segments %s..%s (pgbench -s %s TPC-B after a checkpoint)\n' \
    "$SEGMENTS" "$FIRST" "$LAST" "$SCALE"
printf 'settings: both zstd level 3 and encrypted (walsafe: its cipher, key file; pgBackRest: aes-256-cbc, pass);\n'
printf '          one process per segment via sh -c, cwd = data directory, as postgres; serial, tools interleaved;\n'
printf '          walsafe parallel = %s; pgBackRest process-max = 1, archive-async = n, file log at info\n' \
    "${WALSAFE_PARALLEL:-default}"
if [ "$MODE" = sftp ]; then
    printf 'sftp: walsafe-sftp-* = the same walsafe settings against sftp://root@127.0.0.1:%s (private sshd,\n' "$SSHD_PORT"
    printf '      %s, %s), the repository on the same disk; one SSH session per call\n' \
        "$(ssh -V 2>&1 | cut -d, -f1)" "$(curl --version | grep -o 'libssh2/[0-9.]*' || echo 'libssh2 ?')"
fi
PW=17 # width of the phase column; walsafe-sftp-fetch needs one more
[ "$MODE" = sftp ] && PW=18
printf "\n%-${PW}s %6s %6s %10s %11s %8s %8s %8s %12s %9s\n" phase calls failed segments/s \
    "1/median" "median ms" "p90 ms" "max ms" "peak RSS KB" identical
declare -A SPS MPS
bad=0
for name in walsafe-push pgbackrest-push walsafe-fetch pgbackrest-get zstd-cli "${SFTP_NAMES[@]}"; do
    read -r n failed sps med p90 max rss ident <<<"$(stats "$DIR/results/$name")"
    SPS[$name]=$sps
    MPS[$name]=$(awk -v m="$med" 'BEGIN {printf "%.2f", 1000 / m}')
    label=$name
    [ "$name" = zstd-cli ] && label="(ref) zstd -3"
    printf "%-${PW}s %6s %6s %10s %11s %8s %8s %8s %12s %9s\n" "$label" "$n" "$failed" "$sps" \
        "${MPS[$name]}" "$med" "$p90" "$max" "$rss" "$ident"
    [ "$failed" = 0 ] || bad=1
    [[ $ident != */* ]] || [ "${ident%/*}" = "${ident#*/}" ] || bad=1
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
printf '\nsegments/s = calls / summed latency; 1/median = segments/s at the median latency\n'
printf 'ratio walsafe/pgBackRest (>1: walsafe faster)   segments/s: push %s, fetch %s;   1/median: push %s, fetch %s\n' \
    "$(ratio "${SPS[walsafe-push]}" "${SPS[pgbackrest-push]}")" \
    "$(ratio "${SPS[walsafe-fetch]}" "${SPS[pgbackrest-get]}")" \
    "$(ratio "${MPS[walsafe-push]}" "${MPS[pgbackrest-push]}")" \
    "$(ratio "${MPS[walsafe-fetch]}" "${MPS[pgbackrest-get]}")"
if [ "$MODE" = sftp ]; then
    # time per segment over SFTP divided by time per segment to the local directory
    printf 'ratio walsafe sftp/local, time per segment (>1: sftp slower)   mean: push %s, fetch %s;   median: push %s, fetch %s\n' \
        "$(ratio "${SPS[walsafe-push]}" "${SPS[walsafe-sftp-push]}")" \
        "$(ratio "${SPS[walsafe-fetch]}" "${SPS[walsafe-sftp-fetch]}")" \
        "$(ratio "${MPS[walsafe-push]}" "${MPS[walsafe-sftp-push]}")" \
        "$(ratio "${MPS[walsafe-fetch]}" "${MPS[walsafe-sftp-fetch]}")"
fi

raw=$((SEGMENTS * 16777216))
ws_bytes=$(du -sb "$DIR/ws-repo" | cut -f1)
br_bytes=$(du -sb "$DIR/pgbr/repo" | cut -f1)
printf '\nstored bytes (whole repository, apparent size; WAL in: %d bytes)\n' "$raw"
printf '  walsafe     %12d  (%.1f%% of the WAL, %d files)\n' "$ws_bytes" \
    "$(awk -v s="$ws_bytes" -v r="$raw" 'BEGIN {print 100 * s / r}')" "$(find "$DIR/ws-repo" -type f | wc -l)"
printf '  pgBackRest  %12d  (%.1f%% of the WAL, %d files)\n' "$br_bytes" \
    "$(awk -v s="$br_bytes" -v r="$raw" 'BEGIN {print 100 * s / r}')" "$(find "$DIR/pgbr/repo" -type f | wc -l)"
if [ "$MODE" = sftp ]; then
    sf_bytes=$(du -sb "$DIR/ws-sftp-repo" | cut -f1)
    printf '  walsafe-sftp %11d  (%.1f%% of the WAL, %d files)\n' "$sf_bytes" \
        "$(awk -v s="$sf_bytes" -v r="$raw" 'BEGIN {print 100 * s / r}')" "$(find "$DIR/ws-sftp-repo" -type f | wc -l)"
fi

for name in walsafe-push pgbackrest-push walsafe-fetch pgbackrest-get "${SFTP_NAMES[@]}"; do
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
