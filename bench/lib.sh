# shellcheck shell=bash source-path=SCRIPTDIR
# lib.sh - what bench/wal.sh, bench/s3.sh and bench/backup.sh share (sourced:
# . "$(dirname "$0")/lib.sh").
#
# A benchmark script sets -euo pipefail (everything here works under it), sources this file, sets
# BIN, SEGMENTS and SCALE, and then goes through the steps of its Method:
#   need_root WHAT; need_count SEGMENTS SCALE ...; need_tools [PROGRAM...]   checks, die on failure
#   bench_tmpdir PREFIX; trap 'bench_cleanup its_stop_all' EXIT   (INT, TERM: exit 130 / 143)
#   bench_layout [SUBDIR...]                                        $DIR, private binaries
#   make_wal; stage_segments                                        1. and 2.: the data set
#     (bench/backup.sh: cluster_start and pgbench_load, the pieces make_wal starts with)
#   its own run_phase: phase_prepare + phase_time (timed_loop)      3.
#   print_machine, print_data, print_table, print_stderr, bench_finish     4.: the figures
# The throwaway PostgreSQL clusters come from tests/cluster.sh (as in the integration tests).
# Servers are stopped only by PID (PostgreSQL by the postmaster named in its postmaster.pid, via
# pg_ctl, pg_stop_all); nothing is killed by name.

PGBIN=/usr/lib/postgresql/15/bin
TIME=/usr/bin/time
# shellcheck source=../tests/cluster.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/cluster.sh"

# die MESSAGE: "bench: MESSAGE" on stderr, exit 1.
die() { echo "bench: $*" >&2; exit 1; }
# note MESSAGE: a progress line with the time of day, on stderr.
note() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# as_pg COMMAND [ARG]...: COMMAND as the postgres user.
as_pg() { runuser -u postgres -- "$@"; }

# ---- checks -----------------------------------------------------------------------------------
# need_root WHAT: dies unless run as root; WHAT names what runs as postgres besides PostgreSQL.
need_root() {
    [ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and $1 are run as the postgres user)"
}

# need_count NAME...: dies unless each variable NAME holds a positive integer.
need_count() {
    local name
    for name in "$@"; do
        [[ ${!name} =~ ^[1-9][0-9]*$ ]] || die "$name must be a positive integer (got '${!name}')"
    done
}

# need_tools [PROGRAM]... : dies unless $BIN holds each PROGRAM (default: wal-push wal-fetch) and
# PostgreSQL 15 ($PGBIN), GNU time ($TIME) and openssl are installed. Sets BENCH_PROGRAMS (the
# PROGRAMs, which bench_layout copies).
# shellcheck disable=SC2120 # wal.sh and s3.sh take the default
need_tools() {
    local f
    BENCH_PROGRAMS=("$@")
    [ $# -gt 0 ] || BENCH_PROGRAMS=(wal-push wal-fetch)
    for f in "${BENCH_PROGRAMS[@]/#/$BIN/}" "$PGBIN/initdb" "$PGBIN/pg_ctl" "$PGBIN/pgbench" "$PGBIN/psql"; do
        [ -x "$f" ] || die "missing $f"
    done
    [ -x "$TIME" ] || die "$TIME is missing (apt-get install -y time)"
    command -v openssl >/dev/null || die "openssl is missing"
}

# ---- the run's directory ----------------------------------------------------------------------
# bench_tmpdir PREFIX: creates the run's directory ${TMPDIR:-/tmp}/PREFIX.XXXXXX and sets DIR,
# PGDATA_DIR (the throwaway cluster), SOCK (its socket directory) and PORT. Call it in the
# script's own shell (not in $(...)), then install the EXIT trap right away.
bench_tmpdir() {
    DIR=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    PGDATA_DIR=$DIR/pgdata
    SOCK=$DIR/sock
    PORT=$(free_port)
}

# bench_cleanup [STOP_FUNCTION]... : the EXIT trap (trap 'bench_cleanup s3_stop_all' EXIT). Calls
# each STOP_FUNCTION that is defined (the script's own servers, each stopped by the PID it
# recorded), stops every PostgreSQL server started with pg_start (pg_stop_all), removes $DIR
# (KEEP=1: keeps it and says where), and exits with the status the script exited with.
bench_cleanup() {
    local rc=$? f
    for f in "$@"; do
        if declare -F "$f" >/dev/null; then "$f"; fi
    done
    pg_stop_all
    if [ "${KEEP:-0}" = 1 ]; then
        echo "bench: kept $DIR" >&2
    else
        rm -rf "$DIR"
    fi
    exit $rc
}

# bench_layout [SUBDIR]... : creates in $DIR what every run uses (sock, wal-all, the data-directory
# look-alikes push/ and fetch/ with global/ and pg_wal/, results, bin, ws-repo with mode 700) and
# the SUBDIRs (relative to $DIR); copies the programs need_tools checked from $BIN to $DIR/bin and
# gives $DIR (mode 700) to postgres. Sets WAL_PUSH and WAL_FETCH (the copies' paths), LOAD_START
# (the load average now) and BUILD_REV (git describe of the tree BIN is in, or unknown).
bench_layout() {
    mkdir -p "$SOCK" "$DIR/wal-all" "$DIR/push/global" "$DIR/push/pg_wal" "$DIR/fetch/global" \
        "$DIR/fetch/pg_wal" "$DIR/results" "$DIR/bin" "${@/#/$DIR/}"
    mkdir -m 700 "$DIR/ws-repo"
    # A private copy of the binaries: a rebuild during the run must not change (or break) them.
    cp "${BENCH_PROGRAMS[@]/#/$BIN/}" "$DIR/bin/"
    # shellcheck disable=SC2034 # WAL_FETCH, BUILD_REV: read by the scripts
    WAL_PUSH=$DIR/bin/wal-push WAL_FETCH=$DIR/bin/wal-fetch
    LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
    # shellcheck disable=SC2034
    BUILD_REV=$(git --no-optional-locks -C "$BIN" describe --always --dirty 2>/dev/null || echo unknown)
    chmod 700 "$DIR"
    chown -R postgres: "$DIR"
}

# ---- 1. real WAL ------------------------------------------------------------------------------
# psql_q [PSQL_ARG]...: psql on the throwaway cluster (SOCK, PORT), unaligned, quiet, stopping at
# the first error.
psql_q() { pg_psql "$PORT" "$@"; }

# seg_after SEGMENT N: name of the segment N after SEGMENT (timeline TLI, 16 MiB segments).
seg_after() {
    local n=$((16#${1:8:8} * 256 + 16#${1:16:8} + $2))
    printf '%s%08X%08X' "$TLI" $((n / 256)) $((n % 256))
}

# cluster_start ARCHIVE_COMMAND [SETTING]... : initdb (INITDB_ARGS: more initdb options) and start
# of the throwaway cluster in $PGDATA_DIR: socket in $SOCK, port $PORT, listen_addresses = '',
# wal_level replica, archive_mode on with ARCHIVE_COMMAND, fsync and synchronous_commit off,
# max_wal_size 1GB, then each SETTING ("name = value", wins over those) in postgresql.conf.
cluster_start() {
    local archive_command=${1//\'/\'\'}
    shift
    note "initdb + start PostgreSQL 15 in $PGDATA_DIR"
    # shellcheck disable=SC2086 # INITDB_ARGS: words
    pg_init "$PGDATA_DIR" ${INITDB_ARGS:-}
    # a throwaway cluster: fsync and synchronous_commit off, not waiting for the disk
    pg_conf "$PGDATA_DIR" "$PORT" "archive_mode = on" "archive_command = '$archive_command'" \
        "fsync = off" "synchronous_commit = off" "max_wal_size = 1GB" "$@"
    pg_start "$PGDATA_DIR" "$DIR/postgres.log"
}

# pgbench_load: pgbench -i -s $SCALE (which ends with a VACUUM), then a CHECKPOINT.
pgbench_load() {
    note "pgbench -i -s $SCALE"
    as_pg "$PGBIN/pgbench" -h "$SOCK" -p "$PORT" -i -q -s "$SCALE" postgres >/dev/null 2>"$DIR/pgbench-init.log" ||
        { cat "$DIR/pgbench-init.log" >&2; die "pgbench -i failed"; }
    psql_q -c "CHECKPOINT" >/dev/null
}

# make_wal: initdb and start of the throwaway cluster in $PGDATA_DIR (its archive_command copies
# each completed segment to $DIR/wal-all), pgbench -i -s $SCALE, a CHECKPOINT, then pgbench
# (TPC-B) until the $SEGMENTS segments after the checkpoint's are archived (dies after 20
# minutes). WAL_GEN=update instead runs UPDATEs of a quarter of pgbench_accounts followed by a
# CHECKPOINT, over and over: bulk heap updates with full-page images, about 20 times faster
# to make than TPC-B's on 2 cores (for backlogs of hundreds of segments; the figures then name it). Sets BOUNDARY (the segment closed after the checkpoint), TLI, FIRST and LAST (the
# data set). The cluster keeps running.
make_wal() {
    local deadline cur archived
    cluster_start "test ! -f $DIR/wal-all/%f && cp %p $DIR/wal-all/%f"
    pgbench_load
    # The segment that holds the checkpoint is closed here; the data set is the SEGMENTS after it.
    BOUNDARY=$(psql_q -c "SELECT pg_walfile_name(pg_switch_wal())")
    TLI=${BOUNDARY:0:8}
    FIRST=$(seg_after "$BOUNDARY" 1)
    LAST=$(seg_after "$BOUNDARY" "$SEGMENTS")

    note "pgbench (TPC-B) until $FIRST .. $LAST are archived"
    deadline=$((SECONDS + 1200))
    while :; do
        # not yet complete unless the insert position is already past $LAST
        cur=$(psql_q -c "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
        [[ $cur > $LAST ]] && break
        [ $SECONDS -lt $deadline ] || die "WAL generation did not reach $LAST in 20 minutes (at $cur)"
        if [ "${WAL_GEN:-pgbench}" = update ]; then
            # one pass over a quarter of the accounts, then a checkpoint (full-page images again)
            psql_q -c "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 4 = $((SECONDS % 4))" \
                -c "CHECKPOINT" >/dev/null 2>>"$DIR/pgbench-run.log" ||
                { cat "$DIR/pgbench-run.log" >&2; die "UPDATE failed"; }
            continue
        fi
        as_pg "$PGBIN/pgbench" -h "$SOCK" -p "$PORT" -n -c 4 -j 2 -T 5 postgres >/dev/null 2>>"$DIR/pgbench-run.log" ||
            { cat "$DIR/pgbench-run.log" >&2; die "pgbench failed"; }
    done
    while :; do
        archived=$(psql_q -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        [[ ! $archived < $LAST ]] && break
        [ $SECONDS -lt $deadline ] || die "the archiver did not reach $LAST (at '$archived')"
        sleep 0.2
    done
}

# ---- 2. staging -------------------------------------------------------------------------------
# stage_segments: stops the cluster, moves the SEGMENTS segments FIRST..LAST from $DIR/wal-all to
# $DIR/push/pg_wal (dies on one not archived whole) and lists them in $DIR/segments, drops the
# other segments, copies global/pg_control into push/ and fetch/, and gives $DIR to postgres.
stage_segments() {
    local i seg d
    note "stop PostgreSQL, stage $SEGMENTS segments"
    pg_stop "$PGDATA_DIR"
    for i in $(seq 1 "$SEGMENTS"); do
        seg=$(seg_after "$BOUNDARY" "$i")
        [ "$(stat -c %s "$DIR/wal-all/$seg" 2>/dev/null)" = 16777216 ] || die "segment $seg was not archived whole"
        mv "$DIR/wal-all/$seg" "$DIR/push/pg_wal/$seg"
        echo "$seg"
    done >"$DIR/segments"
    rm -rf "$DIR/wal-all" # the other segments, not needed
    for d in push fetch; do cp "$PGDATA_DIR/global/pg_control" "$DIR/$d/global/pg_control"; done
    chown -R postgres: "$DIR"
}

# ---- 3. timed phases --------------------------------------------------------------------------
# Runs as postgres: one call per segment and tool, serially, as PostgreSQL's archiver and startup
# process do. The tools are interleaved segment by segment (and take turns going first), so a
# load change on the machine hits all of them alike instead of deciding a ratio.
# Args: CWD SEGMENT_LIST MODE(push|fetch) REFERENCE_DIR RESULT_DIR NAME COMMAND_PREFIX [NAME PREFIX]...
# Writes RESULT_DIR/NAME: "segment exit_status latency_us max_rss_kb identical(1/0/-)" per call.
# Self-contained (phase_time hands it to a postgres shell with declare -f).
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

# phase_prepare MODE SEGMENT_LIST COMMANDS [REPO_DIR]... : the start of a phase of COMMANDS
# interleaved commands over SEGMENT_LIST: its note, a sync, a read of the staged segments and,
# for MODE fetch, of every file below the REPO_DIRs.
phase_prepare() {
    local mode=$1 list=$2 commands=$3
    shift 3
    note "phase: $mode, $commands commands interleaved, $(wc -l <"$list") calls each"
    sync # the previous phase's writeback must not land in this one
    cat "$DIR"/push/pg_wal/* >/dev/null # same page-cache-warm inputs (and fetch references) for all
    if [ "$mode" = fetch ]; then
        warm_read "$@"
    fi
}

# warm_read DIR... : reads every file below the DIRs once (into the page cache).
warm_read() {
    find "$@" -type f -exec cat {} + >/dev/null
}

# phase_time CWD MODE SEGMENT_LIST NAME PREFIX [NAME PREFIX]... : timed_loop as postgres, the
# staged segments in $DIR/push/pg_wal as the fetch references, the results in $DIR/results.
phase_time() {
    local cwd=$1 mode=$2 list=$3
    shift 3
    as_pg bash -c "$(declare -f timed_loop); timed_loop \"\$@\"" timed_loop \
        "$cwd" "$list" "$mode" "$DIR/push/pg_wal" "$DIR/results" "$@"
}

# ---- 4. figures -------------------------------------------------------------------------------
# median_of FILE: the median of the numbers in FILE, one a line.
median_of() { sort -n "$1" | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

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

# summary NAME -> "runs failed wall_med wall_min wall_max cpu_med server_med rss_med_kb" over the
# runs that succeeded (- when none did), from $DIR/results/NAME: a line per run of
# "wall_s user_s sys_s max_rss_kb server_cpu_s|- exit_status" (bench/backup.sh, bench/remote.sh)
summary() {
    awk '
        function med(a, n,   i, j, t) {
            for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
            return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        { runs++ }
        $6 != 0 { failed++; next }
        { n++; w[n] = $1; c[n] = $2 + $3; r[n] = $4; s[n] = $5; if ($5 == "-") nos = 1
          if (n == 1 || $1 < lo) lo = $1; if (n == 1 || $1 > hi) hi = $1 }
        END {
            if (!n) { printf "%d %d - - - - - -\n", runs, failed + 0; exit }
            printf "%d %d %.2f %.2f %.2f %.2f %s %d\n", runs, failed + 0, med(w, n), lo, hi, med(c, n),
                   nos ? "-" : sprintf("%.2f", med(s, n)), med(r, n)
        }' "$DIR/results/$1"
}

# stderr_of NAME...: the first 5 lines each timed NAME wrote on stderr ($DIR/results/NAME.err, in
# which timed starts each run with a line "== run ..."), if any.
stderr_of() {
    local name f
    for name in "$@"; do
        f=$DIR/results/$name.err
        if [ -s "$f" ] && grep -qv '^== run ' "$f"; then
            printf '\nstderr of %s (%d lines, first 5):\n' "$name" "$(grep -cv '^== run ' "$f")"
            grep -v '^== run ' "$f" | head -n 5 | sed 's/^/  /'
        fi
    done
}

# ratio A B: A / B with two decimals.
# ---- timing a command (backup.sh, remote.sh) ----------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)

# archiver_idle SECONDS: returns once no WAL file of the cluster (PGDATA_DIR) waits for the
# archiver; dies after SECONDS.
archiver_idle() {
    local deadline=$((SECONDS + $1))
    while compgen -G "$PGDATA_DIR/pg_wal/archive_status/*.ready" >/dev/null; do
        [ $SECONDS -lt $deadline ] || die "the archiver did not catch up in $1 s: $(psql_q -c \
            "SELECT failed_count || ' failures, last ' || coalesce(last_failed_wal, '-') FROM pg_stat_archiver") (see $DIR/postgres.log; KEEP=1 keeps it)"
        sleep 0.05
    done
}

# server_ticks: CPU clock ticks the cluster's processes have used so far (the postmaster and its
# children, each with its reaped children: an exited child moves into its parent's cutime/cstime),
# or - when the cluster is not running.
server_ticks() {
    local pm
    [ -f "$PGDATA_DIR/postmaster.pid" ] || { echo -; return; }
    pm=$(head -n 1 "$PGDATA_DIR/postmaster.pid")
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v pm="$pm" '
        # fields after "pid (comm) ": 1 state, 2 ppid, 12 utime, 13 stime, 14 cutime, 15 cstime
        { pid = $1; sub(/^[0-9]+ \(.*\) /, ""); if (pid == pm || $2 == pm) t += $12 + $13 + $14 + $15 }
        END { print t + 0 }'
}

# timed NAME COMMAND [ARG]... : after a sync, COMMAND as postgres (cwd $DIR) under GNU time; appends
# "wall_s user_s sys_s max_rss_kb server_cpu_s exit_status" to $DIR/results/NAME, its stdout and
# stderr to NAME.out and NAME.err. Returns COMMAND's exit status; a failure is also shown at once.
timed() {
    local name=$1 res=$DIR/results/$1 c0 c1 rc=0 cpu=-
    shift
    sync
    c0=$(server_ticks)
    echo "== run $(($(runs_of "$name") + 1)): $*" >>"$res.err"
    (cd "$DIR" && as_pg "$TIME" -f '%e %U %S %M' -o "$res.time" "$@") >>"$res.out" 2>>"$res.err" || rc=$?
    # the archive_command that ran for this command is reaped (in the archiver's cutime) once
    # its segment is marked done
    if [ "$c0" != - ]; then archiver_idle 120; fi
    c1=$(server_ticks)
    echo "$rc" >>"$res.rc"
    if [ "$c0" != - ] && [ "$c1" != - ]; then
        cpu=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz}')
    fi
    echo "$(tail -n 1 "$res.time") $cpu $rc" >>"$res"
    if [ $rc != 0 ]; then
        note "FAILED (exit $rc): $*"
        # this run's stderr: from its "== run" line on
        awk '/^== run / {buf = ""} {buf = buf "    " $0 "\n"} END {printf "%s", buf}' "$res.err" | tail -n 20 >&2
    fi
    return $rc
}
# runs_of NAME: how many runs of NAME timed has made so far.
runs_of() { if [ -f "$DIR/results/$1.rc" ]; then wc -l <"$DIR/results/$1.rc"; else echo 0; fi; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

# print_machine DISK_HOLDS: the machine, load-average (LOAD_START and now) and disk lines of the
# report; DISK_HOLDS says what the disk of $DIR holds.
print_machine() {
    printf 'machine: %s CPUs, %s, %s, kernel %s\n' "$(nproc)" \
        "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
        "$(awk '/MemTotal/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo)" "$(uname -r)"
    printf 'load average: %s at start, %s at end (other work on the machine skews the figures)\n' \
        "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'disk: %s (%s) for %s\n' "$(df --output=source "$DIR" | tail -1)" \
        "$(df --output=fstype "$DIR" | tail -1)" "$1"
}

# print_data: the data line of the report (SEGMENTS, FIRST, LAST, SCALE).
print_data() {
    local how="pgbench -s $SCALE TPC-B after a checkpoint"
    [ "${WAL_GEN:-pgbench}" = update ] &&
        how="WAL_GEN=update: UPDATEs of a quarter of pgbench -s $SCALE's accounts, each followed by a CHECKPOINT"
    printf 'data: %d real 16 MiB WAL segments %s..%s (%s)\n' "$SEGMENTS" "$FIRST" "$LAST" "$how"
}

# Filled by print_table, by result name.
declare -gA LABEL=() SPS=() MPS=() RSS=()
BAD=0

# print_table WIDTH NAME... : the table of figures (phase column WIDTH wide), a row per NAME from
# the stats of $DIR/results/NAME, labelled LABEL[NAME] (default NAME), then the line that says
# what segments/s and 1/median are. Sets SPS[NAME] (segments/s), MPS[NAME] (1/median) and
# RSS[NAME] (peak RSS KB), and BAD=1 when a call failed or fetched different bytes.
print_table() {
    local width=$1 name n failed sps med p90 max rss ident
    shift
    # shellcheck disable=SC2059 # the width is a number
    printf "\n%-${width}s %6s %6s %10s %11s %8s %8s %8s %12s %9s\n" phase calls failed segments/s \
        "1/median" "median ms" "p90 ms" "max ms" "peak RSS KB" identical
    for name in "$@"; do
        read -r n failed sps med p90 max rss ident <<<"$(stats "$DIR/results/$name")"
        # shellcheck disable=SC2034 # read by the scripts
        SPS[$name]=$sps RSS[$name]=$rss
        MPS[$name]=$(awk -v m="$med" 'BEGIN {printf "%.2f", 1000 / m}')
        # shellcheck disable=SC2059
        printf "%-${width}s %6s %6s %10s %11s %8s %8s %8s %12s %9s\n" "${LABEL[$name]:-$name}" "$n" \
            "$failed" "$sps" "${MPS[$name]}" "$med" "$p90" "$max" "$rss" "$ident"
        [ "$failed" = 0 ] || BAD=1
        [[ $ident != */* ]] || [ "${ident%/*}" = "${ident#*/}" ] || BAD=1
    done
    printf '\nsegments/s = calls / summed latency; 1/median = segments/s at the median latency\n'
}

# print_stderr NAME... : the first 5 lines of each non-empty $DIR/results/NAME.err.
print_stderr() {
    local name f
    for name in "$@"; do
        f=$DIR/results/$name.err
        if [ -s "$f" ]; then
            printf '\nstderr of %s (%d lines, first 5):\n' "$name" "$(wc -l <"$f")"
            head -n 5 "$f" | sed 's/^/  /'
        fi
    done
}

# bench_finish [MESSAGE]: exits 1 with MESSAGE (default: that of print_table) on stderr if BAD is
# set (print_table sets it).
# shellcheck disable=SC2120 # wal.sh and s3.sh take the default
bench_finish() {
    if [ "$BAD" != 0 ]; then
        echo "bench: ${1:-some calls failed or fetched different bytes}: the figures above are not valid" >&2
        exit 1
    fi
}
