#!/usr/bin/env bash
# t_remote: `basebackup create` from a central backup host: no pgdata in the configuration, so
# create streams the backup with BASE_BACKUP over a replication connection (docs/design/remote.md).
# The server listens on TCP 127.0.0.1 with scram-sha-256 authentication (pg_hba.conf written here);
# walsafe connects as walsafe_repl, a role with REPLICATION and nothing else, whose password is
# only in a .pgpass file named by PGPASSFILE. The server archives with wal-push into the same
# repository. The cluster has a tablespace with a table and an index in it.
#   - a full backup of the primary while pgbench runs;
#   - a backup of a hot standby (streaming from the primary, made with pg_basebackup): BASE_BACKUP
#     on a standby, its WAL archived by the primary;
#   - an incremental backup (stream) after more changes, taken while the primary is idle;
#   - list: all three complete, the incremental with its reference; verify --all passes;
#   - restore --target-lsn (the primary's full backup), --target-time (no --backup: the
#     standby's backup is the newest before it) and the incremental with --target-immediate, each
#     into its own directory (tablespace relocated), started on its own port with archiving off:
#     every table of every database holds exactly the rows of the target (table_sums), an
#     unlogged table is there and empty;
#   - a create where all is well prints its id and only its summary line; the password appears in no
#     output of walsafe and no server log.
. "$(dirname "$0")/lib.sh"
setup_tmp
. "$(dirname "$0")/remote.sh"

SCONF=$T/walsafe-standby.conf
SBY=$T/standby
TS=$T/ts_one
TS_SBY=$T/ts_standby
remote_primary
for d in "$TS" "$TS_SBY"; do mkdir -p "$d" && chown postgres: "$d" && chmod 700 "$d" || die "mkdir $d"; done
sql "$PORT" "create tablespace ts_one location '$TS'" || die "create tablespace failed"
sql "$PORT" "create table in_ts (id int primary key using index tablespace ts_one, v int, pad text)
                 tablespace ts_one;
             insert into in_ts select g, 0, md5(g::text) from generate_series(1, 5000) g" ||
    die "could not fill the tablespace"
sql "$PORT" "create unlogged table ul (id int); insert into ul select generate_series(1, 1000)" ||
    die "could not fill the unlogged table"
pgbench_run "$PORT" -i -q -s 1 || die "pgbench -i failed"

CASE="hot standby"
runuser -u postgres -- "$PGBIN/pg_basebackup" -h "$SOCK" -p "$PORT" -U postgres -X stream -R \
    -c fast -T "$TS=$TS_SBY" -D "$SBY" >"$T/pg_basebackup.out" 2>&1 ||
    { cat "$T/pg_basebackup.out"; die "pg_basebackup of the primary failed"; }
SPORT=$(free_port)
while [ "$SPORT" = "$PORT" ]; do SPORT=$(free_port); done
remote_settings "$SBY" "$SPORT" "archive_mode = off" "archive_command = ''" "hot_standby = on"
pg_start "$SBY"
assert_eq "$(sql "$SPORT" "select pg_is_in_recovery()")" t "the standby is in recovery"
remote_conf "$SCONF" "$SPORT" "encrypt_key_file = '$KEY'"

# tick_primary PID: while PID runs, a row and a WAL switch on the primary every 0.3 s, so
# that the segment of a standby backup's stop position reaches the repository.
tick_primary() {
    while kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]; do
        sql "$PORT" "insert into ticks values (default); select pg_switch_wal()" >/dev/null 2>&1
        sleep 0.3
    done
}
sql "$PORT" "create table ticks (id serial primary key)" || die "create table ticks failed"

CASE="backups while pgbench runs"
bg_start "$T/pgbench-bg.log" env PGOPTIONS="$PGBENCH_OPTIONS" "$PGBIN/pgbench" -h "$SOCK" \
    -p "$PORT" -U postgres -n -c 2 -T 100 postgres
PGBENCH_PID=$BG_PID
hist() { sql "$PORT" "select count(*) from pgbench_history"; }
H0=$(hist) || die "psql failed"
bb_create "$CONF" --label remote-full
ID_FULL=$BACKUP_ID
assert_err_summary "create (stream) of the primary, all well"
H1=$(hist) || die "psql failed"
[ "$H1" -gt "$H0" ] || fail "pgbench committed nothing during the full backup ($H0 -> $H1)"

CASE="backup of the hot standby"
t0=$(date +%s)
bg_start "$T/create-standby.out" runuser -u postgres -- \
    "$BASEBACKUP" --config "$SCONF" create --fast --label remote-standby
CREATE_PID=$BG_PID
tick_primary "$CREATE_PID"
bg_wait "$CREATE_PID" 60
rc=$?
check_no_secrets "$T/create-standby.out"
ID_SBY=$(grep -E '^[0-9]{8}T[0-9]{6}Z$' "$T/create-standby.out" | tail -1)
if [ "$rc" -ne 0 ] || [ -z "$ID_SBY" ]; then
    sed 's/^/      /' "$T/create-standby.out" | head -20
    die "create from the standby exited $rc"
fi
other=$(grep -v -E -e '^[0-9]{8}T[0-9]{6}Z$' -e "^backup $ID_SBY complete: " "$T/create-standby.out")
grep -q "^backup $ID_SBY complete: " "$T/create-standby.out" || fail "create from the standby: no summary line"
[ -z "$other" ] || fail "create from the standby, all well, said: $(echo "$other" | head -3 | tr '\n' '|')"
note "backup $ID_SBY created from the standby in $(($(date +%s) - t0))s"
kill -0 "$PGBENCH_PID" 2>/dev/null || fail "pgbench ended before the backups did (not taken under load)"
kill -TERM "$PGBENCH_PID" 2>/dev/null
bg_wait "$PGBENCH_PID" 20 >/dev/null

CASE="targets"
pgbench_run "$PORT" -n -c 2 -t 100 || die "pgbench failed"
sql "$PORT" "update in_ts set v = 1 where id % 7 = 0" || die "update failed"
TARGET_LSN=$(sql "$PORT" "select pg_current_wal_insert_lsn()") || die "psql failed"
SUM_LSN=$(table_sums "$PORT") || die "table_sums failed"
pgbench_run "$PORT" -n -c 2 -t 100 || die "pgbench failed"
sql "$PORT" "update in_ts set v = 2 where id % 5 = 0" || die "update failed"
# restore takes a backup for a time target when its stop time (whole seconds) + 1 s is before it
sleep 1
TARGET_TIME=$(sql "$PORT" "select clock_timestamp()") || die "psql failed"
SUM_TIME=$(table_sums "$PORT") || die "table_sums failed"

CASE="incremental (stream)"
pgbench_run "$PORT" -n -c 2 -t 100 || die "pgbench failed"
sql "$PORT" "update in_ts set v = 3 where id % 3 = 0;
             insert into in_ts select g, 3, md5(g::text) from generate_series(5001, 6000) g" ||
    die "update failed"
SUM_INCR=$(table_sums "$PORT") || die "table_sums failed"
bb_create "$CONF" --type incr --label remote-incr
ID_INCR=$BACKUP_ID
assert_err_summary "create --type incr (stream), all well"
pgbench_run "$PORT" -n -c 2 -t 100 || die "pgbench failed"
SUM_END=$(table_sums "$PORT") || die "table_sums failed"
n=$(printf '%s\n' "$SUM_LSN" | sha256sum; printf '%s\n' "$SUM_TIME" | sha256sum;
    printf '%s\n' "$SUM_INCR" | sha256sum; printf '%s\n' "$SUM_END" | sha256sum)
assert_eq "$(echo "$n" | sort -u | wc -l)" 4 "distinct table sums at the four points"
last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$PORT" "$last" 60 || { show_log "$PGD.log"; die "archiving did not finish"; }
assert_eq "$(sql "$PORT" "select failed_count from pg_stat_archiver")" 0 "primary archiver failures"
pg_stop "$SBY"
pg_stop "$PGD"

CASE="list and verify"
if bb_list "$CONF"; then
    for id in "$ID_FULL" "$ID_SBY" "$ID_INCR"; do
        assert_eq "$(backup_status "$id")" complete "status of $id"
    done
    assert_eq "$(backup_field "$ID_FULL" type)" full "type of $ID_FULL"
    assert_eq "$(backup_field "$ID_SBY" type)" full "type of $ID_SBY"
    assert_eq "$(backup_field "$ID_INCR" type)" incr "type of $ID_INCR"
    ref=$(backup_field "$ID_INCR" reference)
    [ "$ref" = "$ID_FULL" ] || [ "$ref" = "$ID_SBY" ] ||
        fail "reference of $ID_INCR is \"$ref\", expected $ID_FULL or $ID_SBY"
    assert_eq "$(json_eval "$T/list.json" "j.system_identifier")" "$(sysid_of "$PGD")" "system identifier"
fi
bb --config "$CONF" verify --all
assert_rc 0 "verify --all"

# restore_check NAME WANT LABEL TS_FROM RESTORE_ARGS...: restores into r_NAME (the tablespace at
# TS_FROM relocated to r_NAME.ts), starts it, waits for the promotion at the target and compares
# every table with WANT.
restore_check() {
    local name=$1 want=$2 label=$3 from=$4 dir=$T/r_$1 got
    shift 4
    CASE="restore $name"
    mkdir -p "$dir.ts" && chown postgres: "$dir.ts" && chmod 700 "$dir.ts" || die "mkdir $dir.ts"
    bb_restore "$CONF" "$dir" --tablespace-map "$from=$dir.ts" --target-action promote "$@" || return 1
    assert_eq "$(backup_label_of "$dir")" "$label" "backup restored"
    start_restored "$dir"
    pg_wait_promoted "$RPORT" "$dir" || return 1
    got=$(table_sums "$RPORT")
    if ! assert_eq "$(echo "$got" | sha256sum)" "$(echo "$want" | sha256sum)" "table sums after recovery"; then
        diff <(echo "$want") <(echo "$got") | head -10 | sed 's/^/      /'
    fi
    assert_eq "$(unlogged_tables "$RPORT" postgres)" "ul 0" "unlogged table of the restored copy"
    assert_eq "$(sql "$RPORT" "select pg_tablespace_location(oid) from pg_tablespace where spcname = 'ts_one'")" \
        "$dir.ts" "tablespace location of the restored copy"
    if grep -q -E 'wal-fetch: (ERROR|FATAL)' "$dir.log"; then
        fail "wal-fetch reported errors during recovery:"
        grep -E 'wal-fetch' "$dir.log" | head -5 | sed 's/^/      /'
    fi
    pg_stop "$dir"
}

restore_check lsn "$SUM_LSN" remote-full "$TS" --backup "$ID_FULL" --target-lsn "$TARGET_LSN"
restore_check time "$SUM_TIME" remote-standby "$TS_SBY" --target-time "$TARGET_TIME"
restore_check incr "$SUM_INCR" remote-incr "$TS" --backup "$ID_INCR" --target-immediate

CASE="secrets"
# The password is in the .pgpass file only; run and cleanup check every output and server log.
grep -r -l -F "$REPL_PW" "$T" --exclude=pgpass 2>/dev/null | sed 's/^/      /' | grep . &&
    fail "the password appears in the files above"
assert_repo_clean "repository"
finish
