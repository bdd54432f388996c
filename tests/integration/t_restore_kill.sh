#!/usr/bin/env bash
# t_restore_kill: `basebackup restore` killed (SIGKILL) at random moments, then `restore --force`
# into the same target, gives a data directory identical to an uninterrupted restore: the same
# paths, types, modes, owners, sizes, link targets and contents (tablespace included, moved with
# --tablespace-map). A killed restore never leaves recovery.signal behind unless it had finished,
# and, run as root, its child (which does the work as the target's owner) ends with it.
# A root restore whose child is killed fails also when SIGCHLD is ignored. Without
# --tablespace-map too: a restore killed with files in the tablespace's original location
# is repeated with --force (the data directory it replaces links there, so that location is its
# own).
# Kills alternate between a restore run as root (the parent is killed) and one run as postgres.
. "$(dirname "$0")/lib.sh"
setup_tmp

TRIALS=${KILL_TRIALS:-6}
CONF=$T/walsafe.conf
PGD=$T/primary
TS=$T/ts_one

CASE="repository"
repo_setup local
write_conf "$CONF" "${REPO_CONF[@]}" "compress = none"

CASE="primary"
archiving_cluster "$PGD" "$CONF" --wal-segsize=1
backup_conf "$CONF" "$PGD" "$PORT" "compress = none"
mkdir -m 700 "$TS" && chown postgres: "$TS" || die "mkdir $TS"
sql "$PORT" "create tablespace ts_one location '$TS'" || die "create tablespace failed"
sql "$PORT" "create table in_ts tablespace ts_one as select g, md5(g::text) from generate_series(1, 20000) g" ||
    die "could not fill in_ts"
pgbench_run "$PORT" -i -q -s 4 || die "pgbench -i failed"
# a file of several pieces, so that the restore takes a measurable time
head -c $((96 * 1024 * 1024)) /dev/urandom >"$PGD/zz_padding" && chown postgres: "$PGD/zz_padding" ||
    die "could not write $PGD/zz_padding"
bb_create "$CONF" --label kill
pg_stop "$PGD"

# listing DIR TSDIR: every path under DIR and TSDIR (as TS/...) with type, mode, owner, size and
# link target, then the SHA-256 of every file. TSDIR is written TS wherever it appears (the two
# restores move the tablespace to directories of names as long), in tablespace_map too.
listing() {
    local dir=$1 ts=$2
    {
        (cd "$dir" && find . -mindepth 1 \( -type d -printf '%y %m %u:%g %p\n' \) -o \
            -printf '%y %m %u:%g %s %p -> %l\n')
        (cd "$ts" && find . -mindepth 1 \( -type d -printf 'TS %y %m %u:%g %p\n' \) -o \
            -printf 'TS %y %m %u:%g %s %p\n')
        (cd "$dir" && find . -type f ! -path ./tablespace_map -print0 | xargs -0 -r sha256sum)
        (cd "$ts" && find . -type f -print0 | xargs -0 -r sha256sum | sed 's/^/TS /')
        sed 's/^/tablespace_map: /' "$dir/tablespace_map"
    } | sed "s#$ts#TS#g" | LC_ALL=C sort
}

# restore_cmd USER DIR TSDIR: the restore command line, as USER (root or postgres).
restore_cmd() {
    local as=()
    [ "$1" = postgres ] && as=(setpriv --reuid=postgres --regid=postgres --init-groups)
    echo "${as[@]}" "$BASEBACKUP" --config "$CONF" restore --pgdata "$2" --tablespace-map "$TS=$3" --force
}

CASE="uninterrupted restore"
t0=$(date +%s%N)
run "$BASEBACKUP" --config "$CONF" restore --pgdata "$T/r_ref" --tablespace-map "$TS=$T/ts_ref"
assert_rc 0 "restore as root into a new directory" || die "the reference restore failed"
REF_MS=$((($(date +%s%N) - t0) / 1000000))
note "an uninterrupted restore takes $REF_MS ms"
listing "$T/r_ref" "$T/ts_ref" >"$T/ref.list"
[ "$(stat -c %U "$T/r_ref/PG_VERSION")" = postgres ] || fail "the reference restore's files are not postgres's"
grep -q ' ./zz_padding$' "$T/ref.list" || die "the reference listing has no zz_padding"

R=$T/r_kill
RTS=$T/ts_cut # as long a name as ts_ref
killed=0
for i in $(seq 1 "$TRIALS"); do
    CASE="kill $i"
    if [ $((i % 2)) -eq 1 ]; then who=root; else who=postgres; fi
    # moments spread over the whole restore, the first ones early
    ms=$((RANDOM % (REF_MS * i / TRIALS + 1)))
    # shellcheck disable=SC2046
    bg_start "$T/kill$i.log" $(restore_cmd $who "$R" "$RTS")
    pid=$BG_PID
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    if kill -KILL "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null
        st=$?
    else
        st=0
    fi
    # a restore run as root does its work in a child: it must end with its parent
    for _ in $(seq 1 40); do
        pgrep -f -- "--pgdata $R " >/dev/null || break
        sleep 0.05
    done
    left=$(pgrep -a -f -- "--pgdata $R " | head -3)
    [ -z "$left" ] || fail "restore processes left after the kill: $left"
    if [ "$st" -eq 137 ]; then
        killed=$((killed + 1))
        note "restore as $who killed after $ms ms"
        if [ -e "$R/recovery.signal" ]; then
            # only a restore that had finished may have written it
            listing "$R" "$RTS" | sed "s#$RTS#TS#g" >"$T/kill.list"
            cmp -s "$T/ref.list" "$T/kill.list" ||
                fail "a killed restore left recovery.signal in an incomplete directory"
        fi
    else
        note "restore as $who ended before the kill at $ms ms (status $st)"
    fi
done
[ "$killed" -ge $((TRIALS / 2)) ] || fail "only $killed of $TRIALS restores were killed while running"

CASE="restore --force after the kills"
run $(restore_cmd root "$R" "$RTS")
assert_rc 0 "restore --force into the killed restore's directory"
grep -q -- "--force: removing the contents" "$T/.last.err" || note "(nothing to remove: $(last_err))"
listing "$R" "$RTS" >"$T/final.list"
if ! cmp -s "$T/ref.list" "$T/final.list"; then
    fail "the directory differs from an uninterrupted restore's:"
    diff "$T/ref.list" "$T/final.list" | head -20 | sed 's/^/      /'
fi
note "compared $(grep -c . "$T/ref.list") lines of listing"

CASE="the child killed, SIGCHLD ignored"
# A caller may leave SIGCHLD ignored (inherited through exec): waitpid then cannot tell how the
# child ended. Root's restore whose child (postgres's: the owner can kill it) is killed midway
# must still fail, never exit 0 with an incomplete directory.
R3=$T/r_chld
bg_start "$T/chld.log" perl -e '$SIG{CHLD} = "IGNORE"; exec @ARGV or die "exec: $!"' \
    "$BASEBACKUP" --config "$CONF" restore --pgdata "$R3" --tablespace-map "$TS=$T/ts_chld"
pid=$BG_PID
child=""
for _ in $(seq 1 2000); do
    child=$(pgrep -P "$pid" | head -1)
    [ -n "$child" ] && [ -e "$R3/base" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.005
done
if [ -n "$child" ] && kill -KILL "$child" 2>/dev/null; then
    wait "$pid" 2>/dev/null
    st=$?
    [ "$st" -ne 0 ] || fail "restore whose child was killed (SIGCHLD ignored) exited 0: $(tail -1 "$T/chld.log")"
    assert_absent "$R3/recovery.signal" "a restore whose child was killed"
    note "restore whose child was killed, SIGCHLD ignored: exit $st ($(grep -v '^$' "$T/chld.log" | tail -1))"
else
    wait "$pid" 2>/dev/null
    die "could not kill the restore's child in time (the case proves nothing)"
fi

CASE="killed without --tablespace-map, then --force"
# As on another host, the tablespace goes to its original location (the stopped primary's moves
# aside). A restore killed once files are in it leaves that location non-empty; the data directory
# it replaces links there (links are made first), so --force empties it as the cluster's own.
mv "$TS" "$TS.primary" || die "mv $TS"
R2=$T/r_nomap
bg_start "$T/nomap.log" "$BASEBACKUP" --config "$CONF" restore --pgdata "$R2"
pid=$BG_PID
for _ in $(seq 1 2000); do
    [ -n "$(find "$TS" -type f 2>/dev/null | head -1)" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.005
done
kill -KILL "$pid" 2>/dev/null && note "restore without --tablespace-map killed with files in $TS"
wait "$pid" 2>/dev/null
for _ in $(seq 1 40); do
    pgrep -f -- "--pgdata $R2\$" >/dev/null || break
    sleep 0.05
done
[ -n "$(find "$TS" -type f 2>/dev/null | head -1)" ] || die "the killed restore put nothing into $TS"
run "$BASEBACKUP" --config "$CONF" restore --pgdata "$R2" --force
if assert_rc 0 "restore --force over a killed restore's original tablespace location"; then
    listing "$R2" "$TS" >"$T/nomap.list"
    if ! cmp -s "$T/ref.list" "$T/nomap.list"; then
        fail "the directory differs from an uninterrupted restore's:"
        diff "$T/ref.list" "$T/nomap.list" | head -20 | sed 's/^/      /'
    fi
fi

CASE="the restored copy starts"
start_restored "$R"
pg_wait_promoted "$RPORT" "$R" 60 &&
    assert_eq "$(sql "$RPORT" "select count(*) from in_ts")" 20000 "rows in the tablespace"
pg_stop "$R"
finish
