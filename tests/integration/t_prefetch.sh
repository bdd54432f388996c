#!/usr/bin/env bash
# t_prefetch: wal-fetch's prefetch (parallel > 1, common/archive/prefetch.h) on real PostgreSQL WAL.
#   (a) a corrupted object in the middle of a run of archived segments, fetched in order as the
#       startup process does: that segment exits 255 with nothing in DEST_PATH and never shows
#       up in the spool; every other one comes back identical to its own object's content,
#       most of them from the spool;
#   (b) a cluster recovered through wal-fetch with prefetch (parallel 2) ends with the same data
#       (pgbench table checksums) as the primary and as a recovery without prefetch (parallel 1);
#   (c) the background prefetcher is detached (new session, stdin/stdout/stderr on /dev/null)
#       and gone after its idle timeout (WALSAFE_PREFETCH_IDLE_TIMEOUT, shortened here), with
#       its spool; a spool left by a killed prefetcher for another system's WAL under the same
#       names, same repository path and same data directory is never served.
# Every prefetcher this test starts is ended by the PID in its lock file, also on failure.
. "$(dirname "$0")/lib.sh"
setup_tmp

SEG_MB=1
IDLE=3
export WALSAFE_PREFETCH_IDLE_TIMEOUT=$IDLE # reaches PostgreSQL's restore_command too

KEY=$T/walsafe.key
REPO=$T/repo
SPOOL=$T/spool
make_key "$KEY"
make_repo "$REPO"
mkdir -m 700 "$SPOOL" && chown postgres: "$SPOOL" || die "could not create $SPOOL"
# Archiving without push-ahead (parallel 1): this test is about fetching.
write_conf "$T/push.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'" "parallel = 1"
write_conf "$T/p1.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'" "parallel = 1" \
    "spool_dir = '$SPOOL'"
write_conf "$T/p2.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'" "parallel = 2" \
    "spool_dir = '$SPOOL'"
write_conf "$T/p2info.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'" "parallel = 2" \
    "spool_dir = '$SPOOL'" "log_level = 'info'"

# ---- prefetcher processes ----
# is_prefetcher PID: PID is a prefetcher started by this test (its command line names $T).
is_prefetcher() {
    [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "wal-prefetch" ] &&
        tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -F -- "$T/"
}
# The PIDs in the lock files of every spool of this test.
prefetcher_pids() {
    local f
    for f in "$T"/spool*/*/prefetch-*/lock; do
        [ -f "$f" ] && head -1 "$f" 2>/dev/null
    done
}
prefetchers_stop() {
    local pid
    for pid in $(prefetcher_pids); do
        is_prefetcher "$pid" && kill -KILL "$pid" 2>/dev/null
    done
}
STOP_HOOKS+=(prefetchers_stop)

# spool_entries: the entry files ("<segment>.<hex>") in this test's prefetch spools.
spool_entries() {
    find "$SPOOL" -path '*/prefetch-*' -type f -name '[0-9A-F]*.*' -printf '%f\n' 2>/dev/null | sort
}

# fetch_as_pg CONF DATADIR NAME [-v]: wal-fetch NAME pg_wal/RECOVERYXLOG as PostgreSQL runs it
# (as postgres, in the data directory), through run (RC, stderr).
fetch_as_pg() {
    local conf=$1 dd=$2 name=$3
    shift 3
    rm -f "$dd/pg_wal/RECOVERYXLOG"
    run runuser -u postgres -- env -C "$dd" "$WAL_FETCH" --config "$conf" "$@" "$name" \
        pg_wal/RECOVERYXLOG
}

# fake_datadir DIR: a directory with an empty pg_wal, owned by postgres.
fake_datadir() {
    mkdir -p "$1/pg_wal" && chown -R postgres: "$1" || die "could not create $1"
}

# ---- the primary and its WAL ----
CASE="primary"
PGD=$T/primary
pg_init "$PGD" --wal-segsize=$SEG_MB
PORT=$(free_port)
pg_conf "$PGD" "$PORT" "archive_mode = on" \
    "archive_command = '$WAL_PUSH --config $T/push.conf %p'" \
    "checkpoint_timeout = '1h'" "max_wal_size = '1GB'"
pg_start "$PGD"
runuser -u postgres -- "$PGBIN/pg_basebackup" -h "$SOCK" -p "$PORT" -U postgres -X none \
    -c fast -D "$T/copyA" >"$T/basebackup.log" 2>&1 ||
    { cat "$T/basebackup.log"; die "pg_basebackup failed"; }
for c in copyB copyC copyD; do
    cp -a "$T/copyA" "$T/$c" || die "could not copy the base backup"
done
pgbench_run "$PORT" -i -q -s 4 || die "pgbench -i failed"
# (b) timeline switch: the point where a copy leaves timeline 1, with several segments after it
TARGET_LSN=$(sql "$PORT" "select pg_current_wal_lsn()") || die "psql failed"
for i in 1 2 3; do
    pgbench_run "$PORT" -n -c 2 -T 1 || die "pgbench failed"
    sql "$PORT" "select pg_switch_wal()" >/dev/null || die "pg_switch_wal failed"
done
SUMS=$(pgbench_sums "$PORT") || die "checksums failed"
last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$PORT" "$last" 90 || { show_log "$PGD.log"; die "archiving did not finish"; }
pg_stop "$PGD"
mapfile -t SEGS < <(find "$REPO/main/wal" -type f -name '[0-9A-F]*' ! -name '*.*' -printf '%f\n' |
    LC_ALL=C sort)
[ "${#SEGS[@]}" -ge 30 ] || die "only ${#SEGS[@]} segments archived; the test needs 30"
note "${#SEGS[@]} segments archived (${SEGS[0]} .. ${SEGS[-1]})"

# ---- (a) a corrupted object in the middle of a run ----
CASE="(a) corrupted object in a prefetch run"
FD=$T/fetchdata
fake_datadir "$FD"
mkdir -p "$T/ref" && chown postgres: "$T/ref"
RUN=("${SEGS[@]:10:14}")
BAD=${RUN[6]}
for s in "${RUN[@]}"; do
    run runuser -u postgres -- env -C "$FD" "$WAL_FETCH" --config "$T/p1.conf" "$s" "$T/ref/$s"
    assert_rc 0 "reference fetch of $s without prefetch" || die "no reference for $s"
done
BAD_OBJ=$REPO/main/wal/${BAD:0:16}/$BAD
cp -p "$BAD_OBJ" "$T/bad.orig"
flip_byte "$BAD_OBJ" $(($(stat -c %s "$BAD_OBJ") / 2))
served=0
for s in "${RUN[@]}"; do
    if [ "$s" = "$BAD" ]; then
        fetch_as_pg "$T/p2.conf" "$FD" "$s"
        assert_rc 255 "wal-fetch of the corrupted $s"
        assert_err_one_line "wal-fetch of the corrupted $s"
        assert_err_contains "$BAD" "wal-fetch of the corrupted $s"
        assert_dir_empty "$FD/pg_wal" "pg_wal after the corrupted $s"
        # asked again (PostgreSQL retries after a restart): still refused
        fetch_as_pg "$T/p2.conf" "$FD" "$s"
        assert_rc 255 "second wal-fetch of the corrupted $s"
        assert_dir_empty "$FD/pg_wal" "pg_wal after the second fetch of $s"
    else
        fetch_as_pg "$T/p2.conf" "$FD" "$s" -v
        assert_rc 0 "wal-fetch of $s with prefetch" || continue
        cmp -s "$FD/pg_wal/RECOVERYXLOG" "$T/ref/$s" ||
            fail "$s from wal-fetch with prefetch differs from its own object's content"
        grep -q -F "\"$s\" from the prefetch spool" "$T/.last.err" && served=$((served + 1))
        if grep -q -E 'WARNING|ERROR' "$T/.last.err"; then
            fail_cmd "wal-fetch of $s printed warnings or errors"
        fi
    fi
    spool_entries | grep -q "^$BAD\." && fail "the spool holds an entry of the corrupted $BAD"
done
rm -f "$FD/pg_wal/RECOVERYXLOG"
note "$served of $((${#RUN[@]} - 1)) good segments of the run came from the spool"
[ "$served" -ge $((${#RUN[@]} / 2)) ] ||
    fail "only $served of $((${#RUN[@]} - 1)) segments were served from the spool"
cp -p "$T/bad.orig" "$BAD_OBJ"

# ---- (c) the prefetcher is detached and ends by itself ----
CASE="(c) prefetcher lifetime"
PIDS=$(prefetcher_pids)
[ "$(echo "$PIDS" | grep -c .)" = 1 ] || fail "expected one prefetcher lock file, found: $PIDS"
PF=$(echo "$PIDS" | head -1)
if is_prefetcher "$PF"; then
    assert_eq "$(readlink "/proc/$PF/fd/0")" /dev/null "stdin of the prefetcher"
    assert_eq "$(readlink "/proc/$PF/fd/1")" /dev/null "stdout of the prefetcher"
    assert_eq "$(readlink "/proc/$PF/fd/2")" /dev/null "stderr of the prefetcher"
    # double fork: in a session of its own, of which it is not the leader (no terminal ever)
    sid=$(ps -o sid= -p "$PF" | tr -d ' ')
    [ -n "$sid" ] && [ "$sid" != "$(ps -o sid= -p $$ | tr -d ' ')" ] && [ "$sid" != "$PF" ] ||
        fail "the prefetcher is not in a session of its own (sid ${sid:-?})"
    [ "$(ps -o pgid= -p "$PF" | tr -d ' ')" != "$(ps -o pgid= -p $$ | tr -d ' ')" ] ||
        fail "the prefetcher is in the test's process group"
    start=$(date +%s)
    while is_prefetcher "$PF"; do
        if [ $(($(date +%s) - start)) -gt $((IDLE + 10)) ]; then
            fail "the prefetcher (pid $PF) still runs $((IDLE + 10))s after the last request"
            break
        fi
        sleep 0.2
    done
    note "the prefetcher exited $(($(date +%s) - start))s after the last request (idle timeout ${IDLE}s)"
    left=$(find "$SPOOL" -mindepth 2 -maxdepth 2 -name 'prefetch-*')
    [ -z "$left" ] || fail "the idle prefetcher left its spool: $(ls -A $left)"
else
    fail "no prefetcher runs right after the run (lock file names pid '${PF}')"
fi

# ---- (c) a spool left by another system ----
CASE="(c) stale spool of another system"
B=$T/other
pg_init "$B" --wal-segsize=$SEG_MB
make_repo "$T/repoB"
write_conf "$T/pushB.conf" "repo = '$T/repoB'" "encrypt_key_file = '$KEY'" "parallel = 1"
BPORT=$(free_port)
while [ "$BPORT" = "$PORT" ]; do BPORT=$(free_port); done
pg_conf "$B" "$BPORT" "archive_mode = on" "archive_command = '$WAL_PUSH --config $T/pushB.conf %p'"
pg_start "$B"
sql "$BPORT" "create table x (id int, pad text)" || die "create table on B failed"
for i in $(seq 1 10); do
    sql "$BPORT" "insert into x select g, md5(g::text) from generate_series(1, 2000) g" ||
        die "insert on B failed"
    lastB=$(sql "$BPORT" "select pg_walfile_name(pg_switch_wal())") || die "switch on B failed"
done
wait_archived "$BPORT" "$lastB" 60 || { show_log "$B.log"; die "B's archiving did not finish"; }
pg_stop "$B"
# N: a name both systems archived, with the 4 after it (k for parallel 2) archived by both.
N=""
for s in "${SEGS[@]}"; do
    ok=1
    for i in 0 1 2 3 4; do
        n=$(seg_name 1 $(($(seg_num "$s" $SEG_MB) + i)) $SEG_MB)
        [ -f "$REPO/main/wal/${n:0:16}/$n" ] && [ -f "$T/repoB/main/wal/${n:0:16}/$n" ] || ok=0
    done
    [ $ok = 1 ] && { N=$s; break; }
done
[ -n "$N" ] || die "the two systems archived no common run of 5 segment names"
NEXT=()
for i in 1 2 3 4; do NEXT+=("$(seg_name 1 $(($(seg_num "$N" $SEG_MB) + i)) $SEG_MB)"); done
# The repository path stays the same; first it holds A's WAL.
LIVE=$T/live
cp -a "$REPO" "$LIVE"
write_conf "$T/live.conf" "repo = '$LIVE'" "encrypt_key_file = '$KEY'" "parallel = 2" \
    "spool_dir = '$SPOOL'"
write_conf "$T/refB.conf" "repo = '$T/repoB'" "encrypt_key_file = '$KEY'" "parallel = 1"
FD2=$T/fetchdata2
fake_datadir "$FD2"
mkdir -p "$T/refA" "$T/refB" && chown postgres: "$T/refA" "$T/refB"
for s in "${NEXT[@]}"; do
    run runuser -u postgres -- env -C "$FD2" "$WAL_FETCH" --config "$T/refB.conf" "$s" "$T/refB/$s"
    assert_rc 0 "reference fetch of B's $s" || die "no reference of B's $s"
    run runuser -u postgres -- env -C "$FD2" "$WAL_FETCH" --config "$T/p1.conf" "$s" "$T/refA/$s"
    assert_rc 0 "reference fetch of A's $s" || die "no reference of A's $s"
    cmp -s "$T/refA/$s" "$T/refB/$s" && die "A's and B's $s are identical: no test"
done
fetch_as_pg "$T/live.conf" "$FD2" "$N"
assert_rc 0 "wal-fetch of A's $N with prefetch"
start=$(date +%s)
while [ "$(spool_entries | grep -c -E "^($(IFS='|'; echo "${NEXT[*]}"))\.")" -lt 4 ]; do
    [ $(($(date +%s) - start)) -lt 15 ] || die "the prefetcher did not spool ${NEXT[*]} within 15s"
    sleep 0.1
done
# Killed: its spool stays behind, as after a crash of the prefetcher alone.
STALE=$(spool_entries)
for pid in $(prefetcher_pids); do
    is_prefetcher "$pid" && kill -KILL "$pid"
done
sleep 0.3
note "stale spool: $(echo "$STALE" | grep -c .) entries of A's WAL"
# The repository at the same path now holds B's WAL under the same names.
mv "$LIVE" "$LIVE.A" && cp -a "$T/repoB" "$LIVE" || die "could not swap the repository"
for s in "${NEXT[@]}"; do
    fetch_as_pg "$T/live.conf" "$FD2" "$s"
    assert_rc 0 "wal-fetch of B's $s with A's stale spool" || continue
    if cmp -s "$FD2/pg_wal/RECOVERYXLOG" "$T/refA/$s"; then
        fail "wal-fetch served A's $s (a stale spool entry) from B's repository"
    elif ! cmp -s "$FD2/pg_wal/RECOVERYXLOG" "$T/refB/$s"; then
        fail "wal-fetch of $s returned neither A's nor B's content"
    fi
done
for f in $STALE; do
    spool_entries | grep -q -x -F "$f" && fail "stale entry $f is still in the spool"
done
rm -f "$FD2/pg_wal/RECOVERYXLOG"

# ---- (b) recovery with and without prefetch ----
# Starts the base backup copy DIR with restore_command through CONF, no target (to the end of
# the archive) unless LINEs set one, waits until it has promoted; sets RPORT and SECS.
# recover DIR CONF [LINE...]: LINEs replace "archive_mode = off" and add settings.
recover() {
    local d=$1 conf=$2 t0
    shift 2
    [ $# -gt 0 ] || set -- "archive_mode = off" "archive_command = ''"
    RPORT=$(free_port)
    while [ "$RPORT" = "$PORT" ] || [ "$RPORT" = "$BPORT" ]; do RPORT=$(free_port); done
    pg_conf "$d" "$RPORT" "$@" "restore_command = '$WAL_FETCH --config $conf %f %p'"
    touch "$d/recovery.signal" && chown postgres: "$d/recovery.signal"
    t0=$(date +%s%N)
    pg_start "$d"
    pg_wait_promoted "$RPORT" "$d" 90 || return 1
    SECS=$(awk -v n=$(($(date +%s%N) - t0)) 'BEGIN {printf "%.1f", n / 1e9}')
}

CASE="(b) recovery with prefetch"
recover "$T/copyA" "$T/p2info.conf" || die "recovery with prefetch failed"
SUMS_A=$(pgbench_sums "$RPORT")
assert_eq "$SUMS_A" "$SUMS" "pgbench checksums after recovery with prefetch"
restored=$(grep -c 'restored log file ".*" from archive' "$T/copyA.log")
from_spool=$(grep -c 'from the prefetch spool' "$T/copyA.log")
note "recovered with prefetch in ${SECS}s: $restored files restored, $from_spool from the spool"
[ "$restored" -ge 20 ] || fail "only $restored WAL files restored from the archive"
[ "$from_spool" -ge $((restored / 2)) ] ||
    fail "only $from_spool of $restored restored files came from the prefetch spool"
if grep -E 'wal-fetch.*(WARNING|ERROR)' "$T/copyA.log" | grep -q .; then
    fail "wal-fetch warned or failed during recovery:"
    grep -E 'wal-fetch.*(WARNING|ERROR)' "$T/copyA.log" | head -5 | sed 's/^/      /'
fi
pg_stop "$T/copyA"

CASE="(b) recovery without prefetch"
recover "$T/copyB" "$T/p1.conf" || die "recovery without prefetch failed"
SUMS_B=$(pgbench_sums "$RPORT")
assert_eq "$SUMS_B" "$SUMS" "pgbench checksums after recovery without prefetch"
assert_eq "$SUMS_A" "$SUMS_B" "checksums with prefetch vs without"
note "recovered without prefetch in ${SECS}s"
pg_stop "$T/copyB"

# ---- (b) recovery across a timeline switch ----
# C recovers to the middle of A's WAL, promotes to timeline 2 and archives into the same
# repository (A's timeline 1 goes on beyond the switch there). D, another copy of the base
# backup, follows the latest timeline through prefetch: it must end with C's data, so no
# segment of timeline 1 after the switch may ever be served in place of timeline 2's.
CASE="(b) timeline switch"
recover "$T/copyC" "$T/p1.conf" "archive_mode = on" \
    "archive_command = '$WAL_PUSH --config $T/push.conf %p'" \
    "recovery_target_lsn = '$TARGET_LSN'" "recovery_target_action = 'promote'" ||
    die "point-in-time recovery to $TARGET_LSN failed"
CPORT=$RPORT
assert_eq "$(sql "$CPORT" "select timeline_id from pg_control_checkpoint()")" 2 \
    "timeline of the promoted copy"
for i in 1 2 3 4 5; do # several segments on timeline 2
    pgbench_run "$CPORT" -n -c 2 -T 1 || die "pgbench on timeline 2 failed"
    lastC=$(sql "$CPORT" "select pg_walfile_name(pg_switch_wal())") || die "switch on timeline 2 failed"
done
SUMS_C=$(pgbench_sums "$CPORT") || die "checksums on timeline 2 failed"
wait_archived "$CPORT" "$lastC" 60 || { show_log "$T/copyC.log"; die "timeline 2 was not archived"; }
pg_stop "$T/copyC"
[ "$SUMS_C" != "$SUMS" ] || die "timeline 2 ends with the same data as timeline 1: no test"
[ -f "$REPO/main/wal/00000002.history" ] || die "no 00000002.history in the repository"
recover "$T/copyD" "$T/p2info.conf" "archive_mode = off" "archive_command = ''" \
    "recovery_target_timeline = 'latest'" || die "recovery along the latest timeline failed"
assert_eq "$(sql "$RPORT" "select timeline_id from pg_control_checkpoint()")" 3 \
    "timeline after recovery along timeline 2 and promotion"
assert_eq "$(pgbench_sums "$RPORT")" "$SUMS_C" "pgbench checksums after following timeline 2 with prefetch"
t1=$(grep -c 'restored log file "00000001' "$T/copyD.log")
t2=$(grep -c 'restored log file "00000002' "$T/copyD.log")
s2=$(grep -c '"00000002[0-9A-F]*" from the prefetch spool' "$T/copyD.log")
note "timeline switch: $t1 segments of timeline 1 and $t2 of timeline 2 restored, $s2 of them from the spool, in ${SECS}s"
[ "$t2" -ge 2 ] || fail "only $t2 segments of timeline 2 were restored"
[ "$s2" -ge 1 ] || fail "no segment of timeline 2 came from the prefetch spool"
pg_stop "$T/copyD"

CASE="(c) no prefetcher left"
start=$(date +%s)
while [ -n "$(find "$SPOOL" -mindepth 2 -maxdepth 2 -name 'prefetch-*')" ]; do
    if [ $(($(date +%s) - start)) -gt $((IDLE + 10)) ]; then
        fail "prefetch spools still there $((IDLE + 10))s after the last request: $(find "$SPOOL" -mindepth 2)"
        break
    fi
    sleep 0.2
done
for pid in $(prefetcher_pids); do
    is_prefetcher "$pid" && fail "prefetcher $pid still runs"
done
finish
