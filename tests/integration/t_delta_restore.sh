#!/usr/bin/env bash
# t_delta_restore: interrupted incremental backups and `basebackup restore --delta` on a real
# PostgreSQL 15 (issue 17 items 5, 7 and 8; docs/design/incremental.md).
#   create killed   `create --type incr` killed (SIGKILL) at moments spread over an uninterrupted
#                   one's duration: the killed backup is not listed complete unless its manifest
#                   was stored (then it waits for its WAL only), and the next create, incr and
#                   full by turns, succeeds; an incr's reference is a backup listed complete
#   delta           the newest incremental restored and started; the copy diverges (rows changed,
#                   a table created, one dropped, a stray file in base/ and one at the top, a
#                   relation file truncated) and is stopped; `restore --delta` into it: every
#                   file outside what PostgreSQL excludes from backups equals an ordinary
#                   restore's (path, mode, size, SHA-256), every file that already matched keeps
#                   its inode and mtime (not rewritten), and the copy starts with the tables of the
#                   backup's moment and passes pg_amcheck
#   refusals        --delta while the copy's postmaster runs, and onto another system's data
#                   directory: exit 1, one line, nothing changed
#   delta killed    the copy diverges again; `restore --delta` killed at moments spread over the
#                   first one's duration, one after the other: pg_control never stands in an
#                   unfinished directory (PostgreSQL cannot start it by mistake); then one more
#                   `restore --delta` finishes: the files equal the ordinary restore's, the copy
#                   starts and matches the backup's moment
. "$(dirname "$0")/lib.sh"
setup_tmp

KILLS=${KILL_TRIALS:-4}
KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --) # execs CMD: a kill reaches it
CASE="set-up"
make_key "$KEY"
repo_setup local
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'" "compress = none"
BACKUPS=$REPO_FILES/main/backup
archiving_cluster "$PGD" "$CONF" --wal-segsize=1
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" "compress = none" "parallel = 2"
sql "$PORT" "alter system set autovacuum = off" && sql "$PORT" "alter system set fsync = off" &&
    sql "$PORT" "select pg_reload_conf()" >/dev/null || die "could not set autovacuum and fsync off"
pgbench_run "$PORT" -i -q -s 1 || die "pgbench -i failed"
sql "$PORT" "create table t_big (id int primary key, pad text);
             insert into t_big select g, repeat(md5(g::text), 4) from generate_series(1, 60000) g;
             create table t_keep (id int primary key, pad text);
             insert into t_keep select g, md5(g::text) from generate_series(1, 20000) g;
             create table t_drop (id int, pad text);
             insert into t_drop select g, 'drop me' from generate_series(1, 5000) g" ||
    die "could not fill the primary"
# a large file that never changes: a delta restore reads it and leaves it alone
head -c $((32 * 1024 * 1024)) /dev/urandom >"$PGD/zz_padding" && chown postgres: "$PGD/zz_padding" ||
    die "could not write $PGD/zz_padding"
bb_create "$CONF" --type full --label full

now_ms() { echo $(($(date +%s%N) / 1000000)); }
backup_dirs() { find "$BACKUPS" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | LC_ALL=C sort; }
ms_sleep() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }
# kill_at MS ARGS...: `basebackup --config CONF ARGS` as postgres (stdout, stderr in $T/kill.out,
# $T/kill.err), sent SIGKILL MS ms after its start; sets st to its exit status (137: killed).
kill_at() {
    local ms=$1 pid
    shift
    "${AS_PG[@]}" "$BASEBACKUP" --config "$CONF" "$@" >"$T/kill.out" 2>"$T/kill.err" &
    pid=$!
    ms_sleep "$ms"
    kill -KILL "$pid" 2>/dev/null
    { wait "$pid"; } 2>/dev/null
    st=$?
}

CASE="create killed"
# DUR: the shorter of two uninterrupted runs (a create whose id is taken waits for the next second)
DUR=1000000
for i in 1 2; do
    pgbench_run "$PORT" -n -c 2 -t 100 || die "pgbench failed"
    t0=$(now_ms)
    bb_create "$CONF" --type incr --label "measured-$i"
    d=$(($(now_ms) - t0))
    [ "$d" -ge "$DUR" ] || DUR=$d
done
# KILLS kills, the i-th at a moment in the i-th KILLS-th of the span: DUR, but no longer than the
# earliest moment at which a create had already finished (such a trial is repeated, up to KILLS
# more times).
killed=0 fin_min=$DUR k=0
while [ "$killed" -lt "$KILLS" ] && [ "$k" -lt $((2 * KILLS)) ]; do
    k=$((k + 1))
    pgbench_run "$PORT" -n -c 2 -t 30 || die "pgbench failed"
    at=$(((killed * fin_min + RANDOM % fin_min) / KILLS))
    before=$(backup_dirs)
    kill_at "$at" create --fast --type incr --label "kill-$k"
    id=$(LC_ALL=C comm -13 <(echo "$before") <(backup_dirs) | head -1)
    if [ "$st" = 137 ]; then
        killed=$((killed + 1))
        where="no backup directory yet"
        [ -z "$id" ] || where="backup $id: $(find "$BACKUPS/$id" -type f | wc -l) objects"
        [ -n "$id" ] && [ -e "$BACKUPS/$id/manifest" ] && where="$where, manifest stored"
        note "create killed after $at ms ($where)"
        if [ -n "$id" ] && bb_list "$CONF" &&
            [ "$(backup_status "$id")" = complete ] && [ ! -e "$BACKUPS/$id/manifest" ]; then
            fail "the create killed after $at ms is listed complete without a manifest ($id)"
        fi
    else
        note "create ended before the kill at $at ms (status $st)"
        [ "$at" -ge "$fin_min" ] || fin_min=$((at > 1 ? at : 1))
    fi
    if [ $((k % 2)) = 1 ]; then type=incr; else type=full; fi
    bb_create "$CONF" --type "$type" --label "after-kill-$k"
    if bb_list "$CONF"; then
        assert_eq "$(backup_field "$BACKUP_ID" type)" "$type" "type of the create after kill $k"
        if [ "$type" = incr ]; then
            ref=$(backup_field "$BACKUP_ID" reference)
            assert_eq "$(backup_status "$ref")" complete "status of $ref, reference of $BACKUP_ID"
        fi
    fi
done
[ "$killed" -ge $((KILLS / 2)) ] || fail "only $killed of $k creates were killed while running"
last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$PORT" "$last" 60 || die "archiving did not catch up"
bb --config "$CONF" verify --all
assert_rc 0 "verify --all after the kills"

CASE="the backup"
pgbench_run "$PORT" -n -c 2 -t 200 || die "pgbench failed"
sql "$PORT" "update t_big set pad = 'changed' where id % 50 = 0" || die "update t_big"
SNAP=$(table_sums "$PORT") || die "table_sums failed"
bb_create "$CONF" --type incr --label delta-source
B=$BACKUP_ID
[ "$(table_sums "$PORT")" = "$SNAP" ] || die "the primary changed while $B was taken"
SYSID=$(sysid_of "$PGD")
pg_stop "$PGD"
RARGS=(--backup "$B" --target-immediate --target-action promote)
bb_restore "$CONF" "$T/r_ref" "${RARGS[@]}" || die "the ordinary restore of $B failed"

# listing DIR: "path type mode size sha256" of everything under DIR but what PostgreSQL leaves
# out of base backups (backup/exclude.c's list), sorted.
EXCLUDED='^(pg_wal|pg_dynshmem|pg_notify|pg_replslot|pg_serial|pg_snapshots|pg_stat_tmp|pg_subtrans)/|^(postmaster\.pid|postmaster\.opts|backup_label\.old|tablespace_map\.old|current_logfiles|standby\.signal)( |$)|(^|/)pg_internal\.init( |$)|(^|/)pgsql_tmp'
listing() {
    (cd "$1" && find . -mindepth 1 -printf '%P %y %m %s\n' | grep -v -E "$EXCLUDED" |
        awk '$2 == "f" {print; next} {print $1, $2, $3}' | LC_ALL=C sort >"$T/.meta" &&
        awk '$2 == "f" {print $1}' "$T/.meta" | tr '\n' '\0' | xargs -0 -r sha256sum |
        awk '{print $2, $1}' | LC_ALL=C sort >"$T/.sums" &&
        LC_ALL=C join -a 1 "$T/.meta" "$T/.sums")
}
# stamps DIR: "path inode mtime" of every file under DIR, sorted.
stamps() { (cd "$1" && find . -type f -printf '%P %i %T@\n') | LC_ALL=C sort; }
# same_as_ref DIR WHAT: DIR's listing equals the ordinary restore's.
same_as_ref() {
    listing "$1" >"$T/got.list"
    if ! cmp -s "$T/ref.list" "$T/got.list"; then
        fail "$2: the files differ from an ordinary restore's:"
        diff "$T/ref.list" "$T/got.list" | head -20 | sed 's/^/      /'
        return 1
    fi
}
# check_copy DIR: starts DIR, which must reach the backup's moment and pass pg_amcheck; stops it.
check_copy() {
    start_restored "$1" "fsync = off"
    if pg_wait_promoted "$RPORT" "$1"; then
        got=$(table_sums "$RPORT")
        if [ "$got" != "$SNAP" ]; then
            fail "the tables differ from the primary's at the backup:"
            diff <(echo "$SNAP") <(echo "$got") | head -10 | sed 's/^/      /'
        fi
        amcheck "$RPORT" "${1##*/}"
    fi
    pg_stop "$1"
}
listing "$T/r_ref" >"$T/ref.list"

CASE="diverged copy"
D=$T/copy
bb_restore "$CONF" "$D" "${RARGS[@]}" || die "restore into $D failed"
start_restored "$D" "fsync = off"
pg_wait_promoted "$RPORT" "$D" || die "the copy did not start"
pgbench_run "$RPORT" -n -c 2 -t 100 || die "pgbench on the copy failed"
sql "$RPORT" "update t_big set pad = 'diverged' where id % 10 = 0;
              create table t_new as select generate_series(1, 3000) id;
              drop table t_drop" || die "could not change the copy"
KEEP_PATH=$(sql "$RPORT" "select pg_relation_filepath('t_keep')") || die "psql failed"
BIG_PATH=$(sql "$RPORT" "select pg_relation_filepath('t_big')") || die "psql failed"
DB_DIR=${KEEP_PATH%/*}
pg_stop "$D"
truncate -s 8192 "$D/$KEEP_PATH" || die "truncate $KEEP_PATH"
echo stray >"$D/$DB_DIR/999999" && echo stray >"$D/stray.txt" || die "stray files"
chown postgres: "$D/$DB_DIR/999999" "$D/stray.txt"

CASE="delta restore"
listing "$D" >"$T/before.list"
stamps "$D" >"$T/before.stamps"
# the files that already match the backup's: in both listings with the same line (but
# postgresql.auto.conf, where every restore writes the recovery settings)
LC_ALL=C comm -12 "$T/ref.list" "$T/before.list" |
    awk '$2 == "f" && $1 != "postgresql.auto.conf" {print $1}' >"$T/matching"
n_match=$(wc -l <"$T/matching")
n_ref=$(awk '$2 == "f"' "$T/ref.list" | wc -l)
note "$n_match of $n_ref files of the backup already match in the diverged copy"
[ "$n_match" -gt $((n_ref / 3)) ] || die "only $n_match of $n_ref files match: the case proves little"
grep -q -x "$KEEP_PATH" "$T/matching" && die "the truncated $KEEP_PATH matches the backup"
bb --config "$CONF" restore --delta --pgdata "$D" "${RARGS[@]}"
if assert_rc 0 "restore --delta onto the diverged copy"; then
    DELTA_MS=$ELAPSED_MS
    note "restore --delta took $DELTA_MS ms"
    same_as_ref "$D" "after restore --delta"
    stamps "$D" >"$T/after.stamps"
    rewritten=$(LC_ALL=C join "$T/before.stamps" "$T/after.stamps" | awk '$2 != $4 || $3 != $5 {print $1}' |
        LC_ALL=C comm -12 - "$T/matching")
    [ -z "$rewritten" ] ||
        fail "$(echo "$rewritten" | wc -l) files that matched were rewritten: $(echo "$rewritten" | tr '\n' ' ' | head -c 300)"
    assert_absent "$D/stray.txt" "a top-level file the backup does not have"
    assert_absent "$D/$DB_DIR/999999" "a relation-like file the backup does not have"
    check_copy "$D"
else
    DELTA_MS=2000
fi

CASE="refusals"
start_restored "$D" "fsync = off"
pg_wait_promoted "$RPORT" "$D" || die "the copy did not start"
bb --config "$CONF" restore --delta --pgdata "$D" "${RARGS[@]}"
assert_rc 1 "restore --delta while the copy's postmaster runs"
assert_err_one_line "restore --delta while the copy's postmaster runs"
[ -f "$D/global/pg_control" ] || fail "restore --delta refused a running copy but moved its pg_control"
pgbench_run "$RPORT" -n -c 2 -t 100 || die "pgbench on the copy failed" # the next case's divergence
sql "$RPORT" "update t_big set pad = 'diverged again'; drop table t_keep" || die "could not change the copy"
pg_stop "$D"
OTHER=$T/other
pg_init "$OTHER"
bb --config "$CONF" restore --delta --pgdata "$OTHER" "${RARGS[@]}"
assert_rc 1 "restore --delta onto another system's data directory"
assert_err_one_line "restore --delta onto another system's data directory"
assert_err_regex "system identifier|$SYSID" "restore --delta onto another system's data directory"
[ -f "$OTHER/global/pg_control" ] && [ "$(sysid_of "$OTHER")" != "$SYSID" ] ||
    fail "restore --delta refused another system's directory but changed its pg_control"

CASE="delta restore killed"
# damage: work for every run (a run that finished leaves nothing to do): zz_padding overwritten,
# t_big's file cut in half (if a killed run has not removed it), as after a bad deploy
damage() {
    head -c $((32 * 1024 * 1024)) /dev/urandom >"$D/zz_padding" || die "could not write $D/zz_padding"
    [ ! -f "$D/$BIG_PATH" ] || truncate -s $(($(stat -c %s "$D/$BIG_PATH") / 16384 * 8192)) "$D/$BIG_PATH" ||
        die "could not truncate $D/$BIG_PATH"
}
# KILLS kills spread over DELTA_MS as the creates' were over DUR (a finished run shortens the span)
killed=0 fin_min=$DELTA_MS k=0
while [ "$killed" -lt "$KILLS" ] && [ "$k" -lt $((2 * KILLS)) ]; do
    k=$((k + 1))
    damage
    listing "$D" >"$T/untouched.list"
    at=$(((killed * fin_min + RANDOM % fin_min) / KILLS))
    kill_at "$at" restore --delta --pgdata "$D" "${RARGS[@]}"
    if [ "$st" = 137 ]; then
        killed=$((killed + 1))
        note "restore --delta killed after $at ms"
        # PostgreSQL must not be able to start a directory the run had begun to change. A run
        # killed after it wrote pg_control (everything else synced before) and before it removed
        # its saved copy of the old one left a complete directory plus that copy.
        if [ -e "$D/global/pg_control" ]; then
            listing "$D" >"$T/got.list"
            grep -v '^global/pg_control\.walsafe-delta ' "$T/got.list" >"$T/got.nosaved.list"
            cmp -s "$T/ref.list" "$T/got.nosaved.list" || cmp -s "$T/untouched.list" "$T/got.list" ||
                fail "a killed restore --delta (after $at ms) left global/pg_control in a directory it had changed"
        fi
    else
        note "restore --delta ended before the kill at $at ms (status $st: $(head -c 200 "$T/kill.err"))"
        [ "$at" -ge "$fin_min" ] || fin_min=$((at > 1 ? at : 1))
    fi
done
[ "$killed" -ge $((KILLS / 2)) ] || fail "only $killed of $k delta restores were killed while running"
damage
bb --config "$CONF" restore --delta --pgdata "$D" "${RARGS[@]}"
if assert_rc 0 "restore --delta after the kills"; then
    same_as_ref "$D" "after the kills and one more restore --delta"
    check_copy "$D"
fi
# (the killed creates' temp objects stay: wal-prune removes them a day later, t_backup_kill.sh)
finish
