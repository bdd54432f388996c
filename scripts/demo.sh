#!/usr/bin/env bash
# walsafe demo: a throwaway PostgreSQL 15 cluster archives its WAL with wal-push into an
# encrypted local repository; basebackup takes a base backup; after more writes, basebackup
# restore brings the cluster back to a point in time (its WAL through wal-fetch), and we show
# that exactly the rows committed before that time are there.
# Usage: scripts/demo.sh [BIN_DIR]   (make demo builds first and passes build/release/bin)
set -euo pipefail
SRC_BIN=$(cd "${1:-build/release/bin}" && pwd)
PGBIN=/usr/lib/postgresql/15/bin
step() { printf '\n==> %s\n' "$*"; }
as_pg() { runuser -u postgres -- "$@"; }

[ "$(id -u)" = 0 ] || { echo "demo: run as root (it starts PostgreSQL as the postgres user)" >&2; exit 1; }
DIR=$(mktemp -d /tmp/walsafe-demo.XXXXXX)
chmod 755 "$DIR"
# PostgreSQL runs the programs as postgres, which may not reach the build tree (e.g. under /root):
# then copies run. Installed programs (scripts/demo.sh /usr/bin) run where they are.
BIN=$SRC_BIN
if ! runuser -u postgres -- test -x "$SRC_BIN/wal-push"; then
    BIN=$DIR/bin
    install -d -m 755 "$BIN" && install -m 755 "$SRC_BIN/wal-push" "$SRC_BIN/wal-fetch" "$SRC_BIN/basebackup" "$BIN/"
fi
PRIMARY_PORT=$((20000 + RANDOM % 20000)); COPY_PORT=$((PRIMARY_PORT + 1))
cleanup() {
    for d in "$DIR/primary" "$DIR/restored"; do
        if [ -f "$d/postmaster.pid" ]; then
            pid=$(head -1 "$d/postmaster.pid")
            as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || kill -9 "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$DIR"
}
trap cleanup EXIT
psql_p() { as_pg psql -X -h "$DIR" -p "$PRIMARY_PORT" -d postgres -Atq "$@"; }
psql_c() { as_pg psql -X -h "$DIR" -p "$COPY_PORT" -d postgres -Atq "$@"; }

step "Creating an encrypted local repository in $DIR/repo (key from openssl rand -hex 32)"
mkdir -m 700 "$DIR/repo"
openssl rand -hex 32 > "$DIR/repo.key"; chmod 600 "$DIR/repo.key"
cat > "$DIR/walsafe.conf" <<CONF
repo = '$DIR/repo'
cluster = 'demo'
encrypt_key_file = '$DIR/repo.key'
spool_dir = '$DIR/spool'
pgdata = '$DIR/primary'
pg_conninfo = 'host=$DIR port=$PRIMARY_PORT user=postgres dbname=postgres'
CONF
chmod 600 "$DIR/walsafe.conf"
chown -R postgres "$DIR"

step "Starting a throwaway PostgreSQL 15 cluster with archive_command = 'wal-push %p'"
as_pg "$PGBIN/initdb" -D "$DIR/primary" -A trust -U postgres >/dev/null
cat >> "$DIR/primary/postgresql.conf" <<CONF
port = $PRIMARY_PORT
listen_addresses = ''
unix_socket_directories = '$DIR'
wal_level = replica
archive_mode = on
archive_command = '$BIN/wal-push --config $DIR/walsafe.conf %p'
archive_timeout = 0
CONF
as_pg "$PGBIN/pg_ctl" -D "$DIR/primary" -l "$DIR/primary.log" -w start >/dev/null

step "Taking a base backup with basebackup create (it returns once its WAL is archived too)"
BACKUP=$(as_pg "$BIN/basebackup" --config "$DIR/walsafe.conf" create --fast --label "demo")
echo "    backup id: $BACKUP"
as_pg "$BIN/basebackup" --config "$DIR/walsafe.conf" list | sed 's/^/    /'

step "Writing 1000 rows, then noting the time"
psql_p -c "CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT g, 'before' FROM generate_series(1, 1000) g;"
sleep 1
TARGET=$(psql_p -c "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
sleep 1
echo "    target time: $TARGET"

step "Writing 500 more rows after the target (these must NOT come back)"
psql_p -c "INSERT INTO orders SELECT g, 'after' FROM generate_series(1001, 1500) g;"
psql_p -c "SELECT pg_switch_wal();" >/dev/null
LAST=$(psql_p -c "SELECT pg_walfile_name(pg_current_wal_lsn() - 1)")
for _ in $(seq 1 100); do
    [ "$(psql_p -c "SELECT last_archived_wal >= '$LAST' FROM pg_stat_archiver")" = t ] && break
    sleep 0.2
done
psql_p -c "SELECT '    archived: ' || archived_count || ' WAL files, failures: ' || failed_count FROM pg_stat_archiver"
echo "    repository: $(find "$DIR/repo" -type f | wc -l) objects, $(du -sh "$DIR/repo" | cut -f1)"

step "Stopping the primary (as if the server were lost)"
as_pg "$PGBIN/pg_ctl" -D "$DIR/primary" -m fast stop >/dev/null

step "Restoring backup $BACKUP into a new directory, to recover to $TARGET"
as_pg "$BIN/basebackup" --config "$DIR/walsafe.conf" restore --pgdata "$DIR/restored" \
    --target-time "$TARGET" --target-action promote
grep -E '^(restore_command|recovery_target)' "$DIR/restored/postgresql.auto.conf" | sed 's/^/    /'

step "Starting the restored copy on its own port, not archiving (it replays WAL via wal-fetch)"
cat >> "$DIR/restored/postgresql.conf" <<CONF
port = $COPY_PORT
archive_mode = off
CONF
as_pg "$PGBIN/pg_ctl" -D "$DIR/restored" -l "$DIR/restored.log" -w start >/dev/null
for _ in $(seq 1 150); do
    [ "$(psql_c -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ] && break
    sleep 0.2
done

step "Checking the recovered data"
ROWS=$(psql_c -c "SELECT count(*) || ' rows, ' || count(*) FILTER (WHERE note = 'after') || ' written after the target' FROM orders")
echo "    $ROWS"
if [ "$ROWS" = "1000 rows, 0 written after the target" ]; then
    echo; echo "demo: OK - exactly the 1000 rows committed before $TARGET were recovered"
else
    echo; echo "demo: FAILED - expected 1000 rows and none after the target" >&2
    tail -20 "$DIR/restored.log" >&2
    exit 1
fi
