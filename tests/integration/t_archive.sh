#!/usr/bin/env bash
# t_archive: PostgreSQL archives through wal-push into an encrypted local repository; every
# archived segment comes back byte-identical through wal-fetch; the repository holds only
# complete objects with modes 0600/0700, encrypted, and an identity naming this system.
. "$(dirname "$0")/lib.sh"
setup_tmp

SEG_MB=1
ROUNDS=5
ROWS=6000

KEY=$T/walsafe.key
REPO=$T/repo
CONF=$T/walsafe.conf
PGD=$T/pg
make_key "$KEY"
make_repo "$REPO"
write_conf "$CONF" "repo = '$REPO'" "encrypt_key_file = '$KEY'"

CASE="setup"
archiving_cluster "$PGD" "$CONF" --wal-segsize=$SEG_MB
SYSID=$(sysid_of "$PGD")

first=$(sql "$PORT" "select pg_walfile_name(pg_current_wal_lsn())") || die "psql failed"
sql "$PORT" "create table t (id int primary key, pad text)" || die "create table failed"

# Each round writes more than a segment of WAL (so some segments end naturally) and then
# switches, so the archiver also sees segments completed by pg_switch_wal.
last=""
for r in $(seq 1 $ROUNDS); do
    sql "$PORT" "insert into t select g, repeat(md5(g::text), 3)
                 from generate_series($(((r - 1) * ROWS + 1)), $((r * ROWS))) g" ||
        die "insert failed"
    last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
done
note "first segment $first, last switched segment $last"

CASE="archiving"
wait_archived "$PORT" "$last" 90 || { show_log "$PGD.log"; die "archiving did not finish"; }
read -r archived failed last_archived < <(sql "$PORT" \
    "select archived_count, failed_count, last_archived_wal from pg_stat_archiver" | tr '|' ' ')
assert_eq "$failed" 0 "pg_stat_archiver.failed_count" || show_log "$PGD.log"
assert_eq "$last_archived" "$last" "pg_stat_archiver.last_archived_wal"

# Stop the server: pg_wal's copies of the archived segments are then stable for comparison
# (no checkpoint ran: checkpoint_timeout is 1h and max_wal_size far above what we wrote).
pg_stop_immediate "$PGD"

CASE="repository content"
n_first=$(seg_num "$first" $SEG_MB)
n_last=$(seg_num "$last" $SEG_MB)
expected=$((n_last - n_first + 1))
[ "$expected" -ge $((ROUNDS + 2)) ] || fail "only $expected segments written; the test needs more WAL"
stored=$(find "$REPO/main/wal" -type f -name '[0-9A-F]*' | sort)
n_stored=$(echo "$stored" | grep -c .)
assert_eq "$n_stored" "$archived" "objects in the repository vs pg_stat_archiver.archived_count"
for ((n = n_first; n <= n_last; n++)); do
    name=$(seg_name 1 $n $SEG_MB)
    obj=$REPO/main/wal/${name:0:16}/$name
    [ -f "$obj" ] || fail "segment $name was archived but $obj does not exist"
done

CASE="fetch and compare"
compared=0
raw=0
packed=0
for obj in $stored; do
    name=${obj##*/}
    new_dest
    run "$WAL_FETCH" --config "$CONF" "$name" "$DEST"
    assert_rc 0 "wal-fetch $name" || continue
    if [ ! -f "$PGD/pg_wal/$name" ]; then
        fail "$name is in the repository but not in pg_wal (cannot compare)"
        continue
    fi
    if ! cmp -s "$DEST" "$PGD/pg_wal/$name"; then
        fail "fetched $name differs from pg_wal/$name: $(cmp "$DEST" "$PGD/pg_wal/$name" 2>&1)"
        continue
    fi
    assert_eq "$(ls -A "$DEST_DIR")" "RECOVERYXLOG" "files in the destination directory of $name"
    compared=$((compared + 1))
    raw=$((raw + $(stat -c %s "$DEST")))
    packed=$((packed + $(stat -c %s "$obj")))
done
assert_eq "$compared" "$n_stored" "segments fetched and byte-identical"
note "$compared segments fetched and identical; $raw bytes stored as $packed"
# The default is zstd: real WAL of md5 text must get smaller.
[ "$packed" -lt "$raw" ] || fail "objects ($packed bytes) are not smaller than the WAL ($raw bytes)"

CASE="object format"
for obj in $stored; do
    magic=$(head -c 8 "$obj")
    cipher=$(od -An -tu1 -j 10 -N1 "$obj" | tr -d ' ')
    keyid=$(od -An -tx1 -j 16 -N8 "$obj" | tr -d ' \n')
    assert_eq "$magic" "WSAFEOBJ" "magic of ${obj##*/}"
    assert_eq "$cipher" 1 "cipher byte of ${obj##*/} (1 = AES-256-GCM)"
    [ "$keyid" != "0000000000000000" ] || fail "${obj##*/} names no key id"
done
# An encrypted object must not contain the table's text in the clear (nor compressed
# plaintext, which would still show zstd's frame magic right after the header).
if grep -l -a -F "$(echo -n 1 | md5sum | cut -c1-32)" $stored >/dev/null; then
    fail "an object contains table content in the clear"
fi

CASE="identity"
ID=$REPO/main/identity
if [ -f "$ID" ]; then
    grep -a -q "system_identifier = $SYSID" "$ID" ||
        fail "identity does not record system_identifier = $SYSID: $(tail -c +65 "$ID" | head -c 300 | tr -c '[:print:]\n' '.')"
    grep -a -q "wal_segment_size = $((SEG_MB * 1024 * 1024))" "$ID" ||
        fail "identity does not record the WAL segment size"
    grep -a -q "pg_version = 15" "$ID" || fail "identity does not record PostgreSQL 15"
else
    fail "no identity object at $ID"
fi

CASE="modes and temp files"
bad_dirs=$(find "$REPO" -type d ! -perm 700 -printf '%m %p\n')
bad_files=$(find "$REPO" -type f ! -perm 600 -printf '%m %p\n')
other=$(find "$REPO" ! -type d ! -type f -printf '%y %p\n')
[ -z "$bad_dirs" ] || fail "directories not 0700: $bad_dirs"
[ -z "$bad_files" ] || fail "files not 0600: $bad_files"
[ -z "$other" ] || fail "neither file nor directory: $other"
assert_no_temp_files "$REPO" "repository after archiving"
hidden=$(find "$REPO" -name '.*' -printf '%p\n')
[ -z "$hidden" ] || fail "hidden files in the repository: $hidden"

# The server log must show no wal-push failure at all.
CASE="server log"
if grep -q -E 'wal-push: (ERROR|FATAL)|archive command failed' "$PGD.log"; then
    fail "the server log reports archiving errors:"
    grep -E 'wal-push|archive command' "$PGD.log" | head -10 | sed 's/^/      /'
fi

finish
