#!/usr/bin/env bash
# t_backup_pitr: point-in-time recovery from `basebackup` backups. A pgbench database is backed
# up while pgbench writes to it, pgbench goes on, and a target of every kind is recorded with
# an md5 of every pgbench table as of that target; a second backup is taken half-way. Each
# target is then restored with `basebackup restore` into a new directory, started on a port of
# its own (archive_mode = off: a restored copy must not archive into the repository) and, once
# recovery has stopped at the target, must hold exactly the rows of that moment:
#   --target-lsn        (no --backup: the first backup, the only one that ends before it)
#   --target-xid        (--backup ID)
#   --target-name       (pg_create_restore_point; default action: pause at the target)
#   --target-time       (no --backup: the second backup, the newest that ends before it)
#   --target-immediate  (the first backup, taken under load: consistent, nothing of later)
# The repository is REPO_KIND (local, s3 or sftp; default local).
. "$(dirname "$0")/lib.sh"
setup_tmp

SCALE=5
KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
CASE="repository (${REPO_KIND:-local})"
make_key "$KEY"
repo_setup "${REPO_KIND:-local}"
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"

CASE="primary"
archiving_cluster "$PGD" "$CONF" --wal-segsize=4
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'"
t0=$(date +%s)
pgbench_run "$PORT" -i -q -s "$SCALE" || die "pgbench -i failed"
note "pgbench -i -s $SCALE in $(($(date +%s) - t0))s"

hist_count() { sql "$1" "select count(*) from pgbench_history"; }

CASE="backup while pgbench runs"
bg_start "$T/pgbench-bg.log" env PGOPTIONS="$PGBENCH_OPTIONS" "$PGBIN/pgbench" -h "$SOCK" -p "$PORT" -U postgres -n -c 2 -T 60 postgres
PGBENCH_PID=$BG_PID
sleep 1
H_BEFORE=$(hist_count "$PORT") || die "psql failed"
bb_create "$CONF" --label pitr-one
ID1=$BACKUP_ID
H_AFTER=$(hist_count "$PORT") || die "psql failed"
kill -0 "$PGBENCH_PID" 2>/dev/null || fail "pgbench ended before the backup did (the backup was not taken under load)"
[ "$H_AFTER" -gt "$H_BEFORE" ] || fail "pgbench committed nothing during the backup ($H_BEFORE -> $H_AFTER)"
sleep 1
kill -TERM "$PGBENCH_PID" 2>/dev/null
bg_wait "$PGBENCH_PID" 20 >/dev/null
sql "$PORT" "create table after_backup (x int)" || die "create table failed"
note "pgbench_history: $H_BEFORE rows before the backup, $H_AFTER when it returned"

CASE="targets"
pgbench_run "$PORT" -n -c 2 -t 150 || die "pgbench failed"
# The insert position: with pgbench's asynchronous commits the write position may lag behind.
TARGET_LSN=$(sql "$PORT" "select pg_current_wal_insert_lsn()") || die "psql failed"
SUM_LSN=$(pgbench_sums "$PORT") || die "checksums failed"

pgbench_run "$PORT" -n -c 2 -t 150 || die "pgbench failed"
TARGET_XID=$(sql "$PORT" "insert into pgbench_history (tid, bid, aid, delta, mtime)
                          values (1, 1, 1, 424242, now()) returning txid_current()") || die "psql failed"
SUM_XID=$(pgbench_sums "$PORT") || die "checksums failed"

pgbench_run "$PORT" -n -c 2 -t 150 || die "pgbench failed"
bb_create "$CONF" --label pitr-two
ID2=$BACKUP_ID

pgbench_run "$PORT" -n -c 2 -t 150 || die "pgbench failed"
sql "$PORT" "select pg_create_restore_point('walsafe_it_target')" >/dev/null || die "psql failed"
SUM_NAME=$(pgbench_sums "$PORT") || die "checksums failed"

pgbench_run "$PORT" -n -c 2 -t 150 || die "pgbench failed"
sleep 1
TARGET_TIME=$(sql "$PORT" "select clock_timestamp()") || die "psql failed"
SUM_TIME=$(pgbench_sums "$PORT") || die "checksums failed"
sleep 1

# Commits after the last target, archived: recovery must find them to know it reached it.
pgbench_run "$PORT" -n -c 2 -t 150 || die "pgbench failed"
SUM_END=$(pgbench_sums "$PORT") || die "checksums failed"
last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$PORT" "$last" 90 || { show_log "$PGD.log"; die "archiving did not finish"; }
assert_eq "$(sql "$PORT" "select failed_count from pg_stat_archiver")" 0 "primary archiver failures"
H_END=$(hist_count "$PORT")
# Every target must be told apart from the others, or a wrong stop would go unnoticed.
n=$(printf '%s\n' "$SUM_LSN" "$SUM_XID" "$SUM_NAME" "$SUM_TIME" "$SUM_END" | sort -u | wc -l)
assert_eq "$n" 5 "distinct table checksums at the five points"
note "targets: lsn $TARGET_LSN, xid $TARGET_XID, name walsafe_it_target, time $TARGET_TIME"
pg_stop "$PGD"

CASE="list and verify"
if bb_list "$CONF"; then
    assert_eq "$(backup_status "$ID1")" complete "status of $ID1"
    assert_eq "$(backup_status "$ID2")" complete "status of $ID2"
    assert_eq "$(json_eval "$T/list.json" "j.backups.find(b => b.id === '$ID1').label")" pitr-one \
        "label of $ID1"
    assert_eq "$(json_eval "$T/list.json" "[j.cluster, j.system_identifier].join(' ')")" \
        "main $(sysid_of "$PGD")" "cluster and system_identifier"
    # The fields SPEC.md promises for every backup.
    missing=$(json_eval "$T/list.json" "j.backups.flatMap(b => ['id', 'label', 'status', 'start_time',
        'stop_time', 'start_lsn', 'stop_lsn', 'timeline', 'bytes', 'stored_bytes', 'files']
        .filter(k => !(k in b)).map(k => b.id + '.' + k)).join(' ')")
    assert_eq "$missing" "" "fields missing from list --json"
    iso='/^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$/'
    assert_eq "$(json_eval "$T/list.json" "j.backups.filter(b => !$iso.test(b.start_time) ||
        !$iso.test(b.stop_time)).map(b => b.id).join(' ')")" \
        "" "backups whose start_time / stop_time are not ISO 8601 UTC"
fi
bb --config "$CONF" verify --all
assert_rc 0 "verify --all"

# restore_and_check KIND EXPECTED_SUM EXPECTED_LABEL|- RESTORE_ARGS...: restores into r_KIND,
# starts it, waits until recovery stops at the target (promote, or pause without
# --target-action) and compares the pgbench checksums.
restore_and_check() {
    local kind=$1 want=$2 label=$3 dir=$T/r_$1 got
    shift 3
    CASE="restore --target-$kind"
    bb_restore "$CONF" "$dir" "$@" || return 1
    [ "$label" = - ] || assert_eq "$(backup_label_of "$dir")" "$label" "backup chosen for the target"
    start_restored "$dir"
    case " $* " in
    *" --target-action promote "*) pg_wait_promoted "$RPORT" "$dir" || return 1 ;;
    *) pg_wait_paused "$RPORT" "$dir" || return 1 ;;
    esac
    got=$(pgbench_sums "$RPORT")
    assert_eq "$got" "$want" "pgbench checksums after recovery to the $kind target" ||
        note "(end of the archive would be: $SUM_END)"
    if grep -q -E 'wal-fetch: (ERROR|FATAL)' "$dir.log"; then
        fail "wal-fetch reported errors during recovery:"
        grep -E 'wal-fetch' "$dir.log" | head -5 | sed 's/^/      /'
    fi
    pg_stop "$dir"
}

restore_and_check lsn "$SUM_LSN" pitr-one --target-lsn "$TARGET_LSN" --target-action promote
# What restore wrote for PostgreSQL (checked once).
auto=$T/r_lsn/postgresql.auto.conf
[ -f "$auto" ] || die "no $auto"
grep -q -E "^restore_command *= *'.*$BIN_DIR/wal-fetch.*--config.*$CONF" "$auto" ||
    fail "postgresql.auto.conf has no restore_command with $BIN_DIR/wal-fetch and --config $CONF: $(grep restore_command "$auto")"
grep -q -E "^recovery_target_lsn *= *'$TARGET_LSN'" "$auto" || fail "postgresql.auto.conf has no recovery_target_lsn = '$TARGET_LSN'"
grep -q -E "^recovery_target_timeline *= *'?latest'?" "$auto" || fail "postgresql.auto.conf has no recovery_target_timeline = 'latest'"
grep -q 'recovery stopping after WAL location (LSN)' "$T/r_lsn.log" ||
    fail "the log of the lsn restore does not show recovery stopping at the LSN"

restore_and_check xid "$SUM_XID" pitr-one --backup "$ID1" --target-xid "$TARGET_XID" --target-action promote
restore_and_check name "$SUM_NAME" - --target-name walsafe_it_target
restore_and_check time "$SUM_TIME" pitr-two --target-time "$TARGET_TIME" --target-action promote

CASE="restore --target-immediate"
dir=$T/r_immediate
if bb_restore "$CONF" "$dir" --backup "$ID1" --target-immediate --target-action promote &&
    assert_eq "$(backup_label_of "$dir")" pitr-one "backup restored" &&
    start_restored "$dir" && pg_wait_promoted "$RPORT" "$dir"; then
    # The first backup was taken while pgbench wrote: its consistent state has at least the rows
    # of before it started, at most those of when it returned, and nothing of later.
    h=$(hist_count "$RPORT")
    if [ -z "$h" ] || [ "$h" -lt "$H_BEFORE" ] || [ "$h" -gt "$H_AFTER" ]; then
        fail "pgbench_history has ${h:-no answer} rows, expected $H_BEFORE..$H_AFTER (at the end: $H_END)"
    fi
    assert_eq "$(sql "$RPORT" "select count(*) from pg_class where relname = 'after_backup'")" 0 \
        "a table created after the backup"
    # Consistency: the sums of balances agree (every pgbench transaction adds delta to all three).
    assert_eq "$(sql "$RPORT" "select (select sum(abalance) from pgbench_accounts) = (select sum(tbalance) from pgbench_tellers)
                               and (select sum(bbalance) from pgbench_branches) = (select coalesce(sum(delta), 0) from pgbench_history)")" \
        t "balances agree with pgbench_history"
    grep -q 'recovery stopping after reaching consistency' "$dir.log" ||
        fail "the log does not show recovery stopping at consistency"
    pg_stop "$dir"
fi

CASE="repository"
# No restored copy archived anything (they run on timelines 2.. with archive_mode = off).
[ -z "$(find "$REPO_FILES" -name '*.history*')" ] ||
    fail "a restored copy archived into the repository: $(find "$REPO_FILES" -name '*.history*')"
assert_repo_clean "repository"
finish
