#!/usr/bin/env bash
# t_debian_restore: README's "Restoring on Debian", command for command, on clusters of Debian's
# postgresql-common. A packaged cluster (pg_createcluster: configuration in
# /etc/postgresql/15/<name>, not in its data directory) archives with wal-push and is backed up;
# its backup holds no postgresql.conf, which restore's summary says, pointing at the README. The
# recipe then restores it into a new directory, copies the configuration files there, registers
# the copy with `pg_createcluster 15 NAME -d DIR -p PORT`, turns archive_mode off on it, and
# starts it with `pg_ctlcluster 15 NAME start`: it recovers to the end of the archived WAL and
# holds the rows committed before it.
# Both clusters have names of their own (walsafe_it_<pid>_src, _copy), private ports, and
# listen_addresses = '' (sockets only); the EXIT trap drops them (pg_dropcluster --stop) whatever
# happens, and the test checks that /etc/postgresql/15/<name> is gone. No other cluster is
# touched. Needs postgresql-common (Debian's postgresql-15 package brings it): skipped without.
. "$(dirname "$0")/lib.sh"
setup_tmp

if ! command -v pg_createcluster >/dev/null || ! command -v pg_ctlcluster >/dev/null ||
    ! command -v pg_conftool >/dev/null || [ ! -d /etc/postgresql ]; then
    echo "skip: t_debian_restore: no postgresql-common (pg_createcluster, pg_ctlcluster)"
    finish
fi
SRC=walsafe_it_$$_src
NAME=walsafe_it_$$_copy
CLUSTERS=()
for c in "$SRC" "$NAME"; do
    [ ! -e "/etc/postgresql/15/$c" ] || die "/etc/postgresql/15/$c exists already: not ours to touch"
done

# drop_clusters: every cluster this test registered is stopped and dropped, and its
# configuration directory must be gone (the EXIT trap runs it too).
drop_clusters() {
    local c
    for c in "${CLUSTERS[@]+"${CLUSTERS[@]}"}"; do
        [ -e "/etc/postgresql/15/$c" ] || continue
        pg_dropcluster --stop 15 "$c" >>"$T/dropcluster.log" 2>&1 ||
            echo "FAIL: pg_dropcluster --stop 15 $c failed: $(tail -3 "$T/dropcluster.log")"
        [ ! -e "/etc/postgresql/15/$c" ] || { echo "FAIL: /etc/postgresql/15/$c is left"; FAILURES=$((FAILURES + 1)); }
    done
    CLUSTERS=()
}
STOP_HOOKS+=(drop_clusters)

KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/src
CASE="a packaged cluster that archives"
make_key "$KEY"
repo_setup local
PORT=$(free_port)
CLUSTERS+=("$SRC")
run pg_createcluster 15 "$SRC" -d "$PGD" -p "$PORT" -s "$SOCK" -- -A trust -U postgres
assert_rc 0 "pg_createcluster of the source" || die "pg_createcluster failed"
[ ! -e "$PGD/postgresql.conf" ] && [ -f "/etc/postgresql/15/$SRC/postgresql.conf" ] ||
    die "pg_createcluster did not keep the configuration in /etc/postgresql/15/$SRC"
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'"
for setting in "listen_addresses=" "archive_mode=on" "archive_command=$WAL_PUSH --config $CONF %p" \
    "checkpoint_timeout=1h"; do
    pg_conftool 15 "$SRC" set "${setting%%=*}" "${setting#*=}" || die "pg_conftool set ${setting%%=*} failed"
done
run pg_ctlcluster 15 "$SRC" start
assert_rc 0 "pg_ctlcluster 15 $SRC start" || die "the source cluster did not start"
sql "$PORT" "create table t(x int); insert into t select generate_series(1, 1000)" || die "insert failed"
bb_create "$CONF" --label debian
sql "$PORT" "insert into t select generate_series(1001, 1500)" || die "insert failed"
last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$PORT" "$last" 60 || die "archiving did not finish"
run pg_ctlcluster 15 "$SRC" stop
assert_rc 0 "pg_ctlcluster 15 $SRC stop"

# ---- README, "Restoring on Debian", as written there ----
CASE="the README's recipe"
DIR=$T/copy
PORT2=$(free_port)
install -d -o postgres -g postgres -m 700 "$DIR"
run runuser -u postgres -- "$BASEBACKUP" --config "$CONF" restore --pgdata "$DIR"
assert_rc 0 "restore" || die "restore failed"
grep -q "^restored backup $BACKUP_ID (stopped [0-9T:-]*Z) into $DIR\$" "$T/.last.out" ||
    fail "no summary line naming the backup: $(head -3 "$T/.last.out")"
grep -qx "recovery target: the end of the archived WAL, then it promotes" "$T/.last.out" ||
    fail "no recovery target line: $(cat "$T/.last.out")"
grep -q "^restore_command = '$BIN_DIR/wal-fetch --config $CONF .*%f %p' (in postgresql.auto.conf)\$" "$T/.last.out" ||
    fail "no restore_command line: $(grep restore_command "$T/.last.out")"
grep -q '^note: the backup holds no postgresql.conf .*README, "Restoring on Debian"' "$T/.last.out" ||
    fail "no note about the missing postgresql.conf: $(cat "$T/.last.out")"
grep -qx "next: pg_ctlcluster 15 NAME start" "$T/.last.out" || fail "no next command: $(cat "$T/.last.out")"
cp "/etc/postgresql/15/$SRC/postgresql.conf" "/etc/postgresql/15/$SRC/pg_hba.conf" \
    "/etc/postgresql/15/$SRC/pg_ident.conf" "$DIR/" || die "copying the configuration failed"
CLUSTERS+=("$NAME")
run pg_createcluster 15 "$NAME" -d "$DIR" -p "$PORT2"
assert_rc 0 "pg_createcluster 15 $NAME -d DIR -p PORT" || die "pg_createcluster of the copy failed"
run pg_conftool 15 "$NAME" set archive_mode off
assert_rc 0 "pg_conftool set archive_mode off"
run pg_conftool 15 "$NAME" set cluster_name "15/$NAME"
assert_rc 0 "pg_conftool set cluster_name"
run pg_conftool 15 "$NAME" set external_pid_file "/var/run/postgresql/15-$NAME.pid"
assert_rc 0 "pg_conftool set external_pid_file"
install -d -o postgres -g postgres "/etc/postgresql/15/$NAME/conf.d"
run pg_ctlcluster 15 "$NAME" start
assert_rc 0 "pg_ctlcluster 15 $NAME start" || { cat "/var/log/postgresql/postgresql-15-$NAME.log" | tail -20; die "the copy did not start"; }

CASE="the copy"
copy_sql() { "$PGBIN/psql" -h /var/run/postgresql -p "$PORT2" -U postgres -d postgres -X -A -t -q -c "$1"; }
for _ in $(seq 1 300); do
    [ "$(copy_sql "select pg_is_in_recovery()" 2>/dev/null)" = f ] && break
    sleep 0.2
done
assert_eq "$(copy_sql "select pg_is_in_recovery()")" f "the copy left recovery"
assert_eq "$(copy_sql "select count(*) from t")" 1500 "rows in the copy (the backup's and the archived WAL's)"
assert_eq "$(copy_sql "show archive_mode")" off "archive_mode of the copy"
assert_eq "$(copy_sql "show data_directory")" "$DIR" "data_directory of the copy"
[ -f "/var/run/postgresql/15-$SRC.pid" ] && fail "the copy wrote the original's pid file"

CASE="dropped"
drop_clusters
for c in "$SRC" "$NAME"; do assert_absent "/etc/postgresql/15/$c" "pg_dropcluster of $c"; done
finish
