#!/usr/bin/env bash
# t_backup_timeline: a `basebackup` backup restored to a point in time and promoted becomes
# timeline 2 and keeps archiving into the same repository under the same cluster name (as in
# production after a PITR); a second backup is taken of it on timeline 2. Later restores to a
# point on timeline 2 work from the first backup (across the switch: recovery_target_timeline
# 'latest' and the archived 00000002.history) and from the newer one (chosen by restore as the
# newest complete backup ending before the target), and a restore without a target recovers to
# the end of the archive on timeline 2.
# The repository is REPO_KIND (local, s3 or sftp; default local).
. "$(dirname "$0")/lib.sh"
setup_tmp

ROWS=2000
KEY=$T/walsafe.key
CONF=$T/walsafe.conf
CONF2=$T/walsafe-copy.conf
PGD=$T/primary
COPY=$T/copy
CASE="repository (${REPO_KIND:-local})"
make_key "$KEY"
repo_setup "${REPO_KIND:-local}"
write_conf "$CONF" "${REPO_CONF[@]}" "encrypt_key_file = '$KEY'"
ARCHIVE="archive_command = '$WAL_PUSH --config $CONF %p'"

insert_batch() { # PORT BATCH
    sql "$1" "insert into t select g, $2 from generate_series($((($2 - 1) * ROWS + 1)), $(($2 * ROWS))) g" ||
        die "insert of batch $2 failed"
}
batches() { # PORT: "batch:rows,..."
    sql "$1" "select string_agg(batch || ':' || n, ',' order by batch)
              from (select batch, count(*) n from t group by batch) s"
}
timeline_of() { sql "$1" "select timeline_id from pg_control_checkpoint()"; }
# switch_archived PORT DIR: switches WAL and waits until the segment is archived.
switch_archived() {
    local last
    last=$(sql "$1" "select pg_walfile_name(pg_switch_wal())") || die "pg_switch_wal failed"
    wait_archived "$1" "$last" 90 || { show_log "$2.log"; die "archiving of $last did not finish"; }
    assert_eq "$(sql "$1" "select failed_count from pg_stat_archiver")" 0 "archiver failures of ${2##*/}"
    LAST_SEG=$last
}

CASE="primary on timeline 1"
archiving_cluster "$PGD" "$CONF" --wal-segsize=1
backup_conf "$CONF" "$PGD" "$PORT" "encrypt_key_file = '$KEY'"
sql "$PORT" "create table t (id int primary key, batch int not null)" || die "create table failed"
insert_batch "$PORT" 1
bb_create "$CONF" --label tl-one
ID1=$BACKUP_ID
insert_batch "$PORT" 2
sleep 1
TARGET1=$(sql "$PORT" "select clock_timestamp()") || die "psql failed"
sleep 1
insert_batch "$PORT" 3
switch_archived "$PORT" "$PGD"
pg_stop "$PGD"

CASE="PITR onto timeline 2, archiving into the same repository"
bb_restore "$CONF" "$COPY" --target-time "$TARGET1" --target-action promote || die "restore failed"
start_restored "$COPY" "archive_mode = on" "$ARCHIVE"
CPORT=$RPORT
pg_wait_promoted "$CPORT" "$COPY" || die "the first restore did not promote"
assert_eq "$(batches "$CPORT")" "1:$ROWS,2:$ROWS" "batches after PITR"
assert_eq "$(timeline_of "$CPORT")" 2 "timeline after promotion"
insert_batch "$CPORT" 4

CASE="backup on timeline 2"
backup_conf "$CONF2" "$COPY" "$CPORT" "encrypt_key_file = '$KEY'"
bb_create "$CONF2" --label tl-two
ID2=$BACKUP_ID
insert_batch "$CPORT" 5
sleep 1
TARGET2=$(sql "$CPORT" "select clock_timestamp()") || die "psql failed"
sleep 1
insert_batch "$CPORT" 6
switch_archived "$CPORT" "$COPY"
[ "${LAST_SEG:0:8}" = 00000002 ] || fail "the promoted copy archived $LAST_SEG, not a timeline-2 segment"
[ -f "$(repo_file main/wal/00000002.history)" ] || fail "00000002.history is not in the repository"
pg_stop "$COPY"

CASE="list"
if bb_list "$CONF"; then
    assert_eq "$(backup_status "$ID1")" complete "status of $ID1"
    assert_eq "$(backup_status "$ID2")" complete "status of $ID2"
    assert_eq "$(json_eval "$T/list.json" "String(j.backups.find(b => b.id === '$ID1').timeline)")" 1 \
        "timeline of $ID1"
    assert_eq "$(json_eval "$T/list.json" "String(j.backups.find(b => b.id === '$ID2').timeline)")" 2 \
        "timeline of $ID2"
    assert_eq "$(json_eval "$T/list.json" "j.wal.timelines.map(x => typeof x === 'object' ? (x.timeline ?? x.tli ?? x.id) : x).map(Number).join(',')")" \
        "1,2" "timelines of the archived WAL"
fi

# restore_check NAME EXPECTED_BATCHES LABEL|- RESTORE_ARGS...: restores into r_NAME, starts it,
# waits for promotion and compares the batches.
restore_check() {
    local name=$1 want=$2 label=$3 dir=$T/r_$1
    shift 3
    bb_restore "$CONF" "$dir" "$@" || return 1
    [ "$label" = - ] || assert_eq "$(backup_label_of "$dir")" "$label" "backup chosen"
    start_restored "$dir"
    if pg_wait_promoted "$RPORT" "$dir"; then
        assert_eq "$(batches "$RPORT")" "$want" "batches after recovery"
        assert_eq "$(timeline_of "$RPORT")" 3 "timeline after promotion"
    fi
    if grep -q -E 'wal-fetch: (ERROR|FATAL)' "$dir.log"; then
        fail "wal-fetch reported errors during recovery:"
        grep -E 'wal-fetch' "$dir.log" | head -5 | sed 's/^/      /'
    fi
    pg_stop "$dir"
}

CASE="first backup (timeline 1) to a point on timeline 2"
restore_check tl1-to-tl2 "1:$ROWS,2:$ROWS,4:$ROWS,5:$ROWS" tl-one \
    --backup "$ID1" --target-time "$TARGET2" --target-action promote
grep -q 'restored log file "00000002.history" from archive' "$T/r_tl1-to-tl2.log" ||
    fail "00000002.history was not restored from the archive"
grep -q 'recovery stopping before commit of transaction' "$T/r_tl1-to-tl2.log" ||
    fail "the log does not show recovery stopping at the target time"

CASE="newest backup to a point on timeline 2"
restore_check tl2 "1:$ROWS,2:$ROWS,4:$ROWS,5:$ROWS" tl-two \
    --target-time "$TARGET2" --target-action promote

CASE="first backup to the end of the archive"
restore_check end "1:$ROWS,2:$ROWS,4:$ROWS,5:$ROWS,6:$ROWS" tl-one --backup "$ID1"

CASE="repository"
# Only the promoted copy archived; the later restores (timeline 3) ran with archive_mode = off.
[ -z "$(find "$REPO_FILES" -name '00000003*')" ] || fail "a restored copy archived timeline 3"
assert_repo_clean "repository"
finish
