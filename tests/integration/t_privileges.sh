#!/usr/bin/env bash
# t_privileges: least privilege (README, "Least privilege"). A role walsafe that is no superuser
# and has exactly the grants of the local set-up (EXECUTE on pg_backup_start, pg_backup_stop,
# pg_switch_wal, pg_create_restore_point; no pg_read_all_settings: it cannot read
# data_directory) passes `basebackup check`, and a local create (pgdata set) as that role
# restores to the same data. Revoking a grant makes check print that privilege's FAILED line
# ending with the GRANT, and running exactly that statement makes check pass again. For the
# stream method (pgdata not set), a role without REPLICATION gets the FAILED line with the
# ALTER ROLE that fixes it, and passes once it is run, a replication connection then opening
# (IDENTIFY_SYSTEM); without a replication line in pg_hba.conf that line FAILS with libpq's reason. `list --cluster all` shows both clusters of
# the repository (text and JSON).
. "$(dirname "$0")/lib.sh"
setup_tmp

KEY=$T/walsafe.key
CONF=$T/walsafe.conf  # the archiver's (wal-push as postgres)
BCONF=$T/backup.conf  # basebackup's, as role walsafe, local method
SCONF=$T/stream.conf  # the same without pgdata: the stream method
PGD=$T/primary
CASE="set-up"
make_key "$KEY"
repo_setup local
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"
archiving_cluster "$PGD" "$CONF"
ROLE_CONN="pg_conninfo = 'host=$SOCK port=$PORT user=walsafe dbname=postgres'"
write_conf "$BCONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'" "$ROLE_CONN" "pgdata = '$PGD'"
write_conf "$SCONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'" "$ROLE_CONN"
sql "$PORT" "CREATE ROLE walsafe LOGIN;
    GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean) TO walsafe;
    GRANT EXECUTE ON FUNCTION pg_backup_stop(boolean) TO walsafe;
    GRANT EXECUTE ON FUNCTION pg_switch_wal() TO walsafe;
    GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO walsafe;" || die "could not create role walsafe"
as_walsafe() { "$PGBIN/psql" -h "$SOCK" -p "$PORT" -U walsafe -d postgres -X -A -t -q -c "$1" 2>&1; }
assert_eq "$(as_walsafe "select rolsuper or rolreplication from pg_roles where rolname = current_user")" f \
    "walsafe is neither superuser nor replication role"
case "$(as_walsafe "select current_setting('data_directory')")" in
*"permission denied"* | *"must be superuser"*) ;;
*) fail "walsafe can read data_directory: the test would not show that create does without it" ;;
esac

CASE="check, every grant"
bb --config "$BCONF" check
assert_rc 0 "check as walsafe" || sed 's/^/      /' "$T/.last.out"
grep -qx 'OK      role walsafe may call pg_backup_start(text, boolean) (local backup)' "$T/.last.out" ||
    fail "no OK line for pg_backup_start: $(grep pg_backup_start "$T/.last.out")"
grep -q '^OK      a forced WAL switch reaches the repository' "$T/.last.out" ||
    fail "the WAL switch did not pass: $(grep 'WAL switch' "$T/.last.out")"

CASE="create and restore as walsafe"
pgbench_run "$PORT" -i -q -s 2 || die "pgbench -i failed"
bb_create "$BCONF" --label least-privilege
pgbench_run "$PORT" -n -c 2 -t 100 || die "pgbench failed"
WANT=$(pgbench_sums "$PORT") || die "checksums failed"
last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$PORT" "$last" 30 || die "archiving did not finish"
if bb_list "$BCONF"; then
    assert_eq "$(backup_status "$BACKUP_ID")" complete "status of $BACKUP_ID"
fi
# Restored to the end of the archive: exactly the primary's data.
if bb_restore "$BCONF" "$T/restored_end"; then
    start_restored "$T/restored_end"
    if pg_wait_promoted "$RPORT" "$T/restored_end"; then
        assert_eq "$(pgbench_sums "$RPORT")" "$WANT" "pgbench checksums of the restored copy"
    fi
    pg_stop "$T/restored_end"
fi

CASE="list --cluster all"
# A second cluster in the repository: a backup whose WAL never arrives there (incomplete).
run runuser -u postgres -- env WALSAFE_TIMEOUT=1 "$BASEBACKUP" --config "$BCONF" --cluster second \
    create --fast --label second
assert_rc 1 "create into cluster second, whose WAL is not archived"
bb --config "$BCONF" --cluster all list --json
assert_rc 0 "list --cluster all --json"
cp "$T/.last.out" "$T/all.json"
assert_eq "$(json_eval "$T/all.json" "j.clusters.map(c => c.cluster + ':' + c.system_identifier + ':' +
    c.backups.map(b => b.label + '=' + b.status).join(',')).join(' ')")" \
    "main:$(sysid_of "$PGD"):least-privilege=complete second:$(sysid_of "$PGD"):second=incomplete" \
    "clusters, their systems and backups"
bb --config "$BCONF" --cluster all list
assert_rc 0 "list --cluster all"
grep -c '^cluster "\(main\|second\)", database system' "$T/.last.out" | grep -qx 2 ||
    fail "list --cluster all does not show both clusters: $(head -c 600 "$T/.last.out")"

# revoked GRANT_SIGNATURE: revoke, check fails with that line, its GRANT fixes it.
revoked() {
    local fn=$1 line stmt
    CASE="check, $fn revoked"
    sql "$PORT" "REVOKE EXECUTE ON FUNCTION $fn FROM walsafe" || die "revoke failed"
    bb --config "$BCONF" check
    assert_rc 1 "check without EXECUTE on $fn"
    line=$(grep -F "FAILED  role walsafe may call $fn " "$T/.last.out")
    stmt="GRANT EXECUTE ON FUNCTION $fn TO walsafe;"
    [[ "$line" == *": $stmt" ]] || fail "no FAILED line ending with \"$stmt\": ${line:-$(cat "$T/.last.out")}"
    assert_eq "$(grep -c '^FAILED' "$T/.last.out")" "$2" "FAILED lines"
    [ -z "${3:-}" ] || grep -qxF "$3" "$T/.last.out" || fail "no line \"$3\": $(grep 'WAL switch' "$T/.last.out")"
    sql "$PORT" "${line##*: }" || fail "the GRANT check printed does not run: ${line##*: }"
    bb --config "$BCONF" check
    assert_rc 0 "check after running the GRANT it printed"
}
revoked "pg_backup_start(text, boolean)" 1
revoked "pg_backup_stop(boolean)" 1
# the WAL switch is not tried: SKIPPED, not a second FAILED line
revoked "pg_switch_wal()" 1 \
    "SKIPPED a forced WAL switch reaches the repository (needs: the role may call pg_switch_wal())"

CASE="stream method, no REPLICATION"
bb --config "$SCONF" check
assert_rc 1 "check of the stream method by a role without REPLICATION"
line=$(grep -F 'FAILED  role walsafe may open replication connections' "$T/.last.out")
[[ "$line" == *": ALTER ROLE walsafe REPLICATION;"* ]] ||
    fail "no FAILED line with ALTER ROLE walsafe REPLICATION: ${line:-$(cat "$T/.last.out")}"
grep -q 'pg_backup_st' "$T/.last.out" && fail "the stream method checks the backup functions"
grep -qx 'OK      max_wal_senders allows replication connections: max_wal_senders = 4' "$T/.last.out" ||
    fail "no OK line for max_wal_senders: $(grep max_wal_senders "$T/.last.out")"
sql "$PORT" "ALTER ROLE walsafe REPLICATION" || die "alter role failed"
bb --config "$SCONF" check
assert_rc 0 "check of the stream method after ALTER ROLE walsafe REPLICATION"
grep -qx 'OK      role walsafe may open replication connections' "$T/.last.out" ||
    fail "no OK line for REPLICATION: $(grep replication "$T/.last.out")"
grep -q '^OK      replication connection opens: system identifier [0-9]*, timeline 1$' \
    "$T/.last.out" || fail "no OK line for the replication connection: $(grep replication "$T/.last.out")"

CASE="stream method, no replication line in pg_hba.conf"
cp "$PGD/pg_hba.conf" "$T/pg_hba.conf.orig" || die "could not save pg_hba.conf"
grep -v 'replication' "$T/pg_hba.conf.orig" >"$PGD/pg_hba.conf" # keeps its owner and mode
sql "$PORT" "select pg_reload_conf()" >/dev/null || die "reload failed"
bb --config "$SCONF" check
assert_rc 1 "check of the stream method without a replication line in pg_hba.conf"
grep -q '^FAILED  replication connection opens: .*no pg_hba.conf entry for replication connection' \
    "$T/.last.out" || fail "no FAILED line naming pg_hba.conf: $(grep replication "$T/.last.out")"
cat "$T/pg_hba.conf.orig" >"$PGD/pg_hba.conf"
sql "$PORT" "select pg_reload_conf()" >/dev/null || die "reload failed"

CASE="repository"
assert_repo_clean "repository"
finish
