#!/usr/bin/env bash
# t_drill: `basebackup drill` restores the newest backup into a private directory under
# spool_dir, recovers it to the end of the archive and checks it. A good backup passes every
# check and leaves nothing behind (as root, whose drill runs as postgres, and as postgres);
# --keep leaves the directory with a stopped server; a WAL segment removed from the repository
# makes the drill fail naming that segment (after the backup: the wal_end check; inside the
# backup's range: the backup is incomplete and --backup ID says which segment is missing);
# SIGTERM stops the drill's server and removes its directory; a pg_bindir without postgres fails
# the drill with one line naming it; notify_command reports create and drill (id, sizes, status,
# the failing check).
. "$(dirname "$0")/lib.sh"
setup_tmp

CONF=$T/walsafe.conf
PGD=$T/primary
SPOOL=$T/spool
mkdir "$SPOOL" && chown postgres: "$SPOOL" && chmod 700 "$SPOOL" || die "could not create $SPOOL"
repo_setup local
# parallel = 1: no prefetcher outlives the drill's recovery in this test (docs/design/drill.md)
# encrypted: the drill's user reads the key, as wal-fetch does in the drill's recovery
make_key "$T/walsafe.key"
NOTIFY=("encrypt_key_file = '$T/walsafe.key'" "notify_command = 'cat >> $T/notify.log'")
write_conf "$CONF" "${REPO_CONF[@]}" "spool_dir = '$SPOOL'" "parallel = 1" "${NOTIFY[@]}"
archiving_cluster "$PGD" "$CONF" --wal-segsize=1
backup_conf "$CONF" "$PGD" "$PORT" "spool_dir = '$SPOOL'" "parallel = 1" "${NOTIFY[@]}"

CASE="usage"
for args in "drill --pgdata $T/x" "drill --target-immediate" "list --keep" "drill extra"; do
    run "$BASEBACKUP" --config "$CONF" $args
    assert_rc 2 "basebackup $args"
done
run "$BASEBACKUP" --config "$CONF" drill --pgdata "$T/x"
assert_err_contains "drill takes --backup, --keep and --json" "the usage error says what drill takes"

CASE="set-up"
sql "$PORT" "create table t (id int primary key, pad text)" || die "create table failed"
sql "$PORT" "create database other" || die "create database failed"
bb_create "$CONF"
ID=$BACKUP_ID
for b in 1 2 3; do
    sql "$PORT" "insert into t select g, repeat('x', 500) from generate_series($((b * 1000)), $((b * 1000 + 999))) g" ||
        die "insert failed"
    sql "$PORT" "select pg_switch_wal()" >/dev/null || die "pg_switch_wal failed"
done
LAST=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$PORT" "$LAST" 60 || die "archiving did not finish"
NEWEST=$(cd "$REPO_FILES/main/wal" && find . -name '[0-9A-F]*' ! -name '*.*' -printf '%f\n' | sort | tail -1)
START=$(json_eval <(runuser -u postgres -- "$BASEBACKUP" --config "$CONF" list --json) \
    "j.backups.find(b => b.id === '$ID').start_lsn")
FIRST=$(sql "$PORT" "select pg_walfile_name('$START')") || die "pg_walfile_name failed"
note "backup $ID, WAL from $FIRST to the newest archived segment $NEWEST"

# last_doc FIELD...: fields of the last notify_command document, space-separated.
last_doc() {
    tail -1 "$T/notify.log" | python3 -c 'import json, sys
d = json.load(sys.stdin)
print(" ".join(str(d[k]) for k in sys.argv[1:]))' "$@"
}
CASE="notify after create"
assert_eq "$(last_doc event id status)" "basebackup create $ID success" "create's document"
[ "$(last_doc bytes)" -gt 0 ] 2>/dev/null || fail "create's document has no size: $(tail -1 "$T/notify.log")"

# drill_dirs: the drill directories left in the spool.
drill_dirs() { find "$SPOOL" -maxdepth 1 -name 'walsafe-drill.*' -printf '%f\n'; }

CASE="good backup, as root, --json"
run "$BASEBACKUP" --config "$CONF" drill --json
assert_rc 0 "drill of a good backup"
cp "$T/.last.out" "$T/drill.json"
assert_eq "$(json_eval "$T/drill.json" 'j.backup')" "$ID" "backup drilled"
assert_eq "$(json_eval "$T/drill.json" 'j.result')" "passed" "result"
assert_eq "$(json_eval "$T/drill.json" 'j.checks.map(c => c.name + "=" + c.result).join(" ")')" \
    "restore=passed recovery=passed wal_end=passed connect=passed amcheck=passed" "checks"
json_eval "$T/drill.json" 'j.checks[2].detail' | grep -q -F "$NEWEST" ||
    fail "wal_end does not name the newest archived segment $NEWEST: $(json_eval "$T/drill.json" 'j.checks[2].detail')"
json_eval "$T/drill.json" 'j.checks[3].detail' | grep -q '^3 databases' ||
    fail "connect: expected 3 databases (postgres, other, template1): $(json_eval "$T/drill.json" 'j.checks[3].detail')"
assert_eq "$(json_eval "$T/drill.json" 'j.wal_replayed.segments')" \
    $(($(seg_num "$NEWEST" 1) - $(seg_num "$FIRST" 1) + 1)) "segments replayed ($FIRST .. $NEWEST)"
WD=$(json_eval "$T/drill.json" 'j.work_directory')
case "$WD" in "$SPOOL"/walsafe-drill.main.*) ;; *) fail "work directory $WD is not in spool_dir $SPOOL" ;; esac
assert_absent "$WD" "work directory after the drill"
assert_eq "$(drill_dirs)" "" "drill directories left in the spool"
pgrep -f "walsafe-drill" >/dev/null && fail "a process of the drill still runs: $(pgrep -a -f walsafe-drill)"
assert_eq "$(last_doc event id status error)" "basebackup drill $ID success None" "drill's document"

CASE="pg_bindir without postgres"
mkdir -m 755 "$T/emptybin" || die "mkdir failed"
backup_conf "$T/conf-bindir" "$PGD" "$PORT" "spool_dir = '$SPOOL'" "parallel = 1" \
    "encrypt_key_file = '$T/walsafe.key'" "pg_bindir = '$T/emptybin'"
run "$BASEBACKUP" --config "$T/conf-bindir" drill
assert_rc 1 "drill with a pg_bindir that holds no postgres"
assert_err_contains "no PostgreSQL 15 server for backup $ID: pg_bindir \"$T/emptybin\" holds no executable \"postgres\"" \
    "the error names the backup, pg_bindir and the program"
assert_err_one_line "pg_bindir without postgres"
assert_eq "$(drill_dirs)" "" "drill directories left after the pg_bindir error"

CASE="SIGTERM"
bg_start "$T/drill-term.log" "$BASEBACKUP" --config "$CONF" drill
for _ in $(seq 1 200); do [ -n "$(drill_dirs)" ] && break; sleep 0.05; done
[ -n "$(drill_dirs)" ] || fail "the drill made no directory within 10 s"
kill -TERM "$BG_PID"
bg_wait "$BG_PID" 60
assert_eq "$?" 1 "exit status of a drill ended by SIGTERM"
note "$(tail -1 "$T/drill-term.log")"
grep -q "interrupted" "$T/drill-term.log" || fail "the drill does not say it was interrupted: $(cat "$T/drill-term.log")"
assert_eq "$(drill_dirs)" "" "drill directories left after SIGTERM"
pgrep -f "walsafe-drill" >/dev/null && fail "a process of the drill still runs: $(pgrep -a -f walsafe-drill)"

# As postgres with a spool_dir only root may write to (README allows a root-owned spool_dir
# holding a postgres-owned <cluster>): the drill says so and works under $TMPDIR instead.
CASE="good backup, as postgres, text, --keep, spool_dir not writable"
mkdir -m 755 "$T/rootspool" "$T/tmp" && chown postgres: "$T/tmp" || die "mkdir failed"
backup_conf "$T/conf2" "$PGD" "$PORT" "spool_dir = '$T/rootspool'" "parallel = 1" "${NOTIFY[@]}"
run runuser -u postgres -- env TMPDIR="$T/tmp" "$BASEBACKUP" --config "$T/conf2" drill --keep
assert_rc 0 "drill --keep as postgres"
assert_err_contains "could not create a directory in \"$T/rootspool\": Permission denied; the drill works under $T/tmp instead" \
    "the fallback from spool_dir is a warning"
for c in restore recovery wal_end connect amcheck; do
    grep -q -E "^  check $c +passed" "$T/.last.out" || fail "the report has no passed check $c: $(cat "$T/.last.out")"
done
grep -q '^result: passed$' "$T/.last.out" || fail "the report does not end with result: passed"
WD=$(sed -n 's/^  work directory  \(.*\) (under TMPDIR; kept, server stopped)$/\1/p' "$T/.last.out")
case "$WD" in "$T/tmp/walsafe-drill.main."*) ;; *) fail "--keep: work directory \"$WD\" is not in \$TMPDIR: $(cat "$T/.last.out")" ;; esac
[ -n "$WD" ] && [ -f "$WD/data/PG_VERSION" ] || fail "--keep: no data directory in \"$WD\""
assert_absent "$WD/data/postmaster.pid" "--keep: the server must be stopped"
grep -q "database system is shut down" "$WD/server.log" ||
    fail "--keep: the server log does not show a clean shutdown"
assert_eq "$(stat -c '%a %U' "$WD")" "700 postgres" "mode and owner of the kept directory"
rm -rf "$WD"
assert_dir_empty "$T/rootspool" "spool_dir not writable"

CASE="WAL segment missing after the backup"
segno=$(seg_num "$NEWEST" 1)
GONE=$(seg_name 1 $((segno - 2)) 1)
mv "$REPO_FILES/main/wal/${GONE:0:16}/$GONE" "$T/$GONE.saved" || die "could not move $GONE away"
run "$BASEBACKUP" --config "$CONF" drill
assert_rc 1 "drill with $GONE missing"
assert_err_contains "check wal_end" "the failing check is named"
assert_err_contains "$GONE" "the missing segment is named"
grep -q -E "^  check wal_end +FAILED .*$GONE is missing" "$T/.last.out" ||
    fail "the report does not show wal_end failed naming $GONE: $(cat "$T/.last.out")"
assert_eq "$(drill_dirs)" "" "drill directories left after a failed drill"
note "$(grep -E '^  (restore|recovery) ' "$T/.last.out" | tr -s ' ' | tr '\n' ';')"
assert_eq "$(last_doc event status)" "basebackup drill failure" "failed drill's document"
last_doc error | grep -q "check wal_end: WAL segment $GONE is missing" ||
    fail "the document's error does not name the check and $GONE: $(last_doc error)"
mv "$T/$GONE.saved" "$REPO_FILES/main/wal/${GONE:0:16}/$GONE"

CASE="WAL segment of the backup missing"
INSIDE=$FIRST
mv "$REPO_FILES/main/wal/${INSIDE:0:16}/$INSIDE" "$T/$INSIDE.saved" || die "could not move $INSIDE away"
run "$BASEBACKUP" --config "$CONF" drill --backup "$ID"
assert_rc 1 "drill of a backup whose WAL is missing"
assert_err_contains "$INSIDE" "the missing segment is named"
assert_err_one_line "drill of an incomplete backup"
assert_eq "$(drill_dirs)" "" "drill directories left"
mv "$T/$INSIDE.saved" "$REPO_FILES/main/wal/${INSIDE:0:16}/$INSIDE"

pg_stop "$PGD"
finish
