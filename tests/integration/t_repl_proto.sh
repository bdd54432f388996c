#!/usr/bin/env bash
# t_repl_proto: the replication session (pg/repl.h) and the tar reader (io/tar.h) against a real
# PostgreSQL 15 with a tablespace, through tests/tools/replcat: IDENTIFY_SYSTEM and SHOW report
# the cluster; BASE_BACKUP streams the tablespace's archive, then the main one with PG_VERSION,
# global/pg_control, pg_wal/archive_status, backup_label and tablespace_map (no pg_tblspc/<oid>
# link: TABLESPACE_MAP leaves it out); every file's size and CRC-32C (base/crc32c.h, ours) equal the server's
# backup_manifest (MANIFEST_CHECKSUMS 'CRC32C'), which lists exactly
# those files. Connection strings as URI, key=value and empty (PG* variables), a password from
# PGPASSFILE (and a wrong one refused without printing it), sslmode reaching libpq; a role without REPLICATION, a page
# with a bad checksum (END with checksum_failure, the server's WARNING logged), a connection cut
# mid-stream, and max_wal_senders = 0 each said as the contract says.
. "$(dirname "$0")/lib.sh"
setup_tmp

REPLCAT=${REPLCAT:-$BIN_DIR/../tests/tools/replcat}
[ -x "$REPLCAT" ] || die "no replcat at $REPLCAT (make <BUILD>/tests/tools/replcat)"
PGD=$T/primary
TS=$T/ts_one
PASSWORD=Repl-Secret-4f9a71c2
add_secret "$PASSWORD"

CASE="cluster with a tablespace"
pg_init "$PGD" --wal-segsize=1 --data-checksums
PORT=$(free_port)
# also on 127.0.0.1 (its own free port), without TLS: sslmode in pg_conninfo must reach libpq
pg_conf "$PGD" "$PORT" "checkpoint_timeout = '1h'" "listen_addresses = '127.0.0.1'" "ssl = off"
# password authentication for one role, trust for the others
sed -i "1i local replication pw_user scram-sha-256" "$PGD/pg_hba.conf" || die "pg_hba.conf"
pg_start "$PGD"
mkdir -p "$TS" && chown postgres: "$TS" && chmod 700 "$TS" || die "mkdir $TS"
sql "$PORT" "create tablespace ts_one location '$TS'" || die "create tablespace failed"
sql "$PORT" "create table in_ts tablespace ts_one as select g as id, md5(g::text) as pad
                 from generate_series(1, 5000) g;
             create table plain as select g as id from generate_series(1, 1000) g;
             create role no_repl login" || die "could not fill the cluster"
sql "$PORT" "create role pw_user login replication password '$PASSWORD'" || die "create role"
TS_OID=$(sql "$PORT" "select oid from pg_tablespace where spcname = 'ts_one'") || die "psql"
SYSID=$(sql "$PORT" "select system_identifier from pg_control_system()") || die "psql"
CONN="host=$SOCK port=$PORT user=postgres"

CASE="base backup with a tablespace"
run "$REPLCAT" --fast --label "it's a test" --manifest "$T/manifest.json" "$CONN"
assert_rc 0 "replcat"
cp "$T/.last.out" "$T/bb.out"
assert_eq "$(grep '^system ' "$T/bb.out" | cut -d' ' -f2,3,6-)" "$SYSID 1 1048576 8192 1" \
    "system identifier, timeline, segment size, block size, checksums"
ver=$(grep '^system ' "$T/bb.out" | cut -d' ' -f5)
[ "${ver:-0}" -ge 150000 ] && [ "$ver" -lt 160000 ] || fail "server_version_num $ver"
assert_eq "$(grep '^tablespace ' "$T/bb.out" | cut -d' ' -f2,3)" "$TS_OID $TS" "tablespace list"
# the estimates (PROGRESS): bytes, about the archives' sizes (tar headers not counted)
ts_size=$(grep '^tablespace ' "$T/bb.out" | cut -d' ' -f4)
main_size=$(grep '^start ' "$T/bb.out" | cut -d' ' -f4)
ts_files=$(awk '/^archive /{a=$2} /^file / && a != "base.tar" {s += $3} END {print s + 0}' "$T/bb.out")
[ "${ts_size:-0}" -ge "$ts_files" ] && [ "$ts_size" -le $((ts_files * 2 + 65536)) ] ||
    fail "tablespace estimate $ts_size bytes for $ts_files bytes of files"
[ "${main_size:-0}" -gt 10000000 ] || fail "main directory estimate: ${main_size:-none}"
assert_eq "$(grep '^archive ' "$T/bb.out" | cut -d' ' -f2- | sort)" \
    "$(printf '%s\n' "$TS_OID.tar $TS" "base.tar -" | sort)" "archives"
# PostgreSQL 15 sends each tablespace's archive first and the main one last; with TABLESPACE_MAP
# the pg_tblspc/<oid> links are left out of the main archive (tablespace_map names them).
assert_eq "$(grep '^archive ' "$T/bb.out" | cut -d' ' -f2 | tr '\n' ' ')" "$TS_OID.tar base.tar " \
    "order of the archives"
sed -n '/^archive base.tar/,$p' "$T/bb.out" >"$T/main.out"
for want in "file PG_VERSION 3 " "file global/pg_control 8192 " "dir pg_tblspc" \
    "file backup_label " "file tablespace_map 3[0-9] " "dir pg_wal/archive_status"; do
    grep -q "^$want" "$T/main.out" || fail "no member \"$want\" in the main archive"
done
grep -q "^link " "$T/bb.out" && fail "a symbolic link was streamed: $(grep -m1 '^link ' "$T/bb.out")"
# Each archive's files, as data-directory paths, against the server's manifest.
awk -v oid="$TS_OID" '
    /^archive / { pre = ($2 == "base.tar") ? "" : "pg_tblspc/" oid "/" }
    /^file / { print pre $2, $3, $5 }' "$T/bb.out" | sort >"$T/streamed.txt"
json_eval "$T/manifest.json" \
    'j.Files.map(f => f.Path + " " + f.Size + " " + f.Checksum).join("\n")' |
    sort >"$T/manifest.txt"
[ "$(wc -l <"$T/streamed.txt")" -gt 900 ] || fail "only $(wc -l <"$T/streamed.txt") files streamed"
grep -q "^pg_tblspc/$TS_OID/PG_15_[0-9]*/[0-9]*/[0-9]* " "$T/streamed.txt" ||
    fail "no relation file of the tablespace streamed"
if ! diff "$T/manifest.txt" "$T/streamed.txt" >"$T/diff.txt"; then
    fail "streamed files differ from backup_manifest (< manifest, > streamed):"
    head -20 "$T/diff.txt" | sed 's/^/      /'
fi
end=$(grep '^end ' "$T/bb.out")
assert_eq "$(echo "$end" | cut -d' ' -f3,4)" "1 0" "end timeline and checksum_failure"
[ "$(echo "$end" | cut -d' ' -f5)" -gt 0 ] || fail "no progress reported ($end)"
# WAIT false: no NOTICE about archiving from the server (before: "WAL archiving is not enabled;
# you must ensure ..." on every backup without archive_mode), nothing on stderr
assert_err_empty "replcat's stderr"

CASE="connection strings"
run "$REPLCAT" --fast "postgresql://postgres@/postgres?host=$SOCK&port=$PORT"
assert_rc 0 "URI"
grep -q '^end ' "$T/.last.out" || fail "URI: no end"
run env PGHOST="$SOCK" PGPORT="$PORT" PGUSER=postgres "$REPLCAT" --fast ""
assert_rc 0 "empty conninfo, PG* variables"
printf '*:*:*:pw_user:%s\n' "$PASSWORD" >"$T/pgpass" && chmod 600 "$T/pgpass"
run env PGPASSFILE="$T/pgpass" "$REPLCAT" --fast "host=$SOCK port=$PORT user=pw_user"
assert_rc 0 "password from PGPASSFILE"
printf '*:*:*:pw_user:wrong-%s\n' "$PASSWORD" >"$T/pgpass"
run env PGPASSFILE="$T/pgpass" "$REPLCAT" --fast "host=$SOCK port=$PORT user=pw_user"
assert_rc 1 "wrong password"
assert_err_contains "STORAGE: could not open a replication connection" "wrong password"
assert_err_contains 'password authentication failed for user "pw_user"' "wrong password"
assert_err_one_line "wrong password"
run "$REPLCAT" --fast "host=127.0.0.1 port=$PORT user=postgres sslmode=disable"
assert_rc 0 "TCP, sslmode=disable"
run "$REPLCAT" --fast "host=127.0.0.1 port=$PORT user=postgres sslmode=require"
assert_rc 1 "TCP, sslmode=require against a server without TLS"
assert_err_contains "server does not support SSL, but SSL was required" "sslmode=require"

CASE="role without REPLICATION"
run "$REPLCAT" --fast "host=$SOCK port=$PORT user=no_repl"
assert_rc 1 "no_repl"
assert_err_contains "CONFIG: " "no_repl"
assert_err_contains "REPLICATION attribute" "no_repl"
assert_err_one_line "no_repl"

CASE="a page with a bad checksum"
file=$(sql "$PORT" "select pg_relation_filepath('plain')") || die "psql"
pg_stop "$PGD"
printf '\x55' | dd of="$PGD/$file" bs=1 seek=5000 conv=notrunc status=none || die "dd"
pg_start "$PGD"
run "$REPLCAT" --fast "$CONN"
assert_rc 0 "backup with a bad page"
assert_eq "$(grep '^end ' "$T/.last.out" | cut -d' ' -f4)" 1 "checksum_failure"
assert_err_contains "server WARNING: checksum verification failed in file \"./$file\"" \
    "the server's warning"

CASE="connection cut mid-stream"
# 32 kB/s: the backup lasts long enough to be cut; the walsender is killed once it streams.
"$REPLCAT" --fast --max-rate 32768 "$CONN" >"$T/cut.out" 2>"$T/cut.err" &
cut_pid=$!
for _ in $(seq 1 300); do
    ws_pid=$(sql "$PORT" "select pid from pg_stat_progress_basebackup
                          where phase = 'streaming database files'")
    [ -n "$ws_pid" ] && break
    sleep 0.1
done
[ -n "$ws_pid" ] || die "no walsender streaming"
kill -KILL "$ws_pid"
wait "$cut_pid"
cut_rc=$?
assert_eq "$cut_rc" 1 "replcat after the walsender was killed"
grep -q "STORAGE: connection to the server was lost during the base backup: " "$T/cut.err" ||
    fail "message after the cut: $(cat "$T/cut.err")"
for _ in $(seq 1 100); do sql "$PORT" "select 1" >/dev/null 2>&1 && break; sleep 0.1; done

CASE="max_wal_senders = 0"
pg_stop "$PGD"
echo "max_wal_senders = 0" >>"$PGD/postgresql.conf"
pg_start "$PGD"
run "$REPLCAT" --fast "$CONN"
assert_rc 1 "max_wal_senders = 0"
assert_err_contains \
    "CONFIG: the server allows no replication connections (max_wal_senders = 0)" "max_wal_senders"

finish
