#!/usr/bin/env bash
# t_pushahead: push-ahead in wal-push (common/archive/pushahead.h) with parallel = 2.
#   (a) a backlog of 200 ready segments of real WAL drained by the calls PostgreSQL's archiver
#       makes (oldest first, .ready renamed to .done after each 0): every call exits 0, most are
#       answered from verified records, PostgreSQL's archive_status files are never touched by
#       wal-push, and every segment comes back byte-identical through wal-fetch;
#   (b) push-ahead killed with SIGKILL in the middle of its batch (the call and the batch's
#       process, at fixed delays; then the push-ahead process alone, at random moments, while
#       the call goes on and must succeed), several times: every record left stands for an
#       object that is in the repository with exactly that content, and the archiver's calls
#       afterwards all succeed;
#   (c) a record whose file changed under the same name is not trusted: the call pushes, the
#       duplicate policy refuses the different content (exit 1) and keeps the stored copy;
#   (d) a real cluster archives a backlog through wal-push with push-ahead (pg_stat_archiver
#       shows no failure) and a point-in-time recovery from that archive ends at its target;
#   (e) a backlog drained into an SFTP repository (a private sshd; one SSH session per worker,
#       none for the calls answered from records), every segment back byte-identical.
. "$(dirname "$0")/lib.sh"
setup_tmp

SEG_MB=1
N=200

KEY=$T/walsafe.key
make_key "$KEY"
# Fetching back needs no prefetch (wal-fetch's own feature, tested elsewhere): parallel = 1.
FETCH_CONF=$T/fetch.conf

# conf_for NAME [LINE...]: $T/NAME.conf with its own repository $T/NAME-repo and spool
# $T/NAME-spool (parallel = 2), and the fetch configuration pointed at that repository.
conf_for() {
    local name=$1
    shift
    make_repo "$T/$name-repo"
    write_conf "$T/$name.conf" "repo = '$T/$name-repo'" "encrypt_key_file = '$KEY'" \
        "parallel = 2" "spool_dir = '$T/$name-spool'" "$@"
    write_conf "$FETCH_CONF" "repo = '$T/$name-repo'" "encrypt_key_file = '$KEY'" "parallel = 1"
    CONF=$T/$name.conf
    REPO=$T/$name-repo
    PUSHED=$T/$name-spool/main/pushed
}

# as_pg CMD...: CMD as postgres by exec (no process in between, so a signal reaches CMD).
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

# settle SPOOL: waits (at most 60 s) until no batch process of SPOOL runs: each holds
# pushing/.alive shared for its life.
settle() {
    local f=$1/main/pushing/.alive
    [ -e "$f" ] || return 0
    timeout 60 flock "$f" true || fail "a push-ahead batch of $1 still runs after 60 s"
}

# ---- real WAL: 200 ready segments ------------------------------------------------------------
CASE="real WAL"
SRC=$T/src
pg_init "$SRC" --wal-segsize=$SEG_MB
PORT=$(free_port)
# archive_mode on with an empty archive_command: PostgreSQL keeps every completed segment and
# its .ready file, as behind a slow archive.
pg_conf "$SRC" "$PORT" "archive_mode = on" "archive_command = ''" "max_wal_size = '4GB'" \
    "checkpoint_timeout = '1h'"
pg_start "$SRC"
sql "$PORT" "create table t (id int, pad text)" || die "create table failed"
for i in $(seq 1 $N); do
    echo "insert into t select g, repeat(md5(g::text || '$i'), 4) from generate_series(1, 300) g;"
    echo "select pg_switch_wal();"
done >"$T/wal.sql"
"$PGBIN/psql" -h "$SOCK" -p "$PORT" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 \
    -f "$T/wal.sql" >/dev/null || die "WAL generation failed"
pg_stop "$SRC"
mapfile -t SEGS < <(ls "$SRC/pg_wal/archive_status" | sed -n 's/\.ready$//p' | LC_ALL=C sort)
[ "${#SEGS[@]}" -ge $N ] || die "only ${#SEGS[@]} ready segments, expected $N"
SEGS=("${SEGS[@]:0:$N}")
note "$N ready segments ${SEGS[0]} .. ${SEGS[$((N - 1))]}"

# lookalike DIR COUNT [copy]: a data directory as the archiver sees it: global/pg_control and
# pg_wal with the first COUNT segments (hard links, or copies with "copy") and their .ready.
lookalike() {
    local d=$1 count=$2 how=${3:-link} s
    mkdir -p "$d/global" "$d/pg_wal/archive_status" || die "mkdir $d"
    cp "$SRC/global/pg_control" "$d/global/" || die "copy pg_control"
    for s in "${SEGS[@]:0:$count}"; do
        if [ "$how" = copy ]; then cp "$SRC/pg_wal/$s" "$d/pg_wal/$s"; else ln "$SRC/pg_wal/$s" "$d/pg_wal/$s"; fi
        : >"$d/pg_wal/archive_status/$s.ready"
    done
    chown -R postgres: "$d"
}

# drain DIR CONF OUT: PostgreSQL's archiver over DIR: the oldest .ready first, `wal-push -v
# pg_wal/NAME` with DIR as working directory, .ready renamed to .done after exit 0. Writes
# "NAME STATUS" per call to OUT, stderr to OUT.err.
drain() {
    local d=$1 conf=$2 out=$3
    : >"$out"
    : >"$out.err"
    chown postgres: "$out" "$out.err"
    # shellcheck disable=SC2016 # expanded by the postgres shell
    as_pg bash -c '
        cd "$1" || exit 1
        for f in $(ls pg_wal/archive_status | sed -n "s/\.ready\$//p" | LC_ALL=C sort); do
            "$2" --config "$3" -v "pg_wal/$f" 2>>"$4.err"
            rc=$?
            echo "$f $rc" >>"$4"
            [ $rc = 0 ] && mv "pg_wal/archive_status/$f.ready" "pg_wal/archive_status/$f.done"
        done' drain "$d" "$WAL_PUSH" "$conf" "$out"
}

# check_records WHAT: every record in $PUSHED stands for an object in $REPO whose content, fetched
# with wal-fetch, is that of the segment. Sets RECORDS (their count).
check_records() {
    local r name
    RECORDS=0
    for r in "$PUSHED"/*; do
        [ -f "$r" ] || continue
        name=${r##*/}
        RECORDS=$((RECORDS + 1))
        new_dest
        run "$WAL_FETCH" --config "$FETCH_CONF" "$name" "$DEST"
        assert_rc 0 "$1: wal-fetch $name, which has a push-ahead record" || continue
        cmp -s "$DEST" "$SRC/pg_wal/$name" || fail "$1: $name has a record but the archive holds other content"
        rm -f "$DEST"
    done
}

# ---- (a) backlog --------------------------------------------------------------------------------
CASE="(a) backlog of $N"
A=$T/a
lookalike "$A" $N
conf_for a
t0=$(date +%s%N)
# The first call alone: it pushes X and starts the push-ahead process with the next 16 (8 per
# worker), and leaves archive_status as it was.
before=$(cd "$A/pg_wal/archive_status" && ls -l --time-style=+%s.%N | sha256sum)
run as_pg sh -c "cd '$A' && exec '$WAL_PUSH' --config '$CONF' -v 'pg_wal/${SEGS[0]}'"
assert_rc 0 "first call (${SEGS[0]})"
assert_err_regex "push-ahead: 16 ready WAL files after .* are being archived by process [0-9]+" "first call"
settle "$T/a-spool"
after=$(cd "$A/pg_wal/archive_status" && ls -l --time-style=+%s.%N | sha256sum)
assert_eq "$after" "$before" "archive_status after a call with push-ahead (names, sizes, times)"
# The process took the first 16 with the call, then refilled its queue until the backlog was
# done: a record for every file.
assert_eq "$(ls "$PUSHED" | wc -l)" $N "records after the first call and its push-ahead process"
mv "$A/pg_wal/archive_status/${SEGS[0]}.ready" "$A/pg_wal/archive_status/${SEGS[0]}.done"
drain "$A" "$CONF" "$T/a.calls"
settle "$T/a-spool"
ms=$((($(date +%s%N) - t0) / 1000000))
calls=$(wc -l <"$T/a.calls")
bad=$(awk '$2 != 0' "$T/a.calls")
assert_eq "$calls" $((N - 1)) "calls of the archiver after the first"
[ -z "$bad" ] || { fail "calls that did not exit 0: $(echo $bad | head -c 300)"; head -5 "$T/a.calls.err"; }
from_records=$(grep -c 'was archived ahead by an earlier call' "$T/a.calls.err")
batches=$(grep -c 'ready WAL files after .* are being archived by process' "$T/a.calls.err")
# Calls answered from records start the next batches while PostgreSQL works through the current
# one, so nearly every call after the first is answered from a record (a call that arrives
# before the next batch took its file pushes that file itself, which is fine, just slower).
[ "$from_records" -ge $((N - 11)) ] ||
    fail "only $from_records of $((N - 1)) calls were answered from a verified record"
grep -E 'WARNING|ERROR' "$T/a.calls.err" | head -5 | sed 's/^/      unexpected: /'
# no warning at all: in particular no "already archived with identical content" (no file was
# pushed twice)
[ -z "$(grep -E 'WARNING|ERROR' "$T/a.calls.err")" ] || fail "warnings or errors while draining"
note "$N segments drained in ${ms} ms ($from_records calls from records, $((batches + 1)) batches)"
assert_eq "$(ls "$A/pg_wal/archive_status" | grep -c '\.done$')" $N ".done files"
stored=$(find "$REPO/main/wal" -type f -name '0*' | wc -l)
assert_eq "$stored" $N "objects in the repository"
same=0
for s in "${SEGS[@]}"; do
    new_dest
    run "$WAL_FETCH" --config "$FETCH_CONF" "$s" "$DEST"
    if [ "$RC" = 0 ] && cmp -s "$DEST" "$SRC/pg_wal/$s"; then same=$((same + 1)); else
        fail_cmd "$s: wal-fetch exit $RC or content differs"; fi
    rm -rf "$DEST_DIR"
done
assert_eq "$same" $N "segments fetched back byte-identical"
assert_no_temp_files "$REPO" "repository after (a)"
assert_no_temp_files "$T/a-spool" "spool after (a)"

# ---- (b) SIGKILL in the middle of a batch ------------------------------------------------------
CASE="(b) SIGKILL mid-batch"
B=$T/b
NB=40
lookalike "$B" $NB
# zstd level 19: about 0.1 s per segment, so a batch takes long enough to be hit in the middle.
conf_for b "compress_level = 19"
mid=0
# Short delays too: on a fast machine the 40 files are all stored 0.45 s after the start.
for delay in 0.02 0.1 0.3 0.45 0.6 0.9; do
    rm -rf "$REPO" "$T/b-spool"
    make_repo "$REPO"
    # Not through the as_pg function: $! must be wal-push itself (setpriv and sh exec it).
    setpriv --reuid=postgres --regid=postgres --init-groups -- \
        sh -c "cd '$B' && exec '$WAL_PUSH' --config '$CONF' -v 'pg_wal/${SEGS[0]}'" \
        >/dev/null 2>"$T/b.err" &
    pid=$!
    # the batch's own process, which the call names as it starts it
    bpid=""
    for _ in $(seq 1 100); do
        bpid=$(sed -n 's/.*are being archived by process \([0-9]*\).*/\1/p' "$T/b.err")
        [ -n "$bpid" ] && break
        sleep 0.02
    done
    [ -n "$bpid" ] || { fail "kill after ${delay}s: the call named no batch process"; cat "$T/b.err"; }
    sleep "$delay"
    # both: the call (pushing X) and the batch, each by its PID, the batch only if it is ours
    {
        kill -KILL "$pid"
        if [ -n "$bpid" ] && tr '\0' ' ' <"/proc/$bpid/cmdline" | grep -q -F "$WAL_PUSH"; then
            kill -KILL "$bpid"
        fi
        wait "$pid"
    } 2>/dev/null
    settle "$T/b-spool"
    objects=$(find "$REPO/main/wal" -type f -name '0*' 2>/dev/null | wc -l)
    inflight=$(find "$REPO" -name '.walsafe-tmp*' 2>/dev/null | wc -l)
    check_records "kill after ${delay}s"
    # Only durable objects may have records; an object may lack its record (killed between).
    [ "$RECORDS" -le "$objects" ] || fail "kill after ${delay}s: $RECORDS records but $objects objects"
    note "kill after ${delay}s: $objects objects, $RECORDS records, $inflight uploads cut"
    [ "$objects" -lt $NB ] && [ "$inflight" -gt 0 ] && mid=$((mid + 1))
done
[ "$mid" -ge 1 ] || fail "no kill landed in the middle of a batch (uploads in flight)"
# The push-ahead process alone, killed at random moments while the call that started it goes
# on: the call still succeeds, and every record left stands for a stored, identical object.
# PA_SEED=<n> repeats a run.
seed=${PA_SEED:-$((RANDOM % 10000))}
RANDOM=$seed
note "random kills of the push-ahead process alone (PA_SEED=$seed)"
mid=0
for trial in 1 2 3 4; do
    delay=$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.02 + r / 32767 * 0.9 }')
    rm -rf "$REPO" "$T/b-spool"
    make_repo "$REPO"
    setpriv --reuid=postgres --regid=postgres --init-groups -- \
        sh -c "cd '$B' && exec '$WAL_PUSH' --config '$CONF' -v 'pg_wal/${SEGS[0]}'" \
        >/dev/null 2>"$T/b.err" &
    pid=$!
    bpid=""
    for _ in $(seq 1 100); do
        bpid=$(sed -n 's/.*are being archived by process \([0-9]*\).*/\1/p' "$T/b.err")
        [ -n "$bpid" ] && break
        sleep 0.02
    done
    sleep "$delay"
    # by its PID, and only if it is the push-ahead process this call started
    if [ -n "$bpid" ] && [ "$(cat "/proc/$bpid/comm" 2>/dev/null)" = wal-push-ahead ] &&
        tr '\0' ' ' <"/proc/$bpid/cmdline" 2>/dev/null | grep -q -F "$WAL_PUSH"; then
        kill -KILL "$bpid" 2>/dev/null
        killed=yes
    else
        killed="no (it had ended)"
    fi
    wait "$pid"
    rc=$?
    [ "$rc" = 0 ] || { fail "trial $trial: the call exited $rc after its push-ahead process was killed"; cat "$T/b.err"; }
    settle "$T/b-spool"
    objects=$(find "$REPO/main/wal" -type f -name '0*' 2>/dev/null | wc -l)
    inflight=$(find "$REPO" -name '.walsafe-tmp*' 2>/dev/null | wc -l)
    check_records "trial $trial (kill after ${delay}s)"
    [ "$RECORDS" -le "$objects" ] || fail "trial $trial: $RECORDS records but $objects objects"
    note "trial $trial: killed after ${delay}s: $killed; $objects objects, $RECORDS records, $inflight uploads cut"
    [ "$objects" -lt $NB ] && mid=$((mid + 1))
done
[ "$mid" -ge 1 ] || fail "no random kill landed before the backlog was stored"
# What the archiver does next: every call succeeds, every file is there.
drain "$B" "$CONF" "$T/b.calls"
settle "$T/b-spool"
bad=$(awk '$2 != 0' "$T/b.calls")
[ -z "$bad" ] || { fail "calls after the kill that did not exit 0: $(echo $bad)"; head -5 "$T/b.calls.err"; }
assert_eq "$(find "$REPO/main/wal" -type f -name '0*' | wc -l)" $NB "objects after the archiver's calls"
for s in "${SEGS[@]:0:$NB}"; do
    new_dest
    run "$WAL_FETCH" --config "$FETCH_CONF" "$s" "$DEST"
    { [ "$RC" = 0 ] && cmp -s "$DEST" "$SRC/pg_wal/$s"; } || fail_cmd "$s: not archived intact after the kills"
    rm -rf "$DEST_DIR"
done

# ---- (c) stale record --------------------------------------------------------------------------
CASE="(c) stale record"
C=$T/c
lookalike "$C" 20 copy
conf_for c
run as_pg sh -c "cd '$C' && exec '$WAL_PUSH' --config '$CONF' 'pg_wal/${SEGS[0]}'"
assert_rc 0 "first call"
settle "$T/c-spool"
mv "$C/pg_wal/archive_status/${SEGS[0]}.ready" "$C/pg_wal/archive_status/${SEGS[0]}.done"
S5=${SEGS[4]}
[ -f "$PUSHED/$S5" ] || die "no record for $S5 after the first call"
# The same name now holds other content (a restored cluster, a reused name): one byte differs.
flip_byte "$C/pg_wal/$S5" 100000
for s in "${SEGS[@]:1:3}"; do
    run as_pg sh -c "cd '$C' && exec '$WAL_PUSH' --config '$CONF' -v 'pg_wal/$s'"
    assert_rc 0 "call for $s" && assert_err_contains "archived ahead by an earlier call" "call for $s"
    mv "$C/pg_wal/archive_status/$s.ready" "$C/pg_wal/archive_status/$s.done"
done
run as_pg sh -c "cd '$C' && exec '$WAL_PUSH' --config '$CONF' 'pg_wal/$S5'"
assert_rc 1 "call for the changed $S5"
assert_err_contains "does not match WAL file \"pg_wal/$S5\" (the content differs)" "call for $S5"
assert_err_regex "already archived as .* with different content" "call for $S5"
assert_absent "$PUSHED/$S5" "record of $S5 after it was found stale"
new_dest
run "$WAL_FETCH" --config "$FETCH_CONF" "$S5" "$DEST"
{ [ "$RC" = 0 ] && cmp -s "$DEST" "$SRC/pg_wal/$S5"; } || fail_cmd "the stored $S5 is not the original"
# With its original content back, the call succeeds (identical copy: a warning, exit 0).
cp "$SRC/pg_wal/$S5" "$C/pg_wal/$S5"
run as_pg sh -c "cd '$C' && exec '$WAL_PUSH' --config '$CONF' 'pg_wal/$S5'"
assert_rc 0 "call for $S5 with its original content"
settle "$T/c-spool"

# ---- (d) a real cluster archiving through push-ahead, and PITR ---------------------------------
CASE="(d) real cluster"
conf_for d "log_level = 'info'"
DCONF=$CONF
PGD=$T/primary
COPY=$T/copy
pg_init "$PGD" --wal-segsize=$SEG_MB
DPORT=$(free_port)
pg_conf "$PGD" "$DPORT" "archive_mode = on" "archive_command = ''" "checkpoint_timeout = '1h'" \
    "max_wal_size = '1GB'"
pg_start "$PGD"
sql "$DPORT" "create table r (id int primary key, pad text)" || die "create table failed"
# -X fetch: nothing archives yet, and the copy needs the WAL of its own span; all WAL after it
# comes from the archive.
runuser -u postgres -- "$PGBIN/pg_basebackup" -h "$SOCK" -p "$DPORT" -U postgres -X fetch \
    -c fast -D "$COPY" >"$T/basebackup.log" 2>&1 || { cat "$T/basebackup.log"; die "pg_basebackup failed"; }
# A backlog while nothing archives, then the archive_command: the archiver meets 30 ready files.
for i in $(seq 1 30); do
    echo "insert into r select g, repeat(md5(g::text), 4) from generate_series($((i * 1000 - 999)), $((i * 1000))) g;"
    echo "select pg_switch_wal();"
done >"$T/d.sql"
"$PGBIN/psql" -h "$SOCK" -p "$DPORT" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 \
    -f "$T/d.sql" >/dev/null || die "workload failed"
sql "$DPORT" "alter system set archive_command = '$WAL_PUSH --config $DCONF %p'" >/dev/null &&
    sql "$DPORT" "select pg_reload_conf()" >/dev/null || die "could not set archive_command"
sql "$DPORT" "select pg_create_restore_point('pa_target')" >/dev/null || die "restore point failed"
sql "$DPORT" "insert into r select g, 'after' from generate_series(100001, 100500) g" || die "insert failed"
last=$(sql "$DPORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$DPORT" "$last" 60 || { show_log "$PGD.log"; die "archiving did not finish"; }
read -r archived failed < <(sql "$DPORT" "select archived_count, failed_count from pg_stat_archiver" | tr '|' ' ')
assert_eq "$failed" 0 "pg_stat_archiver.failed_count"
ahead=$(grep -c 'was archived ahead by an earlier call' "$PGD.log")
[ "$ahead" -ge 10 ] || { fail "only $ahead of $archived archiver calls were answered by push-ahead"; show_log "$PGD.log" 20; }
if grep -q -E 'wal-push: (ERROR|FATAL)|archive command failed' "$PGD.log"; then
    fail "the server log reports archiving errors"
    grep -E 'wal-push: (ERROR|FATAL)|archive command' "$PGD.log" | head -5 | sed 's/^/      /'
fi
note "$archived files archived, $ahead of them by push-ahead records"
pg_stop "$PGD"
settle "$T/d-spool"

RPORT=$(free_port)
pg_conf "$COPY" "$RPORT" "archive_mode = off" "archive_command = ''" \
    "restore_command = '$WAL_FETCH --config $FETCH_CONF %f %p'" \
    "recovery_target_name = 'pa_target'" "recovery_target_action = 'promote'"
touch "$COPY/recovery.signal" && chown postgres: "$COPY/recovery.signal"
pg_start "$COPY"
pg_wait_promoted "$RPORT" "$COPY" 60 || die "recovery did not finish"
assert_eq "$(sql "$RPORT" "select count(*), max(id) from r")" "30000|30000" \
    "rows after recovery to the restore point (the 500 rows after it absent)"
assert_eq "$(sql "$RPORT" "select count(*) from r where pad = repeat(md5(id::text), 4)")" 30000 \
    "rows intact"
pg_stop "$COPY"

# ---- (e) SFTP ----------------------------------------------------------------------------------
CASE="(e) SFTP"
E=$T/e
NE=24
lookalike "$E" $NE
repo_setup sftp
write_conf "$T/e.conf" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'" "parallel = 2" \
    "spool_dir = '$T/e-spool'"
write_conf "$FETCH_CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'" "parallel = 1"
t0=$(date +%s%N)
drain "$E" "$T/e.conf" "$T/e.calls"
settle "$T/e-spool"
ms=$((($(date +%s%N) - t0) / 1000000))
bad=$(awk '$2 != 0' "$T/e.calls")
[ -z "$bad" ] || { fail "calls that did not exit 0: $(echo $bad)"; head -5 "$T/e.calls.err"; }
from_records=$(grep -c 'was archived ahead by an earlier call' "$T/e.calls.err")
[ "$from_records" -ge $((NE - 3)) ] || fail "only $from_records of $NE calls were answered from records"
sessions=$(grep -c 'Accepted publickey' "$SSHD_LOG")
# the first call's X, and a session per worker of each push-ahead process (one or two)
[ "$sessions" -le 8 ] || fail "$sessions SSH sessions for $NE calls (records must not open one)"
note "$NE segments drained over SFTP in ${ms} ms, $from_records from records, $sessions SSH sessions"
for s in "${SEGS[@]:0:$NE}"; do
    new_dest
    run "$WAL_FETCH" --config "$FETCH_CONF" "$s" "$DEST"
    { [ "$RC" = 0 ] && cmp -s "$DEST" "$SRC/pg_wal/$s"; } || fail_cmd "$s: not archived intact over SFTP"
    rm -rf "$DEST_DIR"
done
assert_repo_clean "(e)"
finish
