#!/usr/bin/env bash
# t_incr_cases: block-level incremental backups (`basebackup create --type incr`) across the
# changes that defeat a page-LSN method (issue 17 item 2; docs/design/incremental.md), each in a
# scenario of its own on a real PostgreSQL 15. A full backup is taken, then each scenario makes
# its change and takes an incremental (a chain: each one's reference is the one before), which
# is restored into a new directory (--target-immediate: recovery to the backup's end), started
# and compared with the source as of the backup's end (nothing writes to it meanwhile): the rows
# of every table of every database (table_sums), plus pg_amcheck of every database.
#   hint bits      rows loaded before the full and never read; a SELECT after it sets their hint
#                  bits (no data checksums, wal_log_hints off: no WAL, no new page LSN); the
#                  restored pages carry the hint bits (pageinspect)
#   file copy      CREATE DATABASE ... STRATEGY FILE_COPY of a database changed after the full
#   truncation     a table emptied and truncated by VACUUM, then re-extended with other rows
#   new files      VACUUM FULL of one table and CLUSTER of another (new relfilenodes)
#   tablespace     ALTER TABLE SET TABLESPACE (restored with --tablespace-map)
#   unlogged       an unlogged table truncated (new relfilenode, new init fork) and one created:
#                  restored empty and usable, their init forks identical to the source's
#   checksums      a second cluster with data checksums (initdb -k): the hint-bit scenario again
#                  (there the hint bits are WAL-logged as full-page images), then pg_checksums
#                  --check of the restored copy
. "$(dirname "$0")/lib.sh"
setup_tmp

KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
TS=$T/ts_one
CASE="set-up"
make_key "$KEY"
repo_setup local
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"
archiving_cluster "$PGD" "$CONF" --wal-segsize=1
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'" "parallel = 2"
mkdir -m 700 "$TS" && chown postgres: "$TS" || die "mkdir $TS"
# autovacuum off: nothing but the scenarios changes a page (nor sets a hint bit); fsync off:
# a throwaway cluster (as its restored copies)
sql "$PORT" "alter system set autovacuum = off" && sql "$PORT" "alter system set fsync = off" &&
    sql "$PORT" "select pg_reload_conf()" >/dev/null || die "could not set autovacuum and fsync off"
sql "$PORT" "create tablespace ts_one location '$TS'" || die "create tablespace"
sql "$PORT" "create extension pageinspect;
    create table t_hint (id int, pad text);
    insert into t_hint select g, md5(g::text) from generate_series(1, 3000) g;
    create table t_trunc (id int primary key, pad text);
    insert into t_trunc select g, repeat('a', 200) from generate_series(1, 2000) g;
    create table t_vac (id int primary key, pad text);
    insert into t_vac select g, md5(g::text) from generate_series(1, 3000) g;
    update t_vac set pad = pad || 'x' where id % 3 = 0;
    create table t_clu (id int, pad text);
    insert into t_clu select g, md5(g::text) from generate_series(3000, 1, -1) g;
    create index t_clu_id on t_clu (id);
    create table t_move (id int primary key, pad text);
    insert into t_move select g, md5(g::text) from generate_series(1, 3000) g;
    create unlogged table t_unlog (id int primary key, pad text);
    insert into t_unlog select g, 'u' from generate_series(1, 1000) g" || die "could not fill the primary"
sql "$PORT" "create database src_db" || die "create database src_db"
"$PGBIN/psql" -h "$SOCK" -p "$PORT" -U postgres -d src_db -X -q -v ON_ERROR_STOP=1 -c "
    create table t_src (id int primary key, pad text);
    insert into t_src select g, md5(g::text) from generate_series(1, 3000) g" ||
    die "could not fill src_db"

# hinted PORT TABLE: tuples of TABLE whose xmin-committed hint bit is set on their page.
hinted() {
    sql "$1" "select count(*) from generate_series(0, pg_relation_size('$2') / 8192 - 1) b,
              heap_page_items(get_raw_page('$2', b::int)) where t_infomask & 256 <> 0"
}
[ "$(hinted "$PORT" t_hint)" = 0 ] || die "t_hint has hint bits set before the full backup"

CASE="full backup"
bb_create "$CONF" --type full --label full
PREV=$BACKUP_ID
if bb_list "$CONF"; then
    assert_eq "$(backup_field "$PREV" type)" full "type of $PREV in list --json"
fi

# incr_case NAME [FIRST]: takes an incremental of the primary (whose reference must be PREV),
# restores it into r_NAME with --target-immediate (and TSMAP), starts it, runs the function FIRST
# if given (before any query reads a table of the copy) and compares the copy with the
# primary's tables as they were when the backup was taken. Leaves the restored copy running on
# RPORT (R is its directory); returns 1 (having failed) when it could not get that far.
TSMAP=(--tablespace-map "$TS=@")
incr_case() {
    local name=$1 first=${2:-} id
    CASE=$name
    SNAP=$(table_sums "$PORT") || die "table_sums of the primary failed"
    bb_create "$CONF" --type incr --label "$name"
    id=$BACKUP_ID
    [ "$(table_sums "$PORT")" = "$SNAP" ] || die "the primary changed while $id was taken"
    if bb_list "$CONF"; then
        assert_eq "$(backup_field "$id" status)" complete "status of $id"
        assert_eq "$(backup_field "$id" type)" incr "type of $id"
        assert_eq "$(backup_field "$id" reference)" "$PREV" "reference of $id"
    fi
    PREV=$id
    R=$T/r_$name
    bb_restore "$CONF" "$R" --backup "$id" --target-immediate --target-action promote \
        "${TSMAP[@]/@/$T/ts_$name}" || return 1
    start_restored "$R" "fsync = off"
    pg_wait_promoted "$RPORT" "$R" || return 1
    [ -z "$first" ] || "$first"
    got=$(table_sums "$RPORT")
    if [ "$got" != "$SNAP" ]; then
        fail "the restored copy's tables differ from the primary's at the backup:"
        diff <(echo "$SNAP") <(echo "$got") | head -10 | sed 's/^/      /'
    fi
    amcheck "$RPORT" "restored copy of $id"
}

# done_case: stops the restored copy (if it runs) and removes it.
done_case() {
    pg_running "$R" && pg_stop "$R"
    rm -rf "$R" "$T/ts_$CASE"
}

sql "$PORT" "select count(*) from t_hint" >/dev/null || die "select failed"
HINTED=$(hinted "$PORT" t_hint)
[ "$HINTED" -gt 0 ] || die "a SELECT set no hint bit on t_hint"
# hints_restored: the restored pages of t_hint carry the primary's hint bits (asked before
# anything reads the table in the copy, which would set them).
hints_restored() {
    assert_eq "$(hinted "$RPORT" t_hint)" "$HINTED" "t_hint tuples with their hint bit set"
}
incr_case hint-bits hints_restored
done_case

"$PGBIN/psql" -h "$SOCK" -p "$PORT" -U postgres -d src_db -X -q -v ON_ERROR_STOP=1 -c "
    update t_src set pad = 'changed after the full' where id % 7 = 0;
    insert into t_src select g, 'new' from generate_series(3001, 3500) g" || die "change src_db"
sql "$PORT" "create database db_copy template src_db strategy file_copy" || die "create database"
if incr_case file-copy; then
    assert_eq "$(grep -c '^db_copy\.public\.t_src ' <<<"$SNAP")" 1 "db_copy.t_src compared"
fi
done_case

sql "$PORT" "delete from t_trunc" && sql "$PORT" "vacuum (truncate true) t_trunc" || die "truncate t_trunc"
[ "$(sql "$PORT" "select pg_relation_size('t_trunc')")" = 0 ] || die "VACUUM did not truncate t_trunc"
sql "$PORT" "insert into t_trunc select g, repeat('b', 300) from generate_series(1, 1500) g" ||
    die "re-extend t_trunc"
incr_case truncation
done_case

before=$(sql "$PORT" "select pg_relation_filenode('t_vac') || ' ' || pg_relation_filenode('t_clu')")
sql "$PORT" "vacuum full t_vac" && sql "$PORT" "cluster t_clu using t_clu_id" || die "vacuum full / cluster"
after=$(sql "$PORT" "select pg_relation_filenode('t_vac') || ' ' || pg_relation_filenode('t_clu')")
[ "${before% *}" != "${after% *}" ] && [ "${before#* }" != "${after#* }" ] ||
    die "VACUUM FULL / CLUSTER kept the relfilenodes ($before -> $after)"
incr_case new-files
done_case

sql "$PORT" "alter table t_move set tablespace ts_one; update t_move set pad = 'moved' where id < 100" ||
    die "set tablespace"
incr_case tablespace
done_case

sql "$PORT" "truncate t_unlog; insert into t_unlog select g, 'v' from generate_series(1, 500) g;
             create unlogged table t_unlog2 (id int primary key);
             insert into t_unlog2 select generate_series(1, 700)" || die "unlogged tables"
if incr_case unlogged; then
    assert_eq "$(unlogged_tables "$RPORT" postgres | paste -sd,)" "t_unlog 0,t_unlog2 0" \
        "unlogged tables in the restored copy"
    sql "$RPORT" "insert into t_unlog values (1, 'x'); insert into t_unlog2 values (1)" ||
        fail "the restored unlogged tables do not accept rows"
    for t in t_unlog t_unlog2 t_unlog_pkey t_unlog2_pkey; do
        p=$(sql "$PORT" "select pg_relation_filepath('$t')")
        cmp -s "$PGD/${p}_init" "$R/${p}_init" ||
            fail "the init fork of $t (${p}_init) differs from the primary's"
    done
fi
done_case
pg_stop "$PGD"

CASE="checksums: set-up"
CONF2=$T/walsafe-ck.conf
PGD2=$T/primary_ck
make_repo "$T/repo_ck"
REPO_CONF=("repo = '$T/repo_ck'") # backup_conf's repository; REPO_FILES stays the first one
write_conf "$CONF2" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"
archiving_cluster "$PGD2" "$CONF2" --wal-segsize=1 --data-checksums
PORT2=$PORT
backup_conf "$CONF2" "$PGD2" "$PORT2" "encrypt_key_file = '$KEY'"
sql "$PORT2" "alter system set autovacuum = off" && sql "$PORT2" "alter system set fsync = off" &&
    sql "$PORT2" "select pg_reload_conf()" >/dev/null || die "could not set autovacuum and fsync off"
sql "$PORT2" "create extension pageinspect; create table t_hint (id int, pad text);
              insert into t_hint select g, md5(g::text) from generate_series(1, 3000) g" ||
    die "could not fill t_hint"
[ "$(hinted "$PORT2" t_hint)" = 0 ] || die "t_hint has hint bits set before the full backup"
bb_create "$CONF2" --type full --label ck-full
PREV=$BACKUP_ID
sql "$PORT2" "select count(*) from t_hint" >/dev/null || die "select failed"
HINTED=$(hinted "$PORT2" t_hint)
[ "$HINTED" -gt 0 ] || die "a SELECT set no hint bit on t_hint"
# incr_case works on CONF and PORT: point them at this cluster (which has no tablespace)
CONF=$CONF2 PORT=$PORT2 TSMAP=()
if incr_case checksums hints_restored; then
    pg_stop "$R"
    run "$PGBIN/pg_checksums" --check -D "$R"
    assert_rc 0 "pg_checksums --check of the restored copy"
fi
done_case
pg_stop "$PGD2"
assert_repo_clean "repository"
finish
