#!/usr/bin/env bash
# t_pitr: point-in-time recovery of a pg_basebackup copy (taken without WAL) whose WAL comes
# only from the encrypted repository through wal-fetch as restore_command. Exactly the rows
# committed before the target time must be present after promotion.
# The repository is REPO_KIND (local, s3 or sftp; default local): t_pitr_s3.sh and t_pitr_sftp.sh
# run this scenario against the S3 and SFTP test servers (lib.sh: repo_setup); t_pitr_module.sh
# archives through the walsafe_archive module (lib.sh: archive_settings).
. "$(dirname "$0")/lib.sh"
setup_tmp

SEG_MB=1
ROWS=4000

KEY=$T/walsafe.key
CONF=$T/walsafe.conf
PGD=$T/primary
COPY=$T/copy
CASE="repository (${REPO_KIND:-local})"
make_key "$KEY"
repo_setup "${REPO_KIND:-local}"
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"

CASE="primary"
pg_init "$PGD" --wal-segsize=$SEG_MB
PORT=$(free_port)
mapfile -t ARCHIVE < <(archive_settings "$CONF")
pg_conf "$PGD" "$PORT" "archive_mode = on" "${ARCHIVE[@]}"
pg_start "$PGD"
sql "$PORT" "create table t (id int primary key, batch int not null, pad text)" ||
    die "create table failed"

CASE="base backup"
runuser -u postgres -- "$PGBIN/pg_basebackup" -h "$SOCK" -p "$PORT" -U postgres -X none \
    -c fast -D "$COPY" >"$T/basebackup.log" 2>&1 ||
    { cat "$T/basebackup.log"; die "pg_basebackup failed"; }
[ -z "$(find "$COPY/pg_wal" -mindepth 1 -maxdepth 1 ! -name archive_status)" ] ||
    die "the copy holds WAL files; the test needs it to depend on the archive"
cp -a "$COPY" "$T/copy2" || die "could not keep a second copy of the base backup"

# insert_batch B: ROWS rows of batch B, ids (B-1)*ROWS+1 .. B*ROWS, one transaction.
insert_batch() {
    sql "$PORT" "insert into t select g, $1, repeat(md5(g::text), 3)
                 from generate_series($((($1 - 1) * ROWS + 1)), $(($1 * ROWS))) g" ||
        die "insert of batch $1 failed"
}

CASE="workload"
# Batches 1-3 are committed before the target (with a switch in between, so recovery crosses
# several archived segments), batches 4-5 after it.
insert_batch 1
sql "$PORT" "select pg_switch_wal()" >/dev/null || die "pg_switch_wal failed"
insert_batch 2
MID=$(sql "$PORT" "select pg_walfile_name(pg_current_wal_lsn())") || die "psql failed"
insert_batch 3
sleep 1
TARGET=$(sql "$PORT" "select clock_timestamp()") || die "clock_timestamp failed"
sleep 1
insert_batch 4
sql "$PORT" "select pg_switch_wal()" >/dev/null || die "pg_switch_wal failed"
insert_batch 5
EXPECT_COUNT=$((3 * ROWS))
EXPECT_MAX=$((3 * ROWS))
# Sanity: the primary has all five batches and the target really separates them.
assert_eq "$(sql "$PORT" "select count(*) from t")" $((5 * ROWS)) "rows on the primary"
assert_eq "$(sql "$PORT" "select count(*) from t where batch <= 3")" \
    "$EXPECT_COUNT" "rows of batches 1-3 on the primary"
last=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
note "target time $TARGET; waiting for $last to be archived"
wait_archived "$PORT" "$last" 90 || { show_log "$PGD.log"; die "archiving did not finish"; }
assert_eq "$(sql "$PORT" "select failed_count from pg_stat_archiver")" 0 \
    "pg_stat_archiver.failed_count on the primary"

# pg_basebackup made PostgreSQL archive a backup history file (.backup) through wal-push too.
CASE="backup history file"
bfile=$(cd "$PGD/pg_wal" && ls -1 -- *.backup 2>/dev/null | head -1)
if [ -z "$bfile" ]; then
    fail "no .backup file in the primary's pg_wal after pg_basebackup"
elif [ ! -f "$(repo_file "main/wal/${bfile:0:16}/$bfile")" ]; then
    fail "$bfile was not archived to $REPO_KIND repository main/wal/${bfile:0:16}/"
else
    new_dest
    run "$WAL_FETCH" --config "$CONF" "$bfile" "$DEST"
    assert_rc 0 "wal-fetch $bfile" &&
        { cmp -s "$DEST" "$PGD/pg_wal/$bfile" || fail "fetched $bfile differs from pg_wal's"; }
fi
pg_stop "$PGD"

CASE="recovery"
CPORT=$(free_port)
while [ "$CPORT" = "$PORT" ]; do CPORT=$(free_port); done
pg_conf "$COPY" "$CPORT" \
    "archive_mode = off" \
    "archive_command = ''" \
    "restore_command = '$WAL_FETCH --config $CONF %f %p'" \
    "recovery_target_time = '$TARGET'" \
    "recovery_target_action = 'promote'"
touch "$COPY/recovery.signal" && chown postgres: "$COPY/recovery.signal"
pg_start "$COPY"
start=$(date +%s)
while :; do
    r=$(sql "$CPORT" "select pg_is_in_recovery()" 2>/dev/null)
    [ "$r" = "f" ] && break
    if [ $(($(date +%s) - start)) -ge 90 ] || [ ! -f "$COPY/postmaster.pid" ]; then
        show_log "$COPY.log" 40
        die "the copy did not finish recovery and promote (pg_is_in_recovery: ${r:-no answer})"
    fi
    sleep 0.2
done
note "recovered and promoted in $(($(date +%s) - start))s"

CASE="recovered data"
read -r count maxid maxbatch < <(sql "$CPORT" \
    "select count(*), coalesce(max(id), 0), coalesce(max(batch), 0) from t" | tr '|' ' ')
assert_eq "$count" "$EXPECT_COUNT" "row count after recovery to $TARGET"
assert_eq "$maxid" "$EXPECT_MAX" "max(id) after recovery"
assert_eq "$maxbatch" 3 "newest batch after recovery"
# Every row of the first three batches is there and intact.
assert_eq "$(sql "$CPORT" "select count(*) from t where pad = repeat(md5(id::text), 3)")" \
    "$EXPECT_COUNT" "rows with intact content"

CASE="recovery log"
restored=$(grep -c 'restored log file ".*" from archive' "$COPY.log")
[ "$restored" -ge 3 ] ||
    { fail "only $restored WAL files were restored from the archive (expected >= 3)"; show_log "$COPY.log" 40; }
grep -q 'recovery stopping before commit of transaction' "$COPY.log" ||
    fail "the log does not show recovery stopping at the target"
if grep -q -E 'wal-fetch: (ERROR|FATAL)' "$COPY.log"; then
    fail "wal-fetch reported errors during recovery:"
    grep -E 'wal-fetch' "$COPY.log" | head -10 | sed 's/^/      /'
fi
# The promoted copy must not have written into the repository (archive_mode = off).
[ -d "$REPO_FILES" ] || fail "no repository files at $REPO_FILES"
[ -z "$(find "$REPO_FILES" -name '00000002*')" ] || fail "the recovered copy archived into the repository"
note "$restored WAL files restored from the archive"

pg_stop "$COPY"

# A damaged object in the middle of the WAL must stop recovery (wal-fetch exits 255, which
# PostgreSQL treats as fatal), never let it end early and promote with data missing. Here no
# recovery target is set, so ending recovery at the damaged segment would look like success.
CASE="damaged archive stops recovery"
COPY2=$T/copy2
OBJ=$(repo_file "main/wal/${MID:0:16}/$MID")
[ -f "$OBJ" ] || die "no object for $MID"
cp -p "$OBJ" "$T/mid.orig"
flip_byte "$OBJ" $(($(stat -c %s "$OBJ") / 2))
C2PORT=$(free_port)
while [ "$C2PORT" = "$PORT" ] || [ "$C2PORT" = "$CPORT" ]; do C2PORT=$(free_port); done
pg_conf "$COPY2" "$C2PORT" \
    "archive_mode = off" \
    "archive_command = ''" \
    "restore_command = '$WAL_FETCH --config $CONF %f %p'"
touch "$COPY2/recovery.signal" && chown postgres: "$COPY2/recovery.signal"
SERVERS+=("$COPY2")
touch "$COPY2.log" && chown postgres: "$COPY2.log"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$COPY2" -l "$COPY2.log" -w -t 60 start \
    >"$COPY2.pg_ctl.log" 2>&1 # expected to fail, or to stop soon after
start=$(date +%s)
while :; do
    pid=$(head -1 "$COPY2/postmaster.pid" 2>/dev/null)
    is_postmaster_of "$pid" "$COPY2" || break
    if [ "$(sql "$C2PORT" "select pg_is_in_recovery()" 2>/dev/null)" = "f" ]; then
        fail "the server promoted although a WAL file in the archive is damaged"
        break
    fi
    if [ $(($(date +%s) - start)) -ge 60 ]; then
        fail "the server with a damaged archive neither stopped nor promoted within 60s"
        break
    fi
    sleep 0.2
done
if grep -q -E 'archive recovery complete|selected new timeline ID|ready to accept connections' "$COPY2.log"; then
    fail "recovery ended and the server promoted despite the damaged $MID:"
    show_log "$COPY2.log" 30
fi
grep -q "wal-fetch: ERROR: .*$MID" "$COPY2.log" ||
    { fail "the server log has no wal-fetch error naming $MID"; show_log "$COPY2.log" 30; }
grep -q 'FATAL' "$COPY2.log" || fail "the server log shows no FATAL stop of recovery"
pg_stop_immediate "$COPY2"

CASE="recovery resumes after repair"
cp -p "$T/mid.orig" "$OBJ"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$COPY2" -l "$COPY2.log" -w -t 60 start \
    >"$COPY2.pg_ctl.log" 2>&1 || { show_log "$COPY2.log" 30; die "could not restart $COPY2"; }
start=$(date +%s)
while [ "$(sql "$C2PORT" "select pg_is_in_recovery()" 2>/dev/null)" != "f" ]; do
    if [ $(($(date +%s) - start)) -ge 60 ] || [ ! -f "$COPY2/postmaster.pid" ]; then
        show_log "$COPY2.log" 30
        die "the repaired archive did not let recovery finish"
    fi
    sleep 0.2
done
# No target: everything archived is replayed, all five batches.
assert_eq "$(sql "$C2PORT" "select count(*) || ' ' || max(id) from t")" "$((5 * ROWS)) $((5 * ROWS))" \
    "rows after recovery to the end of the repaired archive"
pg_stop "$COPY2"
finish
