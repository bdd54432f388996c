#!/usr/bin/env bash
# t_concurrent: several wal-push processes at once. Into a fresh repository (so they race to
# record the cluster identity) with different segments: all succeed, one identity, every
# segment intact. With the same segment: all succeed, exactly one stores it and the others
# report the identical copy; one object, no temp files. Parallel fetches all verify.
. "$(dirname "$0")/lib.sh"
setup_tmp

SEG_MB=1
N=6
KEY=$T/walsafe.key
make_key "$KEY"
PGD=$T/pg

CASE="setup"
pg_init "$PGD" --wal-segsize=$SEG_MB
PORT=$(free_port)
pg_conf "$PGD" "$PORT" "checkpoint_timeout = '1h'" "max_wal_size = '1GB'"
pg_start "$PGD"
sql "$PORT" "create table t (id int, pad text)" || die "create table failed"
segs=()
for i in $(seq 1 $N); do
    sql "$PORT" "insert into t select g, md5(g::text) from generate_series(1, 2000) g" ||
        die "insert failed"
    segs+=("$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())")") || die "switch failed"
done
pg_stop_immediate "$PGD"
for s in "${segs[@]}"; do [ -f "$PGD/pg_wal/$s" ] || die "segment $s missing from pg_wal"; done
SYSID=$(sysid_of "$PGD")

# start_all CMD-TEMPLATE...: runs jobs released together; job i's output in $T/job.i.{out,err,rc}.
GO=$T/go
launch() { # I CMD...
    local i=$1
    shift
    (
        while [ ! -e "$GO" ]; do sleep 0.005; done
        "$@" >"$T/job.$i.out" 2>"$T/job.$i.err"
        echo $? >"$T/job.$i.rc"
    ) &
    PIDS+=($!)
}
release_and_wait() {
    sleep 0.2
    touch "$GO"
    for p in "${PIDS[@]}"; do wait "$p"; done
    rm -f "$GO"
    PIDS=()
}
PIDS=()

CASE="different segments, fresh repository"
REPO=$T/repo1
make_repo "$REPO"
write_conf "$T/c1.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'"
for i in $(seq 1 $N); do
    launch "$i" "$WAL_PUSH" --config "$T/c1.conf" "$PGD/pg_wal/${segs[$((i - 1))]}"
done
release_and_wait
for i in $(seq 1 $N); do
    rc=$(cat "$T/job.$i.rc")
    [ "$rc" = 0 ] || fail "wal-push of ${segs[$((i - 1))]} exited $rc: $(head -3 "$T/job.$i.err")"
    ! grep -q -E 'Sanitizer|runtime error' "$T/job.$i.err" || fail "sanitizer report in job $i"
done
ids=$(find "$REPO/main" -maxdepth 1 -name 'identity*' | wc -l)
assert_eq "$ids" 1 "identity objects"
grep -a -q "system_identifier = $SYSID" "$REPO/main/identity" || fail "identity does not name $SYSID"
for s in "${segs[@]}"; do
    new_dest
    run "$WAL_FETCH" --config "$T/c1.conf" "$s" "$DEST"
    assert_rc 0 "wal-fetch $s" && { cmp -s "$DEST" "$PGD/pg_wal/$s" || fail "fetched $s differs"; }
done
assert_no_temp_files "$REPO" "after concurrent pushes"

CASE="same segment, $N pushes at once"
REPO=$T/repo2
make_repo "$REPO"
write_conf "$T/c2.conf" "repo = '$REPO'" "encrypt_key_file = '$KEY'"
S=${segs[2]}
for i in $(seq 1 $N); do
    launch "$i" "$WAL_PUSH" --config "$T/c2.conf" "$PGD/pg_wal/$S"
done
release_and_wait
warned=0
for i in $(seq 1 $N); do
    rc=$(cat "$T/job.$i.rc")
    [ "$rc" = 0 ] || fail "push $i of $S exited $rc: $(head -3 "$T/job.$i.err")"
    grep -q -i 'warning' "$T/job.$i.err" && warned=$((warned + 1))
    grep -q -E 'ERROR|Sanitizer|runtime error' "$T/job.$i.err" &&
        fail "push $i of $S reported an error: $(head -3 "$T/job.$i.err")"
done
assert_eq "$warned" $((N - 1)) "pushes that found the identical copy already stored (with a warning)"
objs=$(find "$REPO/main/wal" -type f | wc -l)
assert_eq "$objs" 1 "objects in the repository"
assert_no_temp_files "$REPO" "after concurrent identical pushes"
bad=$(find "$REPO" \( -type d ! -perm 700 \) -o \( -type f ! -perm 600 \) -printf '%m %p\n')
[ -z "$bad" ] || fail "wrong modes: $bad"

CASE="parallel fetches"
for i in $(seq 1 $N); do
    mkdir -p "$T/pf.$i"
    launch "$i" "$WAL_FETCH" --config "$T/c2.conf" "$S" "$T/pf.$i/RECOVERYXLOG"
done
release_and_wait
for i in $(seq 1 $N); do
    rc=$(cat "$T/job.$i.rc")
    [ "$rc" = 0 ] || fail "fetch $i of $S exited $rc: $(head -3 "$T/job.$i.err")"
    cmp -s "$T/pf.$i/RECOVERYXLOG" "$PGD/pg_wal/$S" || fail "fetch $i of $S differs"
    assert_eq "$(ls -A "$T/pf.$i")" RECOVERYXLOG "files in fetch $i's directory"
done

finish
