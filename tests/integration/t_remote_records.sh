#!/usr/bin/env bash
# t_remote_records: a streamed backup (BASE_BACKUP) and a local one (pg_backup_start and our own
# walk) of the same quiet cluster with a tablespace hold the same records: the same directories
# with the same modes, the same tablespace (oid, location), the same files with the same modes and
# sizes, and the same modification times for every file neither the checkpoints nor the backups
# rewrote (read with tests/tools/manifestcat).
. "$(dirname "$0")/lib.sh"
setup_tmp
. "$(dirname "$0")/remote.sh"
MANIFESTCAT=${MANIFESTCAT:-$BIN_DIR/../tests/tools/manifestcat}

remote_primary
TS=$T/ts_one
mkdir -p "$TS" && chown postgres: "$TS" && chmod 700 "$TS" || die "mkdir $TS"
sql "$PORT" "create tablespace ts_one location '$TS'" || die "create tablespace failed"
sql "$PORT" "create table in_ts (id int) tablespace ts_one;
             insert into in_ts select generate_series(1, 1000)" || die "could not fill the tablespace"
pgbench_run "$PORT" -i -q -s 1 || die "pgbench -i failed"
sql "$PORT" "checkpoint" || die "checkpoint failed"
LCONF=$T/walsafe-local.conf
write_conf "$LCONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'" "pgdata = '$PGD'" \
    "pg_conninfo = 'host=$SOCK port=$PORT dbname=postgres user=postgres'"

CASE="stream and local"
bb_create "$CONF"
STREAM=$BACKUP_ID
sleep 1 # ids are seconds
bb_create "$LCONF"
LOCAL=$BACKUP_ID
for b in "$STREAM" "$LOCAL"; do
    run runuser -u postgres -- "$MANIFESTCAT" "$CONF" "$b"
    assert_rc 0 "manifestcat $b" || die "could not read the manifest of $b"
    cp "$T/.last.out" "$T/m.$b"
    # directories and tablespaces; files: path mode size; mtimes of files no checkpoint or stop wrote
    grep -E '^(dir|tablespace) ' "$T/m.$b" | LC_ALL=C sort >"$T/d.$b"
    awk '$1 == "file" || $1 == "delta" || $1 == "ref" { print $2, $3, $5 }' "$T/m.$b" |
        LC_ALL=C sort >"$T/f.$b"
    awk '$1 == "file" && $2 !~ /^(backup_label|tablespace_map|global\/pg_control|pg_logical\/)/ { print $2, $4 }' \
        "$T/m.$b" | LC_ALL=C sort >"$T/t.$b"
done
grep -q "^tablespace [0-9]* $TS\$" "$T/d.$STREAM" || fail "stream backup: no tablespace record at $TS"
cmp -s "$T/d.$STREAM" "$T/d.$LOCAL" ||
    fail "directories or tablespaces differ: $(diff "$T/d.$LOCAL" "$T/d.$STREAM" | head -5)"
cmp -s "$T/f.$STREAM" "$T/f.$LOCAL" ||
    fail "files, modes or sizes differ: $(diff "$T/f.$LOCAL" "$T/f.$STREAM" | head -5)"
cmp -s "$T/t.$STREAM" "$T/t.$LOCAL" ||
    fail "modification times differ: $(diff "$T/t.$LOCAL" "$T/t.$STREAM" | head -5)"
[ "$(wc -l <"$T/f.$STREAM")" -gt 900 ] || fail "stream backup: only $(wc -l <"$T/f.$STREAM") files"
pg_stop "$PGD"
finish
