#!/usr/bin/env bash
# t_backup_tablespace: tables in a tablespace survive `basebackup` backup and restore, both
# relocated with --tablespace-map OLDDIR=NEWDIR (while the original tablespace is in use) and
# at the original location (once it is free). Rows written after the backup reach the
# tablespace through WAL replay (restores without a target: to the end of the archive). A
# restore whose tablespace directory is not empty is refused and leaves it untouched, also with
# --force (which empties a tablespace's original location only when the replaced data directory
# links to it: a new target never does).
# Uncompressed and unencrypted (the other backup scenarios use zstd and a key).
# The repository is REPO_KIND (local, s3 or sftp; default local).
. "$(dirname "$0")/lib.sh"
setup_tmp

CONF=$T/walsafe.conf
PGD=$T/primary
TS=$T/ts_one
TS_NEW=$T/relocated/ts_one
CASE="repository (${REPO_KIND:-local})"
repo_setup "${REPO_KIND:-local}"
write_conf "$CONF" "${REPO_CONF[@]}" "compress = none"

CASE="primary with a tablespace"
archiving_cluster "$PGD" "$CONF" --wal-segsize=1
backup_conf "$CONF" "$PGD" "$PORT" "compress = none"
mkdir -p "$TS" && chown postgres: "$TS" && chmod 700 "$TS" || die "mkdir $TS"
mkdir -p "$T/relocated" && chown postgres: "$T/relocated" || die "mkdir $T/relocated"
sql "$PORT" "create tablespace ts_one location '$TS'" || die "create tablespace failed"
TS_OID=$(sql "$PORT" "select oid from pg_tablespace where spcname = 'ts_one'") || die "psql failed"
sql "$PORT" "create table in_ts (id int primary key using index tablespace ts_one, pad text)
             tablespace ts_one;
             insert into in_ts select g, md5(g::text) from generate_series(1, 20000) g;
             create table plain (id int primary key, ts_id int);
             create index plain_ts_id on plain (ts_id) tablespace ts_one;
             insert into plain select g, g from generate_series(1, 5000) g" ||
    die "could not fill the tables"
bb_create "$CONF" --label with-tablespace
ID=$BACKUP_ID
# After the backup: more rows, and a new relation in the tablespace (created by WAL replay).
sql "$PORT" "insert into in_ts select g, md5(g::text) from generate_series(20001, 25000) g;
             create table later_in_ts tablespace ts_one as select g as id from generate_series(1, 777) g;
             update plain set ts_id = -ts_id where id % 10 = 0" || die "writes after the backup failed"
sums() { # PORT
    sql "$1" "select concat_ws(' ',
        (select md5(string_agg(t::text, ',' order by id)) from in_ts t),
        (select md5(string_agg(t::text, ',' order by id)) from plain t),
        (select count(*) from later_in_ts),
        (select count(*) from plain where ts_id < 0))"
}
WANT=$(sums "$PORT") || die "checksums failed"
last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
wait_archived "$PORT" "$last" 60 || { show_log "$PGD.log"; die "archiving did not finish"; }
TS_STATE=$(repo_state "$TS")

# check_restored DIR LOCATION: the restored server uses its tablespace at LOCATION and holds
# the rows of the end of the archive.
check_restored() {
    local dir=$1 loc=$2 link
    link=$(readlink "$dir/pg_tblspc/$TS_OID")
    assert_eq "$link" "$loc" "pg_tblspc/$TS_OID link after restore"
    [ -n "$(find "$loc" -mindepth 2 -type f 2>/dev/null | head -1)" ] ||
        fail "no relation files under $loc"
    assert_eq "$(stat -c '%U %a' "$loc" 2>/dev/null)" "postgres 700" "owner and mode of $loc"
    start_restored "$dir"
    if pg_wait_promoted "$RPORT" "$dir"; then
        assert_eq "$(sums "$RPORT")" "$WANT" "table checksums after recovery to the end of the archive"
        assert_eq "$(sql "$RPORT" "select pg_tablespace_location($TS_OID)")" "$loc" \
            "pg_tablespace_location after start"
        # PostgreSQL re-creates the links from tablespace_map at start: still the right one?
        assert_eq "$(readlink "$dir/pg_tblspc/$TS_OID")" "$loc" "pg_tblspc/$TS_OID link after start"
        # An index in the tablespace is usable and agrees with its table.
        assert_eq "$(sql "$RPORT" "set enable_seqscan = off; select count(*) from plain where ts_id < 0")" \
            500 "rows found through the index in the tablespace"
    fi
    pg_stop "$dir"
}

CASE="restore with --tablespace-map while the original is in use"
bb_restore "$CONF" "$T/r_map" --tablespace-map "$TS=$TS_NEW" && check_restored "$T/r_map" "$TS_NEW"
assert_eq "$(repo_state "$TS")" "$TS_STATE" "the primary's tablespace directory is untouched"
assert_eq "$(sql "$PORT" "select count(*) from in_ts")" 25000 "the primary still reads its tablespace"
pg_stop "$PGD"
TS_STATE=$(repo_state "$TS")

CASE="restore into a tablespace directory that is not empty"
# --force into a new data directory never empties a tablespace's original location (no link of
# the target leads there); the message points to --tablespace-map, not to --force.
for force in "" --force; do
    bb --config "$CONF" restore --pgdata "$T/r_busy" $force
    if [ "$RC" -eq 0 ]; then
        fail "restore ${force:-without --force} to $TS, which holds the primary's tablespace, succeeded"
    else
        assert_rc 1 "restore ${force:-without --force} onto a tablespace directory in use"
        assert_err_contains "--tablespace-map $TS=NEWDIR" "restore ${force:-without --force} onto a tablespace directory in use"
    fi
    assert_eq "$(repo_state "$TS")" "$TS_STATE" "the occupied tablespace directory after a restore ${force:-without --force}"
    [ -e "$T/r_busy/recovery.signal" ] && fail "the refused restore left a startable $T/r_busy (recovery.signal)"
done

CASE="restore to the original location"
mv "$TS" "$TS.primary" || die "could not move the primary's tablespace away"
bb_restore "$CONF" "$T/r_orig" && check_restored "$T/r_orig" "$TS"

finish
